# SPDX-License-Identifier: AGPL-3.0-or-later
"""The client as an operator meets it: start-up without DNS, readiness that tells
the truth, --check-config that opens the devices (doc/operations.md#readiness,
doc/client.md#detect-loop)."""

import os
import signal
import socket
import subprocess

from tests import netns, support
from tests.client.test_client_lo import Harness, client_ini

SETPRIV = "setpriv"


class NotifyCollector(object):
    """A $NOTIFY_SOCKET that keeps every message the client sends."""

    def __init__(self, test):
        self.path = test.path("notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(30)
        test.addCleanup(self.sock.close)
        self.messages = []

    def expect(self, *words):
        """Return the first new message containing every word; keep all of them."""
        while True:
            msg = self.sock.recv(65536).decode()
            self.messages.append(msg)
            if all(w in msg for w in words):
                return msg


class ClientOpsTest(Harness):

    def start_notified(self, ini_text):
        """Start a client with $NOTIFY_SOCKET set; return (proc, collector)."""
        notify = NotifyCollector(self)
        self.n += 1
        ini = self.path("client-%d.ini" % self.n)
        with open(ini, "w") as f:
            f.write(ini_text)
        log = open(self.path("client-%d.log" % self.n), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen(support.script_cmd("client", "-c", ini), stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.tmp,
                             env=dict(os.environ, NOTIFY_SOCKET=notify.path))

        class P(object):
            pass
        proc = P()
        proc.p, proc.logpath = p, log.name

        def text():
            with open(log.name, errors="replace") as f:
                return f.read()
        proc.text = text

        def stop():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            return p.returncode
        proc.stop = stop
        self.addCleanup(stop)
        return proc, notify

    def check_config(self, ini_text, prefix=()):
        path = self.path("check-%d.ini" % self.n)
        self.n += 1
        with open(path, "w") as f:
            f.write(ini_text)
        return support.run(list(prefix) + support.script_cmd("client", "-c", path,
                                                             "--check-config"),
                           check=False, cwd=self.tmp)

    def test_unresolvable_server_name_never_blocks_start_up(self):
        """An unresolvable host name in a [server] section with detect_loop on (the
        default): --check-config passes, the client starts, captures and forwards
        to the other server; the exclusion uses addresses only, and the pcapng
        if_filter stays the configured filter across reconnects."""
        port, udp = support.free_port(), support.free_port()
        self.sink(udp)
        srv = self.start_server(port)
        ini = client_ini(filt="udp port %d" % udp, extra="file_format = pcapng\n",
                         servers=(("dns", 54321, ""), ("main", port, "")))
        ini = ini.replace("[server dns]\nhost = 127.0.0.1", "[server dns]\nhost = pcap.invalid")
        p = self.check_config(ini)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertNotIn("pcap.invalid", p.stderr)
        c = self.start_client(ini, wait="cannot resolve pcap.invalid")
        self.wait_log(c, "server main (127.0.0.1:%d): connected" % port)
        self.assertRegex(c.text(), r"cannot resolve pcap\.invalid: .*; next attempt in "
                                   r"\d+\.\ds")
        self.send_udp(udp, range(10))
        self.wait_seqs(srv.base, range(10))
        excluded = "detect_loop: capture filter now '(udp port %d) and not (host 127.0.0.1 " \
                   "and tcp port %d)'" % (udp, port)
        self.assertIn(excluded, c.text())
        # the server goes away and comes back: same address, same filter, no new one
        srv.stop()
        self.wait_log(c, "connection lost")
        srv = self.start_server(port, base=srv.base)
        self.wait_log(c, "server main (127.0.0.1:%d): connected" % port, 2)
        self.wait_queue_empty(c, "main")
        self.send_udp(udp, range(10, 20))
        self.wait_seqs(srv.base, range(20))
        self.assertEqual(c.stop(), 0)
        text = c.text()
        self.assertEqual(text.count("capture filter now"), 1, text)
        self.assertNotIn("invalid filter", text)
        for line in text.splitlines():
            if "filter" in line:
                self.assertNotIn("pcap.invalid", line)
        files = self.trace_files(srv.base)
        self.assertGreaterEqual(len(files), 2)
        for path in files:
            info = support.run([support.require_tool("capinfos"), path]).stdout
            self.assertIn("Filter string = udp port %d\n" % udp, info)
        self.assertEqual(sorted(self.tshark_seqs(srv.base)), list(range(20)))

    def test_ready_only_when_every_device_captures(self):
        """READY=1 waits for the last device; STATUS= names the one that waits and
        why, also when it is lost later; SIGUSR1 refreshes it with the rates."""
        support.require_tool("ip")
        name = netns.unique("rdy")
        ini = client_ini(devices="lo %s" % name, filt="udp port 9",
                         extra="reopen_interval = 0.3s\n", servers=(("s", 9, ""),))
        p = self.check_config(ini)
        self.assertEqual(p.returncode, 2)
        self.assertIn("[client] devices: no device %s on this host" % name, p.stderr)
        c, notify = self.start_notified(ini)
        msg = notify.expect("STATUS=waiting for device %s (" % name)
        self.assertIn("No such device", msg)
        self.assertIn("capturing on lo", msg)
        self.assertFalse([m for m in notify.messages if "READY=1" in m], notify.messages)
        netns.veth(self, None, None, None, None, names=(name, name + "p"))
        ready = notify.expect("READY=1")
        self.assertIn("STATUS=capturing on lo %s: " % name, ready)
        c.p.send_signal(signal.SIGUSR1)
        status = notify.expect("STATUS=capturing on lo %s: " % name)
        self.assertRegex(status, r"pkts/s captured, [\d.]+ pkts/s forwarded")
        support.run(["ip", "link", "del", name])
        lost = notify.expect("STATUS=waiting for device %s (" % name)
        self.assertRegex(lost, r"(disappeared|went down|No such device)")
        self.assertEqual(c.stop(), 0)
        self.assertEqual(sum(1 for m in notify.messages if "READY=1" in m), 1)
        text = c.text()
        self.assertIn("all 2 device(s) capturing", text)
        self.assertIn("status: device lo: capturing", text)
        self.assertRegex(text, r"stats: captured \d+ pkts .*pkts/s .*uptime \d+s")

    def test_check_config_opens_the_devices(self):
        """--check-config fails for a device this process cannot capture on: a typo
        (with the likely name), or no capture permission."""
        support.need(subprocess.call(["which", SETPRIV], stdout=subprocess.DEVNULL) == 0,
                     "setpriv is not installed")
        ns = netns.add_ns(self, "cc")
        netns.exec_in(ns, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name",
                           "eth0p"])
        ini = client_ini(devices="eht0", filt="udp port 9", servers=(("s", 9, ""),))
        p = self.check_config(ini, prefix=("ip", "netns", "exec", ns))
        self.assertEqual((p.returncode, p.stdout), (2, ""))
        self.assertEqual(p.stderr.strip().splitlines(), [
            "osmo_pcap_client.py: %s [client] devices: no device eht0 on this host (did you "
            "mean eth0?)" % self.path("check-0.ini")])
        # root without CAP_NET_RAW, as a wrong unit file or user would leave it
        ini = client_ini(devices="lo", filt="udp port 9", servers=(("s", 9, ""),))
        p = self.check_config(ini, prefix=(SETPRIV, "--bounding-set", "-net_raw"))
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("[client] devices: cannot capture on lo: ", p.stderr)
        self.assertIn("(capturing needs root or CAP_NET_RAW)", p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        p = self.check_config(ini)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
