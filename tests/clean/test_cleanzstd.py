# SPDX-License-Identifier: AGPL-3.0-or-later
"""compress = zstd: compression.zstd on CPython 3.14+, a clear config error before.

On 3.14+: round trip with metadata, levels up to 22, bounded memory, a corrupt
existing .zst left alone, tshark reading the .zst files, and the generated
cleanup script compressing, recognising and expiring .zst traces. On older
interpreters: the config check (and --check-config) says that zstd needs 3.14.
"""

import os
import shutil
import sys
import unittest

from tests import support
from tests.clean.test_clean import CleanCase
from tests.clean.test_cleancompress import assert_memory_bounded
from osmo_pcap import ini, tracename
from osmo_pcap.clean import compress, config

HAVE_ZSTD = sys.version_info >= (3, 14)
if HAVE_ZSTD:
    try:
        from compression import zstd
    except ImportError:  # a 3.14 built without libzstd: the config check says so
        HAVE_ZSTD = False

PCAP = "c-0.8-pcap-server-file.pcap"
PCAPNG = "c-0.8-pcapng-server-file.pcapng"
MTIME_NS = 1700000000123456789
needs_zstd = unittest.skipUnless(HAVE_ZSTD, "compression.zstd: CPython 3.14+ built with zstd")


class ZstdConfigTest(support.TempDirTestCase):
    def read(self, text):
        path = self.path("clean.ini")
        with open(path, "w") as f:
            f.write(text)
        return config.read(path)

    def error(self, text):
        with self.assertRaises(ini.ConfigError) as cm:
            self.read(text)
        return str(cm.exception)

    def test_older_interpreter_is_told_zstd_needs_314(self):
        with self.assertRaises(ValueError) as cm:
            config.parse_method("zstd", version=(3, 13))
        self.assertIn("zstd needs Python 3.14 or later", str(cm.exception))
        self.assertIn("this is Python 3.13", str(cm.exception))
        if not HAVE_ZSTD:  # the real interpreter, through the config file
            msg = self.error("[clean]\npaths = /x\ncompress = zstd\n")
            self.assertIn("[clean] compress", msg)
            self.assertIn("needs Python 3.14", msg)

    def test_levels(self):
        msg = self.error("[clean]\npaths = /x\ncompress = gzip\ncompress_level = 10\n")
        self.assertIn("compress_level", msg)
        self.assertIn("maximum 9 for gzip", msg)
        # inherited from [clean]: the client's method decides
        msg = self.error("[clean]\npaths = /x\ncompress_level = 12\ncompress = none\n"
                         "[client a]\ncompress = xz\n")
        self.assertIn("[client a] compress", msg)
        if HAVE_ZSTD:
            self.assertEqual(self.read("[clean]\npaths = /x\ncompress = zstd\n"
                                       "compress_level = 22\n").default.compress_level, 22)
            self.assertIn("maximum 22", self.error(
                "[clean]\npaths = /x\ncompress = zstd\ncompress_level = 23\n"))

    def test_zst_names(self):
        tn = tracename.parse_name("trace-a-b-20250101_000000-2.pcapng.zst")
        self.assertEqual((tn.client, tn.seq, tn.ext, tn.compression), ("a-b", 2, "pcapng", "zst"))
        self.assertEqual(tn.base, "trace-a-b-20250101_000000-2.pcapng")
        self.assertIsNone(tracename.parse_name("trace-a-20250101_000000.pcap.zstd"))


@needs_zstd
class ZstdCompressTest(support.TempDirTestCase):
    def trace(self, data_name, name):
        path = self.path(name)
        shutil.copyfile(os.path.join(support.DATA, data_name), path)
        os.chmod(path, 0o440)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
        return path

    def test_round_trip_keeps_metadata(self):
        for level in (1, 3, 19):
            path = self.trace(PCAPNG, "trace-a-20250101_00000%d.pcapng" % (level % 10))
            final, n_in, n_out = compress.compress_file(path, "zstd", level)
            self.assertEqual(final, path + ".zst")
            self.assertFalse(os.path.exists(path))
            with zstd.open(final, "rb") as f:
                self.assertEqual(f.read(), support.data_file(PCAPNG))
            st = os.stat(final)
            self.assertEqual((n_in, n_out), (len(support.data_file(PCAPNG)), st.st_size))
            self.assertEqual(st.st_mode & 0o7777, 0o440)
            self.assertEqual(st.st_mtime_ns, MTIME_NS)
        self.assertEqual([n for n in os.listdir(self.tmp) if compress.is_temp_name(n)], [])

    def test_existing_final(self):
        path = self.trace(PCAP, "trace-a-20250101_000000.pcap")
        data = support.data_file(PCAP)
        for junk in (b"not zstd", zstd.compress(b"other"), zstd.compress(data)[:-8]):
            with open(path + ".zst", "wb") as f:
                f.write(junk)
            with self.assertRaises(compress.CompressError):
                compress.compress_file(path, "zstd", 3)
            self.assertEqual(support.read_bytes(path), data)
        with open(path + ".zst", "wb") as f:  # a crash after the rename left both
            f.write(zstd.compress(data))
        compress.compress_file(path, "zstd", 3)
        self.assertFalse(os.path.exists(path))

    def test_memory_bounded(self):
        assert_memory_bounded(self, "zstd", 3, zstd.open)

    def test_readable_by_tshark(self):
        # tshark reads .pcap.zst / .pcapng.zst itself (4.0.17 of bookworm, 4.6.9 of forky)
        for data_name, name in ((PCAP, "trace-a-20250101_000000.pcap"),
                                (PCAPNG, "trace-a-20250101_000000.pcapng")):
            ref = self.path("ref-" + name)
            shutil.copyfile(os.path.join(support.DATA, data_name), ref)
            expect = support.tshark_read(ref)
            self.assertGreater(len(expect), 0)
            final, _, _ = compress.compress_file(self.trace(data_name, name), "zstd", 3)
            self.assertEqual(support.tshark_read(final), expect)


@needs_zstd
class ZstdCleanRunTest(CleanCase):
    def test_script_compresses_keeps_and_expires_zst(self):
        base = self.path("base")
        a = self.aged
        old = a("foo", 20.5, comp="zst")
        self.make(base, old, 20.5, data=zstd.compress(b"x"))
        names = [a("foo", d) for d in (5.5, 3.5, 1.5, 0.5)]
        for n, d in zip(names, (5.5, 3.5, 1.5, 0.5)):
            self.make(base, n, d)
        cfg = self.config("[clean]\npaths = base\nmax_age = 10d\ncompress_after = 1\n"
                          "compress = zstd\ncompress_level = 3\n")
        r = self.clean(cfg)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.listing(base), sorted(
            [names[0] + ".zst", names[1] + ".zst", names[2] + ".zst", names[3]]))
        for n in names[:3]:
            with zstd.open(os.path.join(base, n + ".zst")) as f:
                self.assertEqual(f.read(), self.contents[os.path.join(base, n)])
        # the next run finds nothing to do: .zst files count as compressed
        r = self.clean(cfg, "-n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("would compress 0 file(s)", r.stdout + r.stderr)
        # and max_age expires them (the age comes from the name)
        cfg = self.config("[clean]\npaths = base\nmax_age = 4d\ncompress = zstd\n")
        self.assertEqual(self.clean(cfg).returncode, 0)
        self.assertEqual(self.listing(base), sorted(
            [names[1] + ".zst", names[2] + ".zst", names[3]]))


if __name__ == "__main__":
    unittest.main()
