# SPDX-License-Identifier: AGPL-3.0-or-later
"""The client end to end across network namespaces: the client host, the server
host and a traffic generator are separate namespaces joined by veth pairs."""

import os
import signal
import sys
import unittest

from tests import netns, support
from tests.client.test_client_lo import Harness, Proc, seq_of
from tests.client.test_gprs import bssgp, eth, ipv4_udp, llc_ie, ns as ns_unitdata

SEND_UDP = """
import socket, time
from tests.client.test_client_lo import payload
dst, port, first, last, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"warm-up", (dst, port))   # ARP first, so no datagram waits for it
time.sleep(0.2)
for i in range(first, last):
    s.sendto(payload(i, size), (dst, port))
"""

INJECT = """
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    if line.strip():
        s.send(bytes.fromhex(line.strip()))
"""

IPIP_RECEIVER = """
import socket, signal
out = open(sys.argv[1], "w", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
print("ready", flush=True)
while True:
    pkt = s.recv(70000)
    ihl = (pkt[0] & 15) * 4
    out.write(pkt[ihl:].hex() + "\\n")
"""


class NamespaceTest(Harness):
    def setUp(self):
        Harness.setUp(self)
        netns.require_netns()
        self.g = netns.add_ns(self, "g")
        self.c = netns.add_ns(self, "c")
        self.s = netns.add_ns(self, "s")
        netns.veth(self, self.c, "10.77.0.1/24", self.s, "10.77.0.2/24", prefix="s")

    def link(self, n, names=None):
        """A veth between generator and client host on 10.78.n.0/24; return the
        (generator side, client side) names."""
        return netns.veth(self, self.g, "10.78.%d.1/24" % n, self.c, "10.78.%d.2/24" % n,
                          prefix="g%d" % n, names=names)

    def server(self, port):
        return self.start_server(port, client_ip="10.77.0.1", listen="10.77.0.2", ns=self.s)

    def client(self, devices, port, extra="", server_extra="", wait="connected"):
        ini = ("[client]\ndevices = %s\ncapture_timeout = 20ms\nstats_interval = 0\n%s\n"
               "[server main]\nhost = 10.77.0.2\n%s%s" % (
                   devices, extra, "port = %d\n" % port if port else "", server_extra))
        return self.start_client(ini, ns=self.c, wait=wait)

    def send(self, n, port, first, last, size=60):
        netns.python_in(self.g, SEND_UDP, "10.78.%d.2" % n, str(port), str(first), str(last),
                        str(size))

    def test_pcapng_two_devices(self):
        _, c1 = self.link(1)
        _, c2 = self.link(2)
        port, udp = support.free_port(), support.free_port()
        srv = self.server(port)
        cl = self.client("%s %s" % (c1, c2), port,
                         "file_format = pcapng\nfilter = udp port %d\n" % udp)
        self.wait_log(cl, "capturing", 2)
        self.send(1, udp, 0, 20)
        self.send(2, udp, 100, 120, size=300)
        self.wait_seqs(srv.base, list(range(20)) + list(range(100, 120)))
        self.assertEqual(cl.stop(), 0)
        rows = self.tshark_rows(srv.base, ("frame.interface_name", "frame.len", "udp.payload"))
        got = {}
        for name, flen, pl in rows:
            s = seq_of(bytes.fromhex(pl.replace(":", ""))) if pl else None
            if s is not None:
                got[s] = (name, int(flen))
        self.assertEqual(sorted(got), list(range(20)) + list(range(100, 120)))
        for s, (name, flen) in got.items():
            self.assertEqual(name, c1 if s < 100 else c2)
            self.assertEqual(flen, 14 + 28 + (60 if s < 100 else 300))

    def test_gprs_filter(self):
        g1, c1 = self.link(1)
        port = support.free_port()
        srv = self.server(port)
        cl = self.client(c1, port, "gprs_filter = yes\nfilter = udp or ip proto 6\n")
        self.wait_log(cl, "capturing")

        def mark(i):
            return b"OPC-TEST%08d" % i

        def user(sapi, i, vlans=()):
            return eth(ipv4_udp(ns_unitdata(bssgp(0x00, llc_ie(sapi, value=bytes([sapi])
                                                             + mark(i))))), vlans=vlans)
        frames = []
        frames += [user(3, i) for i in range(0, 5)]             # user data: dropped
        frames += [user(9, i, vlans=(7,)) for i in range(5, 10)]  # VLAN tagged: dropped
        frames += [user(1, i) for i in range(10, 20)]           # GMM signalling: kept
        frames += [eth(ipv4_udp(ns_unitdata(bssgp(0x26) + mark(i)))) for i in range(20, 25)]
        frames += [eth(ipv4_udp(mark(i), proto=6)) for i in range(30, 35)]  # not UDP: kept
        frames = [b"\xff" * 6 + f[6:] for f in frames]
        support.run(netns.exec_cmd(self.g, [sys.executable, "-c",
                                            "import sys\n" + INJECT, g1]),
                    input="\n".join(f.hex() for f in frames))
        expect = list(range(10, 20)) + list(range(30, 35))
        self.wait_seqs(srv.base, expect)
        self.assertEqual(cl.stop(), 0)
        self.assertEqual(sorted(self.quick_seqs(srv.base)), expect)
        got = [r for r in self.tshark_rows(srv.base, ("frame.len",)) if r and r[0]]
        self.assertEqual(len(got), len(expect))

    def test_ipip_to_raw_socket(self):
        _, c1 = self.link(1)
        udp = support.free_port()
        out = self.path("ipip.txt")
        rx = Proc(netns.exec_cmd(self.s, [sys.executable, "-u", "-c",
                                          "import sys\n" + IPIP_RECEIVER, out]),
                  self.path("ipip.log"), self.tmp)
        self.addCleanup(rx.stop, signal.SIGKILL)
        self.wait_log(rx, "ready")
        cl = self.client(c1, 0, "filter = udp port %d or arp\n" % udp, "protocol = ipip\n",
                         wait="capturing")
        self.send(1, udp, 0, 30, size=200)

        def inner():
            if not os.path.exists(out):
                return []
            with open(out) as f:
                return [bytes.fromhex(l.strip()) for l in f if l.strip()]
        self.wait_until(lambda: len([p for p in inner() if seq_of(p) is not None]) >= 30,
                        "30 IPIP datagrams")
        self.assertEqual(cl.stop(), 0)
        pkts = [p for p in inner() if seq_of(p) is not None]
        self.assertEqual([seq_of(p) for p in pkts], list(range(30)))
        for p in pkts:
            self.assertEqual(p[0] >> 4, 4)                    # the inner IPv4 header
            self.assertEqual(p[12:16], bytes([10, 78, 1, 1]))  # from the generator
            self.assertEqual(len(p), 20 + 8 + 200)
        # ARP frames were captured but are not IPv4: not sent
        self.assertTrue(all(p[0] >> 4 == 4 for p in inner()))

    def test_interface_absent_removed_and_readded(self):
        names = (netns.unique("gx"), netns.unique("cx"))
        port, udp = support.free_port(), support.free_port()
        srv = self.server(port)
        cl = self.client(names[1], port, "reopen_interval = 0.3s\nfilter = udp port %d\n" % udp,
                         wait="cannot open")
        self.link(5, names)
        self.wait_log(cl, "capturing (")
        self.send(5, udp, 0, 20)
        self.wait_seqs(srv.base, range(20))
        netns.exec_in(self.g, ["ip", "link", "del", names[0]])
        self.wait_log(cl, "retrying every", 2)
        self.link(5, names)
        self.wait_log(cl, "capturing (", 2)
        self.send(5, udp, 100, 120)
        self.wait_seqs(srv.base, range(100, 120))
        self.assertEqual(cl.stop(), 0)
        self.assertEqual(sorted(self.tshark_seqs(srv.base)), list(range(20)) + list(range(100, 120)))
        self.assertNotIn("Traceback", cl.text())

    def test_unprivileged_client_reopens_a_device_that_came_back(self):
        """user = nobody, group = nogroup: the client keeps exactly CAP_NET_RAW (as a
        unit with AmbientCapabilities would), so a device removed and re-added
        captures again and its packets reach the server (doc/client.md#privileges)."""
        import grp
        import pwd
        try:
            nobody = pwd.getpwnam("nobody")
            group = grp.getgrnam("nogroup")
        except KeyError:
            self.skipTest("no user nobody or group nogroup")
        names = (netns.unique("gu"), netns.unique("cu"))
        port, udp = support.free_port(), support.free_port()
        srv = self.server(port)
        self.link(6, names)
        cl = self.client(names[1], port, "reopen_interval = 0.3s\nfilter = udp port %d\n"
                         "user = nobody\ngroup = nogroup\n" % udp)
        self.wait_log(cl, "keeping CAP_NET_RAW to reopen devices")
        with open("/proc/%d/status" % cl.p.pid) as f:
            status = dict(l.split(":", 1) for l in f if ":" in l)
        self.assertEqual(int(status["Uid"].split()[0]), nobody.pw_uid)
        self.assertEqual(int(status["Gid"].split()[0]), group.gr_gid)
        self.assertEqual(status["Groups"].split(), [])
        net_raw = 1 << 13
        for key in ("CapPrm", "CapEff", "CapInh", "CapAmb", "CapBnd"):
            self.assertEqual(int(status[key], 16), net_raw, (key, status[key]))
        self.send(6, udp, 0, 20)
        self.wait_seqs(srv.base, range(20))
        netns.exec_in(self.g, ["ip", "link", "del", names[0]])
        self.wait_log(cl, "retrying every", 1)
        self.link(6, names)
        self.wait_log(cl, "capturing (", 2)
        self.send(6, udp, 100, 120)
        self.wait_seqs(srv.base, range(100, 120))
        self.assertEqual(cl.stop(), 0)
        self.assertEqual(sorted(self.tshark_seqs(srv.base)),
                         list(range(20)) + list(range(100, 120)))
        text = cl.text()
        self.assertNotIn("permission", text)
        self.assertNotIn("Traceback", text)


if __name__ == "__main__":
    unittest.main()
