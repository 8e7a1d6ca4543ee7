# SPDX-License-Identifier: AGPL-3.0-or-later
"""pcap and pcapng encoders and parsers against upstream's bytes and the C recordings."""

import json
import os
import struct
import unittest

from tests import support
from osmo_pcap import pcapfile, pcapng, wire

FRAME60 = bytes(range(60))


def hexbytes(text):
    """Bytes from a spec hex dump (offset columns and '|' comments removed)."""
    out = []
    for line in text.strip().splitlines():
        line = line.split("|")[0]
        words = line.split()
        if words and len(words[0]) == 4 and not all(len(w) == 2 for w in words[:1]):
            words = words[1:]
        out.extend(w for w in words if len(w) == 2)
    return bytes.fromhex("".join(out))


# upstream's pcapng LINK_HDR for one device "eth0", no filter (doc/protocol.md#link-hdr-pcapng)
SPEC_PCAPNG_HDR = hexbytes("""
0000  00 00 00 80 0a 0d 0d 0a 58 00 00 00 4d 3c 2b 1a
0010  01 00 00 00 ff ff ff ff ff ff ff ff 02 00 0c 00
0020  6f 73 6d 6f 2d 70 63 61 70 20 68 77 03 00 0c 00
0030  6f 73 6d 6f 2d 70 63 61 70 20 6f 73 04 00 12 00
0040  6f 73 6d 6f 2d 70 63 61 70 20 75 73 65 72 61 70
0050  70 6c 00 00 00 00 00 00 58 00 00 00 01 00 00 00
0060  28 00 00 00 01 00 00 00 28 23 00 00 02 00 04 00
0070  65 74 68 30 0b 00 01 00 00 00 00 00 00 00 00 00
0080  28 00 00 00
""")


class SpecExamplesTest(unittest.TestCase):
    """Upstream's frames, byte for byte (layouts: doc/protocol.md#payloads)."""

    def test_pcap_link_hdr(self):
        expect = bytes.fromhex("00000018" "d4c3b2a1" "0200" "0400" "00000000" "00000000"
                               "28230000" "01000000")
        self.assertEqual(wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1)), expect)

    def test_pcap_link_data(self):
        expect = bytes.fromhex("0100004c" "00f15365" "40e20100" "3c000000" "3c000000") + FRAME60
        rec = pcapfile.encode_record(1700000000, 123456, FRAME60)
        self.assertEqual(wire.encode_link_data(rec), expect)

    def test_pcapng_link_hdr(self):
        payload = pcapng.encode_shb() + pcapng.encode_idb(1, 9000, if_name="eth0", if_filter="")
        self.assertEqual(len(pcapng.encode_shb()), 88)
        self.assertEqual(len(payload), 128)
        self.assertEqual(wire.encode_link_hdr(payload), SPEC_PCAPNG_HDR)

    def test_pcapng_link_data(self):
        ts = 1700000000 * 1000000 + 123456
        expect = (bytes.fromhex("01000060" "06000000" "60000000" "00000000" "240a0600" "40222018"
                                "3c000000" "3c000000") + FRAME60 + bytes.fromhex("00000000" "60000000"))
        self.assertEqual(wire.encode_link_data(pcapng.encode_epb(0, ts, FRAME60)), expect)

    def test_idb_size_formula(self):
        for name, flt in (("eth0", ""), ("any", "udp port 23000"), ("p8veth0", "x" * 7)):
            size = 28 + pcapng.pad4(len(name)) + 4 + pcapng.pad4(1 + len(flt))
            self.assertEqual(len(pcapng.encode_idb(1, 9000, if_name=name, if_filter=flt)), size)

    def test_epb_padding(self):
        for n in range(0, 9):
            blk = pcapng.encode_epb(3, 5, b"\x55" * n, 100)
            self.assertEqual(len(blk), pcapng.epb_size(n))
            self.assertEqual(len(blk) % 4, 0)
            self.assertEqual(pcapng.encode_epb_header(3, 5, n, 100) + b"\x55" * n +
                             pcapng.epb_trailer(n), blk)


class GoldenVectorTest(unittest.TestCase):
    """Encoding the recorded packets with our encoders gives the C client's stream."""

    def decode(self, name):
        return [(t, bytes(p)) for t, p in wire.Decoder().feed(support.data_file(name))]

    def test_pcap_streams_reencoded(self):
        for name in ("c-0.4.1-client-stream.bin", "c-0.8-pcap-client-stream.bin"):
            msgs = self.decode(name)
            hdr = pcapfile.parse_global_header(msgs[0][1])
            self.assertEqual((hdr.snaplen, hdr.linktype, hdr.byteorder), (9000, 1, "<"))
            out = [wire.encode_link_hdr(pcapfile.encode_global_header(hdr.snaplen, hdr.linktype))]
            recs = list(pcapfile.iter_records(b"".join(p for _, p in msgs)))
            self.assertEqual(len(recs), len(msgs) - 1)
            for r in recs:
                out.append(wire.encode_link_data(
                    pcapfile.encode_record(r.ts_sec, r.ts_frac, r.data, r.orig_len)))
            self.assertEqual(b"".join(out), support.data_file(name), name)

    def test_041_truncated_records_keep_their_length(self):
        recs = list(pcapfile.iter_records(support.data_file("c-0.4.1-server-file.pcap")))
        sizes = [0, 1, 2, 3, 17, 64, 100, 511, 512, 1000, 1400, 1472, 4000, 8958, 8959, 9000,
                 9100, 20000]
        self.assertEqual([r.orig_len for r in recs], [s + 42 for s in sizes])
        self.assertEqual([r.caplen for r in recs], [min(s + 42, 9000) for s in sizes])
        for i, r in enumerate(recs):
            if sizes[i] >= 6:
                self.assertEqual(r.data[42:48], b"G%05d" % i)

    def test_pcapng_streams_reencoded(self):
        for base in ("c-0.8-pcapng", "c-0.8-pcapng-nofilter"):
            sent = json.loads(support.data_file(base + "-sent.json").decode())["sent"]
            msgs = self.decode(base + "-client-stream.bin")
            devices = []
            for p in sent:
                if p["dev"] not in devices:
                    devices.append(p["dev"])
            if base == "c-0.8-pcapng":
                devices = ["lo", "p8veth0"]  # device order of the recording
            flt = "udp port 9998" if base == "c-0.8-pcapng" else ""
            hdr = pcapng.encode_shb() + b"".join(
                pcapng.encode_idb(1, 9000, if_name=d, if_filter=flt) for d in devices)
            self.assertEqual(hdr, msgs[0][1], base)
            filedata = support.data_file(base + "-server-file.pcapng")
            pkts = list(pcapng.iter_packets(filedata))
            self.assertEqual(len(pkts), len(sent))
            for p, s, (_, payload) in zip(pkts, sent, msgs[1:]):
                n = s["n"]
                self.assertEqual(p.interface, devices.index(s["dev"]))
                self.assertEqual((p.caplen, p.orig_len), (s["caplen"], s["frame_len"]))
                k = s["udp_payload_len"]
                body = bytes((n * 31 + j) & 0xFF for j in range(min(k, p.caplen - 42)))
                self.assertEqual(p.data[42:], body)
                ts = p.ts_sec * 1000000 + p.ts_frac
                self.assertEqual(pcapng.encode_epb(p.interface, ts, p.data, p.orig_len), payload)

    def test_pcap_vector_matches_sent_plan(self):
        sent = json.loads(support.data_file("c-0.8-pcap-sent.json").decode())["sent"]
        recs = list(pcapfile.iter_records(support.data_file("c-0.8-pcap-server-file.pcap")))
        self.assertEqual([(r.caplen, r.orig_len) for r in recs],
                         [(s["caplen"], s["frame_len"]) for s in sent])


class PcapTest(unittest.TestCase):
    def test_both_byte_orders_and_nanoseconds(self):
        for bo in "<>":
            for ns in (False, True):
                h = pcapfile.encode_global_header(1234, 113, nanosecond=ns, byteorder=bo)
                g = pcapfile.parse_global_header(h)
                self.assertEqual((g.byteorder, g.nanosecond, g.snaplen, g.linktype, g.version),
                                 (bo, ns, 1234, 113, (2, 4)))
                frac = 999999999 if ns else 999999
                img = h + pcapfile.encode_record(0xFFFFFFFF, frac, b"abc", 10, byteorder=bo)
                (r,) = list(pcapfile.iter_records(img))
                self.assertEqual((r.ts_sec, r.ts_frac, r.data, r.orig_len), (0xFFFFFFFF, frac, b"abc", 10))
                self.assertEqual(r.timestamp_ns, 0xFFFFFFFF * 10 ** 9 + (999999999 if ns else 999999000))

    def test_bad_headers(self):
        with self.assertRaises(pcapfile.PcapFormatError) as cm:
            pcapfile.parse_global_header(b"\0" * 24)
        self.assertEqual(cm.exception.code, "pcap-bad-magic")
        with self.assertRaises(pcapfile.PcapFormatError) as cm:
            pcapfile.parse_global_header(pcapfile.encode_global_header(1, 1)[:20])
        self.assertEqual(cm.exception.code, "pcap-short-header")
        bad = bytearray(pcapfile.encode_global_header(1, 1))
        bad[4] = 3
        with self.assertRaises(pcapfile.PcapFormatError) as cm:
            pcapfile.parse_global_header(bad)
        self.assertEqual(cm.exception.code, "pcap-bad-version")

    def test_truncated_records(self):
        img = pcapfile.encode_global_header(100, 1) + pcapfile.encode_record(1, 2, b"abcdef")
        self.assertEqual(pcapfile.complete_prefix(img, "<"), len(img))
        for cut in range(24 + 1, len(img)):
            self.assertEqual(pcapfile.complete_prefix(img[:cut], "<"), 24)
            with self.assertRaises(pcapfile.PcapFormatError):
                list(pcapfile.iter_records(img[:cut]))

    def test_dlt_to_linktype(self):
        self.assertEqual(pcapfile.dlt_to_linktype(1), 1)
        self.assertEqual(pcapfile.dlt_to_linktype(113), 113)
        self.assertEqual(pcapfile.dlt_to_linktype(276), 276)
        # DLT_RAW (doc/protocol.md#diff-linktype-mapping)
        self.assertEqual(pcapfile.dlt_to_linktype(12), 101)
        self.assertEqual(pcapfile.dlt_to_linktype(14), 101)   # DLT_RAW on OpenBSD
        self.assertEqual(pcapfile.dlt_to_linktype(11), 100)
        self.assertEqual(pcapfile.dlt_to_linktype(19), 106)
        self.assertEqual(pcapfile.dlt_to_linktype(0), 0)


class PcapngTest(unittest.TestCase):
    def test_roundtrip_both_orders_with_tsresol_and_isb(self):
        for bo in "<>":
            img = (pcapng.encode_shb(byteorder=bo)
                   + pcapng.encode_idb(1, 9000, if_name="eth0", if_filter="udp", byteorder=bo)
                   + pcapng.encode_idb(113, 500, if_name="any", if_tsresol=9,
                                       if_description="cooked", byteorder=bo)
                   + pcapng.encode_epb(0, 1700000000123456, b"x" * 5, 60, byteorder=bo)
                   + pcapng.encode_epb(1, 1700000000123456789, b"y" * 8, byteorder=bo)
                   + pcapng.encode_isb(0, 1700000001000000, [(pcapng.ISB_IFRECV, 7),
                                                             (pcapng.ISB_IFDROP, 1)], byteorder=bo))
            kinds = [b[1] for b in pcapng.iter_blocks(img)]
            self.assertEqual(kinds, [pcapng.BT_SHB, 1, 1, 6, 6, 5])
            a, b = list(pcapng.iter_packets(img))
            self.assertEqual((a.ts_sec, a.ts_frac, a.ts_divisor, a.data, a.orig_len, a.interface),
                             (1700000000, 123456, 10 ** 6, b"xxxxx", 60, 0))
            self.assertEqual((b.ts_sec, b.ts_frac, b.ts_divisor, b.data, b.orig_len, b.interface),
                             (1700000000, 123456789, 10 ** 9, b"yyyyyyyy", 8, 1))
            pos = 88
            btype, total = pcapng.check_block(img, pos, bo)
            intf = pcapng.parse_idb(img, pos, bo, total)
            self.assertEqual((intf.name, intf.filter, intf.linktype), ("eth0", "udp", 1))
            pos += total
            btype, total = pcapng.check_block(img, pos, bo)
            intf = pcapng.parse_idb(img, pos, bo, total)
            self.assertEqual((intf.name, intf.description, intf.tsresol, intf.divisor),
                             ("any", "cooked", 9, 10 ** 9))

    def test_tsresol(self):
        self.assertEqual(pcapng.tsresol_divisor(6), 10 ** 6)
        self.assertEqual(pcapng.tsresol_divisor(0x80 | 10), 1024)
        with self.assertRaises(pcapng.PcapngFormatError):
            pcapng.tsresol_divisor(19)

    def test_malformed_blocks(self):
        good = pcapng.encode_shb() + pcapng.encode_idb(1, 100, if_name="a")
        cases = []
        b = bytearray(good)
        struct.pack_into("<I", b, 92, 22)         # IDB length not a multiple of 4
        cases.append((bytes(b), "pcapng-bad-length"))
        b = bytearray(good)
        struct.pack_into("<I", b, 92, 400)        # IDB runs past the end
        cases.append((bytes(b), "pcapng-bad-length"))
        b = bytearray(good)
        b[-1] ^= 0xFF                             # trailer differs
        cases.append((bytes(b), "pcapng-bad-trailer"))
        cases.append((good[:-3], "pcapng-bad-length"))
        cases.append((pcapng.encode_idb(1, 100), "pcapng-no-shb"))
        b = bytearray(good)
        struct.pack_into("<HH", b, 88 + 16, 2, 200)  # option longer than the block
        cases.append((bytes(b), "pcapng-bad-option"))
        for data, code in cases:
            with self.assertRaises(pcapng.PcapngFormatError) as cm:
                list(pcapng.iter_blocks(data))
                for _, bt, off, tot in pcapng.iter_blocks(data):
                    if bt == 1:
                        pcapng.parse_idb(data, off, "<", tot)
            self.assertEqual(cm.exception.code, code, data.hex())
        with self.assertRaises(pcapng.PcapngFormatError) as cm:
            list(pcapng.iter_packets(good + pcapng.encode_epb(5, 0, b"")))
        self.assertEqual(cm.exception.code, "pcapng-bad-interface")


if __name__ == "__main__":
    unittest.main()
