# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admitting accepted connections: which client entry, plain or TLS, who may wait.

An accepted socket is matched to a [client NAME] entry by its source address.
Without TLS in the server's config that is all: the connection starts at once
as a transport.PlainTransport. With tls_cert set, plain and TLS share the
port: the first bytes tell a ClientHello from an osmo-pcap frame (peeked, not
consumed), a TLS connection goes through its handshake, and the certificate
identity may choose the entry (ip = any) or must match it (tls_identity).

Connections that are still sniffed or in their handshake each hold a
descriptor for up to tls_handshake_timeout: at most `pending_max` may wait,
`pending_per_ip` from one address; beyond, the oldest waiting one (of that
address) is closed and counted as pending_full. Every refusal is counted by
reason and logged, rate-limited per address and reason.
"""

import collections
import ipaddress
import resource
import socket

from osmo_pcap import log
from osmo_pcap.server.config import ANY
from osmo_pcap.server.ingest import format_peer
from osmo_pcap.transport import PlainTransport, looks_like_tls

PENDING_MAX = 1024
PENDING_PER_IP = 64
FRAME_TYPES = (0, 1)  # LINK_HDR, LINK_DATA: the first byte of an osmo-pcap stream

# Refusal counters (server with tls_cert): no_data (closed or silent before the
# first byte), tls_mode (TLS to a plaintext entry or the reverse), tls_identity
# (certificate names no fitting entry), tls_<kind> for failed handshakes
# (tls_timeout: the stall counter), pending_full (evicted while waiting).
TLS_COUNTERS = ("tls_connect", "no_data", "tls_mode", "tls_identity", "tls_timeout",
                "tls_verify", "tls_rejected", "tls_not_tls", "tls_eof", "tls_io",
                "tls_protocol", "pending_full")
_NO_DATA = {"eof": "closed before sending anything",
            "error": "socket error before sending anything"}

_log = log.get("server")


def pending_limits(nofile=None):
    """Return (total, per address) limits of waiting connections for a descriptor limit."""
    if nofile is None:
        try:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            nofile = resource.RLIM_INFINITY
    if nofile == resource.RLIM_INFINITY or nofile < 0:
        total = PENDING_MAX
    else:
        total = max(8, min(PENDING_MAX, nofile // 4))
    return total, max(2, min(PENDING_PER_IP, total // 4))


def first_bytes_kind(first_bytes):
    """Return "tls", "osmo-pcap" or "unknown" for the first bytes of a connection."""
    if looks_like_tls(first_bytes):
        return "tls"
    if first_bytes and bytearray(first_bytes[:1])[0] in FRAME_TYPES:
        return "osmo-pcap"
    return "unknown"


def entry_problem(entry, tls_entry, transport):
    """Return None if the ready transport may feed the client entry, else the reason.

    tls_entry is the entry's tlsconfig.ClientEntryTLS.
    """
    if not transport.is_tls:
        if tls_entry.mode == "required":
            return "plaintext connection, but client %r requires TLS (tls = required)" \
                % entry.name
        return None
    if tls_entry.mode == "no":
        return "TLS connection, but client %r is configured for plaintext (tls = no)" \
            % entry.name
    names = transport.peer_names()
    if not names and not tls_entry.any_ip:
        return None  # tls_client_auth = optional and no certificate: the IP identifies
    from osmo_pcap.tls import identity_problem
    problem = identity_problem(tls_entry.identity, names)
    return None if problem is None else "client %r: %s" % (entry.name, problem)


class Sniffer(object):
    """Wait (without consuming) for the first bytes of an accepted socket.

    Calls on_result(kind) once from the loop, kind being "tls", "osmo-pcap" or
    "unknown" (see first_bytes_kind), or "eof" / "timeout" / "error". The
    bytes stay in the socket for the transport that follows. cancel() stops.
    """

    def __init__(self, loop, sock, on_result, timeout=None):
        self.loop, self.sock, self.on_result = loop, sock, on_result
        sock.setblocking(False)
        self._timer = loop.call_later(timeout, self._done, "timeout") if timeout else None
        loop.add_reader(sock, self._readable)

    def _readable(self):
        try:
            first = self.sock.recv(6, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._done("error")
            return
        self._done(first_bytes_kind(first) if first else "eof")

    def _done(self, kind):
        self.cancel()
        self.on_result(kind)

    def cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.loop.remove(self.sock)


class Admission(object):
    """Turn accepted sockets into started transports of configured client entries.

    entries: the server's ClientEntry list; tls: tlsconfig.ServerTLS or None.
    on_admit(entry, transport, peer) gets each admitted connection, its
    transport ready (TLS: handshake done, identity checked). counters holds
    connect, no_client and, with TLS, TLS_COUNTERS.
    """

    def __init__(self, loop, entries, tls, on_admit):
        self.loop = loop
        self.tls = tls
        self.on_admit = on_admit
        self.by_ip = dict((e.ip, e) for e in entries if e.ip is not ANY)
        self.any_ip = [e for e in entries if e.ip is ANY]
        self.counters = {"connect": 0, "no_client": 0}
        if tls is not None:
            for k in TLS_COUNTERS:
                self.counters[k] = 0
        self.unknown_log = log.RateLimiter(10.0)
        self.refuse_log = log.RateLimiter(10.0)
        # Connections still sniffed or in their handshake, oldest first:
        # key -> (peer, close), and the same by address.
        self.pending = collections.OrderedDict()
        self.pending_by_ip = {}
        self.pending_max, self.pending_per_ip = pending_limits()

    def admit(self, sock, addr):
        """Take an accepted socket: refuse it, or start its way to on_admit()."""
        self.counters["connect"] += 1
        ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        entry = self.by_ip.get(ip)
        if entry is None and not self.any_ip:
            self.counters["no_client"] += 1
            held = self.unknown_log.ok("unknown")
            if held is not None:
                _log.warning("connection from unknown address %s closed (no [client] has this "
                             "ip)%s", ip, " (%d more suppressed)" % held if held else "")
            sock.close()
            return
        peer = (str(ip), addr[1])
        if self.tls is None:
            self._start(entry, PlainTransport(self.loop, sock), peer)
        else:
            self._sniff(entry, sock, peer)

    def close_pending(self):
        """Close every connection that is still waiting (shutdown)."""
        for _, close in list(self.pending.values()):
            close()
        self.pending.clear()
        self.pending_by_ip.clear()

    # ------------------------------------------------------------ plain
    def _start(self, entry, transport, peer):
        def ready():
            self.on_admit(entry, transport, peer)
        transport.start(ready)

    # ------------------------------------------------------------ sniffing (TLS configs)
    def _sniff(self, entry, sock, peer):
        """Wait for the first bytes: a TLS ClientHello or an osmo-pcap frame."""
        key = id(sock)
        started = self.loop.clock()

        def on_result(kind):
            self._release(key)
            self._sniffed(entry, sock, peer, kind, started)

        sniffer = Sniffer(self.loop, sock, on_result, self.tls.handshake_timeout)

        def cancel():
            sniffer.cancel()
            sock.close()
        self._hold(key, peer, cancel)

    def _hold(self, key, peer, close):
        """Track a connection that is not admitted yet, within the pending limits."""
        ip = peer[0]
        mine = self.pending_by_ip.get(ip)
        if mine is not None and len(mine) >= self.pending_per_ip:
            self._evict(next(iter(mine)), "%d connections from this address" % len(mine))
        elif len(self.pending) >= self.pending_max:
            self._evict(next(iter(self.pending)), "%d connections" % len(self.pending))
        self.pending[key] = (peer, close)
        self.pending_by_ip.setdefault(ip, collections.OrderedDict())[key] = True

    def _release(self, key):
        """Forget a pending connection (admitted, refused or closed); return its entry."""
        item = self.pending.pop(key, None)
        if item is not None:
            ip = item[0][0]
            mine = self.pending_by_ip[ip]
            del mine[key]
            if not mine:
                del self.pending_by_ip[ip]
        return item

    def _evict(self, key, how_many):
        peer, close = self._release(key)
        self.counters["pending_full"] += 1
        held = self.refuse_log.ok((peer[0], "pending_full"))
        if held is not None:
            _log.warning("connection from %s closed before its first bytes or TLS handshake "
                         "completed: %s already waiting (limits %d, %d per address)%s",
                         format_peer(peer), how_many, self.pending_max, self.pending_per_ip,
                         " (%d more suppressed)" % held if held else "")
        close()

    def _sniffed(self, entry, sock, peer, kind, started):
        if kind in ("eof", "timeout", "error"):
            why = _NO_DATA.get(kind) or "no data within %g s" % self.tls.handshake_timeout
            self._refuse(sock, peer, entry, "no_data", why, 20 if kind == "eof" else 30)
            return
        if kind != "tls":  # osmo-pcap (or garbage, which validation rejects)
            if entry is None:
                self.counters["no_client"] += 1
                self._refuse(sock, peer, None, None, "plaintext, and no [client] has this "
                             "ip (ip = any entries take TLS with a certificate only)")
                return
            transport = PlainTransport(self.loop, sock)
            why = entry_problem(entry, entry.tls, transport)
            if why is not None:
                self._refuse(transport, peer, entry, "tls_mode", why)
                return
            self._start(entry, transport, peer)
            return
        if entry is not None and entry.tls.mode == "no" and not self.any_ip:
            self._refuse(sock, peer, entry, "tls_mode", "TLS connection, but client %r is "
                         "configured for plaintext (tls = no)" % entry.name)
            return
        from osmo_pcap.tls import TLSTransport, TIMEOUT
        st = TLSTransport(self.loop, sock, self.tls.context, server_side=True)
        key = id(st)
        timeout = self.tls.handshake_timeout
        self._hold(key, peer, st.close)

        def on_ready():
            self._release(key)
            self._tls_ready(entry, st, peer)

        def on_error(err):
            self._release(key)
            self._refuse(st, peer, entry, "tls_" + err.kind.replace("-", "_"),
                         "TLS handshake failed: %s" % err if err.kind != TIMEOUT
                         else "TLS handshake not completed within %g s" % timeout)
        # tls_handshake_timeout counts from the accept, not from the first byte:
        # a peer trickling its ClientHello cannot hold on for twice as long.
        st.start(on_ready, on_error, max(0.001, timeout - (self.loop.clock() - started)))

    def _tls_ready(self, entry, st, peer):
        """The handshake is done: find the entry the connection may feed."""
        from osmo_pcap.tls import identity_matches
        names = st.peer_names()
        counter = "tls_identity"
        why = None
        if entry is not None:
            why = entry_problem(entry, entry.tls, st)
            if why is None:
                self.on_admit(entry, st, peer)
                return
            if entry.tls.mode == "no":
                counter = "tls_mode"
        for other in self.any_ip:
            if identity_matches(other.tls.identity, names) and \
                    entry_problem(other, other.tls, st) is None:
                self.on_admit(other, st, peer)
                return
        if why is None:
            why = "no [client] has this ip, and %s" % (
                "the client certificate names %s, which no ip = any entry expects"
                % ", ".join(repr(n) for n in names) if names
                else "it presented no certificate (ip = any entries need one)")
        self._refuse(st, peer, entry, counter, why)

    def _refuse(self, closer, peer, entry, counter, reason, level=30):
        """Count, log (rate-limited per address and reason) and close a new connection."""
        if counter is not None:
            self.counters[counter] = self.counters.get(counter, 0) + 1
        held = self.refuse_log.ok((peer[0], counter))
        if held is not None:
            _log.log(level, "connection from %s%s refused: %s%s", format_peer(peer),
                     " (client %s)" % entry.name if entry is not None else "", reason,
                     " (%d more suppressed)" % held if held else "")
        closer.close()
