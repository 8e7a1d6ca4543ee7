# SPDX-License-Identifier: AGPL-3.0-or-later
"""A ZeroMQ PUB endpoint speaking ZMTP 3.x with the NULL mechanism, stdlib only.

Implements the publisher side of RFC 23/ZMTP (3.0) and 37/ZMTP (3.1) on the
server's event loop: greeting, READY with Socket-Type PUB, subscriptions from
SUB/XSUB peers (3.0 data frames prefixed 0x01/0x00, 3.1 SUBSCRIBE/CANCEL
commands), PING/PONG, multi-part messages, topic prefix filtering on the
publisher side, and one bounded byte queue per subscriber (excess dropped and
counted). Nothing a subscriber sends can make the publisher block or grow
without bound.
"""

import struct
import time

from osmo_pcap import log
from osmo_pcap.server import fanout
from osmo_pcap.ini import parse_host_port

# RFC 23 greeting: signature, version, mechanism, as-server, filler (64 bytes).
GREETING_SIZE = 64
VERSION = (3, 1)
MECHANISM_NULL = b"NULL"
GREETING = (b"\xff" + b"\0" * 8 + b"\x7f" + bytes(VERSION) + MECHANISM_NULL.ljust(20, b"\0")
            + b"\0" + b"\0" * 31)

# RFC 23 frame flags
FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04

# Socket types a PUB may talk to (RFC 29/PUBSUB).
PEER_TYPES = (b"SUB", b"XSUB")

# Limits on what a subscriber may send us: commands and subscriptions are small.
MAX_IN_FRAME = 8192
MAX_SUBSCRIPTIONS = 256
# Longer prefixes cannot match any topic the server publishes: not stored.
MAX_PREFIX = 1024
HANDSHAKE_TIMEOUT = 10.0
MAX_SUBSCRIBERS = 64

_LONG = struct.Struct("!Q")
_U32 = struct.Struct("!I")


class ZmtpError(Exception):
    """A subscriber broke the protocol; str() says how."""


# ------------------------------------------------------------ encoding

def frame_header(size, more=False, command=False):
    """Return the flags and size bytes that precede a frame body of size bytes."""
    flags = (FLAG_MORE if more else 0) | (FLAG_COMMAND if command else 0)
    if size <= 255:
        return bytes((flags, size))
    return bytes((flags | FLAG_LONG,)) + _LONG.pack(size)


def encode_frame(body, more=False, command=False):
    """Return one complete frame carrying body."""
    return frame_header(len(body), more, command) + bytes(body)


def encode_message(parts):
    """Return the frames of a multi-part message (MORE set on all but the last)."""
    last = len(parts) - 1
    return b"".join(encode_frame(p, i < last) for i, p in enumerate(parts))


def encode_command(name, data=b""):
    """Return a command frame: name length, name, data."""
    return encode_frame(bytes((len(name),)) + name + data, command=True)


def encode_properties(props):
    """Return metadata as RFC 23 properties: short name, 4-byte value length, value."""
    out = []
    for name, value in props:
        out.append(bytes((len(name),)) + name + _U32.pack(len(value)) + value)
    return b"".join(out)


def parse_properties(data):
    """Return {name (lower-case bytes): value} from READY metadata; raise ZmtpError."""
    props = {}
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos]
        pos += 1
        if pos + n + 4 > end:
            raise ZmtpError("truncated property name in READY")
        name = bytes(data[pos:pos + n]).lower()
        pos += n
        vlen = _U32.unpack_from(data, pos)[0]
        pos += 4
        if pos + vlen > end:
            raise ZmtpError("property %r value runs past the READY command" % name)
        props[name] = bytes(data[pos:pos + vlen])
        pos += vlen
    return props


READY = encode_command(b"READY", encode_properties([(b"Socket-Type", b"PUB")]))


def parse_endpoint(text):
    """Return (host, port) from 'tcp://HOST:PORT', 'tcp://*:PORT' or 'HOST:PORT'."""
    t = text.strip()
    if "://" in t:
        scheme, _, t = t.partition("://")
        if scheme != "tcp":
            raise ValueError("only tcp:// endpoints are supported, got %r" % text)
    if t.startswith("*:"):
        return "0.0.0.0", parse_host_port(t[2:])[1]
    return parse_host_port(t)


# ------------------------------------------------------------ subscribers

class Subscriber(object):
    """One connected peer: handshake state, subscriptions, bounded send queue."""

    def __init__(self, pub, sock, peer):
        self.pub = pub
        self.peer = peer
        self.name = fanout.format_peer(peer)
        self.sender = fanout.Sender(pub.loop, sock, pub.queue_max, pub._send_failed)
        self.inbuf = bytearray()
        self.greeted = False
        self.ready = False
        self.minor = 0
        self.subs = {}          # prefix -> reference count, as libzmq counts them
        self.matches = {}       # topic -> bool, cleared when subs change
        self.in_multipart = False
        self.timer = None
        self.seq = 0            # accept order, to find the oldest handshake

    # -- subscriptions
    def wants(self, topic):
        """Return True if a subscription is a prefix of topic."""
        m = self.matches.get(topic)
        if m is None:
            m = any(topic.startswith(p) for p in self.subs)
            if len(self.matches) >= 4096:
                self.matches.clear()
            self.matches[topic] = m
        return m

    def subscribe(self, prefix):
        prefix = bytes(prefix)
        if len(prefix) > MAX_PREFIX:
            return
        if prefix not in self.subs and len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise ZmtpError("more than %d subscriptions" % MAX_SUBSCRIPTIONS)
        self.subs[prefix] = self.subs.get(prefix, 0) + 1
        self.matches.clear()
        self.pub.log.debug("zmq: %s subscribes to %r", self.name, prefix)

    def cancel(self, prefix):
        prefix = bytes(prefix)
        if len(prefix) > MAX_PREFIX:
            return
        n = self.subs.get(prefix)
        if n is None:
            return
        if n > 1:
            self.subs[prefix] = n - 1
        else:
            del self.subs[prefix]
        self.matches.clear()
        self.pub.log.debug("zmq: %s cancels %r", self.name, prefix)

    # -- input
    def feed(self, data):
        """Consume bytes from the peer; raise ZmtpError on a protocol violation."""
        buf = self.inbuf
        buf += data
        if not self.greeted:
            self._greeting(buf)
            if not self.greeted:
                return
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            flags = buf[pos]
            if flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND):
                raise ZmtpError("reserved frame flag bits set (0x%02x)" % flags)
            if flags & FLAG_LONG:
                if end - pos < 9:
                    break
                size = _LONG.unpack_from(buf, pos + 1)[0]
                start = pos + 9
            else:
                size = buf[pos + 1]
                start = pos + 2
            if size > MAX_IN_FRAME:
                raise ZmtpError("frame of %d bytes from a subscriber (limit %d)"
                                % (size, MAX_IN_FRAME))
            if end - start < size:
                break
            body = bytes(buf[start:start + size])
            pos = start + size
            if flags & FLAG_COMMAND:
                self._command(body)
            else:
                self._data(body, flags & FLAG_MORE)
            if self.sender.closed:
                return
        del buf[:pos]

    def _greeting(self, buf):
        n = len(buf)
        if n >= 1 and buf[0] != 0xFF or n >= 10 and not buf[9] & 1:
            raise ZmtpError("not a ZMTP 3 peer (no ZMTP signature)")
        if n >= 11 and buf[10] < 3:
            raise ZmtpError("peer speaks ZMTP %d; version 3 is required" % buf[10])
        if n < GREETING_SIZE:
            return
        mech = bytes(buf[12:32]).rstrip(b"\0")
        if mech != MECHANISM_NULL:
            raise ZmtpError("security mechanism %r is not supported (only NULL)"
                            % mech.decode("ascii", "replace"))
        self.minor = buf[11] if buf[10] == 3 else 1
        del buf[:GREETING_SIZE]
        self.greeted = True

    def _command(self, body):
        if not body or body[0] + 1 > len(body):
            raise ZmtpError("malformed command frame")
        name = body[1:1 + body[0]]
        data = body[1 + body[0]:]
        if not self.ready:
            if name != b"READY":
                raise ZmtpError("expected READY, got command %r" % name)
            props = parse_properties(data)
            stype = props.get(b"socket-type", b"")
            if stype not in PEER_TYPES:
                self.sender.push(encode_command(b"ERROR", bytes((17,)) + b"invalid socket type"))
                raise ZmtpError("peer socket type %r cannot talk to PUB"
                                % stype.decode("ascii", "replace"))
            self.ready = True
            self.pub._subscriber_ready(self)
        elif name == b"SUBSCRIBE":
            self.subscribe(data)
        elif name == b"CANCEL":
            self.cancel(data)
        elif name == b"PING":
            # RFC 37: TTL (2 bytes) then up to 16 bytes of context echoed in PONG.
            self.sender.queue(encode_command(b"PONG", data[2:18]))
        elif name == b"ERROR":
            raise ZmtpError("peer sent ERROR: %r" % bytes(data[1:]))
        # Unknown commands are ignored (RFC 23 allows extensions).

    def _data(self, body, more):
        if not self.ready:
            raise ZmtpError("message before the handshake finished")
        # A subscription is a one-frame message; frames of longer messages (an
        # XSUB may send some) are not subscriptions and are skipped.
        first = not self.in_multipart
        self.in_multipart = bool(more)
        if not first or more or not body:
            return
        if body[0] == 1:
            self.subscribe(body[1:])
        elif body[0] == 0:
            self.cancel(body[1:])


# ------------------------------------------------------------ publisher

class Publisher(object):
    """A PUB endpoint: accepts SUB peers and sends them the messages they want."""

    def __init__(self, loop, host, port, queue_max=4 << 20, max_subscribers=MAX_SUBSCRIBERS,
                 logger=None):
        self.loop = loop
        self.queue_max = queue_max
        self.max_subscribers = max_subscribers
        self.log = logger or log.get("zmq")
        self.sock = fanout.listen(host, port)
        self.address = self.sock.getsockname()[:2]
        self.pending = set()    # connected, handshake not finished
        self.ready = []         # handshake done: these receive messages
        self._by_sender = {}
        self.dropped = 0
        self._seq = 0
        self._full_log = log.RateLimiter(10.0)
        loop.add_reader(self.sock, self._accept)

    @property
    def port(self):
        return self.address[1]

    def has_subscribers(self):
        """Return True if any subscriber could receive a message."""
        return bool(self.ready)

    def _accept(self):
        for conn, peer in fanout.accept_all(self.sock, self._exhausted):
            if len(self.pending) + len(self.ready) >= self.max_subscribers:
                # Peers that connect and say nothing must not lock subscribers out
                # for HANDSHAKE_TIMEOUT: the oldest unfinished handshake makes room.
                oldest = min(self.pending, key=lambda s: s.seq) if self.pending else None
                held = self._full_log.ok("full")
                if held is not None:
                    self.log.warning("zmq: %d subscribers connected: %s%s",
                                     self.max_subscribers,
                                     "closing the oldest unfinished handshake (%s) for %s"
                                     % (oldest.name, fanout.format_peer(peer)) if oldest
                                     else "refusing %s" % fanout.format_peer(peer),
                                     " (%d more suppressed)" % held if held else "")
                if oldest is None:
                    conn.close()
                    continue
                self._drop(oldest, "handshake not finished, room needed", level=10)
            sub = Subscriber(self, conn, peer)
            self._seq += 1
            sub.seq = self._seq
            self._by_sender[sub.sender] = sub
            self.pending.add(sub)
            self.loop.add_reader(conn, lambda s=sub: self._readable(s))
            sub.sender.push(GREETING + READY)
            sub.timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout, sub)
            self.log.debug("zmq: connection from %s", sub.name)

    def _exhausted(self, err):
        self.log.warning("zmq: accept failed: %s; pausing accepts for %gs",
                         err.strerror or err, fanout.ACCEPT_PAUSE)
        fanout.pause_accepting(self.loop, self.sock, self._accept)

    def _handshake_timeout(self, sub):
        if sub in self.pending:
            self._drop(sub, "no ZMTP handshake within %d s" % HANDSHAKE_TIMEOUT)

    def _readable(self, sub):
        try:
            data = sub.sender.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(sub, e.strerror or str(e))
            return
        if not data:
            self._drop(sub, "disconnected")
            return
        try:
            sub.feed(data)
        except ZmtpError as e:
            self._drop(sub, "protocol error: %s" % e, flush=True)

    def _subscriber_ready(self, sub):
        self.pending.discard(sub)
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        self.ready.append(sub)
        self.log.info("zmq: subscriber %s connected (ZMTP 3.%d)", sub.name, sub.minor)

    def _send_failed(self, sender, reason):
        sub = self._by_sender.get(sender)
        if sub is not None:
            self._drop(sub, reason)

    def _drop(self, sub, reason, flush=False, level=20):
        if sub.sender.closed:
            return
        if flush:
            # Let an ERROR command reach the peer if the socket takes it now.
            try:
                sub.sender.sock.send(sub.sender.out)
            except OSError:
                pass
        if sub.timer is not None:
            sub.timer.cancel()
        self.pending.discard(sub)
        if sub in self.ready:
            self.ready.remove(sub)
        self._by_sender.pop(sub.sender, None)
        s = sub.sender
        self.log.log(level, "zmq: subscriber %s gone (%s); %d messages (%d bytes) dropped "
                     "for it", sub.name, reason, s.dropped, s.dropped_bytes)
        s.close()

    def publish(self, parts):
        """Send a multi-part message (bytes-like parts, topic first) to subscribers."""
        if not self.ready:
            return
        topic = bytes(parts[0])
        data = None
        for sub in self.ready:
            if not sub.wants(topic):
                continue
            if data is None:
                data = encode_message(parts)
            if not sub.sender.queue(data):
                self.dropped += 1

    def publish_frames(self, topic, frames, size):
        """Send an already encoded message (frames: list of bytes-like, size bytes).

        The server's data path uses this with a cached topic + header prefix.
        """
        for sub in self.ready:
            if not sub.wants(topic):
                continue
            s = sub.sender
            if len(s.out) + size > s.limit:
                s.drop(size)
                self.dropped += 1
                continue
            for f in frames:
                s.out += f
            s.push(b"")

    def subscribers(self):
        """Return [(name, subscriptions, dropped, dropped_bytes)] for reports and tests."""
        return [(s.name, sorted(s.subs), s.sender.dropped, s.sender.dropped_bytes)
                for s in self.ready]

    def close(self, flush_seconds=1.0):
        """Send what is queued for up to flush_seconds in all, then close everything."""
        deadline = time.monotonic() + flush_seconds
        for sub in list(self.ready):
            sub.sender.flush_until(deadline)
        for sub in list(self.ready) + list(self.pending):
            self._drop(sub, "publisher closed")
        self.loop.remove(self.sock)
        self.sock.close()
