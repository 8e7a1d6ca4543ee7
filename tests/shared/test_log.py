# SPDX-License-Identifier: AGPL-3.0-or-later
"""log: the [log] section, its three targets, SIGHUP reopening, repeat filtering."""

import io
import logging
import os
import socket
import unittest

from tests import support
from osmo_pcap import log
from osmo_pcap import ini


class FakeClock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def restore_logging(testcase):
    """Put the program logger back as it was after a test reconfigured it."""
    logger = logging.getLogger(log.ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def undo():
        for h in list(logger.handlers):
            logger.removeHandler(h)
            if h not in saved[0]:
                h.close()
        for h in saved[0]:
            logger.addHandler(h)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        log._state["handler"] = log._state["repeat"] = None
    testcase.addCleanup(undo)


class ReadConfigTest(support.TempDirTestCase):

    def section(self, body):
        path = self.path("x.ini")
        with open(path, "w") as f:
            f.write("[log]\n" + body)
        return ini.Section(ini.read_ini(path), "log", path)

    def test_defaults(self):
        cfg = log.read_config(self.section(""))
        self.assertEqual((cfg.level, cfg.target, cfg.file, cfg.timestamps),
                         ("info", "stderr", None, "auto"))

    def test_values(self):
        cfg = log.read_config(self.section("level = DEBUG\ntarget = file\nfile = logs/a.log\n"
                                           "timestamps = off\n"))
        self.assertEqual((cfg.level, cfg.target, cfg.timestamps), ("debug", "file", "no"))
        self.assertEqual(cfg.file, self.path("logs", "a.log"))  # from the config's directory

    def test_errors_name_the_key(self):
        for body, key in (("level = loud\n", "level"), ("target = journal\n", "target"),
                          ("target = file\n", "file"), ("timestamps = maybe\n", "timestamps"),
                          ("colour = 1\n", "colour")):
            with self.assertRaises(ini.ConfigError) as cm:
                log.read_config(self.section(body))
            self.assertIn("[log] %s:" % key, str(cm.exception))

    def test_timestamps_auto(self):
        self.assertTrue(log.under_systemd({"INVOCATION_ID": "abc"}))
        self.assertTrue(log.under_systemd({"JOURNAL_STREAM": "8:123"}))
        self.assertFalse(log.under_systemd({}))
        c = log.LogConfig()
        self.assertTrue(log.want_timestamps(c, {}))
        self.assertFalse(log.want_timestamps(c, {"JOURNAL_STREAM": "8:1"}))
        self.assertFalse(log.want_timestamps(c, {"INVOCATION_ID": "x"}))
        self.assertFalse(log.want_timestamps(log.LogConfig(target="syslog"), {}))
        self.assertTrue(log.want_timestamps(log.LogConfig(target="file"), {"INVOCATION_ID": "x"}))
        self.assertTrue(log.want_timestamps(log.LogConfig(timestamps="yes"), {"INVOCATION_ID": "x"}))
        self.assertFalse(log.want_timestamps(log.LogConfig(timestamps="no"), {}))


class TargetTest(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        restore_logging(self)

    def test_stderr(self):
        out = io.StringIO()
        log.configure(log.LogConfig(level="warning", timestamps="no"), stream=out, env={})
        log.get("server").info("hidden")
        log.get("server").warning("shown %d", 1)
        self.assertEqual(out.getvalue(), "WARNING shown 1\n")
        out = io.StringIO()
        log.configure(log.LogConfig(), stream=out, env={})
        log.get().info("stamped")
        self.assertRegex(out.getvalue(), r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO stamped\n$")

    def test_file_reopen(self):
        path = self.path("a.log")
        cfg = log.LogConfig(target="file", file=path, timestamps="no")
        log.configure(cfg, env={})
        log.get().info("one")
        os.rename(path, path + ".1")  # what logrotate does before sending SIGHUP
        log.get().info("two")
        self.assertTrue(log.reopen())
        log.get().info("three")
        with open(path + ".1") as f:
            self.assertEqual(f.read(), "INFO one\nINFO two\n")
        with open(path) as f:
            self.assertEqual(f.read(), "INFO three\n")

    def test_file_unopenable(self):
        cfg = log.LogConfig(target="file", file=self.path("no", "dir", "a.log"))
        with self.assertRaises(ini.ConfigError) as cm:
            log.configure(cfg, env={})
        self.assertIn("[log] file: cannot open log file", str(cm.exception))
        self.assertFalse(log.reopen())

    def test_syslog(self):
        addr = self.path("devlog")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(addr)
        s.settimeout(10)
        log.configure(log.LogConfig(target="syslog"), program="osmo-pcap-server",
                      syslog_address=addr, env={})
        log.get("server").error("disk full")
        data = s.recv(4096).decode()
        # <27> = facility daemon (3) * 8 + severity error (3)
        self.assertEqual(data.rstrip("\x00"),
                         "<27>osmo-pcap-server[%d]: ERROR disk full" % os.getpid())

    def test_syslog_missing_falls_back(self):
        out = io.StringIO()
        log.configure(log.LogConfig(target="syslog", timestamps="no"), stream=out,
                      syslog_address=self.path("nothing"), env={})
        self.assertIn("WARNING syslog socket", out.getvalue())
        self.assertIn("logging to stderr", out.getvalue())

    def test_daemonized_stderr_goes_to_syslog(self):
        """-D closes stderr: target = stderr (the default) would lose every line, so the
        log goes to syslog and its first line says why (doc/operations.md#daemonize)."""
        addr = self.path("devlog")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(addr)
        s.settimeout(10)
        out = io.StringIO()
        note = log.configure_daemon(log.LogConfig(), "osmo-pcap-client", True, env={},
                                    syslog_address=addr, stream=out)
        self.assertIn("-D: logging to syslog", note)
        self.assertIn("because stderr is closed once detached", s.recv(4096).decode())
        log.get("client").warning("device eth0 lost")
        self.assertEqual(s.recv(4096).decode().rstrip("\x00"),
                         "<28>osmo-pcap-client[%d]: WARNING device eth0 lost" % os.getpid())
        self.assertEqual(out.getvalue(), "")
        # without -D, or with another target, nothing changes
        out = io.StringIO()
        self.assertIsNone(log.configure_daemon(log.LogConfig(timestamps="no"), "x", False,
                                               env={}, syslog_address=addr, stream=out))
        log.get().info("here")
        self.assertEqual(out.getvalue(), "INFO here\n")
        self.assertIsNone(log.configure_daemon(
            log.LogConfig(target="file", file=self.path("f.log")), "x", True, env={},
            syslog_address=addr))

    def test_daemonized_without_syslog_is_an_error(self):
        with self.assertRaises(ini.ConfigError) as cm:
            log.configure_daemon(log.LogConfig(), "x", True, env={},
                                 syslog_address=self.path("nothing"))
        self.assertRegex(str(cm.exception), r"^\[log\] target: -D detaches from stderr, and "
                                            r"the syslog socket .* is unusable")
        self.assertIn("set target = file", str(cm.exception))

    def test_stderr_is_the_journal(self):
        # A child whose stderr is the file $JOURNAL_STREAM names (as systemd sets it).
        import subprocess
        import sys
        out = self.path("journal")
        with open(out, "w") as f:
            st = os.fstat(f.fileno())
            env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
            code = ("import sys; sys.path.insert(0, %r)\n"
                    "from osmo_pcap import log\n"
                    "log.configure(log.LogConfig())\n"
                    "log.get('x').error('e'); log.get('x').info('i')\n" % support.REPO)
            subprocess.check_call([sys.executable, "-c", code], stderr=f, env=env)
        with open(out) as f:
            self.assertEqual(f.read(), "<3>ERROR e\n<6>INFO i\n")

    def test_journal_prefix(self):
        fmt = log.JournalPrefixFormatter("%(levelname)s %(message)s")
        rec = logging.LogRecord("x", logging.ERROR, "f", 1, "bad", None, None)
        self.assertEqual(fmt.format(rec), "<3>ERROR bad")


class RepeatFilterTest(unittest.TestCase):

    def setUp(self):
        restore_logging(self)
        self.out = io.StringIO()
        log.configure(log.LogConfig(level="debug", timestamps="no"), stream=self.out, env={})
        self.clock = FakeClock()
        log._state["repeat"].clock = self.clock

    def lines(self):
        return self.out.getvalue().splitlines()

    def test_repeats_held_back_and_counted(self):
        lg = log.get("client")
        for _ in range(5):
            lg.error("cannot connect to %s", "10.0.0.1")
            lg.info("info is never held back")
        lg.error("another error")
        self.assertEqual(self.lines().count("ERROR cannot connect to 10.0.0.1"), 1)
        self.assertEqual(self.lines().count("INFO info is never held back"), 5)
        self.assertIn("ERROR another error", self.lines())
        self.clock.now += log.REPEAT_INTERVAL
        lg.error("cannot connect to %s", "10.0.0.1")
        self.assertEqual(self.lines()[-1],
                         "ERROR cannot connect to 10.0.0.1 (4 identical lines suppressed)")

    def test_summary_when_the_line_stops(self):
        lg = log.get("server")
        for _ in range(3):
            lg.warning("unknown client 192.0.2.1")
        self.assertEqual(log.flush_repeats(), 0)  # window still open
        self.clock.now += log.REPEAT_INTERVAL
        self.assertEqual(log.flush_repeats(), 1)
        self.assertEqual(self.lines()[-1],
                         "WARNING unknown client 192.0.2.1 (repeated 2 more times in 10s)")
        self.assertEqual(log.flush_repeats(), 0)
        lg.warning("unknown client 192.0.2.1")  # a fresh window: shown again at once
        self.assertEqual(self.lines()[-1], "WARNING unknown client 192.0.2.1")

    def test_bounded_keys(self):
        f = log.RepeatFilter(clock=self.clock, max_keys=4)
        for i in range(10):
            rec = logging.LogRecord("x", logging.ERROR, "f", 1, "e%d", (i,), None)
            self.assertTrue(f.filter(rec))
        self.assertLessEqual(len(f._seen), 4)


class SetupStillWorksTest(unittest.TestCase):

    def test_setup(self):
        restore_logging(self)
        out = io.StringIO()
        log.setup("info", stream=out, timestamps=False)
        log.get("x").info("plain")
        self.assertEqual(out.getvalue(), "INFO plain\n")
        limiter = log.RateLimiter(interval=10, clock=FakeClock())
        self.assertEqual(limiter.ok("k"), 0)
        self.assertIsNone(limiter.ok("k"))


if __name__ == "__main__":
    unittest.main()
