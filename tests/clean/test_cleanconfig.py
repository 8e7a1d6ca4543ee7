# SPDX-License-Identifier: AGPL-3.0-or-later
"""The cleanup tool's INI file (osmo_pcap.cleanconfig): values, defaults, clear errors."""

import os
import re
import unittest

from tests import support
from osmo_pcap.clean import config as cleanconfig
from osmo_pcap.clean.plan import Policy
from osmo_pcap.ini import ConfigError


class CleanConfigTest(support.TempDirTestCase):
    def read(self, text):
        path = self.path("clean.ini")
        with open(path, "w") as f:
            f.write(text)
        return cleanconfig.read(path)

    def error(self, text):
        with self.assertRaises(ConfigError) as cm:
            self.read(text)
        return cm.exception

    def test_defaults(self):
        cfg = self.read("[clean]\npaths = /var/lib/osmo-pcap\n")
        self.assertEqual(cfg.paths, ["/var/lib/osmo-pcap"])
        self.assertEqual(cfg.lock_file, "/var/lib/osmo-pcap/.osmo-pcap-clean.lock")
        self.assertEqual(cfg.default, Policy())
        self.assertEqual((cfg.default.max_age, cfg.default.max_files, cfg.default.compress_after,
                          cfg.default.compress, cfg.default.compress_level),
                         (None, 0, 3, "gzip", 6))
        self.assertEqual((cfg.max_bytes, cfg.min_free, cfg.clients), (0, None, {}))

    def test_issue_example(self):
        cfg = self.read(
            "[clean]\n"
            "paths = /var/lib/osmo-pcap /var/lib/osmo-pcap/done\n"
            "max_age = 120d            ; delete files older than this (units: h d w)\n"
            "max_files = 30            ; per client, newest kept\n"
            "max_bytes = 500G          ; total budget across all clients\n"
            "min_free = 10%            ; keep at least this free\n"
            "compress_after = 3\n"
            "compress = gzip           ; gzip | bz2 | xz | none\n"
            "compress_level = 6\n"
            "\n"
            "[client bts1]             ; optional per-client overrides\n"
            "max_files = 100\n")
        self.assertEqual(cfg.paths, ["/var/lib/osmo-pcap", "/var/lib/osmo-pcap/done"])
        self.assertEqual(cfg.default, Policy(max_age=120 * 86400.0, max_files=30,
                                             compress_after=3, compress="gzip",
                                             compress_level=6))
        self.assertEqual(cfg.max_bytes, 500 << 30)
        self.assertEqual(cfg.min_free, ("percent", 10.0))
        # the client inherits every other key from [clean]
        self.assertEqual(cfg.clients["bts1"], cfg.default.replace(max_files=100))
        self.assertEqual(cfg.policy("bts1").max_files, 100)
        self.assertEqual(cfg.policy("other").max_files, 30)

    def test_values(self):
        cfg = self.read("[clean]\npaths = a \"b c\"\nmax_age = 36h\nmin_free = 2G\n"
                        "lock_file = run/x.lock\ncompress = xz\ncompress_level = 9\n"
                        "[client bts-2]\nmax_age = off\nmax_bytes = 10M\ncompress = none\n"
                        "[client foo]\ncompress_after = 0\nmax_files = off\n")
        self.assertEqual(cfg.paths, [self.path("a"), self.path("b c")])
        self.assertEqual(cfg.lock_file, self.path("run", "x.lock"))
        self.assertEqual(cfg.default.max_age, 36 * 3600.0)
        self.assertEqual(cfg.min_free, ("bytes", 2 << 30))
        self.assertEqual(cfg.clients["bts-2"],
                         Policy(max_age=None, max_bytes=10 << 20, compress="none",
                                compress_level=9))
        self.assertEqual(cfg.clients["foo"], Policy(max_age=36 * 3600.0, compress_after=0,
                                                    compress="xz", compress_level=9))
        self.assertEqual(cleanconfig.min_free_bytes(cfg.min_free, 100 << 30), 2 << 30)
        self.assertEqual(cleanconfig.min_free_bytes(("percent", 10.0), 1000), 100)
        self.assertEqual(cleanconfig.min_free_bytes(None, 1000), 0)

    def test_plain_number_age_is_days(self):
        self.assertEqual(self.read("[clean]\npaths=/x\nmax_age = 120\n").default.max_age,
                         120 * 86400.0)

    def check(self, e, section, key, words):
        self.assertEqual((e.section, e.key), (section, key), str(e))
        self.assertIn(self.path("clean.ini"), str(e))
        for w in words:
            self.assertIn(w, str(e))

    def test_errors_name_file_section_key(self):
        self.check(self.error("[clean]\npaths = /x\nmax_agee = 3d\n"), "clean", "max_agee",
                   ["unknown key"])
        self.check(self.error("[clean]\npaths = /x\nmax_age = soon\n"), "clean", "max_age",
                   ["duration"])
        self.check(self.error("[clean]\npaths = /x\ncompress = zip\n"), "clean", "compress",
                   ["gzip"])
        self.check(self.error("[clean]\npaths = /x\ncompress_level = 10\n"), "clean",
                   "compress_level", ["maximum"])
        self.check(self.error("[clean]\npaths = /x\nmin_free = 100%\n"), "clean", "min_free",
                   ["percentage"])
        self.check(self.error("[clean]\npaths = /x\nmax_files = -1\n"), "clean", "max_files",
                   ["minimum"])
        self.check(self.error("[clean]\nmax_files = 3\n"), "clean", "paths", ["missing"])
        self.check(self.error("[clean]\npaths = /x\n[client a]\nmin_free = 1G\n"), "client a",
                   "min_free", ["only allowed in [clean]"])
        self.check(self.error("[clean]\npaths = /x\n[client a]\npaths = /y\n"), "client a",
                   "paths", ["only allowed"])
        self.check(self.error("[clean]\npaths = /x\n[client a]\nmax_filez = 1\n"), "client a",
                   "max_filez", ["unknown key"])

    def test_client_names_validated(self):
        for bad in ("../etc", "a/b", "", ".hidden", "x y"):
            e = self.error("[clean]\npaths = /x\n[client %s]\nmax_files = 1\n" % bad)
            self.assertIn("bad client name", str(e))
            self.assertIsNone(e.key)

    def test_sections(self):
        e = self.error("[cleanup]\npaths = /x\n")
        self.assertIn("no [clean] section", str(e))
        e = self.error("[clean]\npaths = /x\n[clinet a]\n")
        self.assertEqual(e.section, "clinet a")
        e = self.error("[clean]\npaths = /x\n[client a]\n[client  a]\n")
        self.assertIn("twice", str(e))

    def test_contrib_example_shows_every_key_with_its_default(self):
        with open(os.path.join(support.REPO, "contrib", "osmo-pcap-clean.ini")) as f:
            text = f.read()
        cfg = self.read(text)
        self.assertEqual(cfg.paths, ["/var/lib/osmo-pcap"])
        self.assertEqual(cfg.default, Policy())
        # uncommenting every ";key = value" line in [clean] must change nothing
        clean_part, client_part = text.split(";[client ", 1)
        lines = clean_part.splitlines()
        keys = [l[1:].split("=")[0].strip() for l in lines if re.match(r"^;\w+ = ", l)]
        self.assertEqual(sorted(keys), sorted(["max_age", "max_files", "max_bytes", "min_free",
                                               "compress_after", "compress", "compress_level",
                                               "lock_file"]))
        opened = "\n".join(l[1:] if re.match(r"^;\w+ = ", l) else l for l in lines)
        cfg2 = self.read(opened)
        for attr in ("paths", "lock_file", "default", "clients", "max_bytes", "min_free"):
            self.assertEqual(getattr(cfg2, attr), getattr(cfg, attr), attr)
        # and the client example is valid too
        client = "\n".join(l[1:] if l.startswith(";") else l
                           for l in ("[client " + client_part).splitlines())
        cfg3 = self.read(opened + "\n" + client)
        self.assertEqual(cfg3.clients["bts1"],
                         Policy(max_files=100, compress="xz"))

    def test_missing_file(self):
        with self.assertRaises(ConfigError) as cm:
            cleanconfig.read(self.path("nope.ini"))
        self.assertIn("nope.ini", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
