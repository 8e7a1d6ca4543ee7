# SPDX-License-Identifier: AGPL-3.0-or-later
"""Acknowledged delivery end to end: servers SIGKILLed mid-stream, nothing lost or twice.

Real processes: our clients capture numbered UDP datagrams on lo and forward
them to our servers (doc/protocol.md#acknowledged-delivery). Each server is
killed with SIGKILL at random moments, five times, and restarted after 0 to 5
seconds; the files are then read back (our reader for the exact numbers,
mergecap/capinfos as independent readers): every datagram exactly once, in
order across the files. At 400 and 50,000 datagrams per second, with and
without a spool, and over TLS. The random schedule's seed is in every failure
message.
"""

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

from tests import netns, peer, support
from tests import pki as pkimod
from tests.client.test_client_lo import Harness, client_ini, seq_of
from osmo_pcap import wire

WAIT = 60.0
DOWN_TIMES = (0.0, 1.25, 2.5, 3.75, 5.0)   # each restart delay once per server, shuffled


class Slot(object):
    """One server that the schedule kills and restarts."""

    def __init__(self, name, port, base, ini, schedule):
        self.name, self.port, self.base, self.ini = name, port, base, ini
        self.schedule = list(schedule)   # [(seconds up, seconds down)]
        self.proc = None
        self.due = None                  # when the next kill or restart happens
        self.kills = 0


class DeliveryTest(Harness):

    def setUp(self):
        Harness.setUp(self)
        support.require_tool("mergecap")
        support.require_tool("capinfos")
        self.seed = int(os.environ.get("OSMO_PCAP_TEST_SEED") or time.time())
        self.rng = random.Random(self.seed)

    def msg(self, text):
        return "%s (seed %d: OSMO_PCAP_TEST_SEED=%d reproduces the schedule)" % (
            text, self.seed, self.seed)

    # ------------------------------------------------------------ processes
    def server_ini(self, port, base, extra=""):
        return ("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n"
                "flush_interval = 0.1s\n%s[client me]\nip = 127.0.0.1\n" % (port, base, extra))

    def slot(self, name, extra="", entry=""):
        port = support.free_port()
        base = self.path("srv-%s" % name)
        os.makedirs(base)
        downs = list(DOWN_TIMES)
        self.rng.shuffle(downs)
        schedule = [(self.rng.uniform(0.3, 1.5), d) for d in downs]
        return Slot(name, port, base, self.server_ini(port, base, extra) + entry, schedule)

    def start(self, slot):
        slot.proc = self._proc("server", slot.ini)
        self.wait_log(slot.proc, "listening on")

    def generator(self, port, rate, count):
        gen = os.path.join(support.REPO, "tests", "udpgen.py")
        p = subprocess.Popen([sys.executable, gen, str(port), str(rate), str(count)],
                             stdout=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def run_schedule(self, slots):
        """Kill and restart every slot by its schedule; return when all are done and up."""
        now = time.monotonic()
        for s in slots:
            s.due = now + s.schedule[0][0]
        while any(s.schedule for s in slots):
            now = time.monotonic()
            for s in slots:
                if not s.schedule or now < s.due:
                    continue
                up, down = s.schedule[0]
                if s.proc is not None:
                    s.proc.stop(signal.SIGKILL)
                    s.proc = None
                    s.kills += 1
                    s.due = now + down
                else:
                    self.start(s)
                    s.schedule.pop(0)
                    if s.schedule:
                        s.due = time.monotonic() + s.schedule[0][0]
            time.sleep(0.02)

    # ------------------------------------------------------------ checking
    def check_stored(self, slot, count, captured_drops=0, client=None):
        """Every number 0..count-1 exactly once, in order across the files.

        captured_drops: packets the client's kernel dropped before capture (pcap
        drop + ifdrop); that many may be missing, never more. Return the numbers.
        """
        got = self.quick_seqs(slot.base)
        missing = sorted(set(range(count)) - set(got))
        if got != sorted(set(got)) or len(missing) != captured_drops or len(got) + len(
                missing) != count:
            twice = len(got) - len(set(got))
            notes = [l for l in self.server_logs(slot).splitlines() if "stream " in l
                     or "left open" in l or "never arrived" in l]
            if client is not None:
                notes += [l for l in client.text().splitlines()
                          if "server %s " % slot.name in l and "stats" not in l]
            self.fail(self.msg("server %s: %d stored, %d missing (first %s; the capture "
                               "dropped %d), %d twice, in order: %s\n%s"
                               % (slot.name, len(got), len(missing), missing[:5],
                                  captured_drops, twice, got == sorted(got),
                                  "\n".join(notes[-80:]))))
        files = self.trace_files(slot.base)
        merged = self.path("merged-%s.pcap" % slot.name)
        p = support.run(["mergecap", "-a", "-F", "pcap", "-w", merged] + files)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = support.run(["capinfos", "-c", "-M", "-T", merged])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(int(p.stdout.split()[-1]), len(got), p.stdout)
        os.unlink(merged)
        return got

    def capture_drops(self, client):
        """pcap drop + ifdrop of the client's last stats line."""
        last = [l for l in client.text().splitlines() if "stats: captured " in l][-1]
        m = re.search(r" drop (\d+) ifdrop (\d+),", last)
        return int(m.group(1)) + int(m.group(2))

    def wait_delivered(self, client, names):
        """Until the client reports every named server's queue and spool empty."""
        def done():
            client.p.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            lines = client.text().splitlines()
            for name in names:
                last = [l for l in lines if "stats: server %s " % name in l]
                if not last or " queued 0 bytes, spool 0 bytes" not in last[-1] \
                        or " up," not in last[-1]:
                    return False
            return True
        try:
            self.wait_until(done, "everything acknowledged", timeout=WAIT)
        except AssertionError:
            self.fail(self.msg("not everything acknowledged: %s" % "\n".join(
                l for l in client.text().splitlines()[-40:])))

    def lost_counters(self, client):
        """server name -> the client's 'dropped N' of its last stats line."""
        out = {}
        for line in client.text().splitlines():
            if "stats: server " in line and " dropped " in line:
                name = line.split("stats: server ", 1)[1].split()[0]
                out[name] = int(line.rsplit("dropped", 1)[1].split()[0])
        return out

    # ------------------------------------------------------------ the test
    def test_servers_killed_five_times_nothing_lost_nothing_twice(self):
        support.require_tool("openssl")
        pki = pkimod.shared_pki()
        fast_udp, slow_udp = support.free_port(), support.free_port()
        self.sink(fast_udp)
        self.sink(slow_udp)
        fast_spool = self.slot("fast-spool")
        fast_mem = self.slot("fast-memory")
        slow_spool = self.slot("slow-spool")
        slow_mem = self.slot("slow-memory")
        slow_tls = self.slot("slow-tls", "tls_cert = %s\ntls_key = %s\n" % pki["server"],
                             "tls = required\n")
        slots = [fast_spool, fast_mem, slow_spool, slow_mem, slow_tls]
        for s in slots:
            self.start(s)
        common = "ack_timeout = 5s\n"
        fast = self.start_client(client_ini(
            filt="udp dst port %d" % fast_udp, extra="buffer_size = 64M\n", servers=(
                ("fast-spool", fast_spool.port, common + "spool_dir = %s\n"
                 % self.path("spool-fast")),
                ("fast-memory", fast_mem.port, common + "queue_size = 96M\n"))))
        slow = self.start_client(client_ini(
            filt="udp dst port %d" % slow_udp, servers=(
                ("slow-spool", slow_spool.port, common + "spool_dir = %s\n"
                 % self.path("spool-slow")),
                ("slow-memory", slow_mem.port, common),
                ("slow-tls", slow_tls.port, common + "tls = yes\ntls_ca = %s\n"
                 "spool_dir = %s\n" % (pki["ca"], self.path("spool-tls"))))))
        for c, n in ((fast, 2), (slow, 3)):
            self.wait_log(c, "acknowledged delivery", n)
        duration = sum(DOWN_TIMES) + 5 * 1.5 + 1
        fast_n, slow_n = int(50000 * duration), int(400 * duration)
        gens = [self.generator(fast_udp, 50000, fast_n), self.generator(slow_udp, 400, slow_n)]
        self.run_schedule(slots)
        for g in gens:
            out, _ = g.communicate(timeout=WAIT)
            self.assertEqual(out.split()[-1], str(fast_n if g is gens[0] else slow_n))
        self.wait_delivered(fast, ["fast-spool", "fast-memory"])
        self.wait_delivered(slow, ["slow-spool", "slow-memory", "slow-tls"])
        drops = {}
        for c in (fast, slow):
            self.assertEqual(c.stop(), 0)
            drops[c] = self.capture_drops(c)   # 0 on a quiet machine; never a delivery loss
            self.assertEqual(set(self.lost_counters(c).values()), {0}, c.text()[-2000:])
        stored = {}
        for s in slots:
            self.assertEqual(s.kills, 5)
            s.proc.stop()
            client = fast if s.name.startswith("fast") else slow
            stored[s.name] = self.check_stored(
                s, fast_n if client is fast else slow_n, drops[client], client)
        # The servers of one client hold the same packets, whatever their schedules.
        self.assertEqual(stored["fast-spool"], stored["fast-memory"])
        self.assertEqual(stored["slow-spool"], stored["slow-memory"])
        self.assertEqual(stored["slow-spool"], stored["slow-tls"])
        # The restarts really had work to do: files left open by the kills were checked
        # against the state (and cut back where they held what was not acknowledged).
        fast_logs = "".join(self.server_logs(s) for s in (fast_spool, fast_mem))
        self.assertIn("was left open by an earlier run", fast_logs)

    def test_server_host_vanishing_is_noticed_and_nothing_lost(self):
        # The server in a namespace behind a veth; its side of the link goes down:
        # no FIN, no reset, just silence, as when a host loses power or network.
        netns.require_netns()
        ns = netns.add_ns(self, "v")
        host_if, srv_if = netns.veth(self, None, "10.79.0.1/24", ns, "10.79.0.2/24",
                                     prefix="d")
        port, udp = support.free_port(), support.free_port()
        self.sink(udp)
        srv = self.start_server(port, client_ip="10.79.0.1", listen="10.79.0.2", ns=ns)
        c = self.start_client(client_ini(filt="udp dst port %d" % udp, servers=(
            ("far", port, "ack_timeout = 3s\n"),)).replace("host = 127.0.0.1",
                                                           "host = 10.79.0.2"),
            wait="acknowledged delivery")
        count = 400 * 14
        gen = self.generator(udp, 400, count)
        time.sleep(2)
        netns.exec_in(ns, ["ip", "link", "set", srv_if, "down"])
        vanished = time.monotonic()
        self.wait_log(c, "no acknowledgement for 3s")
        noticed = time.monotonic() - vanished
        time.sleep(4)                      # reconnects time out meanwhile
        netns.exec_in(ns, ["ip", "link", "set", srv_if, "up"])
        out, _ = gen.communicate(timeout=WAIT)
        self.assertEqual(out.split()[-1], str(count))
        self.wait_delivered(c, ["far"])
        self.assertEqual(c.stop(), 0)
        srv.stop()
        self.assertLess(noticed, 3 + 2 * 1.0 + 1, "noticed after %.1fs" % noticed)
        self.assertGreaterEqual(c.text().count("connected"), 2)
        self.assertEqual(self.lost_counters(c), {"far": 0})
        self.check_stored(srv_slot(srv), count, self.capture_drops(c))

    def test_overflow_during_a_long_outage_is_counted_exactly(self):
        port_spool, port_mem, udp = support.free_port(), support.free_port(), support.free_port()
        self.sink(udp)
        c = self.start_client(client_ini(filt="udp dst port %d" % udp, servers=(
            ("tight-spool", port_spool, "queue_size = 64K\nspool_dir = %s\nspool_max = 1M\n"
             % self.path("spool")),
            ("tight-memory", port_mem, "queue_size = 64K\n"))), wait="capturing")
        count = 30000                      # about 3.6 MB of frames: far beyond either bound
        gen = self.generator(udp, 20000, count)
        out, _ = gen.communicate(timeout=WAIT)
        self.assertEqual(out.split()[-1], str(count))
        srvs = [self.start_server(p, base=self.path("srv-%d" % p)) for p in (port_spool, port_mem)]
        self.wait_delivered(c, ["tight-spool", "tight-memory"])
        self.assertEqual(c.stop(), 0)
        self.assertNotIn(" drop 1", c.text())
        counted = self.lost_counters(c)
        for name, srv in zip(("tight-spool", "tight-memory"), srvs):
            srv.stop()
            got = self.quick_seqs(srv.base)
            self.assertEqual(len(got), len(set(got)), name)
            self.assertEqual(got, sorted(got), name)
            missing = count - len(got)
            logged = sum(int(n) for line in c.text().splitlines()
                         if "server %s " % name in line and "packets given up: " in line
                         for n in re.findall(r"(\d+) [a-z]", line.split("given up: ", 1)[1]))
            self.assertGreater(missing, 0, name)
            self.assertEqual((counted[name], logged), (missing, missing), name)

    def test_toward_a_server_that_never_offers_the_bytes_are_upstreams(self):
        # Two silent listeners stand for upstream servers (they never send a byte).
        # With ack = auto the client waits for an offer, then sends exactly what it
        # sends with ack = no: upstream's protocol, nothing else.
        udp = support.free_port()
        self.sink(udp)
        listeners = [SilentServer(self) for _ in range(2)]
        c = self.start_client(client_ini(filt="udp dst port %d" % udp, servers=(
            ("auto", listeners[0].port, ""), ("plain", listeners[1].port, "ack = no\n"))),
            wait="no offer of acknowledged delivery")
        self.send_udp(udp, range(200))
        self.wait_until(lambda: all(len(l.seqs()) == 200 for l in listeners), "200 packets")
        self.assertEqual(c.stop(), 0)
        auto, plain = (bytes(l.received) for l in listeners)
        self.assertEqual(auto, plain)
        types = [t for t, _ in peer.split_frames(auto)]
        self.assertEqual(types, [0] + [1] * 200)
        self.assertEqual(listeners[0].seqs(), list(range(200)))

    def server_logs(self, slot):
        """Every log of every run of the slot's server."""
        out = []
        for name in sorted(os.listdir(self.tmp)):
            if name.startswith("server-") and name.endswith(".log"):
                with open(self.path(name), errors="replace") as f:
                    text = f.read()
                if "port %d," % slot.port in text:
                    out.append(text)
        return "".join(out)


class SilentServer(object):
    """A TCP listener that records what one client sends and never says a word."""

    def __init__(self, test):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        test.addCleanup(self.sock.close)

    def _run(self):
        conn, _ = self.sock.accept()
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data

    def seqs(self):
        data = bytes(self.received)
        end = wire.complete_frames(data)[0]
        return [seq_of(p) for t, p in peer.split_frames(data[:end]) if t == wire.LINK_DATA]


def srv_slot(proc):
    """A Slot view of a harness server process, for check_stored()."""
    return Slot("far", proc.port, proc.base, "", ())


if __name__ == "__main__":
    unittest.main()
