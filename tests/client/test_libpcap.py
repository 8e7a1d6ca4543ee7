# SPDX-License-Identifier: AGPL-3.0-or-later
"""libpcap binding: pkthdr layouts, library search, offline reading, filters."""

import ctypes
import os
import struct
import unittest

from tests import support
from osmo_pcap import pcapfile
from osmo_pcap.client import libpcap


def _read_from_memory(layout, image):
    """Read a header the way the capture callback does: from_address on raw memory."""
    buf = ctypes.create_string_buffer(bytes(image), len(image))
    view = (ctypes.c_char * layout.size).from_address(ctypes.addressof(buf))
    return layout.unpack(view)


class PktHdrLayoutTest(unittest.TestCase):
    def test_classic_32bit_16_bytes(self):
        # struct { int32 tv_sec; int32 tv_usec; u32 caplen; u32 len; }
        image = struct.pack("=iiII", 1700000000, 123456, 60, 1514)
        layout = libpcap.PktHdrLayout(16, 8)
        self.assertEqual(_read_from_memory(layout, image), (1700000000, 123456, 60, 1514))

    def test_64bit_24_bytes(self):
        # struct { int64 tv_sec; int64 tv_usec; u32 caplen; u32 len; }
        image = struct.pack("=qqII", 5000000000, 999999, 9000, 9000)
        layout = libpcap.PktHdrLayout(24, 16)
        self.assertEqual(_read_from_memory(layout, image), (5000000000, 999999, 9000, 9000))

    def test_32bit_time64_24_bytes(self):
        # Debian t64 on 32-bit: 64-bit time_t and suseconds_t, 4-byte aligned caplen at 16.
        image = (struct.pack("=q", 4102444800) + struct.pack("=q", 7)
                 + struct.pack("=II", 100, 200))
        self.assertEqual(len(image), 24)
        layout = libpcap.PktHdrLayout(24, 16)
        self.assertEqual(_read_from_memory(layout, image), (4102444800, 7, 100, 200))

    def test_16_byte_layout_does_not_read_24_byte_memory(self):
        image = struct.pack("=qqII", 1, 2, 60, 60)
        self.assertNotEqual(_read_from_memory(libpcap.PktHdrLayout(16, 8), image)[2], 60)

    def test_probe_decision(self):
        self.assertEqual(libpcap.layout_from_dumped_caplen(12).size, 16)
        self.assertEqual(libpcap.layout_from_dumped_caplen(20).caplen_offset, 16)
        with self.assertRaises(libpcap.LibpcapError):
            libpcap.layout_from_dumped_caplen(0)
        with self.assertRaises(ValueError):
            libpcap.PktHdrLayout(24, 8)

    def test_probe_image_reads_back_per_layout(self):
        # What each layout sees as caplen in the probe is what the decision expects.
        img = libpcap.probe_image()
        self.assertEqual(libpcap.PktHdrLayout(16, 8).unpack(img)[2], 12)
        self.assertEqual(libpcap.PktHdrLayout(24, 16).unpack(img)[2], 20)

    def test_stat_delta_wraps_exactly(self):
        self.assertEqual(libpcap.stat_delta(10, 15), 5)
        self.assertEqual(libpcap.stat_delta(0xFFFFFFFF, 0), 1)
        self.assertEqual(libpcap.stat_delta(0xFFFFFFF0, 0x10), 0x20)


class LibraryTest(support.TempDirTestCase):
    def setUp(self):
        support.TempDirTestCase.setUp(self)
        try:
            self.lib = libpcap.load()
        except libpcap.LibpcapError as e:
            support.need(False, str(e))

    def test_measured_layout_matches_platform(self):
        # 64-bit builds always have 24 bytes; 32-bit ones 16 (32-bit time_t, Debian
        # i386) or 24 (64-bit time_t, Debian armhf trixie): only libpcap can tell, so
        # the 32-bit harness passes what it expects in OSMO_PCAP_EXPECT_PKTHDR.
        if os.environ.get("OSMO_PCAP_EXPECT_PKTHDR"):
            self.assertEqual(self.lib.layout.size, int(os.environ["OSMO_PCAP_EXPECT_PKTHDR"]))
        elif ctypes.sizeof(ctypes.c_void_p) == 8:
            self.assertEqual(self.lib.layout.size, 24)
        else:
            self.assertIn(self.lib.layout.size, (16, 24))
        self.assertIn("libpcap version", self.lib.version)
        self.assertTrue(os.path.isabs(self.lib.path) or self.lib.path)

    def test_candidates_order(self):
        c = libpcap.candidates("/x/libpcap.so", {libpcap.ENV_LIBRARY: "/y/libpcap.so"})
        self.assertEqual(c[:2], ["/x/libpcap.so", "/y/libpcap.so"])
        for soname in libpcap.SONAMES:
            self.assertIn(soname, c)

    def test_missing_library_message(self):
        with self.assertRaises(libpcap.LibpcapError) as cm:
            libpcap.load(self.path("nope.so"))
        self.assertIn("apt-get install libpcap0.8", str(cm.exception))

    def _write_pcap(self, records, linktype=1):
        path = self.path("in.pcap")
        with open(path, "wb") as f:
            f.write(pcapfile.encode_global_header(65535, linktype))
            for sec, usec, data, orig in records:
                f.write(pcapfile.encode_record(sec, usec, data, orig))
        return path

    def test_offline_records_reach_the_sink_exactly(self):
        records = [(1700000000 + i, i * 1000, bytes(range(i, i + 20 + i)), 100 + i)
                   for i in range(50)]
        h = libpcap.Handle.open_offline(self.lib, self._write_pcap(records))
        self.addCleanup(h.close)
        got = []
        h.sink = lambda sec, usec, caplen, length, data: got.append(
            (sec, usec, bytes(data), length, caplen))
        total = 0
        while True:
            n = h.dispatch(7)
            self.assertGreaterEqual(n, 0)
            if n == 0:
                break
            total += n
        self.assertEqual(total, 50)
        self.assertEqual([(s, u, d, o) for s, u, d, o, _ in got], records)
        self.assertTrue(all(c == len(d) for _, _, d, _, c in got))
        self.assertEqual(h.datalink(), 1)

    def test_filter_on_offline_handle(self):
        udp = bytes.fromhex("000000000000000000000000080045000020000000004011000000000000"
                            "0000000004d25dc0000c0000") + b"abcd"
        arp = bytes(12) + b"\x08\x06" + bytes(28)
        h = libpcap.Handle.open_offline(self.lib, self._write_pcap(
            [(1, 0, udp, len(udp)), (2, 0, arp, len(arp))]))
        self.addCleanup(h.close)
        h.set_filter("udp port 24000")
        got = []
        h.sink = lambda *a: got.append(a[0])
        while h.dispatch(-1) > 0:
            pass
        self.assertEqual(got, [1])

    def test_invalid_filter_quotes_libpcap(self):
        h = libpcap.Handle.open_dead(self.lib, 1, 9000)
        self.addCleanup(h.close)
        with self.assertRaises(libpcap.LibpcapError) as cm:
            h.compile("udp port nonsense-word")
        self.assertIn("udp port nonsense-word", str(cm.exception))
        self.assertIn("nonsense", str(cm.exception).split(":", 1)[1])

    def test_live_open_of_absent_device_is_an_error(self):
        support.require_root()
        with self.assertRaises(libpcap.LibpcapError) as cm:
            libpcap.Handle.open_live(self.lib, "nosuchdev0", 9000)
        self.assertIn("nosuchdev0", str(cm.exception))

    def test_libpcap_info_command(self):
        p = support.run(support.script_cmd("client", "--libpcap-info"))
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith("library: "))
        self.assertIn("libpcap version", lines[1])
        self.assertEqual(lines[2], self.lib.layout.describe())
        self.assertRegex(lines[2], r"^pcap_pkthdr: (16|24) bytes, caplen at offset (8|16)$")

    def test_libpcap_info_reports_a_missing_library(self):
        ini = self.path("c.ini")
        with open(ini, "w") as f:
            f.write("[client]\ndevices = lo\nlibpcap = %s\n[server s]\nhost = 127.0.0.1\n"
                    "port = 9\n" % self.path("none.so"))
        p = support.run(support.script_cmd("client", "-c", ini, "--libpcap-info"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("libpcap not found", p.stderr)
        self.assertNotIn("Traceback", p.stderr)


if __name__ == "__main__":
    unittest.main()


class NegativeSecondsTest(unittest.TestCase):
    """32-bit time_t (and libpcap's savefile reader) report times past 2038 as
    negative seconds; both record formats must carry them as unsigned 32-bit."""

    def test_pcap_and_pcapng_records(self):
        import struct
        from osmo_pcap.client import capture
        for fmt in ("pcap", "pcapng"):
            buf = bytearray()
            sink = capture.make_sink(fmt, 0, 1, 262144, buf, [0] * 4, None, [])
            sink(-2147483643, 500000, 4, 4, b"abcd")
            if fmt == "pcap":
                sec, usec = struct.unpack_from("<II", buf, 4)
            else:
                hi, lo = struct.unpack_from("<II", buf, 16)
                sec, usec = divmod((hi << 32) | lo, 1000000)
            self.assertEqual((sec, usec), (2147483653, 500000), fmt)
