# SPDX-License-Identifier: AGPL-3.0-or-later
"""Closed connections leave nothing behind, without the cyclic garbage collector.

An in-process server with TLS on its port takes a few hundred connections of
every kind: good TLS clients, certificates of another CA, no certificate,
handshakes abandoned half-way, plaintext streams, garbage, connect-and-close,
plaintext streams broken by rules whose checks raise inside the parser.
With the collector off, once they are closed no transport, TLS session,
SSLObject, sniffer, connection or parser may still be alive, no timer may be
left in the loop, and the Python heap (tracemalloc) must not have grown with
the number of connections. Before, cancelled time-outs and reference cycles
held every TLS connection's objects for a minute or until a full collection
(doc/server.md#memory).
"""

import gc
import logging
import socket
import ssl
import threading
import tracemalloc

from tests import peer, support
from tests import pki as pkimod
from osmo_pcap import loop, wire
from osmo_pcap.loop import Loop

WAIT = 60.0  # hang guard, never a speed assertion
KINDS = ("good", "wrong-ca", "no-cert", "half-open", "plain", "garbage", "close")
# Plain streams each broken by a rule whose check raises inside the parser.
BROKEN = {
    "bad-header": peer.raw_frame(0, b"hello"),
    "bad-record": peer.pcap_hdr() + peer.raw_frame(1, peer.pcap_record(0)[:20]),
    "bad-stream": peer.pcap_hdr() + peer.raw_frame(3, b"\x00" * 28),
    "stream-first": wire.encode_stream(b"\x01" * 16, 0),
}
KINDS += tuple(sorted(BROKEN))
TRACKED = ("TLSTransport", "TLSSession", "SSLObject", "Sniffer", "Connection", "Parser",
           "PlainTransport", "_PcapLink")
logging.getLogger("osmo-pcap").addHandler(logging.NullHandler())
logging.getLogger("osmo-pcap").propagate = False


def client_context(pki, cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(*pki[cert])
    return ctx


def count_alive():
    """Return {type name: objects} for the TRACKED types the collector knows."""
    alive = {}
    for o in gc.get_objects():
        name = type(o).__name__
        if name in TRACKED:
            alive[name] = alive.get(name, 0) + 1
    return alive


def one(port, kind, contexts, i):
    """Make one connection of kind and close it."""
    s = peer.connect(port, "127.0.0.1", timeout=WAIT)
    try:
        if kind == "half-open":
            s.sendall(b"\x16\x03\x01\x00")  # a ClientHello that stops there
        elif kind == "plain":
            s.sendall(peer.pcap_stream(3, first=i))
            s.recv(100)                       # the ACK_OFFER
        elif kind == "garbage":
            s.sendall(b"\x07\x00\x00\x04abcd")
            peer.wait_closed(s, WAIT)
        elif kind in BROKEN:
            s.sendall(BROKEN[kind])
            peer.wait_closed(s, WAIT)
        elif kind in ("good", "wrong-ca", "no-cert"):
            t = None
            try:
                # wrap_socket takes s's descriptor over: t must be closed itself
                t = contexts[kind].wrap_socket(s)
                if kind == "good":
                    t.sendall(peer.pcap_stream(3, first=i))
                t.recv(100)
            except (OSError, ssl.SSLError):
                pass
            finally:
                if t is not None:
                    t.close()
    finally:
        s.close()


class Release(support.TempDirTestCase):

    def test_closed_connections_of_every_kind_leave_nothing_alive(self):
        support.require_tool("openssl")
        from osmo_pcap.server import config as serverconfig
        from osmo_pcap.server.main import Server
        pki = pkimod.shared_pki()
        ini = self.path("server.ini")
        with open(ini, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = 1\nbase_path = %s\n"
                    "tls_cert = %s\ntls_key = %s\ntls_client_auth = optional\ntls_ca = %s\n"
                    "tls_handshake_timeout = 30s\n"
                    "[client n]\nip = 127.0.0.1\ntls = yes\ntls_identity = client1\n"
                    % (self.tmp, pki["server"][0], pki["server"][1], pki["ca"]))
        cfg = serverconfig.load(ini)
        cfg.port = 0
        srv = Server(cfg, Loop())
        self.addCleanup(srv.shutdown, 0)
        srv.listen()
        port = srv.listener.getsockname()[1]
        contexts = {"good": client_context(pki, "client1"),
                    "wrong-ca": client_context(pki, "other-client1"),
                    "no-cert": client_context(pki, None)}
        # tls_client_auth = optional: a client without a certificate is admitted by
        # its address (then closes without a LINK_HDR), a different path.

        def wave(n):
            done = []

            def drive():
                try:
                    for i in range(n):
                        for kind in KINDS:
                            one(port, kind, contexts, i)
                finally:
                    done.append(True)
            th = threading.Thread(target=drive)
            th.start()
            for _ in range(int(WAIT / 0.02)):
                if done and not srv.conns and not srv.candidates and \
                        not srv.admission.pending:
                    break
                srv.loop.run_once(0.02)
            th.join(WAIT)
            for _ in range(5):
                srv.loop.run_once(0.01)
            self.assertFalse(th.is_alive())
            self.assertFalse(srv.conns or srv.candidates or srv.admission.pending)

        was = gc.isenabled()
        self.addCleanup(lambda: gc.enable() if was else None)
        wave(3)                               # imports, caches, first files
        gc.collect()
        gc.disable()
        before = count_alive()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        wave(10)
        first = tracemalloc.get_traced_memory()[0]
        wave(40)
        grown = tracemalloc.get_traced_memory()[0] - first
        alive = count_alive()
        more = dict((k, alive[k] - before.get(k, 0)) for k in alive
                    if alive[k] > before.get(k, 0))
        self.assertEqual(more, {}, "still alive after %d closed connections"
                         % (53 * len(KINDS)))
        # Cancelled timers may wait in the heap, but hold nothing and do not pile up.
        self.assertEqual(srv.loop.pending_timers(), 0)
        self.assertLessEqual(len(srv.loop._timers), 2 * loop.COMPACT_MIN)
        self.assertTrue(all(t.callback is None and t.args is None for t in srv.loop._timers))
        c = srv.admission.counters
        n = 53
        self.assertEqual((c["connect"], c["tls_connect"], c["tls_verify"], c["tls_eof"],
                          c["no_data"]), (n * len(KINDS), 2 * n, n, n, n))
        # 280 more connections than after the first wave: the heap did not keep a
        # share of each (a TLS connection's objects alone are several KB).
        self.assertLess(grown, 64 * 1024, "the Python heap grew by %d bytes" % grown)
        # plain, garbage, good, no certificate and the broken ones reached the entry
        rec = srv.recorders[0]
        self.assertEqual(rec.counters["connect"], (4 + len(BROKEN)) * n)
        self.assertEqual(sum(rec.rejected.values()), (1 + len(BROKEN)) * n)
