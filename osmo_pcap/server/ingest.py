# SPDX-License-Identifier: AGPL-3.0-or-later
"""Receiving one client's stream: decode and validate frames, hand records on.

Parser is the decode+validate step specialised for speed: for a pcap link it
reads the frame header and the record's caplen with one unpack per frame and
checks the record inline, or a run of frames of one caplen with one unpack for
all of them; everything else goes through the same rules as
wire.Decoder + validate (tests compare the two on fuzzed streams). A LINK_HDR
is validated here too, and becomes the link for the frames that follow.

Connection owns one admitted client's transport (plain or TLS): every read
goes to the server's shared receive buffer, and the connection keeps only its
incomplete last frame.
"""

import struct
import time

from osmo_pcap import runs, validate, wire
from osmo_pcap.transport import looks_like_tls
from osmo_pcap.validate import ValidationError

_FAST = wire.PCAP_FRAME_PEEK
_FAST_SIZE = wire.PCAP_FRAME_PEEK_SIZE
_FRAME = wire.FRAME_HDR
_HDR = wire.HEADER_SIZE
_REC = wire.HEADER_SIZE + 16
_MAX = wire.MAX_PAYLOAD
LINK_DATA = wire.LINK_DATA
HEADS_MAX = 4096
RUN = runs.RUN

# (byte order, snaplen) -> {caplen: the frame header of a LINK_DATA frame of
# a pcap record of that caplen, read as an integer}; shared by connections.
_heads = {}
# byte order -> {caplen: _run_parts(byte order, caplen)}; shared by connections.
_bulk = {"<": {}, ">": {}}


def _run_parts(byteorder, caplen):
    """Return (check, split, bytes) for RUN pcap LINK_DATA frames of caplen.

    check(mv, pos) gives each frame's header word and caplen, as
    wire.PCAP_FRAME_PEEK reads them, were the RUN frames from pos all of
    that caplen; split(mv, pos) gives their payloads (the records) as bytes.
    """
    rest = "%dx" % (caplen + 4)        # the record's len field and data
    check = struct.Struct(byteorder + ("I8xI" + rest) * RUN).unpack_from
    split = struct.Struct("=" + ("4x%ds" % (caplen + 16)) * RUN).unpack_from
    return check, split, RUN * (_REC + caplen)


class Parser(object):
    """Decode and validate the frames of one connection.

    consume() works on a buffer that starts with the connection's saved tail;
    see Connection.on_readable for the calling convention. `link` is the
    validate.LinkInfo of the last accepted LINK_HDR (None before the first).
    """

    __slots__ = ("link", "max_snaplen", "tail", "streams", "_fast", "_snaplen", "_heads",
                 "_byteorder", "_bulk", "_back")

    def __init__(self, max_snaplen, streams=False):
        self.max_snaplen = max_snaplen
        self.streams = streams    # STREAM messages are welcome (acknowledged delivery offered)
        self.link = None
        self.tail = b""
        self._fast = None
        self._snaplen = 0
        self._heads = None
        self._byteorder = "<"
        self._bulk = None
        self._back = 1      # run spans taken one frame at a time after a failed try

    def _set_link(self, link):
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
            self._bulk = _bulk[link.byteorder]
        else:
            self._fast = self._heads = self._bulk = None

    def consume(self, mv, pos, end, out):
        """Decode complete frames in mv[pos:end]; append accepted LINK_DATA payloads to out.

        Stop at an incomplete frame, after a LINK_HDR frame or at a broken rule.
        Return (pos, nbytes, event): nbytes is the payload total appended to out;
        event is None (pos is where the incomplete rest starts), the
        validate.LinkInfo of an accepted LINK_HDR, now self.link (pos is after
        that frame), a StreamStart (pos is after it), or a ProtocolError (pos is
        where the offending frame starts).
        """
        append = out.append
        extend = out.extend
        nbytes = 0
        unpack = _FRAME.unpack_from
        heads = self._heads
        while True:
            if heads is not None:
                # The fast path, the server's per-packet cost: a pcap LINK_DATA
                # frame is valid when its header is the one its caplen implies
                # (type 1, length caplen + 16) and caplen is within the snaplen,
                # which is when heads knows that caplen. RUN frames of one caplen
                # are checked and split by two calls into C (_run_parts,
                # osmo_pcap.runs). Payload bytes are counted once per stretch:
                # the bytes passed minus the headers.
                start, first = pos, len(out)
                fast = self._fast
                bulk = self._bulk
                back = self._back
                limit = end - _FAST_SIZE
                learn = None
                try:
                    while pos <= limit:
                        word, caplen = fast(mv, pos)
                        if word != heads[caplen]:
                            break
                        run = bulk.get(caplen)
                        if run is None:
                            if len(bulk) >= runs.RUNS_MAX:
                                bulk.clear()
                            run = bulk[caplen] = _run_parts(self._byteorder, caplen)
                        check, split, span = run
                        stop = pos + span
                        top = limit
                        if stop <= end:
                            found = check(mv, pos)
                            if found[0::2].count(word) == RUN and \
                                    found[1::2].count(caplen) == RUN:
                                extend(split(mv, pos))
                                pos = stop
                                back = 1
                                continue
                            top, back = runs.after_failure(pos, back, span, limit)
                        while pos <= top:
                            word, caplen = fast(mv, pos)
                            if word != heads[caplen]:
                                break
                            stop = pos + _REC + caplen
                            if stop > end:
                                break
                            append(mv[pos + _HDR:stop])
                            pos = stop
                        else:
                            continue
                        break
                except KeyError:
                    learn = caplen
                self._back = back
                nbytes += pos - start - _HDR * (len(out) - first)
                if learn is not None and learn <= self._snaplen:
                    if len(heads) >= HEADS_MAX:
                        heads.clear()
                    heads[learn] = wire.pcap_frame_word(self._byteorder, learn)
                    continue
            avail = end - pos
            if avail < _HDR:
                return pos, nbytes, None
            # The general path: exactly wire.Decoder's and validate's rules.
            t, _, n = unpack(mv, pos)
            if t > 1 and not (t == wire.STREAM and self.streams):
                if self.link is None and looks_like_tls(mv[pos:min(end, pos + 6)]):
                    return pos, nbytes, wire.TLSOnPlainError(t)
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
            if t == wire.STREAM:
                try:
                    return stop, nbytes, StreamStart(*wire.decode_stream(payload))
                except wire.FrameError as e:
                    return pos, nbytes, _bare(e)
            if t != LINK_DATA:
                try:
                    link = validate.check_link_hdr(payload, self.max_snaplen)
                except ValidationError as e:
                    return pos, nbytes, _bare(e)
                self._set_link(link)
                return stop, nbytes, link
            link = self.link
            if link is None:
                return pos, nbytes, ValidationError(
                    "data-before-header", "LINK_DATA before any LINK_HDR on this connection")
            try:
                link.check_data(payload)
            except ValidationError as e:
                return pos, nbytes, _bare(e)
            append(payload)
            nbytes += n
            pos = stop


def _bare(exc):
    """Return a caught exception without its traceback, to be handed on as a value.

    Its traceback holds the frames it was raised through, and those hold the
    caller that keeps the exception: a reference cycle that lives until the
    cyclic collector runs, which the server makes rare (HACKING.md#mem-release).
    """
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


class StreamStart(object):
    """A STREAM message: the client's stream identity and its next frame's number."""

    __slots__ = ("stream_id", "first_seq")

    def __init__(self, stream_id, first_seq):
        self.stream_id = stream_id
        self.first_seq = first_seq


class Connection(object):
    """One admitted TCP or TLS connection of a configured client.

    The server registers on_readable() with the transport; callbacks go to the
    server: records(), link_header(), reject() and drop().
    """

    __slots__ = ("server", "transport", "peer", "recorder", "parser", "closed", "label",
                 "last_rx", "header_timer", "frames", "streaming", "next_in", "want",
                 "acked_durable", "wbuf", "ack_due", "live")

    def __init__(self, server, transport, peer, recorder, max_snaplen, streams=False):
        self.server = server
        self.transport = transport
        self.peer = peer
        self.recorder = recorder
        self.parser = Parser(max_snaplen, streams)
        self.closed = False
        self.label = "client %s (%s)" % (recorder.name, format_peer(peer))
        self.last_rx = time.monotonic()
        self.header_timer = None
        self.frames = 0            # LINK_DATA frames received
        self.streaming = False     # the client named its stream: acknowledged delivery
        # While streaming: the number of the next frame to arrive, and of the next
        # frame not stored yet; frames below `want` arrive again after a reconnect.
        self.next_in = self.want = 0
        self.acked_durable = 0     # recorder.durable when the last ACK was made
        self.wbuf = bytearray()    # our messages the transport has not taken yet
        self.ack_due = None        # an ACK waiting behind wbuf (only the newest counts)
        self.live = False          # promoted: the client's connection (doc/protocol.md#takeover)

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
            n = self.transport.recv_into(mv[start:])
        except OSError as e:
            server.drop(self, "read error: %s" % (e.strerror or e))
            return
        if n is None:
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
                self.frames += len(out)
                if self.streaming:
                    nbytes -= self._number(out)
                if out:
                    server.records(self, out, nbytes)
                    if self.closed:
                        return
            if event is None:
                break
            if isinstance(event, wire.ProtocolError):
                server.reject(self, event)
                return
            if isinstance(event, StreamStart):
                if not server.stream_start(self, event):
                    return
                continue
            server.link_header(self, event)
        parser.tail = bytes(mv[pos:end]) if pos < end else b""
        if self.streaming and recorder.durable != self.acked_durable:
            server.acknowledge(self)

    def _number(self, out):
        """Number the frames of out; drop those stored already; return their bytes."""
        n = len(out)
        k = self.want - self.next_in
        self.next_in += n
        if k <= 0:
            self.want += n
            return 0
        k = min(k, n)
        self.want += n - k
        self.recorder.counters["duplicates"] += k
        nbytes = sum(len(p) for p in out[:k])
        del out[:k]
        return nbytes

    def send(self, data):
        """Queue one of our messages (ACK_OFFER, ACK) for the client."""
        wbuf = self.wbuf
        if not wbuf:
            try:
                n = self.transport.send(data)
            except OSError:
                return   # the read side notices and drops the connection
            if n == len(data):
                return
            data = memoryview(data)[n:]
        if len(wbuf) > 4096:
            return   # a client that reads nothing gets no more (ACKs are cumulative)
        wbuf += data
        self.transport.set_writer(self._flush)

    def send_ack(self, seq):
        """Acknowledge every frame below seq (later, if earlier bytes are still queued)."""
        if self.wbuf:
            self.ack_due = seq
            return
        self.send(wire.encode_ack(seq))

    def _flush(self):
        wbuf = self.wbuf
        try:
            n = self.transport.send(wbuf)
        except OSError:
            n = len(wbuf)   # gone: the reader finds out
        del wbuf[:n]
        if not wbuf:
            self.transport.set_writer(None)
            if self.ack_due is not None:
                seq, self.ack_due = self.ack_due, None
                self.send(wire.encode_ack(seq))

    def close(self):
        """Close the transport and let go of buffered bytes and timers."""
        if not self.closed:
            self.closed = True
            self.transport.close()
            self.parser.tail = b""
            self.wbuf = bytearray()
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None


def format_peer(peer):
    """Return 'host:port' (IPv6 as [host]:port) for a socket address."""
    host, port = peer[0], peer[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
