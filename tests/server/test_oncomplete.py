# SPDX-License-Identifier: AGPL-3.0-or-later
"""The post-close command hook (osmo_pcap.oncomplete), driven with fake events."""

import os
import signal
import sys
import unittest

from tests import support
from tests.zmtp_peers import wait_for
from osmo_pcap.server import oncomplete
from osmo_pcap.loop import Loop

# A recorder: appends its arguments (one line) to $OUT, writes to stderr, exits 3
# when the client is "bad".
RECORDER = r"""
import os, sys
with open(os.environ["OUT"], "a") as f:
    f.write("\t".join(sys.argv[1:]) + "\n")
sys.stderr.write("note for %s\n" % sys.argv[1])
sys.exit(3 if sys.argv[-1] == "bad" else 0)
"""


class TemplateTest(unittest.TestCase):

    def test_parse_and_expand(self):
        t = oncomplete.parse_command("/usr/local/bin/ship --to 'a b' {path} client={client}")
        self.assertEqual(t, ["/usr/local/bin/ship", "--to", "a b", "{path}", "client={client}"])
        self.assertEqual(oncomplete.expand(t, "/x/{client}.pcap", "bts1"),
                         ["/usr/local/bin/ship", "--to", "a b", "/x/{client}.pcap",
                          "client=bts1"])

    def test_bad_commands(self):
        for bad in ("", "   ", "'unterminated", "{path} x"):
            with self.assertRaises(ValueError):
                oncomplete.parse_command(bad)


class OnCompleteTest(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        self.loop = Loop()
        self.addCleanup(self.loop.close)
        os.environ["OUT"] = self.path("args.txt")
        self.addCleanup(os.environ.pop, "OUT", None)

    def hook(self, argv, **kw):
        h = oncomplete.OnComplete(self.loop, argv, **kw)
        self.addCleanup(h.close)
        return h

    def recorded(self):
        with open(self.path("args.txt")) as f:
            return sorted(line.rstrip("\n").split("\t") for line in f)

    def test_runs_per_file_with_substitutions_and_logs_status(self):
        h = self.hook([sys.executable, "-c", RECORDER, "{path}", "{client}"])
        with self.assertLogs("osmo-pcap.on_complete", "INFO") as logs:
            h.file_closed("bts1", "/data/trace-bts1-1.pcap")
            h.file_closed("bad", "/data/trace bad-2.pcap")
            wait_for(self.loop, lambda: len(h.finished) == 2)
        self.assertEqual(self.recorded(), [["/data/trace bad-2.pcap", "bad"],
                                           ["/data/trace-bts1-1.pcap", "bts1"]])
        self.assertEqual(sorted(h.finished), [("/data/trace bad-2.pcap", 3),
                                              ("/data/trace-bts1-1.pcap", 0)])
        text = "\n".join(logs.output)
        self.assertIn("exited with status 3", text)
        self.assertIn("note for /data/trace bad-2.pcap", text)
        self.assertIn("done in", text)

    def test_concurrency_is_bounded(self):
        script = "import time, sys; time.sleep(0.2); sys.exit(0)"
        h = self.hook([sys.executable, "-c", script, "{path}"], max_running=2)
        for i in range(6):
            h.file_closed("c", "/f%d" % i)
        most = [0]

        def watch():
            most[0] = max(most[0], len(h.running))
        wait_for(self.loop, lambda: len(h.finished) == 6, also=watch)
        self.assertEqual(most[0], 2)
        self.assertEqual(sorted(p for p, _ in h.finished), ["/f%d" % i for i in range(6)])

    def test_hanging_command_is_killed_at_its_timeout(self):
        h = self.hook(["sleep", "600"], timeout=0.3)
        with self.assertLogs("osmo-pcap.on_complete", "INFO") as logs:
            h.file_closed("c", "/f")
            wait_for(self.loop, lambda: h.finished)
        self.assertEqual(h.finished, [("/f", -signal.SIGTERM)])
        self.assertIn("still running after", "\n".join(logs.output))

    def test_command_ignoring_sigterm_gets_sigkill(self):
        self.addCleanup(setattr, oncomplete, "KILL_GRACE", oncomplete.KILL_GRACE)
        oncomplete.KILL_GRACE = 0.2
        h = self.hook(["/bin/sh", "-c", "trap '' TERM; echo started >&2; "
                       "while :; do sleep 0.05; done"], timeout=0.3)
        h.file_closed("c", "/f")
        wait_for(self.loop, lambda: h.finished)
        self.assertEqual(h.finished, [("/f", -signal.SIGKILL)])

    def test_missing_program_and_noisy_stderr_do_not_hurt(self):
        h = self.hook([self.path("no-such-program"), "{path}"])
        with self.assertLogs("osmo-pcap.on_complete", "ERROR") as logs:
            h.file_closed("c", "/f")
        self.assertIn("cannot run", logs.output[0])
        noisy = self.hook([sys.executable, "-c",
                           "import sys; sys.stderr.write('x' * 2000000 + 'END')"])
        noisy.file_closed("c", "/g")
        wait_for(self.loop, lambda: noisy.finished)
        self.assertEqual(noisy.finished, [("/g", 0)])

    def test_close_runs_the_last_files_and_is_bounded(self):
        h = oncomplete.OnComplete(self.loop, [sys.executable, "-c", RECORDER, "{path}",
                                              "{client}"], max_running=1)
        for i in range(3):
            h.file_closed("c", "/last%d" % i)
        h.close()   # the loop no longer runs: close() drives the children itself
        self.assertEqual(self.recorded(), [["/last%d" % i, "c"] for i in range(3)])
        self.assertEqual(h.running, [])
        hang = oncomplete.OnComplete(self.loop, ["sleep", "600"], shutdown_wait=0.3,
                                     max_running=1)
        hang.file_closed("c", "/h1")
        hang.file_closed("c", "/h2")
        with self.assertLogs("osmo-pcap.on_complete", "ERROR") as logs:
            hang.close()
        self.assertEqual(hang.running, [])
        self.assertEqual(hang.finished, [("/h1", -signal.SIGKILL)])
        self.assertIn("not run", "\n".join(logs.output))


if __name__ == "__main__":
    unittest.main()
