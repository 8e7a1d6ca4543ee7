# SPDX-License-Identifier: AGPL-3.0-or-later
"""Live tap: a PCAP-over-IP listener that streams the clients' packets as pcapng.

Every connection gets one SHB, the IDBs of all interfaces known so far,
then EPBs from that moment on; an interface seen for the first time gets its
IDB sent to everyone before its first EPB. Interfaces are named NAME (pcap
clients) or NAME:IFNAME (pcapng clients' named interfaces) and keep the
client's time resolution. pcapng clients' EPBs are renumbered to the tap's
interface ids; other pcapng blocks (ISB, NRB, custom) are not forwarded, as
they would need renumbering too and a live viewer can do without them.

A viewer may send request lines (doc/hooks.md#tap-requests): CLIENTS lists
the configured clients, STREAM NAME (or STREAM *) restarts its stream as a
new pcapng section with that client's interfaces and packets only. Every
answer is a new section whose SHB comments carry the reply, so the bytes on
the connection are always one valid pcapng stream and a viewer that says
nothing (tshark -i TCP@host:port) sees exactly what it saw before. With
tap_tls the listener speaks TLS only (doc/hooks.md#tap-tls).
"""

import select
import struct
import time

from osmo_pcap import log, pcapfile, pcapng
from osmo_pcap.server import fanout
from osmo_pcap.transport import PlainTransport, looks_like_tls, why

BYTEORDER = "<"
SHB = pcapng.encode_shb(options=((pcapng.SHB_USERAPPL, b"osmo_pcap_server.py live tap"),))
# Interface ids are never reused within the stream's one section: bound them.
MAX_INTERFACES = 1024
MAX_CONSUMERS = 16
MAX_IFNAME = 128
# A request line is short; more bytes without a newline are not a viewer of ours.
MAX_REQUEST = 256
# What the first SHB comment of a reply starts with (doc/hooks.md#tap-requests).
REPLY_TAG = "osmo-pcap-tap/1"
HANDSHAKE_TIMEOUT = 10.0
_SEND_CHUNK = 1 << 20
_EPB_IF_ID = struct.Struct("<I")    # the interface id of the tap's EPBs, at offset 8
_TSRESOL_US = 6
_TSRESOL_NS = 9


def _pcap_interfaces(name, link):
    # A pcap header's 32-bit link type field carries the FCS length and flags in
    # its upper half; an IDB's link type is the 16-bit lower half (the FCS
    # length would be the if_fcslen option, which the tap leaves out).
    return [(name, link.linktype & 0xFFFF, link.snaplen,
             _TSRESOL_NS if link.nanosecond else _TSRESOL_US)]


def _pcapng_interfaces(name, link):
    out = []
    for intf in link.interfaces:
        # A client's if_name may be up to 64 KiB: keep the label printable-sized.
        label = ("%s:%s" % (name, intf.name[:MAX_IFNAME]) if intf.name else name)
        out.append((label, intf.linktype, intf.snaplen, intf.tsresol))
    return out


def interfaces_of(name, link):
    """Return [(label, linktype, snaplen, tsresol)] for the interfaces of a link header."""
    if link.format == "pcap":
        return _pcap_interfaces(name, link)
    return _pcapng_interfaces(name, link)


def encode_interface(label, linktype, snaplen, tsresol):
    """Return the tap's IDB for one interface (if_tsresol only when not microseconds)."""
    return pcapng.encode_idb(linktype, snaplen, if_name=label,
                             if_tsresol=None if tsresol == _TSRESOL_US else tsresol,
                             byteorder=BYTEORDER)


def pcap_record_to_epb(link, tap_id, payload):
    """Return an EPB for one pcap record, or None if the record is malformed."""
    n = len(payload)
    if n < 16:
        return None
    sec, frac, caplen, orig = pcapfile.RECORD[link.byteorder].unpack_from(payload, 0)
    if 16 + caplen > n:
        return None
    ts = sec * (1000000000 if link.nanosecond else 1000000) + frac
    return b"".join((pcapng.encode_epb_header(tap_id, ts, caplen, orig, BYTEORDER),
                     payload[16:16 + caplen], pcapng.epb_trailer(caplen, BYTEORDER)))


def pcapng_block_to_epb(link, tap_ids, payload):
    """Return the EPB renumbered to the tap's interface id, or None to skip the block."""
    bo = link.byteorder
    n = len(payload)
    if n < pcapng.EPB_MIN_SIZE:
        return None
    btype, total = pcapng.BLOCK_HEAD[bo].unpack_from(payload, 0)
    if btype != pcapng.BT_EPB or total != n:
        return None
    _, _, if_id, hi, lo, caplen, orig = pcapng.EPB_FIXED[bo].unpack_from(payload, 0)
    if if_id >= len(tap_ids) or tap_ids[if_id] is None or 28 + caplen > n - 4:
        return None
    return b"".join((pcapng.encode_epb_header(tap_ids[if_id], (hi << 32) | lo, caplen, orig,
                                              BYTEORDER),
                     payload[28:28 + caplen], pcapng.epb_trailer(caplen, BYTEORDER)))


def reply_shb(reply, lines=()):
    """Return the SHB that opens a reply section (doc/hooks.md#tap-requests).

    Its first comment is REPLY_TAG and the reply ("OK STREAM bts1", "ERROR ..."),
    each further comment one line of detail (CLIENTS: one client per line).
    """
    opts = [(pcapng.SHB_USERAPPL, b"osmo_pcap_server.py live tap"),
            (pcapng.OPT_COMMENT, ("%s %s" % (REPLY_TAG, reply)).encode("utf-8"))]
    opts += [(pcapng.OPT_COMMENT, line.encode("utf-8")) for line in lines]
    return pcapng.encode_shb(options=opts, byteorder=BYTEORDER)


def _wait_writable(sock, timeout):
    """Block until sock is writable or timeout seconds passed (any descriptor number)."""
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(sock.fileno(), select.POLLOUT)
        p.poll(max(0, int(timeout * 1000)))
    else:
        select.select([], [sock], [], timeout)


class Viewer(object):
    """One tap connection: its transport, bounded queue and what it asked for.

    want is None for every client of the listener, or one client's name ("" once
    a final answer was sent: nothing more is streamed); ids maps the tap's
    interface ids to this viewer's after a STREAM NAME (None: the same numbers).
    """

    __slots__ = ("tap", "transport", "sock", "name", "limit", "out", "sent", "dropped",
                 "dropped_bytes", "want", "ids", "request", "closing", "closed", "_writing")

    def __init__(self, tap, transport, name, limit):
        self.tap = tap
        self.transport = transport
        self.sock = transport.sock
        self.name = name
        self.limit = limit
        self.out = bytearray()
        self.sent = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self.want = None
        self.ids = None
        self.request = bytearray()
        self.closing = None     # the reason to close once the queue is sent
        self.closed = False
        self._writing = False

    def drop(self, size):
        """Count one block of size bytes that did not fit."""
        self.dropped += 1
        self.dropped_bytes += size

    def push(self, data):
        """Append bytes to the queue without checking the limit (the caller did)."""
        self.out += data
        self._start_writing()

    def finish(self, reason):
        """Close the connection once everything queued is sent (a final answer)."""
        self.closing = reason
        self._start_writing()

    def _start_writing(self):
        if not self._writing and not self.closed:
            self._writing = True
            self.transport.set_writer(self._flush)

    def _flush(self):
        out = self.out
        t = self.transport
        while out:
            try:
                n = t.send(memoryview(out)[:_SEND_CHUNK] if len(out) > _SEND_CHUNK else out)
            except OSError as e:
                self.tap.drop_viewer(self, why(e))
                return
            if not n:
                return
            del out[:n]
            self.sent += n
        if self.closing is not None:
            # TLS may still hold encrypted bytes: this runs again until it is empty.
            if not t.pending_output:
                self.tap.drop_viewer(self, self.closing)
            return
        self._writing = False
        t.set_writer(None)

    def readable(self):
        """Read what the viewer sent: request lines, or the end of the connection."""
        if self.closed:
            return
        buf = self.tap.rbuf
        try:
            n = self.transport.recv_into(buf)
        except OSError as e:
            self.tap.drop_viewer(self, why(e))
            return
        if n is None:
            return
        if n == 0:
            self.tap.drop_viewer(self, "disconnected")
            return
        if self.closing is None:
            self.request += memoryview(buf)[:n]
            self.tap.requests(self)

    def flush_until(self, deadline):
        """Send what is queued, waiting until deadline (time.monotonic()) at most."""
        t = self.transport
        try:
            while not self.closed:
                while self.out:
                    n = t.send(bytes(self.out[:_SEND_CHUNK]))
                    if not n:
                        break
                    del self.out[:n]
                    self.sent += n
                if t.is_tls:
                    t.session.flush()
                if not self.out and not t.pending_output:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                _wait_writable(self.sock, left)
        except (OSError, ValueError):
            return

    def close(self):
        """Close the connection; drop what is queued."""
        if self.closed:
            return
        self.closed = True
        if not self.transport.is_tls:
            # Unread input would make the kernel answer with a reset, which can
            # destroy the last bytes sent before the viewer reads them.
            try:
                for _ in range(16):
                    if not self.sock.recv(65536):
                        break
            except OSError:
                pass
        self.transport.close()
        self.out = bytearray()


class Tap(object):
    """A server hook: the PCAP-over-IP listener and its viewers ("consumers").

    only: a client name to stream alone (tap_listen_NAME), else all clients.
    clients: the configured client names (for CLIENTS and STREAM NAME); None
    takes the clients seen so far. tls_context: an ssl.SSLContext (server
    side) for tap_tls, else plain TCP.
    """

    def __init__(self, loop, host, port, queue_max=4 << 20, only=None,
                 max_consumers=MAX_CONSUMERS, logger=None, clients=None, tls_context=None,
                 handshake_timeout=HANDSHAKE_TIMEOUT):
        self.loop = loop
        self.queue_max = queue_max
        self.only = only
        self.clients = None if clients is None else sorted(clients)
        self.tls_context = tls_context
        self.handshake_timeout = handshake_timeout
        self.max_consumers = max_consumers
        self.log = logger or log.get("tap")
        self.sock = fanout.listen(host, port)
        self.address = self.sock.getsockname()[:2]
        self.consumers = {}     # Viewer -> name for logs
        self._pending = {}      # TLS transport in its handshake -> name for logs
        self._ids = {}          # (label, linktype, snaplen, tsresol) -> tap interface id
        self._idbs = []         # IDB bytes by tap interface id
        self._owner = []        # client name by tap interface id
        self._links = {}        # client name -> (LinkInfo, [tap id per client interface])
        self._peers = {}        # client name -> (host, port) while connected
        self._full_logged = False
        self._refuse_log = log.RateLimiter(10.0)
        self.rbuf = bytearray(4096)
        self.dropped_unmapped = 0
        self.dropped = 0        # packets not queued for a consumer (its queue was full)
        self.connections = 0    # consumers accepted since start
        loop.add_reader(self.sock, self._accept)
        what = "client %s" % only if only else "all clients"
        self.log.info("tap: streaming %s as pcapng to %s connections on %s", what,
                      "TLS" if tls_context is not None else "TCP",
                      fanout.format_peer(self.address))

    @property
    def port(self):
        return self.address[1]

    # ---------------------------------------------------------- viewers
    def _accept(self):
        for conn, peer in fanout.accept_all(self.sock, self._exhausted):
            name = fanout.format_peer(peer)
            if len(self.consumers) + len(self._pending) >= self.max_consumers:
                held = self._refuse_log.ok("full")  # one line per connection would flood
                if held is not None:
                    self.log.warning("tap: refusing %s: already %d consumers%s", name,
                                     self.max_consumers,
                                     " (%d more suppressed)" % held if held else "")
                conn.close()
                continue
            if self.tls_context is None:
                self._add(PlainTransport(self.loop, conn), name)
                continue
            from osmo_pcap import tls  # only a TLS tap loads ssl
            t = tls.TLSTransport(self.loop, conn, self.tls_context, server_side=True)
            self._pending[t] = name
            t.start(lambda t=t: self._handshake_done(t),
                    lambda err, t=t: self._handshake_failed(t, err), self.handshake_timeout)

    def _handshake_done(self, t):
        name = self._pending.pop(t, None)
        if name is not None:
            self._add(t, name)

    def _handshake_failed(self, t, err):
        name = self._pending.pop(t, None)
        t.close()
        held = self._refuse_log.ok("tls")
        if name is not None and held is not None:
            self.log.warning("tap: TLS handshake with %s failed: %s%s", name, why(err),
                             " (%d more suppressed)" % held if held else "")

    def _add(self, transport, name):
        v = Viewer(self, transport, name, self.queue_max)
        self.consumers[v] = name
        self.connections += 1
        # The stream's start is never dropped, whatever the limit.
        v.push(b"".join([SHB] + self._idbs))
        transport.set_reader(v.readable)
        self.log.info("tap: consumer %s connected%s", name,
                      " (%s)" % transport.describe() if transport.is_tls else "")

    def _exhausted(self, err):
        self.log.warning("tap: accept failed: %s; pausing accepts for %gs",
                         err.strerror or err, fanout.ACCEPT_PAUSE)
        fanout.pause_accepting(self.loop, self.sock, self._accept)

    def drop_viewer(self, v, reason):
        """Forget a viewer and close its connection."""
        name = self.consumers.pop(v, None)
        if name is None:
            return
        self.log.info("tap: consumer %s gone (%s); %d packets (%d bytes) dropped for it",
                      name, reason, v.dropped, v.dropped_bytes)
        v.close()

    # ---------------------------------------------------------- requests
    def requests(self, v):
        """Answer the complete request lines a viewer sent (doc/hooks.md#tap-requests)."""
        while v.closing is None:
            line, nl, rest = bytes(v.request).partition(b"\n")
            if not nl:
                if looks_like_tls(line[:6]):
                    self._refuse(v, "this tap speaks plain TCP (tap_tls = no), the viewer "
                                 "started a TLS handshake")
                elif len(line) > MAX_REQUEST:
                    self._refuse(v, "request line longer than %d bytes" % MAX_REQUEST)
                return
            v.request = bytearray(rest)
            self._request(v, line)

    def _request(self, v, line):
        text = line.decode("ascii", "replace").strip()
        words = text.split()
        if not words:
            return
        cmd = words[0].upper()
        if cmd == "CLIENTS" and len(words) == 1:
            lines = []
            for name in self._known_clients():
                peer = self._peers.get(name)
                lines.append("client %s %s" % (name, "connected " + fanout.format_peer(peer)
                                               if peer else "disconnected"))
            self.log.info("tap: consumer %s listed the clients", v.name)
            self._answer(v, "OK CLIENTS", lines, final="clients listed")
        elif cmd == "STREAM" and len(words) == 2:
            problem = self._stream_problem(words[1])
            if problem:
                self._refuse(v, problem)
            else:
                self._restart(v, None if words[1] == "*" else words[1])
        else:
            self._refuse(v, "unknown request %r (expected CLIENTS, STREAM NAME or STREAM *)"
                         % text[:64])

    def _known_clients(self):
        if self.only is not None:
            return [self.only]
        if self.clients is not None:
            return self.clients
        return sorted(set(self._peers) | set(self._links))

    def _stream_problem(self, name):
        if name == "*":
            return None
        if self.only is not None and name != self.only:
            return "this listener streams client %s only" % self.only
        known = self._known_clients()
        if self.clients is not None and name not in known:
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            return "no client %s in the server's configuration (clients: %s)" % (
                name[:64], listed or "none")
        return None

    def _restart(self, v, want):
        """Start a new section for the viewer: SHB, the selection's IDBs, then its EPBs."""
        if want is None:
            ids, idbs = None, self._idbs
        else:
            ids, idbs = {}, []
            for tid, owner in enumerate(self._owner):
                if owner == want:
                    ids[tid] = len(idbs)
                    idbs.append(self._idbs[tid])
        v.want, v.ids = want, ids
        what = "*" if want is None else want
        v.push(b"".join([reply_shb("OK STREAM " + what)] + idbs))
        self.log.info("tap: consumer %s streams %s", v.name,
                      "all clients" if want is None else "client " + want)

    def _refuse(self, v, reason):
        self.log.warning("tap: consumer %s: %s", v.name, reason)
        self._answer(v, "ERROR " + reason, (), final="refused: " + reason)

    def _answer(self, v, reply, lines, final):
        v.want, v.ids = "", {}   # nothing more is streamed to it
        v.push(reply_shb(reply, lines))
        v.finish(final)

    # ---------------------------------------------------------- interfaces
    def _tap_id(self, key, owner):
        tid = self._ids.get(key)
        if tid is not None:
            return tid
        if len(self._idbs) >= MAX_INTERFACES:
            if not self._full_logged:
                self._full_logged = True
                self.log.error("tap: %d interfaces in the stream, packets of new ones are not "
                               "streamed (a server restart starts afresh)", MAX_INTERFACES)
            return None
        tid = len(self._idbs)
        try:
            idb = encode_interface(*key)
        except (struct.error, ValueError, OverflowError):
            # A client's odd header must not disable the tap for every client
            # (the server drops a hook that raises): its packets are skipped.
            self.log.warning("tap: cannot describe interface %r: not streamed", key)
            return None
        self._ids[key] = tid
        self._idbs.append(idb)
        self._owner.append(owner)
        for s in self.consumers:
            if s.want is None:
                s.push(idb)
            elif s.want == owner:
                s.ids[tid] = len(s.ids)
                s.push(idb)
        return tid

    def _map(self, name, link):
        ids = [self._tap_id(key, name) for key in interfaces_of(name, link)]
        self._links[name] = (link, ids)
        return ids

    # ---------------------------------------------------------- hook interface
    def client_connected(self, name, peer):
        self._peers[name] = peer

    def client_disconnected(self, name):
        self._peers.pop(name, None)

    def link_header(self, name, link):
        if self.only is None or name == self.only:
            self._map(name, link)

    def data(self, name, link, payload):
        if not self.consumers or (self.only is not None and name != self.only):
            return
        entry = self._links.get(name)
        ids = entry[1] if entry is not None and entry[0] is link else self._map(name, link)
        if link.format == "pcap":
            epb = pcap_record_to_epb(link, ids[0], payload) if ids[0] is not None else None
        else:
            epb = pcapng_block_to_epb(link, ids, payload)
        if epb is None:
            self.dropped_unmapped += 1
            return
        size = len(epb)
        tid = None
        for s in self.consumers:
            want = s.want
            if want is None:
                block = epb
            elif want != name:
                continue
            else:
                if tid is None:
                    tid = _EPB_IF_ID.unpack_from(epb, 8)[0]
                lid = s.ids.get(tid)
                if lid is None:
                    continue
                block = epb if lid == tid else b"".join((epb[:8], _EPB_IF_ID.pack(lid),
                                                         epb[12:]))
            if len(s.out) + size > s.limit:
                s.drop(size)
                self.dropped += 1
            else:
                s.push(block)

    def file_closed(self, name, path):
        pass

    def close(self, flush_seconds=1.0):
        """Send what is queued for up to flush_seconds in all, then close everything."""
        deadline = time.monotonic() + flush_seconds
        for s in list(self.consumers):
            s.flush_until(deadline)
            self.drop_viewer(s, "server shutting down")
        for t in list(self._pending):
            t.close()
        self._pending.clear()
        self.loop.remove(self.sock)
        self.sock.close()
