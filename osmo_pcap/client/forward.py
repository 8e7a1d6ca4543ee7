# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forwarding captured frames to one osmo-pcap server: the Forwarder.

A Forwarder owns a bounded byte queue of complete frames, sends it in large
non-blocking batches over its transport (plain TCP or TLS, see
osmo_pcap/transport.py), reconnects with exponential back-off and jitter,
puts LINK_HDR first on every new connection and, with a spool, keeps what it
cannot send on disk. The client pushes every change of the link header in
with set_link_hdr(); nothing here asks for it.
"""

import collections
import os
import random

from osmo_pcap import wire
from osmo_pcap.client.spool import Spool
from osmo_pcap.transport import RECV_CHUNK, Dial, PlainTransport, why
from osmo_pcap.wire import complete_frames

CHUNK = 256 * 1024        # queue chunks grow up to this before a new one starts
SEND_MAX = 1 << 20        # bytes handed to one send() call
LOSS_LOG_INTERVAL = 10.0
STABLE_UP = 10.0          # seconds up before the back-off starts again from its minimum

IDLE, CONNECTING, UP, WAITING, STOPPED = "idle", "connecting", "up", "waiting", "stopped"


def new_server_counters():
    """Per-server counters (spec 5.8 names where upstream has one)."""
    return {"server:connect": 0, "server:connected": 0, "client:queue_err": 0,
            "client:write_err": 0, "sent:bytes": 0, "sent:frames_lost": 0,
            "spool:dropped_pkts": 0, "ipip:skipped": 0, "ipip:sent": 0}


def tls_wrapper(tls):
    """Return wrap(loop, sock) making the client side of TLS with tlsconfig.ClientTLS tls."""
    from osmo_pcap.tls import TLSTransport

    def wrap(loop, sock):
        return TLSTransport(loop, sock, tls.context, server_hostname=tls.hostname)
    return wrap


class Forwarder(object):
    """One [server NAME] of protocol osmo-pcap: queue, spool, connection, back-off.

    dial is transport.Dial or a stand-in with its signature (tests).
    """

    def __init__(self, cfg, loop, logger, dial=Dial, rng=random.random):
        self.cfg = cfg             # the client.config.ServerEntry
        self.name = cfg.name
        self.loop = loop
        self.log = logger
        self.dial = dial
        self.wrap = PlainTransport if cfg.tls is None else tls_wrapper(cfg.tls)
        self.rng = rng
        self.link_hdr = None       # the current header, pushed in by set_link_hdr()
        self.counters = new_server_counters()
        self.state = IDLE
        self.transport = None
        self.dialing = None
        self.scratch = bytearray(RECV_CHUNK)
        self.queue = collections.deque()
        self.qbytes = 0
        self.head_off = 0
        self.from_spool = False      # the queue holds a spool piece
        self.wire_hdr = None         # last LINK_HDR queued on this connection
        self.delay = cfg.reconnect_min
        self.up_since = 0.0
        self.timer = None
        self.lost_unlogged = 0
        self.loss_timer = None
        self.spool = None
        if cfg.spool_dir:
            self.spool = Spool(os.path.join(cfg.spool_dir, cfg.name), cfg.spool_max, logger)
        self.prefix = "server %s (%s:%s)" % (cfg.name, cfg.host, cfg.port)

    # -------------------------------------------------------------- state
    def start(self):
        """Begin connecting (once the link header is known)."""
        if self.state in (IDLE, STOPPED) and self.cfg.enabled:
            self.state = WAITING
            self._attempt()

    def _attempt(self):
        self.timer = None
        if self.state != WAITING:
            return
        self.counters["server:connect"] += 1
        c = self.cfg
        try:
            self.dialing = self.dial(self.loop, c.host, c.port, c.source_ip, self.wrap,
                                     self._established, self._dial_failed)
        except OSError as e:
            # Synchronous failures (DNS, no route) are retried too.
            self.log.warning("%s: cannot connect: %s", self.prefix, why(e))
            self._schedule_retry()
            return
        self.state = CONNECTING

    def _dial_failed(self, reason, error):
        self.dialing = None
        self._lost(reason)

    def _schedule_retry(self):
        self.state = WAITING
        delay = self.delay * (0.75 + 0.5 * self.rng())
        self.delay = min(self.delay * 2, self.cfg.reconnect_max)
        self.timer = self.loop.call_later(delay, self._attempt)

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
        hdr = self.link_hdr
        self.queue.appendleft(bytearray(wire.encode_link_hdr(hdr)))
        self.qbytes += len(self.queue[0])
        self.head_off = 0
        self.wire_hdr = hdr
        transport.set_reader(self._on_readable)
        self._send()

    def _lost(self, why_):
        """Tear the connection (or the attempt) down and schedule a new attempt."""
        was_up = self.state == UP
        if was_up and self.loop.clock() - self.up_since >= STABLE_UP:
            self.delay = self.cfg.reconnect_min   # a server that hangs up at once backs off
        self._close_transport()
        self.counters["server:connected"] = 0
        if was_up:
            self.log.warning("%s: connection lost: %s", self.prefix, why_)
        else:
            self.log.warning("%s: %s", self.prefix, why_)
        self._requeue_after_loss()
        self._schedule_retry()

    def _close_transport(self):
        if self.dialing is not None:
            self.dialing.cancel()
            self.dialing = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _requeue_after_loss(self):
        """Drop the partly sent frame; move or keep the rest for the next connection."""
        if self.head_off and self.queue:
            head = self.queue[0]
            pos = 0
            while pos < self.head_off:
                pos += wire.HEADER_SIZE + ((head[pos + 2] << 8) | head[pos + 3])
            if pos > self.head_off:
                self._count_lost(1)
            del head[:pos]
            self.qbytes -= pos
            self.head_off = 0
            if not head:
                self.queue.popleft()
        if self.from_spool:
            self._clear_queue()
            self.spool.rewind()
            self.from_spool = False
        elif self.spool is not None and not self.spool.pending and self.qbytes:
            data = b"".join(self.queue)
            self._clear_queue()
            self.spool.append(self.wire_hdr or self.link_hdr, data)
        # else: the queue is kept and sent after LINK_HDR on the next connection

    def _clear_queue(self):
        self.queue.clear()
        self.qbytes = 0
        self.head_off = 0

    # -------------------------------------------------------------- data
    def enqueue(self, data):
        """Take complete LINK_DATA frames (a batch from one capture round)."""
        spool = self.spool
        if spool is not None and (spool.pending or self.state != UP):
            spool.append(self.link_hdr, data)
            return
        room = self.cfg.queue_size - self.qbytes
        n = len(data)
        if n > room:
            if spool is not None:
                spool.append(self.link_hdr, data)
                return
            end, _ = complete_frames(data, 0, room)
            _, dropped = complete_frames(data, end)
            self._count_lost(dropped)
            if not end:
                return
            data = memoryview(data)[:end]
            n = end
        q = self.queue
        if q and len(q[-1]) < CHUNK:
            q[-1] += data
        else:
            q.append(bytearray(data))
        self.qbytes += n
        if self.state == UP:
            self._send()

    def set_link_hdr(self, hdr):
        """Take the link header for the frames enqueued from now on.

        Before start() this is just the first header; later a change is
        announced in order on a live connection, or ends what was queued.
        """
        old, self.link_hdr = self.link_hdr, hdr
        if old is None or hdr == old:
            return
        if self.state == UP:
            if self.spool is not None and self.spool.pending:
                return  # the spool starts a new file with the new header
            frame = bytearray(wire.encode_link_hdr(hdr))
            self.queue.append(frame)
            self.qbytes += len(frame)
            self.wire_hdr = hdr
            self._send()
        elif self.qbytes and not self.from_spool:
            # Queued frames belong to the old header; they cannot follow the new one.
            _, n = complete_frames(b"".join(self.queue))
            self._count_lost(n)
            self._clear_queue()

    def _count_lost(self, n):
        if not n:
            return
        self.counters["client:queue_err"] += n
        self.lost_unlogged += n
        if self.loss_timer is None:
            self.loss_timer = self.loop.call_later(0, self._log_loss)

    def _log_loss(self):
        if self.lost_unlogged:
            self.log.warning("%s: %d packet(s) dropped (queue full or server away)",
                             self.prefix, self.lost_unlogged)
            self.lost_unlogged = 0
            self.loss_timer = self.loop.call_later(LOSS_LOG_INTERVAL, self._log_loss)
        else:
            self.loss_timer = None

    def _send(self):
        """Send as much of the queue as the transport takes; refill from the spool."""
        q = self.queue
        t = self.transport
        failed = None
        try:
            while True:
                if not q:
                    if not self._refill():
                        break
                    continue
                head = q[0]
                with memoryview(head) as mv:
                    n = t.send(mv[self.head_off:self.head_off + SEND_MAX])
                if not n:
                    break
                self.counters["sent:bytes"] += n
                self.qbytes -= n
                self.head_off += n
                if self.head_off >= len(head):
                    q.popleft()
                    self.head_off = 0
        except OSError as e:
            failed = why(e)
        if failed is not None:
            # Outside the except block: its traceback holds the frames that got a
            # view of the queue head, and _lost() resizes the head.
            self.counters["client:write_err"] += 1
            self._lost("send failed: %s" % failed)
            return
        t.set_writer(self._send if q else None)

    def _refill(self):
        """Load the next spool piece into the empty queue; return True if loaded."""
        spool = self.spool
        if spool is None:
            return False
        if self.from_spool:
            spool.commit()
            self.from_spool = False
        if not spool.pending:
            return False
        piece = spool.next_piece()
        if piece is None:
            return False
        hdr, frames = piece
        if hdr != self.wire_hdr:
            self.queue.append(bytearray(wire.encode_link_hdr(hdr)))
            self.qbytes += len(self.queue[-1])
            self.wire_hdr = hdr
        self.queue.append(bytearray(frames))
        self.qbytes += len(frames)
        self.from_spool = True
        return True

    def _on_readable(self):
        """Read and drop what the server sent; a server says nothing in this protocol."""
        t = self.transport
        failed = None
        try:
            while True:
                n = t.recv_into(self.scratch)
                if n is None:
                    return
                if n == 0:
                    failed = "closed by the server"
                    break
        except OSError as e:
            failed = "read failed: %s" % why(e)
        self._lost(failed)

    # -------------------------------------------------------------- shutdown
    @property
    def busy(self):
        """True while data waits to be sent on an established connection."""
        return self.state == UP and (self.qbytes > 0 or self.from_spool
                                     or (self.spool is not None and self.spool.pending)
                                     or self.transport.pending_output > 0)

    def stop(self):
        """Close; put what is left into the spool when there is one."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._close_transport()
        self.counters["server:connected"] = 0
        self.state = STOPPED
        self._requeue_after_loss()
        if self.qbytes:
            data = b"".join(self.queue)
            self._clear_queue()
            if self.spool is not None:
                # older than what the spool holds, but better late than lost
                self.spool.append(self.wire_hdr or self.link_hdr, data)
            else:
                _, n = complete_frames(data)
                if n:
                    self.log.warning("%s: %d packet(s) not sent at exit", self.prefix, n)
                self.counters["client:queue_err"] += n
        if self.spool is not None:
            self.spool.close()

    def queue_figures(self):
        """Return (queued bytes, spool bytes, spool files)."""
        if self.spool is None:
            return self.qbytes, 0, 0
        return self.qbytes, self.spool.total, self.spool.files


