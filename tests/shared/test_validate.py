# SPDX-License-Identifier: AGPL-3.0-or-later
"""Every validation rule (doc/protocol.md#error-codes), each with a crafted bad message."""

import struct
import unittest

from tests import support
from osmo_pcap import pcapfile, pcapng, validate, wire

V = validate.ValidationError
PCAP_HDR = pcapfile.encode_global_header(9000, 1)
NG_HDR = pcapng.encode_shb() + pcapng.encode_idb(1, 9000, if_name="eth0", if_filter="")


class LinkHdrTest(unittest.TestCase):
    def code(self, payload, max_snaplen=9000):
        with self.assertRaises(V) as cm:
            validate.check_link_hdr(payload, max_snaplen)
        self.assertIsInstance(cm.exception, wire.ProtocolError)
        self.assertTrue(str(cm.exception))
        return cm.exception.code

    def test_accepts_pcap_in_both_orders_and_ns(self):
        for bo in "<>":
            for ns in (False, True):
                info = validate.check_link_hdr(
                    pcapfile.encode_global_header(1500, 113, ns, bo), 9000)
                self.assertEqual((info.format, info.ext, info.byteorder, info.snaplen,
                                  info.linktype, info.nanosecond), ("pcap", "pcap", bo, 1500, 113, ns))

    def test_accepts_pcapng_in_both_orders(self):
        for bo in "<>":
            hdr = (pcapng.encode_shb(byteorder=bo) + pcapng.encode_idb(1, 9000, "a", "", byteorder=bo)
                   + pcapng.encode_idb(113, 0, "any", "udp", byteorder=bo))
            info = validate.check_link_hdr(hdr, 9000)
            self.assertEqual((info.format, info.byteorder, len(info.interfaces)), ("pcapng", bo, 2))
            self.assertEqual(info.interfaces[1].filter, "udp")
        info = validate.check_link_hdr(pcapng.encode_shb(), 9000)  # zero devices
        self.assertEqual(info.interfaces, [])

    def test_empty(self):
        self.assertEqual(self.code(b""), "hdr-empty")

    def test_unknown_format(self):
        self.assertEqual(self.code(b"\x00" * 24), "hdr-unknown-format")
        self.assertEqual(self.code(b"\x16\x03\x01"), "hdr-unknown-format")

    def test_pcap_header_must_be_exactly_24_bytes(self):
        self.assertEqual(self.code(PCAP_HDR[:23]), "pcap-hdr-length")
        self.assertEqual(self.code(PCAP_HDR + b"\0"), "pcap-hdr-length")  # upstream stored these

    def test_pcap_snaplen_over_max_in_either_order(self):
        self.assertEqual(self.code(pcapfile.encode_global_header(9001, 1)), "pcap-hdr-snaplen")
        self.assertEqual(self.code(pcapfile.encode_global_header(9001, 1, byteorder=">")),
                         "pcap-hdr-snaplen")
        self.assertEqual(self.code(pcapfile.encode_global_header(0xFFFFFFFF, 1)), "pcap-hdr-snaplen")
        self.assertEqual(self.code(pcapfile.encode_global_header(0, 1)), "pcap-hdr-snaplen")
        validate.check_link_hdr(pcapfile.encode_global_header(65535, 1), 65535)

    def test_pcap_bad_version(self):
        b = bytearray(PCAP_HDR)
        b[4] = 1
        self.assertEqual(self.code(bytes(b)), "pcap-bad-version")

    def test_pcapng_first_block_length(self):
        b = bytearray(NG_HDR)
        struct.pack_into("<I", b, 4, 90)
        self.assertEqual(self.code(bytes(b)), "pcapng-bad-length")
        struct.pack_into("<I", b, 4, 1000)
        self.assertEqual(self.code(bytes(b)), "pcapng-bad-length")
        self.assertEqual(self.code(NG_HDR[:20]), "pcapng-bad-length")
        self.assertEqual(self.code(NG_HDR[:11]), "hdr-unknown-format")

    def test_pcapng_trailer_and_version(self):
        b = bytearray(NG_HDR)
        struct.pack_into("<I", b, 84, 92)
        self.assertEqual(self.code(bytes(b)), "pcapng-bad-trailer")
        b = bytearray(NG_HDR)
        struct.pack_into("<H", b, 12, 2)
        self.assertEqual(self.code(bytes(b)), "pcapng-bad-version")

    def test_pcapng_idb_snaplen_checked(self):
        hdr = pcapng.encode_shb() + pcapng.encode_idb(1, 9001, "eth0", "")
        self.assertEqual(self.code(hdr), "pcapng-idb-snaplen")

    def test_pcapng_only_idbs_after_shb(self):
        hdr = NG_HDR + pcapng.encode_epb(0, 0, b"abcd")
        self.assertEqual(self.code(hdr), "pcapng-hdr-block")

    def test_pcapng_truncated_idb(self):
        self.assertEqual(self.code(NG_HDR[:-4]), "pcapng-bad-length")

    def test_pcapng_bad_idb_option(self):
        b = bytearray(NG_HDR)
        struct.pack_into("<HH", b, 88 + 16, 2, 300)
        self.assertEqual(self.code(bytes(b)), "pcapng-bad-option")


class LinkDataTest(unittest.TestCase):
    def setUp(self):
        self.pcap = validate.check_link_hdr(pcapfile.encode_global_header(100, 1), 9000)
        self.ng = validate.check_link_hdr(
            pcapng.encode_shb() + pcapng.encode_idb(1, 100, "a", "") + pcapng.encode_idb(1, 0, "b", ""),
            9000)

    def code(self, info, payload):
        with self.assertRaises(V) as cm:
            info.check_data(payload)
        return cm.exception.code

    def test_good_records(self):
        self.pcap.check_data(pcapfile.encode_record(1, 2, b"x" * 100, 1500))
        self.pcap.check_data(pcapfile.encode_record(1, 2, b""))
        self.ng.check_data(pcapng.encode_epb(0, 5, b"x" * 100, 1500))
        self.ng.check_data(pcapng.encode_epb(1, 5, b"x" * 9000))  # IDB snaplen 0 = no limit
        self.ng.check_data(pcapng.encode_isb(0, 5, [(pcapng.ISB_IFRECV, 1)]))  # other block kept

    def test_pcap_record_shorter_than_header(self):
        self.assertEqual(self.code(self.pcap, b"\0" * 15), "pcap-record-short")
        self.assertEqual(self.code(self.pcap, b""), "pcap-record-short")

    def test_pcap_caplen_must_match_frame_length(self):
        rec = bytearray(pcapfile.encode_record(1, 2, b"x" * 50))
        struct.pack_into("<I", rec, 8, 49)
        self.assertEqual(self.code(self.pcap, bytes(rec)), "pcap-caplen-mismatch")
        self.assertEqual(self.code(self.pcap, pcapfile.encode_record(1, 2, b"x" * 50)[:-1]),
                         "pcap-caplen-mismatch")

    def test_pcap_caplen_over_snaplen(self):
        self.assertEqual(self.code(self.pcap, pcapfile.encode_record(1, 2, b"x" * 101)),
                         "pcap-caplen-too-big")

    def test_pcap_big_endian_records(self):
        info = validate.check_link_hdr(pcapfile.encode_global_header(100, 1, byteorder=">"), 9000)
        info.check_data(pcapfile.encode_record(1, 2, b"x" * 100, byteorder=">"))
        self.assertEqual(self.code(info, pcapfile.encode_record(1, 2, b"x" * 100)),
                         "pcap-caplen-mismatch")

    def test_pcapng_block_short(self):
        self.assertEqual(self.code(self.ng, b"\0" * 11), "pcapng-block-short")

    def test_pcapng_block_length_must_equal_frame(self):
        epb = pcapng.encode_epb(0, 5, b"x" * 8)
        self.assertEqual(self.code(self.ng, epb + b"\0\0\0\0"), "pcapng-block-length")
        b = bytearray(epb)
        struct.pack_into("<I", b, 4, len(epb) - 2)
        self.assertEqual(self.code(self.ng, bytes(b)), "pcapng-block-length")

    def test_pcapng_trailer(self):
        b = bytearray(pcapng.encode_epb(0, 5, b"x" * 8))
        b[-4] ^= 4
        self.assertEqual(self.code(self.ng, bytes(b)), "pcapng-block-trailer")

    def test_pcapng_epb_too_short(self):
        blk = struct.pack("<IIIIII", 6, 28, 0, 0, 0, 0) + struct.pack("<I", 28)
        self.assertEqual(self.code(self.ng, blk), "pcapng-epb-short")

    def test_pcapng_epb_interface(self):
        self.assertEqual(self.code(self.ng, pcapng.encode_epb(2, 5, b"x")), "pcapng-epb-interface")

    def test_pcapng_epb_caplen_limits(self):
        self.assertEqual(self.code(self.ng, pcapng.encode_epb(0, 5, b"x" * 101)), "pcapng-epb-caplen")
        self.assertEqual(self.code(self.ng, pcapng.encode_epb(1, 5, b"x" * 9001)), "pcapng-epb-caplen")
        b = bytearray(pcapng.encode_epb(0, 5, b"x" * 8))
        struct.pack_into("<I", b, 20, 60)  # caplen larger than the block holds
        self.assertEqual(self.code(self.ng, bytes(b)), "pcapng-epb-caplen")

    def test_pcapng_header_blocks_in_data(self):
        self.assertEqual(self.code(self.ng, pcapng.encode_shb()), "pcapng-data-shb")
        self.assertEqual(self.code(self.ng, pcapng.encode_idb(1, 1)), "pcapng-data-idb")


class GoldenStreamsValidTest(unittest.TestCase):
    def test_recorded_streams_pass(self):
        for name in ("c-0.4.1-client-stream.bin", "c-0.8-pcap-client-stream.bin",
                     "c-0.8-pcapng-client-stream.bin", "c-0.8-pcapng-nofilter-client-stream.bin"):
            msgs = wire.Decoder().feed(support.data_file(name))
            info = validate.check_link_hdr(msgs[0][1], 9000)
            for _, p in msgs[1:]:
                info.check_data(p)


if __name__ == "__main__":
    unittest.main()
