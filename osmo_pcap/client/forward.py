# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forwarding captured frames to one osmo-pcap server: the Forwarder.

A Forwarder keeps the stream of frames for its server in order: a bounded
memory queue of chunks, and behind it, when configured, the spool on disk.
Every LINK_DATA frame gets the next sequence number of the stream when it is
accepted; frames that find no room get none and are counted by reason.

On every connection (plain TCP or TLS, see osmo_pcap/transport.py) the
Forwarder first sends the link header of the oldest frame it still holds.
A server of this project then offers acknowledged delivery (ACK_OFFER); with
`ack = auto` the Forwarder names its stream and the sequence number of that
oldest frame (STREAM) and keeps every frame until the server acknowledges it
as stored (ACK). After a reconnect it sends again from the first frame not
acknowledged, and a server that stored part of that already skips it. A
server that offers nothing within HELLO_WAIT (upstream osmo-pcap) gets the
plain protocol, byte for byte as upstream clients send it: frames are let go
once the kernel took them. doc/protocol.md#acknowledged-delivery has the
messages and the guarantees.

The client pushes every change of the link header in with set_link_hdr();
frames keep the header they were captured under, and a LINK_HDR frame goes
out where it changes.
"""

import collections
import os
import random
import socket
import time

from osmo_pcap import wire
from osmo_pcap.client.spool import Spool
from osmo_pcap.transport import RECV_CHUNK, Dial, PlainTransport, why
from osmo_pcap.wire import complete_frames, frame_offset

CHUNK = 256 * 1024        # memory chunks grow up to this before a new one starts
CHUNK_SPAN = 1.0          # ... and for at most this many seconds (max_age is per chunk)
SEND_MAX = 1 << 20        # bytes handed to one send() call
LOSS_LOG_INTERVAL = 10.0
STABLE_UP = 10.0          # seconds up before the back-off starts again from its minimum
HELLO_WAIT = 2.0          # how long a new connection waits for the server's ACK_OFFER
WATCH_INTERVAL = 1.0      # how often acknowledgement time-outs and frame ages are checked

IDLE, CONNECTING, UP, WAITING, STOPPED = "idle", "connecting", "up", "waiting", "stopped"
# How a connection delivers: still waiting for an offer, acknowledged, or plain.
HELLO, ACKED, PLAIN = "hello", "acked", "plain"

# Why frames were given up (counters "lost:<reason>", each also in client:queue_err).
LOSS_REASONS = ("queue_full", "spool_full", "too_old", "exit")
_LOSS_TEXT = {"queue_full": "queue full", "spool_full": "spool full or failing",
              "too_old": "older than max_age", "exit": "not delivered at exit"}


def new_server_counters():
    """Per-server counters (upstream's names where upstream has one)."""
    c = {"server:connect": 0, "server:connected": 0, "client:queue_err": 0,
         "client:write_err": 0, "sent:bytes": 0, "sent:frames_lost": 0,
         "spool:dropped_pkts": 0, "ipip:skipped": 0, "ipip:sent": 0,
         "ack:mode": 0, "ack:acked": 0, "ack:resent": 0, "ack:timeouts": 0,
         "sent:pkts": 0}
    for reason in LOSS_REASONS:
        c["lost:" + reason] = 0
    return c


def resolve(host, port):
    """Return the address to dial for host (a name or an address); raise OSError."""
    info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    addr = info[4]
    if info[0] == socket.AF_INET6 and len(addr) > 3 and addr[3]:
        return host   # a scoped IPv6 address: its zone only survives as text
    return addr[0]


def _secs(delay):
    return "%.1fs" % delay


def tls_wrapper(tls):
    """Return wrap(loop, sock) making the client side of TLS with tlsconfig.ClientTLS tls."""
    from osmo_pcap.tls import TLSTransport

    def wrap(loop, sock):
        return TLSTransport(loop, sock, tls.context, server_hostname=tls.hostname)
    return wrap


class Chunk(object):
    """Consecutive LINK_DATA frames captured under one link header.

    first_seq numbers the first frame; token is set when the frames came from
    the spool (committed there once they are delivered); last is when the
    newest frame was added (monotonic seconds), for max_age.
    """

    __slots__ = ("data", "hdr", "first_seq", "count", "token", "first", "last")

    def __init__(self, data, hdr, first_seq, count, token=None, now=0.0):
        self.data = data
        self.hdr = hdr
        self.first_seq = first_seq
        self.count = count
        self.token = token
        self.first = self.last = now

    @property
    def end_seq(self):
        return self.first_seq + self.count


class Forwarder(object):
    """One [server NAME] of protocol osmo-pcap: its stream, connection and back-off.

    dial is transport.Dial or a stand-in with its signature (tests); clock
    gives wall-clock seconds (spool file ages).
    """

    def __init__(self, cfg, loop, logger, dial=Dial, rng=random.random, clock=time.time):
        self.cfg = cfg             # the client.config.ServerEntry
        self.name = cfg.name
        self.loop = loop
        self.log = logger
        self.dial = dial
        self.wrap = PlainTransport if cfg.tls is None else tls_wrapper(cfg.tls)
        self.rng = rng
        self.clock = clock
        self.link_hdr = None       # the current header, pushed in by set_link_hdr()
        self.counters = new_server_counters()
        self.state = IDLE
        self.mode = None           # HELLO, ACKED or PLAIN while connected
        self.transport = None
        self.dialing = None
        self.rbuf = bytearray(RECV_CHUNK)
        self.rtail = bytearray()   # an incomplete message from the server
        self._out = bytearray()    # LINK_HDR and STREAM not yet taken by the transport
        self.chunks = collections.deque()
        self.qbytes = 0
        self.send_idx = 0          # the chunk being sent ...
        self.send_off = 0          # ... and the offset in it
        self.sent_hdr = None       # the last LINK_HDR sent on this connection
        self.acked = 0             # sequence number of the oldest frame not let go
        self.waiting_since = None  # monotonic time acknowledgements are awaited from
        self.delay = cfg.reconnect_min
        self.up_since = 0.0
        self.timer = None
        self.hello_timer = None
        self.watch = None
        self.lost_unlogged = dict((r, 0) for r in LOSS_REASONS)
        self.loss_timer = None
        self.spool = None
        if cfg.spool_dir:
            self.spool = Spool(os.path.join(cfg.spool_dir, cfg.name), cfg.spool_max, logger)
            self.stream_id = self.spool.stream_id
            self.next_seq = self.spool.next_seq_on_disk()
        else:
            self.stream_id = os.urandom(wire.STREAM_ID_SIZE)
            self.next_seq = 0
        self.acked = self.next_seq   # the oldest frame held (memory, then spool)
        self.send_seq = 0            # acknowledged mode: the number the server expects next
        self.piece = min(1 << 20, cfg.queue_size // 4)
        self.prefix = "server %s (%s:%s)" % (cfg.name, cfg.host, cfg.port)
        self.address = None        # the address last dialled (host resolved)
        # on_address(forwarder, address) runs before each connection attempt, with
        # the address about to be dialled: the client keeps its own traffic out of
        # the capture with it (detect_loop).
        self.on_address = None

    # -------------------------------------------------------------- state
    def start(self):
        """Begin connecting (once the link header is known)."""
        if self.state in (IDLE, STOPPED) and self.cfg.enabled:
            self.state = WAITING
            if self.watch is None:
                self.watch = self.loop.call_every(WATCH_INTERVAL, self._watch)
            self._attempt()

    def _attempt(self):
        self.timer = None
        if self.state != WAITING:
            return
        self.counters["server:connect"] += 1
        c = self.cfg
        try:
            # Resolved here, once per attempt: the address dialled is the one the
            # capture excludes, also when a name has several addresses.
            host = resolve(c.host, c.port)
        except OSError as e:
            self.log.warning("%s: cannot resolve %s: %s; next attempt in %s", self.prefix,
                             c.host, why(e), _secs(self._schedule_retry()))
            return
        if host != self.address:
            self.address = host
            if self.on_address is not None:
                self.on_address(self, host)
        try:
            self.dialing = self.dial(self.loop, host, c.port, c.source_ip, self.wrap,
                                     self._established, self._dial_failed, c.ack_timeout)
        except OSError as e:
            # Synchronous failures (no route, bad source_ip) are retried too.
            self.log.warning("%s: cannot connect: %s; next attempt in %s", self.prefix,
                             why(e), _secs(self._schedule_retry()))
            return
        self.state = CONNECTING

    def _dial_failed(self, reason, error):
        self.dialing = None
        self._lost(reason)

    def _schedule_retry(self):
        """Plan the next attempt; return its delay in seconds."""
        self.state = WAITING
        delay = self.delay * (0.75 + 0.5 * self.rng())
        self.delay = min(self.delay * 2, self.cfg.reconnect_max)
        self.timer = self.loop.call_later(delay, self._attempt)
        return delay

    def _established(self, transport):
        self.dialing = None
        self.transport = transport
        self.state = UP
        self.counters["server:connected"] = 1
        self.up_since = self.loop.clock()
        tls = self.cfg.tls
        if tls is not None:
            self.log.info("%s: connected with %s, %s", self.prefix, transport.version(),
                          "server certificate verified for %s" % tls.hostname if tls.verify
                          else "server certificate NOT verified (tls_verify = no)")
        else:
            self.log.info("%s: connected", self.prefix)
        self.rtail = bytearray()
        self.send_idx = self.send_off = 0
        if not self.chunks:
            self._refill()
        hdr = self.chunks[0].hdr if self.chunks else self.link_hdr
        self.sent_hdr = hdr
        transport.set_reader(self._on_readable)
        # LINK_HDR first, whatever follows: it tells a server that shares its port
        # with TLS that this is osmo-pcap, and upstream servers expect it.
        self._out = bytearray(wire.encode_link_hdr(hdr))
        if self.cfg.ack == "no":
            self._begin(PLAIN)
        else:
            self.mode = HELLO
            self.hello_timer = self.loop.call_later(HELLO_WAIT, self._hello_timeout)
            self._send()

    def _hello_timeout(self):
        self.hello_timer = None
        if self.mode == HELLO:
            self.log.info("%s: no offer of acknowledged delivery within %gs: plain "
                          "protocol (an upstream osmo-pcap server?)", self.prefix, HELLO_WAIT)
            self._begin(PLAIN)

    def _begin(self, mode):
        """The connection's mode is settled: start sending the stream."""
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None
        self.mode = mode
        self.counters["ack:mode"] = 1 if mode == ACKED else 0
        if mode == ACKED:
            # The stream restarts at the oldest frame held, whatever was given up
            # before it (the server counts such a gap).
            first = self.chunks[0].first_seq if self.chunks else self.next_seq
            self.acked = self.send_seq = first
            self._out += wire.encode_stream(self.stream_id, first)
            self.waiting_since = None
            self.log.info("%s: acknowledged delivery, stream from frame %d", self.prefix,
                          first)
        self._send()

    def _lost(self, why_):
        """Tear the connection (or the attempt) down and schedule a new attempt."""
        was_up = self.state == UP
        if was_up and self.loop.clock() - self.up_since >= STABLE_UP:
            self.delay = self.cfg.reconnect_min   # a server that hangs up at once backs off
        self._rewind()
        self._close_transport()
        self.counters["server:connected"] = 0
        delay = _secs(self._schedule_retry())
        if was_up:
            self.log.warning("%s: connection lost: %s; reconnecting in %s", self.prefix,
                             why_, delay)
        else:
            self.log.warning("%s: %s; next attempt in %s", self.prefix, why_, delay)

    def _close_transport(self):
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None
        if self.dialing is not None:
            self.dialing.cancel()
            self.dialing = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.mode = None
        self.counters["ack:mode"] = 0
        self.waiting_since = None

    def _rewind(self):
        """After a loss: the next connection starts at the oldest frame still held.

        Acknowledged mode let nothing go that the server did not confirm; plain
        mode let go every frame the kernel took whole, and a frame cut in the
        middle goes out again whole (the server discarded its beginning).
        """
        q = self.chunks
        if q and self.mode == ACKED:
            head = q[0]
            done = self.acked - head.first_seq
            if 0 < done < head.count:
                self._release_front(head, done, frame_offset(head.data, done))
            resent = sum(c.count for c in list(q)[:self.send_idx])
            if self.send_idx < len(q) and self.send_off:
                resent += complete_frames(q[self.send_idx].data, 0, self.send_off)[1]
            self.counters["ack:resent"] += resent
        elif q and self.mode == PLAIN and self.send_off:
            head = q[0]
            end, n = complete_frames(head.data, 0, self.send_off)
            if n:
                self.counters["sent:pkts"] += n
                self._release_front(head, n, end)
        self.send_idx = self.send_off = 0

    def _release_front(self, head, n, nbytes):
        """Let the first n frames (nbytes) of the head chunk go."""
        del head.data[:nbytes]
        head.first_seq += n
        head.count -= n
        self.qbytes -= nbytes
        self.acked = head.first_seq
        if not head.count:
            self.chunks.popleft()
            if head.token is not None:
                self.spool.commit(head.token)

    # -------------------------------------------------------------- data
    def enqueue(self, data, count):
        """Take count complete LINK_DATA frames (a batch from one capture round)."""
        if not count:
            return
        spool = self.spool
        if spool is not None and (spool.pending or self.state != UP):
            self._to_spool(data, count)
            return
        room = self.cfg.queue_size - self.qbytes
        n = len(data)
        if n > room:
            if spool is not None:
                self._to_spool(data, count)
                return
            end, fit = complete_frames(data, 0, room)
            self._count_lost("queue_full", count - fit)
            if not fit:
                return
            data = memoryview(data)[:end]
            n, count = end, fit
        now = self.loop.clock()
        q = self.chunks
        tail = q[-1] if q else None
        # A chunk sent whole (acknowledged mode keeps it until the ACK) never grows.
        if (tail is not None and tail.token is None and tail.hdr == self.link_hdr
                and len(tail.data) < CHUNK and len(q) > self.send_idx
                and now - tail.first < CHUNK_SPAN):
            tail.data += data
            tail.count += count
            tail.last = now
        else:
            q.append(Chunk(bytearray(data), self.link_hdr, self.next_seq, count, None, now))
        self.next_seq += count
        self.qbytes += n
        if self.state == UP and self.mode != HELLO:
            self._send()

    def _to_spool(self, data, count):
        before = self.spool.dropped_frames
        self.spool.append(self.link_hdr, data, self.next_seq, count)
        self.next_seq += count
        self._count_lost("spool_full", self.spool.dropped_frames - before)

    def set_link_hdr(self, hdr):
        """Take the link header for the frames enqueued from now on.

        Frames keep the header they were captured under: a LINK_HDR frame goes
        out before the first frame of a new header.
        """
        self.link_hdr = hdr

    def _count_lost(self, reason, n):
        if n <= 0:
            return
        self.counters["lost:" + reason] += n
        self.counters["client:queue_err"] += n
        self.lost_unlogged[reason] += n
        if self.loss_timer is None:
            self.loss_timer = self.loop.call_later(0, self._log_loss)

    def _log_loss(self):
        parts = ["%d %s" % (n, _LOSS_TEXT[r]) for r, n in self.lost_unlogged.items() if n]
        if parts:
            self.log.warning("%s: packets given up: %s (lost for good; totals in the "
                             "lost:* counters)", self.prefix, ", ".join(parts))
            for r in self.lost_unlogged:
                self.lost_unlogged[r] = 0
            self.loss_timer = self.loop.call_later(LOSS_LOG_INTERVAL, self._log_loss)
        else:
            self.loss_timer = None

    def _send(self):
        """Send what the transport takes: handshake bytes, then the stream in order."""
        t = self.transport
        failed = None
        try:
            out = self._out
            if out:
                n = t.send(out)
                del out[:n]
                if out:
                    t.set_writer(self._send)
                    return
            if self.mode == HELLO:
                t.set_writer(None)
                return
            self._send_stream(t)
        except OSError as e:
            failed = why(e)
        if failed is not None:
            # Outside the except block: its traceback holds the frames that got a
            # view of a chunk, and _lost() resizes chunks.
            self.counters["client:write_err"] += 1
            self._lost("send failed: %s" % failed)
            return
        more = self.send_idx < len(self.chunks) or self._out
        t.set_writer(self._send if more else None)

    def _send_stream(self, t):
        q = self.chunks
        plain = self.mode == PLAIN
        while True:
            if self.send_idx >= len(q):
                if not self._refill():
                    return
                continue
            chunk = q[self.send_idx]
            if not self.send_off:
                # Before a chunk: a header change needs its LINK_HDR, frames given up
                # in between (the spool overflowed) a STREAM naming the next number.
                frame = b""
                if chunk.hdr != self.sent_hdr:
                    self.sent_hdr = chunk.hdr
                    frame = wire.encode_link_hdr(chunk.hdr)
                if not plain and chunk.first_seq != self.send_seq:
                    self.send_seq = chunk.first_seq
                    frame += wire.encode_stream(self.stream_id, chunk.first_seq)
                if frame:
                    n = t.send(frame)
                    if n < len(frame):
                        self._out += frame[n:]
                        return
            data = chunk.data
            with memoryview(data) as mv:
                n = t.send(mv[self.send_off:self.send_off + SEND_MAX])
            if not n:
                return
            self.counters["sent:bytes"] += n
            self.send_off += n
            if not plain and self.waiting_since is None:
                self.waiting_since = self.loop.clock()
            if self.send_off < len(data):
                continue
            # the whole chunk is out
            if plain:
                self.counters["sent:pkts"] += chunk.count
                self._release_front(chunk, chunk.count, len(data))
            else:
                self.send_idx += 1
                self.send_seq = chunk.end_seq
            self.send_off = 0

    def _refill(self):
        """Load the next spool piece into memory; return True if one was loaded."""
        spool = self.spool
        if spool is None or not spool.pending:
            return False
        if self.chunks and self.qbytes + self.piece > self.cfg.queue_size:
            return False   # wait until acknowledgements free memory
        piece = spool.next_piece(self.piece)
        if piece is None:
            return False
        hdr, frames, first_seq, count, token = piece
        self.chunks.append(Chunk(bytearray(frames), hdr, first_seq, count, token,
                                 self.loop.clock()))
        self.qbytes += len(frames)
        return True

    # -------------------------------------------------------------- server messages
    def _on_readable(self):
        """Read what the server says: ACK_OFFER and ACK (nothing, upstream)."""
        t = self.transport
        failed = None
        try:
            while t is not None and t is self.transport:
                n = t.recv_into(self.rbuf)
                if n is None:
                    return
                if n == 0:
                    failed = "closed by the server"
                    break
                if self.mode == PLAIN:
                    continue  # nothing a server says matters to the plain protocol
                failed = self._messages(memoryview(self.rbuf)[:n], t)
                if failed is not None:
                    break
        except OSError as e:
            failed = "read failed: %s" % why(e)
        if failed is not None and t is self.transport:
            self._lost(failed)

    def _messages(self, data, t):
        """Decode server messages; return a reason to hang up, or None."""
        buf = self.rtail
        buf += data
        pos = 0
        while len(buf) - pos >= wire.HEADER_SIZE and t is self.transport:
            mtype, _, n = wire.FRAME_HDR.unpack_from(buf, pos)
            if n > wire.EXT_MAX_PAYLOAD or mtype not in (wire.ACK_OFFER, wire.ACK):
                return "the server sent message type %d of %d bytes, which this client " \
                    "does not know" % (mtype, n)
            if len(buf) - pos < wire.HEADER_SIZE + n:
                break
            body = bytes(buf[pos + wire.HEADER_SIZE:pos + wire.HEADER_SIZE + n])
            pos += wire.HEADER_SIZE + n
            if mtype == wire.ACK_OFFER:
                if self.mode == HELLO and len(body) >= wire.ACK_OFFER_BODY.size:
                    self._begin(ACKED)
            elif self.mode == ACKED and len(body) >= wire.ACK_BODY.size:
                why_ = self._acked(wire.ACK_BODY.unpack_from(body)[0])
                if why_ is not None:
                    return why_
            elif self.mode != ACKED:
                return "the server acknowledged frames before the stream was named"
        del buf[:pos]
        return None

    def _acked(self, seq):
        """The server stored every frame below seq: let them go."""
        if seq <= self.acked:
            return None     # nothing new (or an older acknowledgement)
        q = self.chunks
        if not q or seq > q[-1].end_seq:
            return "the server acknowledged frame %d, but this client holds only frames " \
                "below %d" % (seq, q[-1].end_seq if q else self.acked)
        self.counters["ack:acked"] += seq - self.acked
        # Chunks sent whole, and chunks not started on this connection (the server
        # had them from an earlier one: frames stored but not acknowledged before a
        # crash), go; the sender names the next frame with a STREAM where it skips.
        while q and q[0].end_seq <= seq and (self.send_idx > 0 or not self.send_off):
            chunk = q.popleft()
            self.qbytes -= len(chunk.data)
            if self.send_idx:
                self.send_idx -= 1
            if chunk.token is not None:
                self.spool.commit(chunk.token)
        if q and not self.send_idx and not self.send_off and q[0].first_seq < seq:
            head = q[0]
            n = seq - head.first_seq
            self._release_front(head, n, frame_offset(head.data, n))
        self.acked = seq
        # Time-outs count from the last sign of life, while anything sent awaits its ACK.
        outstanding = self.send_idx > 0 or self.send_off > 0
        self.waiting_since = self.loop.clock() if outstanding else None
        if self.spool is not None and self.spool.pending:
            self._send()    # freed memory: more of the spool may go out
        return None

    # -------------------------------------------------------------- time
    def _watch(self):
        """Periodic: acknowledgements overdue; during an outage, frames past max_age."""
        now = self.loop.clock()
        if (self.mode == ACKED and self.waiting_since is not None
                and now - self.waiting_since > self.cfg.ack_timeout):
            self.counters["ack:timeouts"] += 1
            self._lost("no acknowledgement for %gs (the server or its host is gone?)"
                       % self.cfg.ack_timeout)
        if self.cfg.max_age and self.state != UP:
            self._drop_old(now - self.cfg.max_age, self.clock() - self.cfg.max_age)

    def _drop_old(self, limit, wall_limit):
        """Give up frames captured before limit (monotonic) / wall_limit (spool files)."""
        q = self.chunks
        while q and q[0].last < limit:
            chunk = q.popleft()
            self.qbytes -= len(chunk.data)
            self.acked = chunk.end_seq
            if chunk.token is not None:
                self.spool.commit(chunk.token)
            self._count_lost("too_old", chunk.count)
        if self.spool is not None and not q:
            self._count_lost("too_old", self.spool.drop_older_than(wall_limit))

    # -------------------------------------------------------------- shutdown
    @property
    def busy(self):
        """True while frames wait to be sent or acknowledged on a live connection."""
        return self.state == UP and (bool(self.chunks) or self.mode == HELLO
                                     or bool(self._out)
                                     or (self.spool is not None and self.spool.pending)
                                     or self.transport.pending_output > 0)

    def stop(self):
        """Close; keep what is left in the spool, or count it as lost."""
        for t in (self.timer, self.watch, self.loss_timer):
            if t is not None:
                t.cancel()
        self.timer = self.watch = self.loss_timer = None
        self._rewind()
        self._close_transport()
        self.counters["server:connected"] = 0
        self.state = STOPPED
        lost = 0
        while self.chunks:
            chunk = self.chunks.popleft()
            if chunk.token is not None:
                continue        # still in the spool, not committed
            if self.spool is not None:
                self.spool.write_file(chunk.hdr, chunk.data, chunk.first_seq)
            else:
                lost += chunk.count
        self.qbytes = 0
        self.send_idx = self.send_off = 0
        if lost:
            self.log.warning("%s: %d packet(s) not delivered at exit", self.prefix, lost)
            self.counters["lost:exit"] += lost
            self.counters["client:queue_err"] += lost
        if self.spool is not None:
            self.spool.close()
        self._log_loss()
        if self.loss_timer is not None:
            self.loss_timer.cancel()
            self.loss_timer = None

    @property
    def delivered(self):
        """Frames delivered: acknowledged, or (plain protocol) taken whole by the kernel."""
        return self.counters["ack:acked"] + self.counters["sent:pkts"]

    def queue_figures(self):
        """Return (queued bytes, spool bytes, spool files)."""
        if self.spool is None:
            return self.qbytes, 0, 0
        return self.qbytes, self.spool.total, self.spool.files
