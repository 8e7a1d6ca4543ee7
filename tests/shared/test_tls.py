# SPDX-License-Identifier: AGPL-3.0-or-later
"""Tests of osmo_pcap.tls (streams, port sniffing, identity) and osmo_pcap.tlsconfig.

The PKI is made at test time with the openssl command (tests/pki.py);
`openssl s_server` / `s_client` are the independent TLS peers.
"""

import configparser
import hashlib
import logging
import os
import socket
import ssl
import subprocess
import time
import unittest

from tests import support
from tests import pki as pkimod
from osmo_pcap import loop as loopmod, tls, tlsconfig
from osmo_pcap import ini
from osmo_pcap.server import admission
from osmo_pcap.server import config as serverconfig
from osmo_pcap.transport import Dial, PlainTransport, looks_like_tls

PKI = {}
SAFETY = 30.0  # seconds before a stuck test gives up (a hang guard, not an assertion)


def setUpModule():
    support.require_tool("openssl")
    PKI.update(pkimod.shared_pki())


def section(keys, name="server", path=None):
    """Return a ini.Section holding keys (None values are left out)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read_dict({name: dict((k, v) for k, v in keys.items() if v is not None)})
    return ini.Section(cp, name, path or os.path.join(PKI["dir"], "test.cfg"))


def server_tls(client_auth="required", cert="server", crl=True, **extra):
    keys = {"tls_cert": PKI[cert][0], "tls_key": PKI[cert][1], "tls_client_auth": client_auth}
    if client_auth != "none":
        keys["tls_ca"] = PKI["ca"]
        if crl:
            keys["tls_crl"] = PKI["crl"]
    keys.update(extra)
    return tlsconfig.read_server_tls(section(keys))


def client_tls(cert="client1", ca="ca", host="127.0.0.1", **extra):
    keys = {"tls": "yes", "tls_ca": PKI[ca] if ca else None}
    if cert:
        keys["tls_cert"], keys["tls_key"] = PKI[cert]
    keys.update(extra)
    return tlsconfig.read_client_tls(section(keys, "server main"), host)


def server_transport(loop, sock, server, initial=b""):
    """The server side of TLS with tlsconfig.ServerTLS server."""
    return tls.TLSTransport(loop, sock, server.context, server_side=True, initial=initial)


def client_transport(loop, sock, client):
    """The client side of TLS with tlsconfig.ClientTLS client."""
    return tls.TLSTransport(loop, sock, client.context, server_hostname=client.hostname)


def max_tls12(ctx):
    """Make ctx offer TLS 1.2 at most (ssl.OP_NO_TLS* is deprecated from 3.10 on)."""
    if hasattr(ctx, "maximum_version"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:  # Python 3.6
        ctx.options |= ssl.OP_NO_TLSv1_3


class FakeClock(object):
    """Monotonic time that a test can move forward (for handshake time-outs)."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.monotonic() + self.offset


class Peer(object):
    """One end of a test connection: sends payload, collects what arrives."""

    def __init__(self, stream, payload=b"", timeout=None, close_on_error=True, read=True,
                 started=False):
        self.stream = stream
        self.payload = memoryview(payload)
        self.sent = 0
        self.received = bytearray()
        self.buf = bytearray(65536)
        self.ready = self.eof = False
        self.error = None
        self.close_on_error = close_on_error
        self.read = read
        if started:
            self._ready()
        else:
            stream.start(self._ready, self._failed, timeout)

    def _ready(self):
        self.ready = True
        if self.read:
            self.stream.set_reader(self._read)
        if self.payload:
            self.stream.set_writer(self._write)

    def _failed(self, err):
        self.error = err
        if self.close_on_error:
            self.stream.close()

    def _read(self):
        while True:
            try:
                n = self.stream.recv_into(self.buf)
            except OSError as e:
                self._failed(e)
                return
            if n is None:
                return
            if n == 0:
                self.eof = True
                self.stream.set_reader(None)
                return
            self.received += self.buf[:n]

    def _write(self):
        while self.sent < len(self.payload):
            try:
                n = self.stream.send(self.payload[self.sent:])
            except OSError as e:
                self._failed(e)
                return
            if not n:
                return
            self.sent += n
        self.stream.set_writer(None)

    @property
    def finished(self):
        return self.error is not None or self.eof

    @property
    def flushed(self):
        return self.sent == len(self.payload) and self.stream.pending_output == 0


class LoopTestCase(unittest.TestCase):
    """A TestCase with self.loop (fake-clock capable) and run_until()."""

    def setUp(self):
        self.clock = FakeClock()
        self.loop = loopmod.Loop(clock=self.clock)
        self.addCleanup(self.loop.close)

    def run_until(self, cond, what="condition"):
        deadline = time.monotonic() + SAFETY
        while not cond():
            if time.monotonic() > deadline:
                self.fail("stuck waiting for " + what)
            self.loop.run_once(0.2)

    def pair(self, server, client, hostname="127.0.0.1", s_payload=b"", c_payload=b"",
             timeout=None, s_read=True):
        """Connect a server and a client TLSTransport over a socketpair; return Peers."""
        a, b = socket.socketpair()
        cs = tls.TLSTransport(self.loop, a, client.context, server_hostname=hostname)
        ss = server_transport(self.loop, b, server)
        self.addCleanup(cs.close)
        self.addCleanup(ss.close)
        return (Peer(ss, s_payload, timeout or server.handshake_timeout, read=s_read),
                Peer(cs, c_payload, timeout))

    def listener(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        self.addCleanup(srv.close)
        return srv


# ---------------------------------------------------------------------- streams
class TestStreams(LoopTestCase):

    def test_large_payloads_both_ways(self):
        # Several MB each way: stranded decrypted data would stall the transfer.
        up = os.urandom(6 * 1024 * 1024 + 123)
        down = os.urandom(3 * 1024 * 1024 + 7)
        s, c = self.pair(server_tls(), client_tls(), s_payload=down, c_payload=up)
        self.run_until(lambda: len(s.received) >= len(up) and len(c.received) >= len(down),
                       "both payloads")
        self.assertIsNone(s.error)
        self.assertIsNone(c.error)
        self.assertEqual(hashlib.sha256(s.received).digest(), hashlib.sha256(up).digest())
        self.assertEqual(hashlib.sha256(c.received).digest(), hashlib.sha256(down).digest())
        self.assertEqual(s.stream.peer_names(), ["client1", "client1.example"])
        self.assertEqual(c.stream.peer_names(), ["server.test", "localhost"])

    def test_reader_that_reads_little_is_called_again(self):
        # An owner that takes 100 bytes per call: the rest sits decrypted inside
        # TLS and the socket is not readable again; the stream must call back.
        s, c = self.pair(server_tls(), client_tls(), c_payload=b"x" * 50000, s_read=False)
        got = bytearray()
        buf = bytearray(100)

        def small_reader():
            n = s.stream.recv_into(buf)
            if n:
                got.extend(buf[:n])

        self.run_until(lambda: s.ready and c.ready, "handshake")
        s.stream.set_reader(small_reader)
        self.run_until(lambda: len(got) >= 50000, "all data in small reads")
        self.assertEqual(bytes(got), b"x" * 50000)

    def test_orderly_close_gives_clean_eof(self):
        s, c = self.pair(server_tls(), client_tls(), c_payload=b"LINK_HDR" * 10)
        self.run_until(lambda: c.ready and c.flushed and len(s.received) == 80, "data")
        c.stream.close()
        self.run_until(lambda: s.finished, "EOF")
        self.assertTrue(s.eof)
        self.assertIsNone(s.error)
        self.assertTrue(s.stream.clean_eof)

    def test_abrupt_close_is_unclean_eof(self):
        s, c = self.pair(server_tls(), client_tls(), c_payload=b"abc")
        self.run_until(lambda: len(s.received) == 3, "data")
        try:
            c.stream.sock.recv(65536)  # unread session tickets would make a reset
        except BlockingIOError:
            pass
        c.stream.loop.remove(c.stream.sock)
        c.stream.sock.close()  # no close_notify
        c.stream.closed = True
        self.run_until(lambda: s.finished, "EOF")
        self.assertTrue(s.eof, s.error)
        self.assertFalse(s.stream.clean_eof)

    def test_forged_record_is_an_error_not_a_crash(self):
        s, c = self.pair(server_tls(), client_tls(), c_payload=b"ok")
        self.run_until(lambda: len(s.received) == 2, "data")
        c.stream.sock.send(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # not from TLS
        self.run_until(lambda: s.finished, "failure")
        self.assertEqual(s.error.kind, tls.PROTOCOL)
        self.assertIn("TLS error", str(s.error))

    def test_tls12_session(self):
        cl = client_tls()
        max_tls12(cl.context)
        s, c = self.pair(server_tls(), cl, c_payload=os.urandom(300000))
        self.run_until(lambda: len(s.received) == 300000, "data")
        self.assertEqual(s.stream.version(), "TLSv1.2")
        self.assertEqual(s.stream.peer_names(), ["client1", "client1.example"])

    def test_min_version_13_refuses_tls12_client(self):
        cl = client_tls()
        max_tls12(cl.context)
        s, c = self.pair(server_tls(tls_min_version="1.3"), cl)
        self.run_until(lambda: s.finished and c.finished, "both sides to fail")
        self.assertEqual(s.error.kind, tls.PROTOCOL)
        self.assertIn(c.error.kind, (tls.REJECTED, tls.EOF))

    def test_server_stream_with_sniffed_initial_bytes(self):
        # A server may consume the first bytes to sniff them and hand them over.
        a, b = socket.socketpair()
        cs = client_transport(self.loop, a, client_tls())
        self.addCleanup(cs.close)
        c = Peer(cs, b"after sniffing" * 1000, timeout=10)
        self.run_until(lambda: cs._registered[0], "ClientHello sent")
        first = b.recv(1)
        self.assertTrue(looks_like_tls(first))
        ss = server_transport(self.loop, b, server_tls(), initial=first)
        self.addCleanup(ss.close)
        s = Peer(ss, timeout=10)
        self.run_until(lambda: len(s.received) == 14000 or s.finished, "data")
        self.assertEqual(bytes(s.received), b"after sniffing" * 1000)

    def test_send_before_ready_takes_nothing(self):
        a, b = socket.socketpair()
        st = client_transport(self.loop, a, client_tls())
        self.addCleanup(st.close)
        self.addCleanup(b.close)
        self.assertEqual(st.send(b"data"), 0)
        self.assertIsNone(st.recv_into(bytearray(10)))

    def test_plain_stream_same_interface(self):
        a, b = socket.socketpair()
        srv = PlainTransport(self.loop, b)
        cli = PlainTransport(self.loop, a)
        self.addCleanup(srv.close)
        self.addCleanup(cli.close)
        s, c = Peer(srv), Peer(cli, b"\x00\x00\x00\x18" + b"h" * 24)
        self.run_until(lambda: len(s.received) == 28, "data")
        self.assertEqual(bytes(s.received), b"\x00\x00\x00\x18" + b"h" * 24)
        cli.close()
        self.run_until(lambda: s.finished, "EOF")
        self.assertEqual(srv.peer_names(), [])
        self.assertFalse(srv.is_tls)
        self.assertEqual(srv.pending_output, 0)


# ---------------------------------------------------------------------- verification
class TestVerification(LoopTestCase):

    def expect_failure(self, server, client, hostname="127.0.0.1"):
        s, c = self.pair(server, client, hostname)
        self.run_until(lambda: s.finished and c.finished, "both sides to finish")
        return s, c

    def test_client_rejects_server_from_other_ca(self):
        s, c = self.expect_failure(server_tls(), client_tls(ca="other-ca"))
        self.assertEqual(c.error.kind, tls.VERIFY)
        self.assertIn("certificate verification failed", str(c.error))
        self.assertFalse(s.ready)

    def test_client_rejects_expired_server(self):
        s, c = self.expect_failure(server_tls(cert="expired"), client_tls())
        self.assertEqual(c.error.kind, tls.VERIFY)
        if hasattr(ssl, "SSLCertVerificationError"):  # 3.6 gives no detail
            self.assertIn("expired", str(c.error))

    def test_client_rejects_wrong_hostname(self):
        s, c = self.expect_failure(server_tls(), client_tls(host="other.test"), "other.test")
        self.assertEqual(c.error.kind, tls.VERIFY)
        self.assertIn("other.test", str(c.error))

    def test_hostname_from_san(self):
        s, c = self.pair(server_tls(), client_tls(host="server.test"), "server.test",
                         c_payload=b"ok")
        self.run_until(lambda: len(s.received) == 2, "data")

    def server_rejects(self, server, client, detail):
        s, c = self.expect_failure(server, client)
        self.assertEqual(s.error.kind, tls.VERIFY, s.error)
        if hasattr(ssl, "SSLCertVerificationError") and detail:
            self.assertIn(detail, str(s.error))
        # TLS 1.3: the client learns it was refused after its own handshake ended.
        self.assertTrue(c.error is not None or c.eof)
        return s, c

    def test_server_rejects_revoked_client(self):
        self.server_rejects(server_tls(), client_tls(cert="revoked"), "revoked")

    def test_server_rejects_expired_client(self):
        self.server_rejects(server_tls(), client_tls(cert="expired"), "expired")

    def test_server_rejects_client_from_other_ca(self):
        self.server_rejects(server_tls(), client_tls(cert="other-client1"), "issuer")

    def test_server_rejects_missing_client_cert(self):
        s, c = self.server_rejects(server_tls(), client_tls(cert=None), None)
        self.assertIn("no certificate", str(s.error))

    def test_optional_client_auth_without_cert(self):
        s, c = self.pair(server_tls(client_auth="optional"), client_tls(cert=None),
                         c_payload=b"hello")
        self.run_until(lambda: len(s.received) == 5, "data")
        self.assertEqual(s.stream.peer_names(), [])

    def test_anonymous_mode_encrypts_without_checks(self):
        with self.assertLogs("osmo-pcap.tls", logging.WARNING) as logs:
            cl = client_tls(ca="other-ca", host="wrong.test", cert=None, tls_verify="no")
        self.assertIn("tls_verify = no", logs.output[0])
        s, c = self.pair(server_tls(client_auth="none"), cl, "wrong.test", c_payload=b"hi")
        self.run_until(lambda: len(s.received) == 2, "data")
        self.assertEqual(c.stream.peer_names(), [])  # unverified: proves nothing


# ---------------------------------------------------------------------- identity
class TestIdentity(LoopTestCase):

    def entry(self, server, keys, name="client1", any_ip=False):
        return serverconfig.ClientEntry(name, None, True, tlsconfig.read_client_entry_tls(
            section(keys, "client " + name), name, server, any_ip))

    def problem(self, entry, transport):
        return admission.entry_problem(entry, entry.tls, transport)

    def connected(self, server, client):
        s, c = self.pair(server, client)
        self.run_until(lambda: s.ready and c.ready, "handshake")
        return s.stream

    def test_identity_default_is_client_name_cn_or_san(self):
        srv = server_tls()
        stream = self.connected(srv, client_tls())
        self.assertIsNone(self.problem(self.entry(srv, {"tls": "required"}), stream))
        by_san = self.entry(srv, {"tls": "yes", "tls_identity": "CLIENT1.example"}, "x")
        self.assertIsNone(self.problem(by_san, stream))

    def test_identity_mismatch(self):
        srv = server_tls()
        stream = self.connected(srv, client_tls(cert="client2"))
        problem = self.problem(self.entry(srv, {"tls": "required"}), stream)
        self.assertIn("'client2'", problem)
        self.assertIn("expected 'client1'", problem)

    def test_any_ip_needs_certificate(self):
        srv = server_tls(client_auth="optional")
        stream = self.connected(srv, client_tls(cert=None))
        e = self.entry(srv, {"tls": "required"}, any_ip=True)
        self.assertIn("no verified client certificate", self.problem(e, stream))
        # Without ip = any and with optional auth, the source address identifies.
        self.assertIsNone(self.problem(self.entry(srv, {"tls": "yes"}), stream))

    def test_plain_and_tls_mode_mismatch(self):
        srv = server_tls()
        a, b = socket.socketpair()
        plain = PlainTransport(self.loop, a)
        self.addCleanup(plain.close)
        self.addCleanup(b.close)
        self.assertIn("requires TLS", self.problem(self.entry(srv, {"tls": "required"}), plain))
        self.assertIsNone(self.problem(self.entry(srv, {"tls": "yes"}), plain))
        stream = self.connected(srv, client_tls())
        self.assertIn("plaintext (tls = no)", self.problem(self.entry(srv, {}), stream))
        self.assertEqual(self.entry(srv, {}).tls.mode, "no")

    def test_identity_helpers(self):
        self.assertTrue(tls.identity_matches("a.example", ["A.Example"]))
        self.assertFalse(tls.identity_matches("a.example", ["*.example"]))
        self.assertIsNone(tls.identity_problem("x", ["y", "x"]))
        self.assertIn("'y'", tls.identity_problem("x", ["y"]))


# ---------------------------------------------------------------------- stalls
class TestStalls(LoopTestCase):

    def client_hello(self):
        """Return the first flight of our own client stream."""
        a, b = socket.socketpair()
        st = client_transport(self.loop, a, client_tls())
        st.start(lambda: None, lambda e: None)
        self.run_until(lambda: st.pending_output == 0 and st.started and st._registered[0],
                       "ClientHello")
        hello = b.recv(65536)
        st.close()
        b.close()
        return hello

    def test_stalled_client_times_out_others_unaffected(self):
        srv = server_tls(tls_handshake_timeout="10s")
        self.assertEqual(srv.handshake_timeout, 10.0)
        hello = self.client_hello()
        self.assertTrue(looks_like_tls(hello))
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        a.sendall(hello[:len(hello) // 2])  # half a ClientHello, then silence
        stalled = Peer(server_transport(self.loop, b, srv), timeout=srv.handshake_timeout)
        self.addCleanup(stalled.stream.close)
        s, c = self.pair(srv, client_tls(), c_payload=b"z" * 100000)
        self.run_until(lambda: len(s.received) == 100000, "the good client")
        self.assertIsNone(stalled.error)
        self.clock.offset += 11  # past the stalled handshake's deadline
        self.run_until(lambda: stalled.error is not None, "time-out")
        self.assertEqual(stalled.error.kind, tls.TIMEOUT)
        self.assertIn("10 s", str(stalled.error))
        self.assertIsNone(s.error)

    def test_client_times_out_on_silent_server(self):
        srv = self.listener()
        sock = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        self.addCleanup(conn.close)
        c = Peer(client_transport(self.loop, sock, client_tls()), timeout=10)
        self.run_until(lambda: c.stream._registered[0], "ClientHello sent")
        self.clock.offset += 11
        self.run_until(lambda: c.error is not None, "time-out")
        self.assertEqual(c.error.kind, tls.TIMEOUT)

    def test_tls_client_to_plain_server(self):
        # The server sniffs, sees TLS for a plain entry and hangs up.
        a, b = socket.socketpair()
        c = Peer(client_transport(self.loop, a, client_tls()), timeout=10)
        self.run_until(lambda: c.stream._registered[0], "ClientHello sent")
        self.assertEqual(admission.first_bytes_kind(b.recv(6, socket.MSG_PEEK)), "tls")
        b.close()
        self.run_until(lambda: c.error is not None, "failure")
        self.assertEqual(c.error.kind, tls.EOF)
        self.assertIn("during the TLS handshake", str(c.error))

    def test_plain_client_to_tls_stream(self):
        frame = support.data_file("c-0.8-pcap-client-stream.bin")[:200]
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        a.sendall(frame)
        s = Peer(server_transport(self.loop, b, server_tls()), timeout=10)
        self.run_until(lambda: s.error is not None, "failure")
        self.assertEqual(s.error.kind, tls.NOT_TLS)

    def test_tls_client_to_plain_speaking_server(self):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        b.sendall(b"\x00\x00\x00\x18" + b"\x00" * 24)
        c = Peer(client_transport(self.loop, a, client_tls()), timeout=10)
        self.run_until(lambda: c.error is not None, "failure")
        self.assertEqual(c.error.kind, tls.NOT_TLS)


# ---------------------------------------------------------------------- client transport
class Dialer(object):
    """Connect with transport.Dial as the client's Forwarder does, then send payload."""

    def __init__(self, loop, addr, client, payload):
        self.t = self.peer = self.error = None
        self.payload = payload
        self.dial = Dial(loop, addr[0], addr[1], None,
                         lambda lp, sock: client_transport(lp, sock, client),
                         self._ready, self._failed)

    def _ready(self, t):
        self.t = t
        self.peer = Peer(t, self.payload, started=True)

    def _failed(self, reason, err):
        self.error = err

    @property
    def failure(self):
        return self.error or (self.peer.error if self.peer else None)

    @property
    def finished(self):
        return self.error is not None or (self.peer is not None and self.peer.finished)

    @property
    def off(self):
        return self.peer.sent if self.peer else 0


class TestClientTransport(LoopTestCase):

    def serve(self, server, count=1):
        """Accept count connections into server-side Peers; return the list."""
        lst = self.listener()
        lst.setblocking(False)
        peers = []

        def accept():
            try:
                conn, _ = lst.accept()
            except BlockingIOError:
                return
            peers.append(Peer(server_transport(self.loop, conn, server), timeout=10))
            self.addCleanup(peers[-1].stream.close)
            if len(peers) == count:
                self.loop.remove(lst)

        self.loop.add_reader(lst, accept)
        self.addCleanup(self.loop.remove, lst)
        return lst.getsockname(), peers

    def dialer(self, addr, client, payload):
        d = Dialer(self.loop, addr, client, payload)
        self.addCleanup(d.dial.cancel)
        self.addCleanup(lambda: d.t and d.t.close())
        return d

    def test_stream_to_our_server(self):
        addr, peers = self.serve(server_tls())
        payload = os.urandom(4 * 1024 * 1024 + 5)
        d = self.dialer(addr, client_tls(), payload)
        self.run_until(lambda: peers and len(peers[0].received) == len(payload)
                       or d.finished, "payload")
        self.assertIsNone(d.failure)
        self.assertEqual(peers[0].received, payload)
        self.assertEqual(d.t.peer_names(), ["server.test", "localhost"])
        self.assertEqual(peers[0].stream.peer_names(), ["client1", "client1.example"])
        d.t.close()  # close_notify
        self.run_until(lambda: peers[0].finished, "EOF")
        self.assertTrue(peers[0].stream.clean_eof)

    def test_refuses_wrong_server_name(self):
        addr, peers = self.serve(server_tls())
        d = self.dialer(addr, client_tls(host="wrong.test"), b"x")
        self.run_until(lambda: d.finished, "failure")
        self.assertEqual(d.failure.kind, tls.VERIFY)
        self.assertIn("wrong.test", str(d.failure))
        self.assertEqual(d.off, 0)

    def test_learns_why_server_refused_certificate(self):
        addr, peers = self.serve(server_tls())
        d = self.dialer(addr, client_tls(cert="revoked"), b"x" * 1000)
        self.run_until(lambda: d.finished, "failure")
        self.assertEqual(peers[0].error.kind, tls.VERIFY)
        self.assertEqual(d.failure.kind, tls.REJECTED, d.failure)
        self.assertIn("certificate revoked", str(d.failure))


# ---------------------------------------------------------------------- sniffing
class TestSniffing(unittest.TestCase):

    def test_osmo_pcap_frames(self):
        for name in ("c-0.8-pcap-client-stream.bin", "c-0.8-pcapng-client-stream.bin",
                     "c-0.4.1-client-stream.bin"):
            data = support.data_file(name)
            self.assertFalse(looks_like_tls(data[:1]), name)
            self.assertFalse(looks_like_tls(data[:6]), name)
            self.assertEqual(admission.first_bytes_kind(data[:4]), "osmo-pcap", name)
        self.assertFalse(looks_like_tls(b"\x01\x00\x00\x10"))
        self.assertFalse(looks_like_tls(b""))
        self.assertEqual(admission.first_bytes_kind(b"GET / HTTP/1.0"), "unknown")
        self.assertEqual(admission.first_bytes_kind(b""), "unknown")

    def test_partial_and_odd_records(self):
        self.assertTrue(looks_like_tls(b"\x16"))
        self.assertTrue(looks_like_tls(b"\x16\x03"))
        self.assertFalse(looks_like_tls(b"\x16\x02"))
        self.assertFalse(looks_like_tls(b"\x16\x03\x09"))
        self.assertFalse(looks_like_tls(b"\x16\x03\x01\x00\x10\x02"))  # ServerHello

    def test_sniffer(self):
        loop = loopmod.Loop()
        self.addCleanup(loop.close)
        results = []
        socks = []
        for first in (b"\x16\x03\x01\x02\x00\x01", b"\x00\x00\x00\x18", b"GET /", b""):
            a, b = socket.socketpair()
            socks += [a, b]
            self.addCleanup(a.close)
            self.addCleanup(b.close)
            admission.Sniffer(loop, b, lambda k: results.append(k), timeout=10)
            if first:
                a.send(first)
            else:
                a.shutdown(socket.SHUT_WR)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        silent = admission.Sniffer(loop, b, lambda k: results.append(k), timeout=0.01)
        deadline = time.monotonic() + SAFETY
        while len(results) < 5 and time.monotonic() < deadline:
            loop.run_once(0.2)
        self.assertEqual(sorted(results), ["eof", "osmo-pcap", "timeout", "tls", "unknown"])
        self.assertEqual(socks[1].recv(10), b"\x16\x03\x01\x02\x00\x01")  # not consumed
        silent.cancel()

    def test_openssl_client_hello(self):
        openssl = support.require_tool("openssl")
        for extra in ([], ["-tls1_2"], ["-tls1_3"]):
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            srv.settimeout(SAFETY)
            port = srv.getsockname()[1]
            p = subprocess.Popen([openssl, "s_client", "-connect", "127.0.0.1:%d" % port]
                                 + extra, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            try:
                conn, _ = srv.accept()
                conn.settimeout(SAFETY)
                first = b""
                while len(first) < 6:
                    chunk = conn.recv(6 - len(first))
                    if not chunk:
                        break
                    first += chunk
                conn.close()
            finally:
                srv.close()
                p.stdin.close()
                p.wait(SAFETY)
            self.assertEqual(len(first), 6)
            self.assertTrue(looks_like_tls(first), (extra, first))
            self.assertTrue(looks_like_tls(first[:1]))
            self.assertEqual(admission.first_bytes_kind(first), "tls")


# ---------------------------------------------------------------------- interop
class TestInterop(LoopTestCase):

    def setUp(self):
        LoopTestCase.setUp(self)
        self.openssl = support.require_tool("openssl")

    def popen(self, args):
        p = subprocess.Popen([self.openssl] + args, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(p.wait)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.stdin.close)
        self.addCleanup(lambda: p.poll() is not None or p.kill())
        return p

    def test_our_client_with_openssl_s_server(self):
        p = self.popen(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
                        "-cert", PKI["server"][0], "-key", PKI["server"][1],
                        "-Verify", "1", "-CAfile", PKI["ca"], "-verify_return_error"])
        port = None
        for line in iter(p.stdout.readline, b""):  # the line comes at once
            if line.startswith(b"ACCEPT"):
                port = int(line.split(b":")[-1])
                break
        self.assertIsNotNone(port, "s_server did not start")
        sock = socket.create_connection(("127.0.0.1", port))
        c = Peer(client_transport(self.loop, sock, client_tls(host="server.test")),
                 b"hello osmo-pcap\n", timeout=10)
        self.run_until(lambda: b"\n" in c.received or c.finished, "reply")
        self.assertIsNone(c.error)
        self.assertIn(b"pacp-omso olleh", bytes(c.received))
        self.assertEqual(c.stream.peer_names(), ["server.test", "localhost"])
        c.stream.close()
        out = p.stdout.read()  # s_server exits after its one connection
        # OpenSSL 3.0 prints "CN = client1", 3.6 "CN=client1"
        self.assertRegex(out, rb"Peer certificate: CN ?= ?client1\b")

    def test_openssl_s_client_with_our_server(self):
        srv = self.listener()
        payload = os.urandom(1024 * 1024)
        p = self.popen(["s_client", "-connect", "127.0.0.1:%d" % srv.getsockname()[1],
                        "-CAfile", PKI["ca"], "-cert", PKI["client2"][0],
                        "-key", PKI["client2"][1], "-servername", "server.test",
                        "-verify_return_error", "-quiet", "-no_ign_eof", "-nocommands"])
        srv.settimeout(SAFETY)
        conn, _ = srv.accept()
        first = conn.recv(6, socket.MSG_PEEK)
        self.assertTrue(looks_like_tls(first))
        s = Peer(server_transport(self.loop, conn, server_tls()), timeout=10)
        self.run_until(lambda: s.ready or s.finished, "handshake")
        self.assertEqual(s.stream.peer_names(), ["client2"])
        try:
            p.stdin.write(payload)
            p.stdin.flush()
        except OSError:
            self.fail("s_client exited: %r" % p.stdout.read())
        self.run_until(lambda: len(s.received) >= len(payload) or s.finished, "payload")
        self.assertEqual(hashlib.sha256(s.received).digest(), hashlib.sha256(payload).digest())
        # Answer, then close: s_client prints the answer and exits on close_notify.
        s.payload = memoryview(b"answer from osmo-pcap\n")
        s.stream.set_writer(s._write)
        self.run_until(lambda: s.flushed, "answer sent")
        s.stream.close()
        out = p.stdout.read()
        self.assertIn(b"answer from osmo-pcap", out)


# ---------------------------------------------------------------------- configuration
class TestConfig(unittest.TestCase):

    def assertConfigError(self, reader, keys, key, *texts):
        with self.assertRaises(ini.ConfigError) as cm:
            reader(keys)
        self.assertEqual(cm.exception.key, key, str(cm.exception))
        for t in texts:
            self.assertIn(t, str(cm.exception))
        return cm.exception

    def read_server(self, keys):
        return tlsconfig.read_server_tls(section(keys))

    def read_client(self, keys):
        keys = dict(keys, tls=keys.get("tls", "yes"))
        return tlsconfig.read_client_tls(section(keys, "server main"), "127.0.0.1")

    def test_defaults_and_off(self):
        self.assertIsNone(self.read_server({}))
        self.assertIsNone(self.read_client({"tls": "no", "tls_cert": "/nonexistent"}))
        srv = self.read_server({"tls_cert": PKI["server"][0], "tls_key": PKI["server"][1]})
        self.assertEqual(srv.handshake_timeout, 10.0)
        self.assertEqual(srv.client_auth, "none")
        self.assertEqual(srv.context.verify_mode, ssl.CERT_NONE)
        cl = self.read_client({"tls_ca": PKI["ca"]})
        self.assertTrue(cl.verify)
        self.assertEqual(cl.hostname, "127.0.0.1")
        self.assertTrue(cl.context.check_hostname)
        if hasattr(cl.context, "minimum_version"):
            self.assertEqual(cl.context.minimum_version, ssl.TLSVersion.TLSv1_2)
        else:
            self.assertTrue(cl.context.options & ssl.OP_NO_TLSv1_1)

    def test_unknown_keys_still_detected(self):
        sec = section({"tls_cert": PKI["server"][0], "tls_key": PKI["server"][1],
                       "tls_cert_file": "x"})
        tlsconfig.read_server_tls(sec)
        with self.assertRaises(ini.ConfigError) as cm:
            sec.finish()
        self.assertEqual(cm.exception.key, "tls_cert_file")

    def test_relative_paths_from_config_dir(self):
        sec = section({"tls_cert": "server.pem", "tls_key": "server.key"},
                      path=os.path.join(PKI["dir"], "osmo-pcap-server.cfg"))
        self.assertIsNotNone(tlsconfig.read_server_tls(sec))

    def test_missing_and_unreadable_files(self):
        e = self.assertConfigError(self.read_server, {"tls_cert": "/nonexistent/s.pem"},
                                   "tls_cert", "/nonexistent/s.pem", "cannot read")
        self.assertIn("test.cfg [server] tls_cert", str(e))
        self.assertConfigError(self.read_server, {"tls_cert": PKI["server"][0],
                                                  "tls_key": PKI["dir"]},
                               "tls_key", PKI["dir"], "cannot read")
        self.assertConfigError(self.read_client, {"tls_ca": "/nonexistent/ca.pem"},
                               "tls_ca", "/nonexistent/ca.pem")

    def test_bad_certificate_and_key_files(self):
        srv = PKI["server"]
        self.assertConfigError(self.read_server, {"tls_cert": PKI["empty"], "tls_key": srv[1]},
                               "tls_cert", PKI["empty"], "no PEM certificate")
        self.assertConfigError(self.read_server, {"tls_cert": srv[0]},
                               "tls_cert", "no PEM private key", "set tls_key")
        self.assertConfigError(self.read_server, {"tls_cert": srv[0],
                                                  "tls_key": PKI["client1"][1]},
                               "tls_key", "does not match", PKI["client1"][1], srv[0])
        self.assertConfigError(self.read_client, {"tls_ca": PKI["ca"],
                                                  "tls_cert": PKI["client1"][0],
                                                  "tls_key": PKI["encrypted"]},
                               "tls_key", "encrypted", PKI["encrypted"])
        self.assertConfigError(self.read_client, {"tls_ca": PKI["ca"],
                                                  "tls_key": PKI["client1"][1]},
                               "tls_key", "set tls_cert")
        cl = self.read_client({"tls_ca": PKI["ca"], "tls_cert": PKI["both"]})
        self.assertIsNotNone(cl)

    def test_bad_ca_and_crl(self):
        base = {"tls_cert": PKI["server"][0], "tls_key": PKI["server"][1],
                "tls_client_auth": "required"}
        self.assertConfigError(self.read_server, base, "tls_client_auth", "needs tls_ca")
        for bad in ("empty", "garbage"):
            self.assertConfigError(self.read_server, dict(base, tls_ca=PKI[bad]),
                                   "tls_ca", PKI[bad], "no PEM certificate")
            self.assertConfigError(self.read_server, dict(base, tls_ca=PKI["ca"],
                                                          tls_crl=PKI[bad]),
                                   "tls_crl", PKI[bad], "no PEM CRL")
        self.assertConfigError(self.read_client, {"tls_ca": PKI["empty"]}, "tls_ca",
                               PKI["empty"])
        self.assertConfigError(self.read_server, dict(base, tls_client_auth="none",
                                                      tls_ca=PKI["ca"]),
                               "tls_ca", "only used with tls_client_auth")
        self.assertConfigError(self.read_server, {"tls_key": PKI["server"][1]}, "tls_cert",
                               "missing")

    def test_ca_directory(self):
        self.assertConfigError(self.read_client, {"tls_ca": PKI["dir"]}, "tls_ca",
                               "openssl rehash")
        d = os.path.join(PKI["dir"], "hashed")
        if not os.path.isdir(d):
            os.mkdir(d)
            h = support.run(["openssl", "x509", "-hash", "-noout", "-in", PKI["ca"]]).stdout
            os.symlink(PKI["ca"], os.path.join(d, h.strip() + ".0"))
        self.assertIsNotNone(self.read_client({"tls_ca": d}))

    def test_value_errors(self):
        base = {"tls_cert": PKI["server"][0], "tls_key": PKI["server"][1]}
        self.assertConfigError(self.read_server, dict(base, tls_client_auth="maybe"),
                               "tls_client_auth", "none, optional, required")
        self.assertConfigError(self.read_server, dict(base, tls_min_version="1.1"),
                               "tls_min_version")
        self.assertConfigError(self.read_server, dict(base, tls_handshake_timeout="0"),
                               "tls_handshake_timeout")
        self.assertConfigError(self.read_server, dict(base, tls_ciphers="NOSUCHCIPHER"),
                               "tls_ciphers", "NOSUCHCIPHER")
        self.assertConfigError(self.read_client, {"tls_verify": "perhaps"}, "tls_verify")
        srv = self.read_server(dict(base, tls_handshake_timeout="2.5s",
                                    tls_ciphers="ECDHE+AESGCM", tls_min_version="1.3"))
        self.assertEqual(srv.handshake_timeout, 2.5)

    def test_client_needs_hostname_to_verify(self):
        sec = section({"tls": "yes", "tls_ca": PKI["ca"]}, "server main")
        with self.assertRaises(ini.ConfigError) as cm:
            tlsconfig.read_client_tls(sec)
        self.assertEqual(cm.exception.key, "tls_hostname")
        cl = self.read_client({"tls_ca": PKI["ca"], "tls_hostname": "server.test"})
        self.assertEqual(cl.hostname, "server.test")

    def test_client_config_reads_tls_keys_of_a_server_section(self):
        from osmo_pcap.client import config as clientconfig
        path = os.path.join(PKI["dir"], "client-tls-test.ini")
        base = "[client]\ndevices = lo\n[server main]\nhost = server.test\nport = 9\n"
        with open(path, "w") as f:
            f.write(base + "tls = yes\ntls_ca = %s\n" % PKI["ca"])
        self.addCleanup(os.unlink, path)
        self.assertEqual(clientconfig.load(path).servers[0].tls.hostname, "server.test")
        with open(path, "w") as f:
            f.write(base + "protocol = ipip\ntls = yes\n")
        with self.assertRaises(ini.ConfigError) as cm:
            clientconfig.load(path)
        self.assertEqual(cm.exception.key, "tls")
        with open(path, "w") as f:
            f.write(base)
        self.assertIsNone(clientconfig.load(path).servers[0].tls)

    def test_client_entry_rules(self):
        srv_none = server_tls(client_auth="none")
        srv_req = server_tls()

        def entry(keys, server, any_ip=False):
            return tlsconfig.read_client_entry_tls(section(keys, "client c1"), "c1",
                                                   server, any_ip)

        e = entry({}, None)
        self.assertEqual((e.mode, e.identity), ("no", "c1"))
        self.assertEqual(entry({"tls": "required", "tls_identity": "gw.example"},
                               srv_req).identity, "gw.example")
        self.assertTrue(entry({"tls": "required"}, srv_req, any_ip=True).any_ip)
        with self.assertRaises(ini.ConfigError) as cm:
            entry({"tls": "yes"}, None)
        self.assertEqual(cm.exception.key, "tls")
        for keys, server in (({"tls": "yes"}, srv_req), ({"tls": "required"}, srv_none),
                             ({}, srv_req)):
            with self.assertRaises(ini.ConfigError) as cm:
                entry(keys, server, any_ip=True)
            self.assertEqual(cm.exception.key, "ip")
        with self.assertRaises(ini.ConfigError) as cm:
            entry({"tls": "yes", "tls_identity": "x"}, srv_none)
        self.assertEqual(cm.exception.key, "tls_identity")
        with self.assertRaises(ini.ConfigError) as cm:
            entry({"tls": "sometimes"}, srv_req)
        self.assertEqual(cm.exception.key, "tls")


if __name__ == "__main__":
    unittest.main()
