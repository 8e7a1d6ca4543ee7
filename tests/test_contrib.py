# SPDX-License-Identifier: AGPL-3.0-or-later
"""contrib/: systemd units pass systemd-analyze verify; init scripts parse and
carry complete LSB headers."""

import configparser
import glob
import os
import re
import shutil
import unittest

from tests import support

CONTRIB = os.path.join(support.REPO, "contrib")
LSB_FIELDS = ("Provides", "Required-Start", "Required-Stop", "Default-Start",
              "Default-Stop", "Short-Description", "Description")


def read_unit(name):
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str
    cp.read(os.path.join(CONTRIB, name))
    return cp


class UnitTest(support.TempDirTestCase):

    def test_systemd_analyze_verify(self):
        tool = support.require_tool("systemd-analyze")
        units = []
        for src in sorted(glob.glob(os.path.join(CONTRIB, "*.service")) +
                          glob.glob(os.path.join(CONTRIB, "*.timer"))):
            with open(src) as f:
                text = f.read()
            # ExecStart must name an existing executable: point it at the build.
            text = re.sub(r"/usr/local/bin/osmo[-_]pcap[-_](\w+)(\.py)?",
                          lambda m: support.SCRIPTS[m.group(1)], text)
            dst = self.path(os.path.basename(src))
            with open(dst, "w") as f:
                f.write(text)
            units.append(dst)
        self.assertTrue(units)
        p = support.run([tool, "verify"] + units, check=False, timeout=120)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_client_unit(self):
        s = read_unit("osmo-pcap-client.service")
        self.assertEqual(s["Service"]["Type"], "notify")
        self.assertEqual(s["Unit"]["After"], "network-online.target")
        self.assertEqual(s["Unit"]["Wants"], "network-online.target")
        for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
            self.assertEqual(s["Service"][key].split(), ["CAP_NET_RAW", "CAP_NET_ADMIN"])
        self.assertNotIn(s["Service"]["User"], ("", "root"))
        self.assertIn("AF_PACKET", s["Service"]["RestrictAddressFamilies"])
        self.assertNotIn("PrivateNetwork", s["Service"])
        self.assertEqual(s["Service"]["Restart"], "on-failure")
        self.assertTrue(s["Service"]["ExecStart"].endswith(
            " -c /etc/osmo-pcap/osmo-pcap-client.ini"))

    def test_server_unit(self):
        s = read_unit("osmo-pcap-server.service")
        self.assertEqual(s["Service"]["Type"], "notify")
        self.assertEqual(s["Service"]["StateDirectory"], "osmo-pcap")
        self.assertEqual(s["Service"]["CapabilityBoundingSet"], "")
        self.assertEqual(s["Service"]["AmbientCapabilities"], "")
        self.assertNotIn(s["Service"]["User"], ("", "root"))
        self.assertEqual(s["Unit"]["After"], "network-online.target")


class InitScriptTest(unittest.TestCase):

    SCRIPTS = ("osmo-pcap-client.init", "osmo-pcap-server.init")

    def test_sh_syntax(self):
        shells = [s for s in ("sh", "dash", "bash") if shutil.which(s)]
        for name in self.SCRIPTS:
            for sh in shells:
                support.run([sh, "-n", os.path.join(CONTRIB, name)])

    def test_lsb_header(self):
        for name in self.SCRIPTS:
            with open(os.path.join(CONTRIB, name)) as f:
                text = f.read()
            self.assertTrue(text.startswith("#!/bin/sh\n"))
            m = re.search(r"^### BEGIN INIT INFO\n(.*?)^### END INIT INFO$", text, re.M | re.S)
            self.assertIsNotNone(m, name)
            fields = dict(re.findall(r"^# ([A-Za-z-]+):\s+(.*)$", m.group(1), re.M))
            for field in LSB_FIELDS:
                self.assertIn(field, fields, "%s: %s" % (name, field))
            self.assertEqual(fields["Provides"], name[:-len(".init")])
            self.assertEqual(fields["Default-Start"], "2 3 4 5")
            self.assertEqual(fields["Default-Stop"], "0 1 6")
            self.assertIn("$network", fields["Required-Start"])
            self.assertIn("start-stop-daemon", text)
            self.assertIn("-D --pidfile \"$PIDFILE\"", text)


if __name__ == "__main__":
    unittest.main()
