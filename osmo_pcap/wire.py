# SPDX-License-Identifier: AGPL-3.0-or-later
"""The osmo-pcap framing: 4-byte frame header + payload (doc/protocol.md#frame-header).

Encoders build frames; Decoder turns bytes arriving in any split into complete
messages with bounded memory. Violations raise FrameError (a ProtocolError)
with a stable `code` naming the rule, never a generic exception.
"""

import struct

# doc/protocol.md#message-types
LINK_HDR = 0
LINK_DATA = 1
MSG_NAMES = {LINK_HDR: "LINK_HDR", LINK_DATA: "LINK_DATA"}

# Acknowledged delivery (doc/protocol.md#acknowledged-delivery), an extension
# upstream peers never see: the server offers it, the client opts in.
ACK_OFFER = 2   # server -> client: version, flags
STREAM = 3      # client -> server: version, flags, stream id, first sequence number
ACK = 4         # server -> client: every LINK_DATA below this sequence number is stored
ACK_VERSION = 1
ACK_FLAG_SYNC = 0x01                    # ACK_OFFER: acks mean "on stable storage"
ACK_OFFER_BODY = struct.Struct("!BBH")  # version, flags, reserved
STREAM_BODY = struct.Struct("!BBH16sQ")  # version, flags, reserved, stream id, first seq
ACK_BODY = struct.Struct("!Q")
STREAM_ID_SIZE = 16
MAX_SEQ = (1 << 63) - 1
EXT_MAX_PAYLOAD = 64    # the largest extension message a peer accepts

# doc/protocol.md#frame-header: u8 type, u8 spare, u16 BE payload length
FRAME_HDR = struct.Struct("!BBH")
HEADER_SIZE = 4
# doc/protocol.md#limits: 4 + len <= 65535
MAX_FRAME = 65535
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE


class ProtocolError(Exception):
    """A peer broke the protocol. `code` names the rule, str() explains it."""

    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code


class FrameError(ProtocolError):
    """The framing layer itself is violated (length, type)."""


class TLSOnPlainError(FrameError):
    """A TLS ClientHello arrived where osmo-pcap frames were expected."""

    def __init__(self, msg_type):
        FrameError.__init__(self, "unknown-type", "unknown message type %d: a TLS "
                            "ClientHello, but the server has no tls_cert" % msg_type)


# The records inside LINK_DATA with the frame header in front, as one struct:
# a client packs a whole frame header in one call, a server reads the frame
# header and the record's caplen in one unpack. The frame length is big-endian
# whatever the records' byte order, so these structs carry it as two bytes
# (high, low). Clients send little-endian records, as upstream's x86 and ARM
# clients do.
PCAP_DATA_FRAME = struct.Struct("<BBBBIIII")
"""type, spare, len high, len low | ts_sec, ts_usec, caplen, len (pcap record)"""
EPB_DATA_FRAME = struct.Struct("<BBBBIIIIIII")
"""type, spare, len high, len low | block type, total length, interface id,
timestamp high, timestamp low, captured length, original length (pcapng EPB)"""
PCAP_FRAME_PEEK = dict((bo, struct.Struct(bo + "I8xI")) for bo in "<>")
"""By record byte order: the 4 frame header bytes as one integer, then the caplen
of a pcap LINK_DATA frame (the server's fast path reads both at once)."""
PCAP_FRAME_PEEK_SIZE = PCAP_FRAME_PEEK["<"].size


def pcap_frame_word(byteorder, caplen):
    """The frame header of a pcap LINK_DATA record of caplen, as PCAP_FRAME_PEEK reads it."""
    n = caplen + 16
    if byteorder == ">":
        return 0x01000000 | n
    return 1 | (n >> 8) << 16 | (n & 255) << 24


def encode_frame(msg_type, payload):
    """Return the frame header + payload for one message as bytes."""
    if msg_type not in MSG_NAMES:
        raise ValueError("unknown message type %r" % (msg_type,))
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes exceeds the frame limit of %d" % (n, MAX_PAYLOAD))
    return FRAME_HDR.pack(msg_type, 0, n) + bytes(payload)


def encode_link_hdr(payload):
    """Return a LINK_HDR frame carrying a pcap header or SHB + IDBs."""
    return encode_frame(LINK_HDR, payload)


def encode_link_data(payload):
    """Return a LINK_DATA frame carrying one pcap record or pcapng block."""
    return encode_frame(LINK_DATA, payload)


def frame_header(msg_type, length):
    """Return just the 4-byte header, for callers that append the payload themselves."""
    return FRAME_HDR.pack(msg_type, 0, length)


def encode_ack_offer(flags=0):
    """Return the server's ACK_OFFER frame."""
    return frame_header(ACK_OFFER, ACK_OFFER_BODY.size) + ACK_OFFER_BODY.pack(
        ACK_VERSION, flags, 0)


def encode_stream(stream_id, first_seq):
    """Return the client's STREAM frame: the next LINK_DATA carries first_seq."""
    return frame_header(STREAM, STREAM_BODY.size) + STREAM_BODY.pack(
        ACK_VERSION, 0, 0, stream_id, first_seq)


def encode_ack(seq):
    """Return an ACK frame: every LINK_DATA numbered below seq is stored."""
    return frame_header(ACK, ACK_BODY.size) + ACK_BODY.pack(seq)


def decode_stream(payload):
    """Return (stream id, first seq) of a STREAM payload; raise FrameError."""
    if len(payload) < STREAM_BODY.size:
        raise FrameError("stream-length", "STREAM of %d bytes is shorter than %d"
                         % (len(payload), STREAM_BODY.size))
    version, _, _, stream_id, first = STREAM_BODY.unpack_from(payload)
    if version < 1:
        raise FrameError("stream-version", "STREAM version %d is not supported" % version)
    if stream_id == bytes(STREAM_ID_SIZE):
        raise FrameError("stream-id", "STREAM with an all-zero stream id")
    if first > MAX_SEQ:
        raise FrameError("stream-seq", "STREAM first sequence number %d is out of range"
                         % first)
    return stream_id, first


def frame_offset(buf, count, start=0):
    """Return the offset just after `count` whole frames of buf from start."""
    pos = start
    for _ in range(count):
        pos += HEADER_SIZE + ((buf[pos + 2] << 8) | buf[pos + 3])
    return pos


def complete_frames(buf, start=0, limit=None):
    """Return (end, count): the end of the last complete frame in buf[start:limit].

    buf holds whole frames from start on (it was framed by us); only lengths are read.
    """
    end = len(buf) if limit is None else min(limit, len(buf))
    pos = start
    count = 0
    while end - pos >= HEADER_SIZE:
        stop = pos + HEADER_SIZE + ((buf[pos + 2] << 8) | buf[pos + 3])
        if stop > end:
            break
        pos = stop
        count += 1
    return pos, count


class Decoder(object):
    """Incremental decoder: feed() bytes as they arrive, get complete messages.

    feed() returns a list of (msg_type, payload) where payload is a memoryview.
    A payload is valid until the next feed() call: it points either into the
    data passed in (no copy) or into the decoder's tail buffer (copied once).
    At most one incomplete frame (<= 65535 bytes) is held between calls.
    """

    __slots__ = ("_tail", "_need", "max_payload")

    def __init__(self, max_payload=MAX_PAYLOAD):
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError("max_payload must be 0..%d" % MAX_PAYLOAD)
        self.max_payload = max_payload
        self._tail = bytearray()
        self._need = HEADER_SIZE

    @property
    def buffered(self):
        """Number of bytes held for an incomplete frame."""
        return len(self._tail)

    def _check(self, msg_type, length):
        if msg_type not in MSG_NAMES:
            raise FrameError("unknown-type", "unknown message type %d (expected 0 LINK_HDR "
                             "or 1 LINK_DATA)" % msg_type)
        if length > self.max_payload:
            raise FrameError("frame-too-long", "frame length %d exceeds the limit of %d"
                             % (length, self.max_payload))

    def feed(self, data):
        """Consume data (bytes-like); return the list of complete messages."""
        out = []
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        end = len(mv)
        pos = 0
        tail = self._tail
        if tail:
            # Complete the frame started in an earlier call.
            while pos < end:
                need = self._need - len(tail)
                take = min(need, end - pos)
                tail += mv[pos:pos + take]
                pos += take
                if len(tail) < self._need:
                    return out
                if self._need == HEADER_SIZE:
                    t, _, n = FRAME_HDR.unpack(tail)
                    self._check(t, n)
                    self._need = HEADER_SIZE + n
                    if n:
                        continue
                t = tail[0]
                # Hand out a private copy so the tail can be reused at once.
                payload = memoryview(bytes(tail[HEADER_SIZE:]))
                del tail[:]
                self._need = HEADER_SIZE
                out.append((t, payload))
                break
            else:
                return out
        unpack_from = FRAME_HDR.unpack_from
        while end - pos >= HEADER_SIZE:
            t, _, n = unpack_from(mv, pos)
            if t > 1 or n > self.max_payload:
                self._check(t, n)
            stop = pos + HEADER_SIZE + n
            if stop > end:
                break
            out.append((t, mv[pos + HEADER_SIZE:stop]))
            pos = stop
        if pos < end:
            tail += mv[pos:end]
            if len(tail) >= HEADER_SIZE:
                t, _, n = FRAME_HDR.unpack_from(tail)
                self._check(t, n)
                self._need = HEADER_SIZE + n
        return out
