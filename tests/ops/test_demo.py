# SPDX-License-Identifier: AGPL-3.0-or-later
"""`make demo` (tools/demo.py): the README's first command works end to end."""

import os
import sys
import unittest

from tests import support

sys.path.insert(0, os.path.join(support.REPO, "tools"))
import demo  # noqa: E402  (tools/demo.py)


class DemoTest(unittest.TestCase):

    def test_demo(self):
        support.require_root()
        support.need(demo.have_libpcap(), "libpcap is not installed (tools/test-deps.sh)")
        p = support.run([sys.executable, os.path.join(support.REPO, "tools", "demo.py")],
                        timeout=60, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("demo: OK: %d packets captured" % demo.DATAGRAMS, p.stdout)
        self.assertIn("(pcapng)", p.stdout)
        tmp = [l.split()[-1] for l in p.stdout.splitlines() if "rm -r " in l][0]
        self.assertTrue(tmp.startswith("/tmp/osmo-pcap-demo."))
        self.addCleanup(support.run, ["rm", "-r", "--", tmp])
        for what in ("server", "client"):
            self.assertIn("%s stopped (exit status 0)" % what, p.stdout)


if __name__ == "__main__":
    unittest.main()
