# SPDX-License-Identifier: AGPL-3.0-or-later
"""The README's "From the demo to two hosts" walkthrough, run as written.

Two network namespaces stand for the two hosts, joined by a veth pair named
`eth0` on both sides (192.0.2.10 the collecting host, 192.0.2.21 the capturing
host, IPv6 off). The INI text and the commands are taken from README.md itself;
only /var/lib/osmo-pcap is replaced by a temporary directory, as the README
allows. Traffic is generated on the client side, the file must appear on the
server side, move to done/ and read back with tshark with exactly the packets
the filter selects.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import unittest

from tests import netns, support

README = os.path.join(support.REPO, "README.md")
SECTION = "## From the demo to two hosts"
SERVER_IP, CLIENT_IP = "192.0.2.10", "192.0.2.21"
STATE = "/var/lib/osmo-pcap"

SEND_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"warm-up", (sys.argv[1], 23000))   # ARP first
time.sleep(0.2)
for i in range(10):
    s.sendto(b"journey %d" % i, (sys.argv[1], 23000))
    s.sendto(b"not selected %d" % i, (sys.argv[1], 23001))
"""


def walkthrough():
    """Return (server ini, client ini, [command lines]) from the README section."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    part = text[start:end]
    inis = re.findall(r"```ini\n(.*?)```", part, re.S)
    commands = [line[4:] for line in part.splitlines()
                if line.startswith("    ") and not line.startswith("     ")]
    return inis, commands


class WalkthroughText(unittest.TestCase):
    """Static checks that hold without root."""

    def test_section_shape(self):
        inis, commands = walkthrough()
        self.assertEqual(len(inis), 2)
        self.assertIn("[server]", inis[0])
        self.assertIn("ip = %s" % CLIENT_IP, inis[0])
        self.assertIn("[client]", inis[1])
        self.assertIn("host = %s" % SERVER_IP, inis[1])
        self.assertIn("mkdir -p %s/done" % STATE, commands)
        for prog in ("server", "client"):
            self.assertIn("python3 osmo_pcap_%s.py -c %s.ini" % (prog, prog),
                          [c.split("#")[0].strip() for c in commands])


class TwoHosts(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        netns.require_netns()
        support.require_tool("tshark")
        self.srv_ns = netns.add_ns(self, "js")
        self.cli_ns = netns.add_ns(self, "jc")
        # One veth pair created directly inside the two namespaces, so both ends
        # can be called eth0 as in the README; deleting a namespace deletes it.
        support.run(["ip", "link", "add", "eth0", "netns", self.cli_ns, "type", "veth",
                     "peer", "name", "eth0", "netns", self.srv_ns])
        for ns, addr in ((self.srv_ns, SERVER_IP), (self.cli_ns, CLIENT_IP)):
            netns.exec_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"])
            netns.exec_in(ns, ["ip", "addr", "add", addr + "/24", "dev", "eth0"])
            netns.exec_in(ns, ["ip", "link", "set", "eth0", "up"])
        self.state = self.path("var-lib-osmo-pcap")
        self.procs = []

    def adjust(self, text):
        return text.replace(STATE, self.state)

    def start(self, ns, argv, name):
        log = open(self.path(name + ".log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen(netns.exec_cmd(ns, argv), stdout=log, stderr=subprocess.STDOUT,
                             cwd=self.tmp)
        self.addCleanup(self.reap, p)
        p.log_path = log.name
        return p

    def reap(self, p):
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def read_log(self, p):
        with open(p.log_path) as f:
            return f.read()

    def wait_for(self, what, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def command(self, line, ns):
        """Run or start one README command line in ns; return the Popen or None."""
        argv = shlex.split(self.adjust(line), comments=True)
        if argv[0] == "python3":
            prog = argv[1]
            self.assertIn(prog, ("osmo_pcap_server.py", "osmo_pcap_client.py"))
            argv = [sys.executable, os.path.join(support.REPO, prog)] + argv[2:]
            if "--check-config" in argv:
                p = support.run(netns.exec_cmd(ns, argv), cwd=self.tmp, check=False)
                self.assertEqual((p.returncode, p.stderr), (0, ""), line)
                self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
                return None
            return self.start(ns, argv, prog.split("_")[2])
        self.assertEqual(argv[:2], ["mkdir", "-p"], line)
        support.run(netns.exec_cmd(ns, argv), cwd=self.tmp)
        return None

    def test_readme_walkthrough(self):
        inis, commands = walkthrough()
        for name, text in zip(("server.ini", "client.ini"), inis):
            with open(self.path(name), "w") as f:
                f.write(self.adjust(text))
        server = client = None
        for line in commands:
            if "osmo_pcap_client.py" in line:
                ns = self.cli_ns
            elif "osmo_pcap_server.py" in line or line.startswith("mkdir"):
                ns = self.srv_ns
            else:
                continue  # tshark: run below on the file that appeared
            p = self.command(line, ns)
            if p is not None and "server" in line:
                server = p
                self.wait_for("the server to listen",
                              lambda: "listening on" in self.read_log(server))
            elif p is not None:
                client = p
        self.assertIsNotNone(server)
        self.assertIsNotNone(client)
        self.wait_for("the client to connect",
                      lambda: "client bts1 (%s:" % CLIENT_IP in self.read_log(server)
                      and "connected" in self.read_log(server))
        self.wait_for("the client to capture", lambda: "capturing" in self.read_log(client))

        netns.python_in(self.cli_ns, SEND_UDP, SERVER_IP)
        self.wait_for("the trace file", lambda: any(
            n.startswith("trace-bts1-") for n in os.listdir(self.state)))
        self.wait_for("10 records in the file", lambda: self.count(self.state) >= 10)

        client.send_signal(signal.SIGTERM)
        self.assertEqual(client.wait(15), 0, self.read_log(client))
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(15), 0, self.read_log(server))
        self.assertNotIn("Traceback", self.read_log(client) + self.read_log(server))

        done = os.path.join(self.state, "done")
        files = sorted(os.listdir(done))
        self.assertEqual(len(files), 1, files)
        self.assertRegex(files[0], r"^trace-bts1-\d{8}_\d{6}\.pcapng$")
        self.assertEqual([n for n in os.listdir(self.state) if n != "done"], [])
        rows = support.tshark_packets(os.path.join(done, files[0]),
                                      ("frame.interface_name", "ip.src", "ip.dst",
                                       "udp.dstport", "data.data"))
        payloads = [bytes.fromhex(r[4].replace(":", "")) for r in rows]
        self.assertEqual(payloads, [b"warm-up"] + [b"journey %d" % i for i in range(10)])
        for name, src, dst, port, _ in rows:
            self.assertEqual((name, src, dst, port), ("eth0", CLIENT_IP, SERVER_IP, "23000"))

    def count(self, directory):
        from osmo_pcap import pcapng
        n = 0
        for name in os.listdir(directory):
            if name.startswith("trace-"):
                with open(os.path.join(directory, name), "rb") as f:
                    data = f.read()
                try:
                    n += sum(1 for _ in pcapng.iter_packets(data))
                except Exception:
                    pass  # a block still being written
        return n


if __name__ == "__main__":
    unittest.main()
