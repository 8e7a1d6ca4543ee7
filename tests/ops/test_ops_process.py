# SPDX-License-Identifier: AGPL-3.0-or-later
"""Both daemons as an operator runs them: an imported upstream config, -D with a
pidfile, systemd notifications, [log] file with SIGHUP, [metrics], the init script.

These start the real programs; they skip until the programs offer --pidfile and
--import-vty (the operations wiring in server.py and client.py).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

from tests import support

VTY = os.path.join(support.DATA, "vty")


def wired(program):
    out = support.run(support.script_cmd(program, "--help"), check=False).stdout
    if "--pidfile" not in out or "--import-vty" not in out:
        raise AssertionError("%s --help lists no --pidfile or --import-vty:\n%s" % (program, out))


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class Notify(object):
    """A $NOTIFY_SOCKET stand-in that collects what the daemon says."""

    def __init__(self, testcase):
        self.path = testcase.path("notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(20)
        testcase.addCleanup(self.sock.close)

    def expect(self, prefix, limit=20.0):
        """Return the first message starting with prefix (skipping watchdog pings and
        STATUS= updates), within limit seconds; a hang guard, not a timing assertion."""
        end = time.monotonic() + limit
        while True:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                raise AssertionError("no %s message within %gs" % (prefix, limit))
            if msg.startswith(prefix):
                return msg


class DaemonTestCase(support.TempDirTestCase):

    def start_daemon(self, program, config, env=None):
        pidfile = self.path(program + ".pid")
        p = support.run(support.script_cmd(program, "-c", config, "-D", "--pidfile", pidfile),
                        env=env, timeout=60, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        pid = int(read(pidfile))

        def kill():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.addCleanup(kill)
        return pid, pidfile

    def scrape(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=20) as r:
            self.assertEqual(r.headers["Content-Type"],
                             "text/plain; version=0.0.4; charset=utf-8")
            return r.read().decode()

    def metric(self, text, name):
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None


class ServerTest(DaemonTestCase):

    def test_imported_config_daemon_notify_metrics_hup(self):
        wired("server")
        p = support.run(support.script_cmd("server", "--import-vty",
                                           os.path.join(VTY, "server.cfg")), check=False)
        with open(os.path.join(VTY, "server.ini")) as f:
            self.assertEqual(p.stdout, f.read())
        # /var/lib/osmo-pcap does not exist here: the translation cannot start as it is
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("osmo_pcap_server.py: - [server] base_path: /var/lib/osmo-pcap is not an "
                      "existing directory\n", p.stderr)
        # Adapt the imported file to this machine: directories, ports, a log file.
        os.mkdir(self.path("traces"))
        os.mkdir(self.path("done"))
        port, mport, zport = support.free_port(), support.free_port(), support.free_port()
        ini = (p.stdout.replace("/var/lib/osmo-pcap/done", self.path("done"))
               .replace("/var/lib/osmo-pcap", self.path("traces"))
               .replace("port = 54321", "port = %d" % port)
               .replace("listen = 0.0.0.0", "listen = 127.0.0.1")
               .replace("tcp://0.0.0.0:6666", "tcp://127.0.0.1:%d" % zport)
               .replace("target = stderr", "target = file\nfile = server.log"))
        ini += "\n[metrics]\nlisten = 127.0.0.1:%d\n" % mport
        config = self.path("server.ini")
        with open(config, "w") as f:
            f.write(ini)
        notify = Notify(self)
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="4000000")
        env.pop("WATCHDOG_PID", None)
        pid, pidfile = self.start_daemon("server", config, env)
        self.assertTrue(notify.expect("READY=1").startswith("READY=1\nSTATUS="))
        self.assertEqual(notify.expect("WATCHDOG=1"), "WATCHDOG=1")

        # A second instance is refused, with the reason on stderr.
        twin = support.run(support.script_cmd("server", "-c", config, "-D", "--pidfile",
                                              pidfile), check=False)
        self.assertEqual(twin.returncode, 1)
        self.assertIn("already running as pid %d" % pid, twin.stderr)

        # 127.0.0.1 is no configured client: counted as such in the metrics.
        socket.create_connection(("127.0.0.1", port), timeout=20).close()
        text = support.wait_for(lambda: (lambda t: t if self.metric(
            t, 'osmo_pcap_server_refused_connections_total{reason="no_client"}') == 1
            else None)(self.scrape(mport)), "the unknown connection in the metrics")
        self.assertEqual(self.metric(text, "osmo_pcap_server_connections_total"), 1)
        self.assertIsNotNone(self.metric(text, "process_start_time_seconds"))

        log = self.path("server.log")
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGHUP)
        support.wait_for(lambda: os.path.exists(log), "the log file to be reopened on SIGHUP")
        self.assertIn("INFO ", read(log + ".1"))

        os.kill(pid, signal.SIGTERM)
        self.assertEqual(notify.expect("STOPPING=1"), "STOPPING=1")
        support.wait_for(lambda: not os.path.exists(pidfile), "the pidfile to go at exit")


    def test_daemonize_never_loses_the_log(self):
        """-D with [log] left at its default (stderr, closed once detached): the log
        goes to syslog; without a usable /dev/log the start is refused, naming the key."""
        wired("server")
        os.mkdir(self.path("traces"))
        config = self.path("server.ini")
        with open(config, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = traces\n"
                    % support.free_port())
        pidfile = self.path("server.pid")
        p = support.run(support.script_cmd("server", "-c", config, "-D", "--pidfile", pidfile),
                        timeout=60, check=False)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.connect("/dev/log")
            syslog = True
        except OSError:
            syslog = False
        finally:
            s.close()
        if not syslog:
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stderr.splitlines(), [
                "osmo_pcap_server.py: [log] target: -D detaches from stderr, and the syslog "
                "socket /dev/log is unusable (%s): set target = file (and file = PATH)"
                % p.stderr.split("(", 1)[1].split(")", 1)[0]])
            self.assertFalse(os.path.exists(pidfile))
            return
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        pid = int(read(pidfile))
        os.kill(pid, signal.SIGTERM)
        support.wait_for(lambda: not os.path.exists(pidfile), "the pidfile to go at exit")


class ClientTest(DaemonTestCase):

    def test_daemon_notify_metrics(self):
        wired("client")
        support.require_capture("lo")   # READY=1 waits for the device
        sys.path.insert(0, os.path.join(support.REPO, "tools"))
        import demo
        support.need(demo.have_libpcap(), "libpcap is not installed")
        mport = support.free_port()
        config = self.path("client.ini")
        with open(config, "w") as f:
            f.write("[client]\ndevices = lo\nfilter = udp port 9\n\n"
                    "[server a]\nhost = 127.0.0.1\nport = %d\n\n"
                    "[log]\ntarget = file\nfile = client.log\n\n"
                    "[metrics]\nlisten = 127.0.0.1:%d\n" % (support.free_port(), mport))
        notify = Notify(self)
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        pid, pidfile = self.start_daemon("client", config, env)
        self.assertIn("STATUS=", notify.expect("READY=1"))
        text = self.scrape(mport)
        self.assertIsNotNone(self.metric(text, "process_start_time_seconds"))
        os.kill(pid, signal.SIGTERM)
        self.assertEqual(notify.expect("STOPPING=1"), "STOPPING=1")
        support.wait_for(lambda: not os.path.exists(pidfile), "the pidfile to go at exit")
        self.assertIn("device lo", read(self.path("client.log")))


class TrafficMetricsTest(DaemonTestCase):
    """Scrape both programs while traffic flows; the numbers match what was sent."""

    SENT = 25

    def test_counts_match(self):
        wired("server")
        wired("client")
        support.require_root()
        sys.path.insert(0, os.path.join(support.REPO, "tools"))
        import demo
        support.need(demo.have_libpcap(), "libpcap is not installed")
        os.mkdir(self.path("traces"))
        port, udp = support.free_port(), support.free_port(kind=socket.SOCK_DGRAM)
        sm, cm = support.free_port(), support.free_port()
        with open(self.path("server.ini"), "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = traces\n\n"
                    "[client lo]\nip = 127.0.0.1\n\n[metrics]\nlisten = 127.0.0.1:%d\n"
                    % (port, sm))
        with open(self.path("client.ini"), "w") as f:
            f.write("[client]\ndevices = lo\nfilter = udp port %d\n\n[server s]\n"
                    "host = 127.0.0.1\nport = %d\n\n[metrics]\nlisten = 127.0.0.1:%d\n"
                    % (udp, port, cm))
        procs = []
        for prog in ("server", "client"):
            notify = Notify(self) if prog == "server" else None
            env = dict(os.environ)
            if notify:
                env["NOTIFY_SOCKET"] = notify.path
            with open(self.path(prog + ".log"), "w") as log:
                p = subprocess.Popen(
                    support.script_cmd(prog, "-c", self.path(prog + ".ini")),
                    stdout=log, stderr=log, env=env)
            procs.append(p)
            self.addCleanup(p.wait)
            self.addCleanup(p.kill)
            if notify:
                notify.expect("READY=1")
        peer = 'osmo_pcap_server_client_packets_total{client="lo"}'
        support.wait_for(lambda: self.metric(self.scrape(sm),
                                             'osmo_pcap_server_client_connected{client="lo"}')
                         == 1, "the client's connection")
        self.assertEqual(demo.send_traffic(udp, self.SENT), self.SENT)
        support.wait_for(lambda: self.metric(self.scrape(sm), peer) == self.SENT,
                         "%d packets at the server" % self.SENT)
        client = self.scrape(cm)
        self.assertEqual(self.metric(client, "osmo_pcap_client_captured_packets_total"),
                         self.SENT)
        self.assertEqual(self.metric(client, 'osmo_pcap_client_server_lost_packets_total'
                                             '{reason="queue_full",server="s"}'), 0)
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=30), 0)


class InitScriptTest(DaemonTestCase):
    """contrib/osmo-pcap-server.init drives the real server with start-stop-daemon."""

    def test_start_status_reload_stop(self):
        wired("server")
        support.require_root()
        ssd = support.require_tool("start-stop-daemon")
        self.assertTrue(ssd)
        port = support.free_port()
        os.mkdir(self.path("state"))
        config = self.path("server.ini")
        with open(config, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n\n"
                    "[log]\ntarget = file\nfile = server.log\n"
                    % (port, self.path("state")))
        launcher = self.path("osmo-pcap-server")
        with open(launcher, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (sys.executable,
                                                       support.SCRIPTS["server"]))
        os.chmod(launcher, 0o755)
        with open(os.path.join(support.REPO, "contrib", "osmo-pcap-server.init")) as f:
            text = f.read()
        for key, value in (("DAEMON", launcher), ("CONFIG", config),
                           ("RUNDIR", self.path("run")), ("STATEDIR", self.path("state")),
                           ("USER", "root"), ("GROUP", "root")):
            text, n = re.subn(r"^%s=.*$" % key, "%s=%s" % (key, value), text, flags=re.M)
            self.assertEqual(n, 1, key)
        text = text.replace("/etc/default/$NAME", self.path("no-defaults"))
        script = self.path("init")
        with open(script, "w") as f:
            f.write(text)
        pidfile = self.path("run", "osmo-pcap-server.pid")

        def sh(action):
            return support.run(["sh", script, action], check=False, timeout=60)

        def cleanup():
            pid = read(pidfile).strip()
            if pid.isdigit():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        self.addCleanup(cleanup)
        self.assertEqual(sh("status").returncode, 3)
        p = sh("start")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        pid = int(read(pidfile))
        self.assertEqual(sh("status").returncode, 0)
        self.assertEqual(sh("start").returncode, 0)  # already running: kept
        self.assertEqual(int(read(pidfile)), pid)
        self.assertEqual(sh("reload").returncode, 0)
        support.wait_for(lambda: "SIGHUP: log file reopened" in read(self.path("server.log")),
                         "SIGHUP in the log")
        self.assertEqual(sh("rotate").returncode, 0)
        support.wait_for(lambda: "SIGUSR2: rotating all files" in read(self.path("server.log")),
                         "SIGUSR2 in the log")
        p = sh("stop")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertFalse(os.path.exists(pidfile))
        self.assertEqual(sh("status").returncode, 3)
        self.assertIn("stopped", read(self.path("server.log")))


if __name__ == "__main__":
    unittest.main()
