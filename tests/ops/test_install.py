# SPDX-License-Identifier: AGPL-3.0-or-later
"""make install into a temporary DESTDIR: files, modes, paths, configs kept."""

import filecmp
import glob
import os
import shutil
import sys
import unittest

from tests import support

SCRIPTS = ("osmo_pcap_client.py", "osmo_pcap_server.py", "osmo_pcap_clean.py")


class InstallTest(support.TempDirTestCase):

    def make_install(self, *extra):
        make = support.require_tool("make")
        # -o: never rebuild the scripts from here; `make` is the suite's job.
        cmd = [make, "-s", "-C", support.REPO, "install", "DESTDIR=" + self.tmp,
               "PYTHON=" + sys.executable] + ["-o%s" % s for s in SCRIPTS] + list(extra)
        return support.run(cmd, timeout=60)

    def test_install_and_reinstall(self):
        self.make_install("PREFIX=/usr")
        root = self.tmp
        for name in ("client", "server", "clean"):
            path = os.path.join(root, "usr/bin/osmo-pcap-" + name)
            self.assertTrue(os.access(path, os.X_OK), path)
            self.assertTrue(filecmp.cmp(path, os.path.join(support.REPO,
                                                           "osmo_pcap_%s.py" % name), False))
        out = support.run([sys.executable, os.path.join(root, "usr/bin/osmo-pcap-server"),
                           "--version"]).stdout
        self.assertIn("osmo_pcap_server.py", out)

        units = os.path.join(root, "usr/lib/systemd/system")
        for unit in ("osmo-pcap-client.service", "osmo-pcap-server.service"):
            with open(os.path.join(units, unit)) as f:
                text = f.read()
            prog = unit.split(".")[0]
            self.assertIn("\nExecStart=/usr/bin/%s -c /etc/osmo-pcap/%s.ini\n" % (prog, prog),
                          text)
            self.assertNotIn("/usr/local", text)
            self.assertEqual(os.stat(os.path.join(units, unit)).st_mode & 0o777, 0o644)
        for script in ("osmo-pcap-client", "osmo-pcap-server"):
            path = os.path.join(root, "etc/init.d", script)
            self.assertTrue(os.access(path, os.X_OK))
            with open(path) as f:
                self.assertIn("\nDAEMON=/usr/bin/%s\n" % script, f.read())
        self.assertTrue(os.path.exists(os.path.join(root, "usr/share/doc/osmo-pcap/LICENSE")))
        sysusers = os.path.join(root, "usr/lib/sysusers.d/osmo-pcap.conf")
        self.assertTrue(os.path.exists(sysusers))
        tool = shutil.which("systemd-sysusers")
        if tool:  # creates the unit's user in the DESTDIR's /etc/passwd
            support.run([tool, "--root=" + root, sysusers])
            with open(os.path.join(root, "etc/passwd")) as f:
                self.assertRegex(f.read(), r"(?m)^osmocom:x:\d+:\d+:osmo-pcap capture daemons:"
                                           r"/var/lib/osmo-pcap:/usr/sbin/nologin$")

        confs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "etc/osmo-pcap/*")))
        shipped = sorted(os.path.basename(p)
                         for p in glob.glob(os.path.join(support.REPO, "contrib", "*.ini")))
        self.assertEqual(confs, shipped)
        if not shipped:
            return
        # A second install keeps the administrator's edits.
        mine = os.path.join(root, "etc/osmo-pcap", shipped[0])
        with open(mine, "w") as f:
            f.write("; edited\n")
        out = self.make_install("PREFIX=/usr").stdout
        self.assertIn("keep %s" % mine, out)
        with open(mine) as f:
            self.assertEqual(f.read(), "; edited\n")
        self.assertTrue(filecmp.cmp(mine + ".dist",
                                    os.path.join(support.REPO, "contrib", shipped[0]), False))

    def test_default_prefix(self):
        self.make_install()
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "usr/local/bin/osmo-pcap-client")))
        unit = os.path.join(self.tmp, "usr/local/lib/systemd/system/osmo-pcap-server.service")
        with open(unit) as f:
            self.assertIn("ExecStart=/usr/local/bin/osmo-pcap-server ", f.read())


if __name__ == "__main__":
    unittest.main()
