# SPDX-License-Identifier: AGPL-3.0-or-later
"""Hostile peers against the server's listeners (security review).

1. A flood of connections that never send anything, to a TLS server with an
   `ip = any` entry (every address is sniffed, then handshakes): the number of
   connections waiting for their first bytes or handshake is bounded (per
   address and in all), the oldest are closed and counted (pending_full), so
   the descriptors left are enough for a neighbour's new connection and its
   new trace files. Before, the flood exhausted RLIMIT_NOFILE: accepts paused
   and the neighbour's rotation failed with EMFILE (packets lost).
2. tls_handshake_timeout counts from the accept: a peer that sends its first
   byte late does not get a fresh timeout for the handshake (in-process, with
   the loop on a fake clock). Before, sniffing and handshake took one each.
3. Out of descriptors, the hook listeners (ZeroMQ, tap) and /metrics pause
   accepting instead of spinning the loop at full CPU (in-process, with a
   listening socket whose accept() fails with EMFILE on demand).
"""

import errno
import logging
import resource
import signal
import socket
import struct
import unittest
from unittest import mock

from tests import peer, support
from tests import pki as pkimod
from osmo_pcap import metrics
from osmo_pcap.server import fanout
from osmo_pcap.server import tap
from osmo_pcap.server import zmtp
from osmo_pcap.loop import Loop

WAIT = 30.0  # hang guard for waits, never a speed assertion
QUIET = logging.getLogger("test_hostile_peers")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
logging.getLogger("osmo-pcap").addHandler(logging.NullHandler())  # in-process Server
logging.getLogger("osmo-pcap").propagate = False


class PendingFlood(support.TempDirTestCase):

    def test_silent_connection_flood_cannot_exhaust_descriptors(self):
        support.require_tool("openssl")
        pki = pkimod.shared_pki()
        extra = ("tls_cert = %s\ntls_key = %s\ntls_client_auth = required\ntls_ca = %s\n"
                 "tls_handshake_timeout = 60s\nflush_interval = 0.1s\n"
                 % (pki["server"][0], pki["server"][1], pki["ca"]))
        srv = peer.ServerProcess(self.tmp, [("n", "127.0.0.1", "yes\ntls = yes"),
                                            ("anyc", "any", "yes\ntls = required")], extra)
        # 64 descriptors: at most 16 connections may wait, 4 per address.
        srv.start(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
        self.addCleanup(srv.kill)
        first = peer.connect(srv.port)
        self.addCleanup(first.close)
        first.sendall(peer.pcap_stream(10))
        srv.wait_log("client n (127.0.0.1:%d): connected" % first.getsockname()[1])
        hostile = []
        for i in range(40):  # one address
            hostile.append(peer.connect(srv.port, "127.0.0.9"))
            self.addCleanup(hostile[-1].close)
        for i in range(40):  # many addresses
            hostile.append(peer.connect(srv.port, "127.0.1.%d" % (i + 1)))
            self.addCleanup(hostile[-1].close)
        # Accepted after the flood (the backlog is FIFO): it replaces the first one.
        second = peer.connect(srv.port)
        self.addCleanup(second.close)
        second.sendall(peer.pcap_stream(10, first=10))
        srv.wait_log("replaced by a new connection", timeout=WAIT)
        srv.signal(signal.SIGUSR2)  # a new file while the flood holds on
        srv.wait_log("SIGUSR2: rotating")
        second.sendall(b"".join(peer.pcap_data(i) for i in range(20, 30)))
        second.close()
        srv.wait_log("disconnected: connection closed by the client", timeout=WAIT)
        # the oldest waiting connections of both kinds were closed by the server
        self.assertTrue(peer.wait_closed(hostile[0], WAIT))
        self.assertTrue(peer.wait_closed(hostile[40], WAIT))
        srv.signal(signal.SIGUSR1)
        log = srv.wait_log("server:pending_full=")
        evicted = int(log.split("server:pending_full=")[1].split()[0])
        self.assertGreaterEqual(evicted, 80 - 16)
        self.assertIn("already waiting (limits 16, 4 per address)", log)
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Too many open files", log)
        seen = []
        for path in srv.files():
            seen += [struct.unpack("<I", r.data[:4])[0] for r in peer.file_records(path)]
        self.assertEqual(seen, list(range(30)))
        self.assertGreaterEqual(len(srv.files()), 3)


class HandshakeDeadline(support.TempDirTestCase):
    """tls_handshake_timeout runs from the accept: the wait for the first byte counts."""

    def test_first_byte_late_leaves_only_the_rest_for_the_handshake(self):
        support.require_tool("openssl")
        from osmo_pcap.server import config as serverconfig
        from osmo_pcap.server.main import Server
        pki = pkimod.shared_pki()
        ini = self.path("server.ini")
        with open(ini, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = 1\nbase_path = %s\n"
                    "tls_cert = %s\ntls_key = %s\ntls_handshake_timeout = 10s\n"
                    "[client n]\nip = 127.0.0.1\ntls = yes\n"
                    % (self.tmp, pki["server"][0], pki["server"][1]))
        now = [1000.0]
        cfg = serverconfig.load(ini)
        cfg.port = 0
        srv = Server(cfg, Loop(clock=lambda: now[0]))
        self.addCleanup(srv.shutdown, 0)
        srv.listen()
        c = peer.connect(srv.listener.getsockname()[1])
        self.addCleanup(c.close)

        def pump(until):
            for _ in range(int(WAIT / 0.01)):
                if until():
                    return
                srv.loop.run_once(0.01)
            self.fail("condition not reached")
        pump(lambda: srv.admission.pending)
        now[0] += 9.0
        c.sendall(b"\x16\x03\x01")  # a ClientHello that stops there

        def stream():  # the pending entry's close() is the TLSTransport's once sniffed
            closers = [close for _, close in srv.admission.pending.values()]
            return getattr(closers[0], "__self__", None) if closers else None
        pump(lambda: stream() is not None)
        st = stream()
        pump(lambda: st._timer is not None)
        self.assertAlmostEqual(st._timer.when - now[0], 1.0, places=3)
        now[0] += 1.001
        pump(lambda: srv.admission.counters["tls_timeout"] == 1)
        self.assertEqual(len(srv.admission.pending), 0)


class PendingLimits(unittest.TestCase):

    def test_limits_follow_the_descriptor_limit(self):
        from osmo_pcap.server import admission as server
        self.assertEqual(server.pending_limits(64), (16, 4))
        self.assertEqual(server.pending_limits(1024), (256, 64))
        self.assertEqual(server.pending_limits(20), (8, 2))
        self.assertEqual(server.pending_limits(1 << 20), (server.PENDING_MAX,
                                                          server.PENDING_PER_IP))
        self.assertEqual(server.pending_limits(resource.RLIM_INFINITY)[0], server.PENDING_MAX)


class _FlakyListener(socket.socket):
    """A listening socket whose accept() fails with EMFILE while `exhausted` is set."""

    exhausted = False
    attempts = 0

    def accept(self):
        if _FlakyListener.exhausted:
            _FlakyListener.attempts += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super(_FlakyListener, self).accept()


def _flaky_listen(host, port, backlog=16):
    s = _FlakyListener(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, port))
    s.listen(backlog)
    s.setblocking(False)
    return s


class AcceptPause(unittest.TestCase):
    """EMFILE on a hook or metrics listener pauses it; it resumes by itself."""

    def setUp(self):
        self.loop = Loop()
        self.addCleanup(self.loop.close)
        _FlakyListener.exhausted = False
        _FlakyListener.attempts = 0
        for p in (mock.patch.object(fanout, "ACCEPT_PAUSE", 0.05, create=True),
                  mock.patch.object(metrics, "ACCEPT_PAUSE", 0.05, create=True),
                  mock.patch.object(fanout, "listen", _flaky_listen)):
            p.start()
            self.addCleanup(p.stop)

    def watched(self, sock):
        try:
            self.loop.selector.get_key(sock)
            return True
        except (KeyError, ValueError):
            return False

    def check(self, listener, accepted):
        """Exhaust, see the listener paused after one attempt, then see it accept again."""
        c = socket.create_connection(listener.getsockname()[:2], timeout=WAIT)
        self.addCleanup(c.close)
        _FlakyListener.exhausted = True
        for _ in range(200):
            self.loop.run_once(0.01)
            if not self.watched(listener):
                break
        self.assertFalse(self.watched(listener), "still accepting while out of descriptors")
        self.assertEqual(_FlakyListener.attempts, 1)  # no spinning on a readable listener
        _FlakyListener.exhausted = False
        for _ in range(int(WAIT / 0.01)):
            self.loop.run_once(0.01)
            if accepted():
                break
        self.assertTrue(accepted(), "the waiting connection was not accepted after the pause")
        self.assertTrue(self.watched(listener))

    def test_zmq_publisher(self):
        pub = zmtp.Publisher(self.loop, "127.0.0.1", 0, logger=QUIET)
        self.addCleanup(pub.close, 0)
        self.assertIsInstance(pub.sock, _FlakyListener)
        self.check(pub.sock, lambda: len(pub.pending) == 1)

    def test_tap(self):
        t = tap.Tap(self.loop, "127.0.0.1", 0, logger=QUIET)
        self.addCleanup(t.close, 0)
        self.check(t.sock, lambda: len(t.consumers) == 1)

    def test_metrics(self):
        m = metrics.MetricsServer(self.loop, ("127.0.0.1", 0), lambda: [], log=QUIET)
        with mock.patch.object(socket, "socket", _FlakyListener):
            m.start()
        self.addCleanup(m.close)
        self.assertIsInstance(m.sock, _FlakyListener)
        self.check(m.sock, lambda: len(m.clients) == 1)

    def test_closed_while_paused_is_not_watched_again(self):
        t = tap.Tap(self.loop, "127.0.0.1", 0, logger=QUIET)
        c = socket.create_connection(t.sock.getsockname()[:2], timeout=WAIT)
        self.addCleanup(c.close)
        _FlakyListener.exhausted = True
        while _FlakyListener.attempts == 0:
            self.loop.run_once(0.01)
        sock = t.sock
        t.close(0)
        for _ in range(20):
            self.loop.run_once(0.01)  # the resume timer fires and must do nothing
        self.assertFalse(self.watched(sock))


if __name__ == "__main__":
    unittest.main()
