# SPDX-License-Identifier: AGPL-3.0-or-later
"""Stress (make test-stress): the soak benchmark for 60 seconds.

bench/soak.py with one minute, a line every 10 s and an event every 5 s: good
clients (plain and TLS, with spools) stream while hostile connections, SIGHUP,
SIGUSR1, a tmpfs filling up and server restarts hit the server. Its verdict
must be PASS: every record stored exactly once, RSS and descriptors flat.
"""

import os
import subprocess
import sys
import unittest

from tests import support

SOAK = os.path.join(support.REPO, "bench", "soak.py")


class Soak(unittest.TestCase):

    def test_one_minute_soak(self):
        support.require_root()
        support.require_tool("openssl")
        support.require_tool("unshare")
        p = subprocess.run([sys.executable, SOAK, "--minutes", "1", "--interval", "10",
                            "--events-every", "5", "--full-for", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=600)
        print("\n" + "\n".join("  " + l for l in p.stdout.splitlines()))
        self.assertEqual(p.returncode, 0, p.stdout[-4000:])
        self.assertIn("verdict: PASS", p.stdout)
        self.assertIn(" 0 lost, 0 stored twice", p.stdout)
