# SPDX-License-Identifier: AGPL-3.0-or-later
"""daemon: -D detaching with a pidfile, and systemd's notify/watchdog protocol."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

from tests import support
from osmo_pcap import daemon, loop

# A stand-in daemon: detaches, records what it sees, waits for SIGTERM.
DAEMON_SCRIPT = r"""
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from osmo_pcap import daemon
os.umask(0o027)
pidfile, out = sys.argv[2], sys.argv[3]
try:
    daemon.daemonize(pidfile=pidfile if pidfile != "-" else None)
except daemon.DaemonError as e:
    sys.stderr.write("test-daemon: %s\n" % e)
    sys.exit(1)
mask = os.umask(0); os.umask(mask)
info = {"pid": os.getpid(), "sid": os.getsid(0), "cwd": os.getcwd(), "umask": mask,
        "stdin": os.readlink("/proc/self/fd/0"), "stderr": os.readlink("/proc/self/fd/2")}
with open(out + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(out + ".tmp", out)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    signal.pause()
"""


class FakeClock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class NotifyTest(support.TempDirTestCase):
    """sd_notify over path and abstract sockets; the watchdog from a loop."""

    def receiver(self, abstract=False):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = "osmo-pcap-test-%d-%s" % (os.getpid(), os.path.basename(self.tmp))
            s.bind("\0" + name)
            addr = "@" + name
        else:
            addr = self.path("notify")
            s.bind(addr)
        s.settimeout(10)
        return s, {"NOTIFY_SOCKET": addr}

    def test_path_socket(self):
        s, env = self.receiver()
        self.assertTrue(daemon.sd_notify("READY=1", env))
        self.assertEqual(s.recv(4096), b"READY=1")
        self.assertTrue(daemon.notify_ready("listening on 0.0.0.0:54321", env))
        self.assertEqual(s.recv(4096), b"READY=1\nSTATUS=listening on 0.0.0.0:54321")
        self.assertTrue(daemon.notify_stopping(env))
        self.assertEqual(s.recv(4096), b"STOPPING=1")
        self.assertTrue(daemon.notify_status("two\nlines", env))
        self.assertEqual(s.recv(4096), b"STATUS=two lines")

    def test_abstract_socket(self):
        s, env = self.receiver(abstract=True)
        self.assertTrue(daemon.sd_notify("READY=1", env))
        self.assertEqual(s.recv(4096), b"READY=1")

    def test_not_under_systemd_or_gone(self):
        self.assertFalse(daemon.sd_notify("READY=1", {}))
        self.assertFalse(daemon.sd_notify("READY=1", {"NOTIFY_SOCKET": self.path("nobody")}))
        self.assertFalse(daemon.sd_notify("READY=1", {"NOTIFY_SOCKET": "relative"}))

    def test_watchdog_interval(self):
        pid = str(os.getpid())
        self.assertEqual(daemon.watchdog_interval({"WATCHDOG_USEC": "3000000"}), 3.0)
        self.assertEqual(daemon.watchdog_interval({"WATCHDOG_USEC": "3000000",
                                                   "WATCHDOG_PID": pid}), 3.0)
        self.assertIsNone(daemon.watchdog_interval({"WATCHDOG_USEC": "3000000",
                                                    "WATCHDOG_PID": "1"}))
        self.assertIsNone(daemon.watchdog_interval({"WATCHDOG_USEC": "0"}))
        self.assertIsNone(daemon.watchdog_interval({"WATCHDOG_USEC": "x"}))
        self.assertIsNone(daemon.watchdog_interval({}))

    def test_watchdog_on_loop(self):
        s, env = self.receiver()
        env.update(WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid()))
        clock = FakeClock()
        lp = loop.Loop(clock=clock)
        self.addCleanup(lp.close)
        handle = daemon.start_watchdog(lp, env)
        self.assertEqual(handle.interval, 2.0)  # half of WatchdogSec
        self.assertEqual(s.recv(100), b"WATCHDOG=1")  # at once
        clock.now += 2.0
        lp.run_once(0)
        self.assertEqual(s.recv(100), b"WATCHDOG=1")
        handle.cancel()
        self.assertIsNone(daemon.start_watchdog(lp, {"NOTIFY_SOCKET": env["NOTIFY_SOCKET"]}))


class PathTest(unittest.TestCase):

    def test_resolve_paths(self):
        d = {"base_path": "traces", "completed_path": None, "abs": "/x", "empty": ""}
        changed = daemon.resolve_paths(d, ["base_path", "completed_path", "abs", "empty",
                                           "missing"], "/srv")
        self.assertEqual(d["base_path"], "/srv/traces")
        self.assertEqual(changed, [("base_path", "traces", "/srv/traces")])

        class Cfg(object):
            spool_dir = "../spool"
        c = Cfg()
        daemon.resolve_paths(c, ["spool_dir"], "/srv/etc")
        self.assertEqual(c.spool_dir, "/srv/spool")


class PidfileTest(support.TempDirTestCase):

    def test_live_stale_and_own(self):
        pf = self.path("x.pid")
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        with open(pf, "w") as f:
            f.write("%d\n" % p.pid)
        with self.assertRaises(daemon.DaemonError) as cm:
            daemon.check_pidfile(pf)
        self.assertIn("already running as pid %d" % p.pid, str(cm.exception))
        p.kill()
        p.wait()
        daemon.check_pidfile(pf)  # stale: the process is gone
        daemon.write_pidfile(pf)
        self.assertEqual(daemon.read_pidfile(pf), os.getpid())
        daemon.check_pidfile(pf)  # our own pid is not "another instance"
        daemon.remove_pidfile(pf)
        self.assertFalse(os.path.exists(pf))
        with open(pf, "w") as f:
            f.write("1\n")
        daemon.remove_pidfile(pf)  # not ours: left alone
        self.assertTrue(os.path.exists(pf))

    def test_unwritable(self):
        with self.assertRaises(daemon.DaemonError) as cm:
            daemon.write_pidfile(self.path("no", "such", "dir.pid"))
        self.assertIn("cannot write", str(cm.exception))


class DaemonizeTest(support.TempDirTestCase):
    """A real process detaches, writes its pidfile, refuses a twin, cleans up."""

    def start(self, pidfile, out, cwd=None):
        script = self.path("d.py")
        with open(script, "w") as f:
            f.write(DAEMON_SCRIPT)
        return support.run([sys.executable, script, support.REPO, pidfile, out],
                           timeout=30, check=False, cwd=cwd)

    def kill_later(self, pid):
        def kill():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.addCleanup(kill)

    def test_daemonize(self):
        out = self.path("info.json")
        p = self.start("run/d.pid", out, cwd=self.tmp)  # relative: made absolute first
        self.assertEqual(p.returncode, 1)  # run/ does not exist yet: reported by the parent
        self.assertIn("cannot write", p.stderr)
        os.mkdir(self.path("run"))
        p = self.start("run/d.pid", out, cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "")
        support.wait_for(lambda: os.path.exists(out), "the daemon's report")
        with open(out) as f:
            info = json.load(f)
        self.kill_later(info["pid"])
        pidfile = self.path("run", "d.pid")
        self.assertEqual(daemon.read_pidfile(pidfile), info["pid"])
        self.assertEqual(info["sid"], os.getsid(info["pid"]))
        self.assertNotEqual(info["sid"], info["pid"])  # not the session leader: no tty ever
        self.assertEqual(info["cwd"], "/")
        self.assertEqual(info["umask"], 0o027)  # kept, unlike upstream's umask(0)
        self.assertEqual(info["stdin"], "/dev/null")
        self.assertEqual(info["stderr"], "/dev/null")

        twin = self.start(pidfile, self.path("twin.json"))
        self.assertEqual(twin.returncode, 1)
        self.assertIn("already running as pid %d" % info["pid"], twin.stderr)

        os.kill(info["pid"], signal.SIGTERM)
        support.wait_for(lambda: not os.path.exists(pidfile), "the pidfile to be removed at exit")


if __name__ == "__main__":
    unittest.main()
