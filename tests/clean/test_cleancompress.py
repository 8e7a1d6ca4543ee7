# SPDX-License-Identifier: AGPL-3.0-or-later
"""Atomic streaming compression (osmo_pcap.compress): contents, metadata, failures."""

import bz2
import gzip
import io
import lzma
import os
import shutil
import tracemalloc
import unittest

from tests import support
from osmo_pcap.clean import compress

PCAP = "c-0.8-pcap-server-file.pcap"
PCAPNG = "c-0.8-pcapng-server-file.pcapng"
OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
MTIME_NS = 1700000000123456789


def assert_memory_bounded(test, method, level, opener):
    """Compress a 24 MiB trace with method: Python holds about two chunks at a time."""
    path = test.path("trace-big-20250101_000000.pcap")
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as f:
        for _ in range(24):
            f.write(block)
    tracemalloc.start()
    try:
        compress.compress_file(path, method, level)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    test.assertLess(peak, 6 << 20)
    with opener(compress.final_path(path, method)) as f:
        test.assertEqual(f.read(len(block)), block)


class CompressTest(support.TempDirTestCase):
    def trace(self, data_name, name):
        path = self.path(name)
        shutil.copyfile(os.path.join(support.DATA, data_name), path)
        os.chmod(path, 0o440)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
        return path

    def leftovers(self):
        return [n for n in os.listdir(self.tmp) if compress.is_temp_name(n)]

    def test_each_method_round_trips_and_keeps_metadata(self):
        for method, suffix in (("gzip", "gz"), ("bz2", "bz2"), ("xz", "xz")):
            path = self.trace(PCAPNG, "trace-a-20250101_000000-%s.pcapng" % method)
            original = support.data_file(PCAPNG)
            final, n_in, n_out = compress.compress_file(path, method, 6)
            self.assertEqual(final, path + "." + suffix)
            self.assertFalse(os.path.exists(path))
            with OPENERS[method](final, "rb") as f:
                self.assertEqual(f.read(), original)
            st = os.stat(final)
            self.assertEqual((n_in, n_out), (len(original), st.st_size))
            self.assertEqual(st.st_mode & 0o7777, 0o440)
            self.assertEqual(st.st_mtime_ns, MTIME_NS)
        self.assertEqual(self.leftovers(), [])

    def test_gzip_readable_by_tshark(self):
        for data_name, name in ((PCAP, "trace-a-20250101_000000.pcap"),
                                (PCAPNG, "trace-a-20250101_000000.pcapng")):
            ref = self.path("ref-" + name)
            shutil.copyfile(os.path.join(support.DATA, data_name), ref)
            expect = support.tshark_read(ref)
            self.assertGreater(len(expect), 0)
            final, _, _ = compress.compress_file(self.trace(data_name, name), "gzip", 9)
            self.assertEqual(support.tshark_read(final), expect)
        with gzip.open(final) as f:  # the header names the original file
            f.read()
        with open(final, "rb") as f:
            head = f.read(64)
        self.assertIn(b"trace-a-20250101_000000.pcapng\x00", head)

    def test_existing_final_with_same_data(self):
        path = self.trace(PCAP, "trace-a-20250101_000000.pcap")
        data = support.data_file(PCAP)
        with gzip.open(path + ".gz", "wb") as f:  # a crash after the rename left both
            f.write(data)
        final, _, _ = compress.compress_file(path, "gzip", 6)
        self.assertFalse(os.path.exists(path))
        with gzip.open(final) as f:
            self.assertEqual(f.read(), data)

    def test_existing_final_with_other_data_is_left_alone(self):
        path = self.trace(PCAP, "trace-a-20250101_000000.pcap")
        for junk in (b"not gzip at all", gzip.compress(b"other data"),
                     gzip.compress(support.data_file(PCAP))[:-20]):
            with open(path + ".gz", "wb") as f:
                f.write(junk)
            with self.assertRaises(compress.CompressError) as cm:
                compress.compress_file(path, "gzip", 6)
            self.assertIn(path + ".gz", str(cm.exception))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), support.data_file(PCAP))
            with open(path + ".gz", "rb") as f:
                self.assertEqual(f.read(), junk)
        self.assertEqual(self.leftovers(), [])

    def test_read_error_removes_temporary(self):
        path = self.trace(PCAP, "trace-a-20250101_000000.pcap")

        class Failing(io.FileIO):
            def read(self, n=-1):
                if self.tell() > 100:
                    raise OSError(5, "Input/output error")
                return io.FileIO.read(self, 64)

        with Failing(path, "rb") as src:
            with self.assertRaises(OSError):
                compress.compress_file(path, "xz", 6, src)
        self.assertTrue(os.path.exists(path))
        self.assertFalse(os.path.exists(path + ".xz"))
        self.assertEqual(self.leftovers(), [])

    def test_memory_bounded(self):
        assert_memory_bounded(self, "gzip", 1, gzip.open)

    def test_temp_names(self):
        name = compress.temp_name("trace-a-20250101_000000.pcap.gz")
        self.assertTrue(name.startswith("."))
        self.assertTrue(compress.is_temp_name(name))
        self.assertFalse(compress.is_temp_name("trace-a-20250101_000000.pcap.gz"))
        self.assertFalse(compress.is_temp_name(".osmo-pcap-clean.tmp"))
        self.assertFalse(compress.is_temp_name(".osmo-pcap-clean.lock"))


if __name__ == "__main__":
    unittest.main()
