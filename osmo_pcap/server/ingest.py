# SPDX-License-Identifier: AGPL-3.0-or-later
"""Receiving one client's stream: decode and validate frames, hand records on.

Parser is the decode+validate step specialised for speed: for a pcap link it
reads the frame header and the record's caplen with one unpack per frame and
checks the record inline; everything else goes through the same rules as
wire.Decoder + validate (tests compare the two on fuzzed streams).

Connection owns the socket. All reads of a connection go through fill(), so a
TLS transport can replace it; the receive buffer is shared by all connections
(the server's), each connection keeps only its incomplete last frame.
"""

import struct
import time

from osmo_pcap import wire
from osmo_pcap.validate import ValidationError

# spec 2.2 frame header + spec 2.4.2 record header up to caplen, in one read:
# the 4 header bytes as one integer (in the record's byte order), then caplen.
_FAST = {bo: struct.Struct(bo + "I8xI") for bo in "<>"}
_FAST_SIZE = _FAST["<"].size
_FRAME = wire.FRAME_HDR
_HDR = wire.HEADER_SIZE
_REC = wire.HEADER_SIZE + 16
_MAX = wire.MAX_PAYLOAD
LINK_DATA = wire.LINK_DATA
HEADS_MAX = 4096

# (byte order, snaplen) -> {caplen: the frame header of a LINK_DATA frame of
# a pcap record of that caplen, read as an integer}; shared by connections.
_heads = {}


def _frame_word(byteorder, caplen):
    """The 4 frame header bytes 1, 0, len (big-endian) read as the fast struct does."""
    n = caplen + 16
    if byteorder == ">":
        return 0x01000000 | n
    return 1 | (n >> 8) << 16 | (n & 255) << 24


class Parser(object):
    """Decode and validate the frames of one connection.

    consume() works on a buffer that starts with the connection's saved tail;
    see Connection.on_readable for the calling convention.
    """

    __slots__ = ("link", "max_snaplen", "tail", "_fast", "_snaplen", "_heads", "_byteorder")

    def __init__(self, max_snaplen):
        self.max_snaplen = max_snaplen
        self.link = None
        self.tail = b""
        self._fast = None
        self._snaplen = 0
        self._heads = None
        self._byteorder = "<"

    def set_link(self, link):
        """Use link (a validate.LinkInfo) for the LINK_DATA frames that follow."""
        self.link = link
        if link.format == "pcap":
            self._fast = _FAST[link.byteorder].unpack_from
            self._snaplen = link.snaplen
            self._byteorder = link.byteorder
            key = (link.byteorder, link.snaplen)
            heads = _heads.get(key)
            if heads is None:
                if len(_heads) >= 16:
                    _heads.clear()      # bounded, whatever the clients announce
                heads = _heads[key] = {}
            self._heads = heads
        else:
            self._fast = self._heads = None

    def consume(self, mv, pos, end, out):
        """Decode complete frames in mv[pos:end]; append accepted LINK_DATA payloads to out.

        Stop at an incomplete frame, after a LINK_HDR frame or at a broken rule.
        Return (pos, nbytes, event): nbytes is the payload total appended to out;
        event is None (pos is where the incomplete rest starts), a LINK_HDR
        payload memoryview (pos is after that frame), or a ProtocolError (pos is
        where the offending frame starts).
        """
        append = out.append
        nbytes = 0
        unpack = _FRAME.unpack_from
        heads = self._heads
        while True:
            if heads is not None:
                # The fast path, the server's per-packet cost: a pcap LINK_DATA
                # frame is valid when its header is the one its caplen implies
                # (type 1, length caplen + 16) and caplen is within the snaplen,
                # which is when heads knows that caplen. Payload bytes are
                # counted once per run: the bytes passed minus the headers.
                start, first = pos, len(out)
                fast = self._fast
                limit = end - _FAST_SIZE
                learn = None
                try:
                    while pos <= limit:
                        word, caplen = fast(mv, pos)
                        if word != heads[caplen]:
                            break
                        stop = pos + _REC + caplen
                        if stop > end:
                            break
                        append(mv[pos + _HDR:stop])
                        pos = stop
                except KeyError:
                    learn = caplen
                nbytes += pos - start - _HDR * (len(out) - first)
                if learn is not None and learn <= self._snaplen:
                    if len(heads) >= HEADS_MAX:
                        heads.clear()
                    heads[learn] = _frame_word(self._byteorder, learn)
                    continue
            avail = end - pos
            if avail < _HDR:
                return pos, nbytes, None
            # The general path: exactly wire.Decoder's and validate's rules.
            t, _, n = unpack(mv, pos)
            if t > 1:
                return pos, nbytes, wire.FrameError(
                    "unknown-type", "unknown message type %d (expected 0 LINK_HDR or "
                    "1 LINK_DATA)" % t)
            if n > _MAX:
                return pos, nbytes, wire.FrameError(
                    "frame-too-long", "frame length %d exceeds the limit of %d" % (n, _MAX))
            stop = pos + _HDR + n
            if stop > end:
                return pos, nbytes, None
            payload = mv[pos + _HDR:stop]
            if t != LINK_DATA:
                return stop, nbytes, payload
            link = self.link
            if link is None:
                return pos, nbytes, ValidationError(
                    "data-before-header", "LINK_DATA before any LINK_HDR on this connection")
            try:
                link.check_data(payload)
            except ValidationError as e:
                return pos, nbytes, e
            append(payload)
            nbytes += n
            pos = stop


class Connection(object):
    """One accepted TCP connection of a configured client."""

    __slots__ = ("server", "sock", "peer", "recorder", "parser", "closed", "label", "last_rx",
                 "header_timer")

    def __init__(self, server, sock, peer, recorder):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.recorder = recorder
        self.parser = Parser(server.cfg.max_snaplen)
        self.closed = False
        self.label = "client %s (%s)" % (recorder.name, format_peer(peer))
        self.last_rx = time.monotonic()
        self.header_timer = None

    def fill(self, mv):
        """Read from the transport into mv; return the byte count (0 at EOF).

        The only place a connection reads: a TLS transport replaces this.
        Raise BlockingIOError when nothing is there, OSError on failure.
        """
        return self.sock.recv_into(mv)

    def on_readable(self):
        """Read once into the shared buffer, decode, validate and store."""
        server = self.server
        mv = server.rview
        parser = self.parser
        tail = parser.tail
        start = len(tail)
        if start:
            mv[:start] = tail
        try:
            n = self.fill(mv[start:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            server.drop(self, "read error: %s" % (e.strerror or e))
            return
        server.bytes_read += n
        self.last_rx = time.monotonic()
        if n == 0:
            server.drop(self, "connection closed by the client%s"
                        % (" in the middle of a frame (%d bytes discarded)" % start
                           if start else ""))
            return
        end = start + n
        pos = 0
        recorder = self.recorder
        while True:
            out = []
            pos, nbytes, event = parser.consume(mv, pos, end, out)
            if out:
                server.records(recorder, parser.link, out, nbytes)
            if event is None:
                break
            if isinstance(event, wire.ProtocolError):
                server.reject(self, event)
                return
            if not server.link_header(self, event):
                return
        parser.tail = bytes(mv[pos:end]) if pos < end else b""

    def close(self):
        """Close the socket and let go of buffered bytes and timers."""
        if not self.closed:
            self.closed = True
            self.sock.close()
            self.parser.tail = b""
            if self.header_timer is not None:
                self.header_timer.cancel()


class TLSConnection(Connection):
    """A connection whose bytes come through a stream (tls.TLSStream) instead of
    the socket: the plain Connection keeps its direct recv_into."""

    __slots__ = ("stream",)

    def __init__(self, server, stream, peer, recorder):
        Connection.__init__(self, server, stream.sock, peer, recorder)
        self.stream = stream

    def fill(self, mv):
        n = self.stream.recv_into(mv)
        if n is None:
            raise BlockingIOError()
        return n

    def close(self):
        if not self.closed:
            self.stream.close()  # close_notify (best effort), then the socket
            Connection.close(self)


def format_peer(peer):
    """Return 'host:port' (IPv6 as [host]:port) for a socket address."""
    host, port = peer[0], peer[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
