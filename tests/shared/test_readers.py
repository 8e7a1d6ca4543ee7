# SPDX-License-Identifier: AGPL-3.0-or-later
"""Files made by our encoders, read back by tcpdump and tshark (independent readers)."""

import os
import unittest

from tests import support
from osmo_pcap import pcapfile, pcapng

# (sec, frac in us, payload) -- frac scaled for ns files
PACKETS = [(1700000000, 1, bytes(range(60))), (1700000000, 999999, b"\xff" * 61),
           (1700000001, 500000, bytes(range(256)) * 6), (2100000000, 0, b"\x00" * 14)]


def epoch(sec, frac, ns):
    return "%d.%09d" % (sec, frac) if ns else "%d.%06d000" % (sec, frac)


class ReadersTest(support.TempDirTestCase):
    def write(self, name, data):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pcap_image(self, bo, ns):
        out = [pcapfile.encode_global_header(9000, 1, ns, bo)]
        for sec, us, data in PACKETS:
            out.append(pcapfile.encode_record(sec, us * 1000 + 7 if ns else us, data,
                                              len(data) + 3, bo))
        return b"".join(out)

    def pcapng_image(self, bo, ns):
        out = [pcapng.encode_shb(byteorder=bo),
               pcapng.encode_idb(1, 9000, if_name="eth0", if_filter="udp",
                                 if_tsresol=9 if ns else None, byteorder=bo),
               pcapng.encode_idb(1, 9000, if_name="eth1", if_filter="", byteorder=bo)]
        for i, (sec, us, data) in enumerate(PACKETS):
            if_id = i % 2
            if if_id == 0 and ns:
                ts = sec * 10 ** 9 + us * 1000 + 7
            else:
                ts = sec * 10 ** 6 + us
            out.append(pcapng.encode_epb(if_id, ts, data, len(data) + 3, bo))
        out.append(pcapng.encode_isb(0, 1700000002 * (10 ** 9 if ns else 10 ** 6),
                                     [(pcapng.ISB_IFRECV, 4), (pcapng.ISB_IFDROP, 0)], bo))
        return b"".join(out)

    def expected(self, ns_of):
        rows = []
        for i, (sec, us, data) in enumerate(PACKETS):
            ns = ns_of(i)
            rows.append((epoch(sec, us * 1000 + 7 if ns else us, ns), len(data) + 3, len(data), data))
        return rows

    def check_tshark(self, path, ns_of):
        got = [(e, l, c, b) for e, l, c, b, _ in support.tshark_read(path)]
        self.assertEqual(got, self.expected(ns_of), path)

    def check_tcpdump(self, path, ns_of):
        got = support.tcpdump_packets(path)
        want = self.expected(ns_of)
        self.assertEqual(len(got), len(want))
        for (ts, data), (e, _, _, d) in zip(got, want):
            self.assertEqual(ts, e)
            self.assertEqual(data, d)

    def test_pcap_files(self):
        for bo in "<>":
            for ns in (False, True):
                path = self.write("t-%s-%d.pcap" % ("le" if bo == "<" else "be", ns),
                                  self.pcap_image(bo, ns))
                self.check_tshark(path, lambda i: ns)
                self.check_tcpdump(path, lambda i: ns)
                # and our own reader agrees
                recs = list(pcapfile.iter_records(support.read_bytes(path)))
                self.assertEqual([r.data for r in recs], [p[2] for p in PACKETS])

    def test_pcapng_files(self):
        for bo in "<>":
            for ns in (False, True):
                path = self.write("t-%s-%d.pcapng" % ("le" if bo == "<" else "be", ns),
                                  self.pcapng_image(bo, ns))
                ns_of = (lambda i: ns and i % 2 == 0)
                self.check_tshark(path, ns_of)
                ifs = [i for _, _, _, _, i in support.tshark_read(path)]
                self.assertEqual(ifs, [0, 1, 0, 1])
                # tcpdump reads pcapng with a single link type
                self.check_tcpdump(path, ns_of)
                pkts = list(pcapng.iter_packets(support.read_bytes(path)))
                self.assertEqual([p.data for p in pkts], [p[2] for p in PACKETS])

    def test_golden_files_read_by_both(self):
        for name in ("c-0.4.1-server-file.pcap", "c-0.8-pcapng-server-file.pcapng"):
            path = os.path.join(support.DATA, name)
            data = support.read_bytes(path)
            ours = (list(pcapfile.iter_records(data)) if name.endswith(".pcap")
                    else list(pcapng.iter_packets(data)))
            theirs = support.tshark_read(path)
            self.assertEqual([t[3] for t in theirs], [r.data for r in ours])
            self.assertEqual([t[1] for t in theirs], [r.orig_len for r in ours])
            self.assertEqual([d for _, d in support.tcpdump_packets(path)], [r.data for r in ours])


if __name__ == "__main__":
    unittest.main()
