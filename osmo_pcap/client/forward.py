# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forwarding captured frames to servers: one Connection per [server NAME].

A Connection owns a bounded byte queue of complete frames, sends it in large
non-blocking batches, reconnects with exponential back-off and jitter, puts
LINK_HDR first on every new connection and, with a spool, keeps what it cannot
send on disk. All socket I/O of one connection lives in TcpTransport so that a
TLS transport can replace it. IpipSender is the `protocol = ipip` variant.
"""

import collections
import errno
import os
import random
import socket

from osmo_pcap import wire
from osmo_pcap.client.spool import Spool, complete_frames

CHUNK = 256 * 1024        # queue chunks grow up to this before a new one starts
SEND_MAX = 1 << 20        # bytes handed to one send() call
LOSS_LOG_INTERVAL = 10.0
STABLE_UP = 10.0          # seconds up before the back-off starts again from its minimum

IDLE, CONNECTING, UP, WAITING, STOPPED = "idle", "connecting", "up", "waiting", "stopped"


class TcpTransport(object):
    """Socket I/O of one plain TCP connection: connect, send, read-and-discard."""

    def __init__(self, host, port, source_ip=None):
        self.host, self.port, self.source_ip = host, port, source_ip
        self.sock = None

    def open(self):
        """Create the socket and start a non-blocking connect; raise OSError."""
        infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        s = socket.socket(family, kind, proto)
        try:
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.source_ip:
                s.bind((self.source_ip, 0))
            rc = s.connect_ex(addr)
            if rc not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                raise OSError(rc, "connect: %s" % errno.errorcode.get(rc, rc))
        except BaseException:
            s.close()
            raise
        self.sock = s

    def progress(self):
        """Advance connection set-up; return "done", or "read"/"write" to wait for."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, "connect: %s" % errno.errorcode.get(err, err))
        try:
            self.sock.getpeername()
        except OSError:
            return "write"
        return "done"

    def send(self, data):
        """Send what the kernel takes now; return the byte count (0 when full)."""
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def discard_input(self):
        """Read and drop what the server sent; return False on end of stream."""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return False
                if len(data) < 4096:
                    return True
        except (BlockingIOError, InterruptedError):
            return True

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def new_server_counters():
    """Per-server counters (spec 5.8 names where upstream has one)."""
    return {"server:connect": 0, "server:connected": 0, "client:queue_err": 0,
            "client:write_err": 0, "sent:bytes": 0, "sent:frames_lost": 0,
            "spool:dropped_pkts": 0, "ipip:skipped": 0, "ipip:sent": 0}


class Connection(object):
    """One osmo-pcap server: queue, spool, connection state and back-off."""

    transport_factory = TcpTransport

    def __init__(self, cfg, loop, logger, get_link_hdr, rng=random.random):
        self.cfg = cfg
        self.name = cfg.name
        self.loop = loop
        self.log = logger
        self.get_link_hdr = get_link_hdr
        self.rng = rng
        self.counters = new_server_counters()
        self.state = IDLE
        self.transport = None
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
        t = self.make_transport()
        try:
            t.open()
        except (OSError, socket.gaierror) as e:
            # Synchronous failures are retried too (spec 11 #25).
            self.log.warning("%s: cannot connect: %s", self.prefix, _why(e))
            self._schedule_retry()
            return
        self.transport = t
        self.state = CONNECTING
        self.loop.add_writer(t.sock, self._on_connect_event)
        self.loop.add_reader(t.sock, self._on_connect_event)

    def make_transport(self):
        """Return a new transport: plain TCP, wrapped when the section set up TLS."""
        t = self.transport_factory(self.cfg.host, self.cfg.port, self.cfg.source_ip)
        tls = getattr(self.cfg, "tls", None)
        return tls.transport(t) if tls is not None else t

    def _schedule_retry(self):
        self.state = WAITING
        delay = self.delay * (0.75 + 0.5 * self.rng())
        self.delay = min(self.delay * 2, self.cfg.reconnect_max)
        self.timer = self.loop.call_later(delay, self._attempt)

    def _on_connect_event(self):
        try:
            step = self.transport.progress()
        except OSError as e:
            if getattr(e, "kind", None) is not None:  # a tls.TLSError: nothing was sent
                self._lost("TLS handshake failed: %s" % _why(e), quiet_retry=True)
            else:
                self._lost("connect failed: %s" % _why(e), quiet_retry=True)
            return
        sock = self.transport.sock
        if step == "done":
            self.loop.remove(sock)
            self._established()
        elif step == "read":
            self.loop.remove(sock)
            self.loop.add_reader(sock, self._on_connect_event)
        else:
            self.loop.remove(sock)
            self.loop.add_writer(sock, self._on_connect_event)

    def _established(self):
        self.state = UP
        self.counters["server:connected"] = 1
        self.up_since = self.loop.clock()
        tls = getattr(self.cfg, "tls", None)
        if tls is not None and hasattr(self.transport, "version"):
            self.log.info("%s: connected with %s, %s", self.prefix, self.transport.version(),
                          "server certificate verified for %s" % tls.hostname if tls.verify
                          else "server certificate NOT verified (tls_verify = no)")
        else:
            self.log.info("%s: connected", self.prefix)
        hdr = self.get_link_hdr()
        self.queue.appendleft(bytearray(wire.encode_link_hdr(hdr)))
        self.qbytes += len(self.queue[0])
        self.head_off = 0
        self.wire_hdr = hdr
        self.loop.add_reader(self.transport.sock, self._on_readable)
        self._send()

    def _lost(self, why, quiet_retry=False):
        """Tear the connection down and schedule a new attempt."""
        was_up = self.state == UP
        if was_up and self.loop.clock() - self.up_since >= STABLE_UP:
            self.delay = self.cfg.reconnect_min   # a server that hangs up at once backs off
        if self.transport is not None:
            self.loop.remove(self.transport.sock)
            self.transport.close()
            self.transport = None
        self.counters["server:connected"] = 0
        if was_up:
            self.log.warning("%s: connection lost: %s", self.prefix, why)
        else:
            self.log.warning("%s: %s", self.prefix, why)
        self._requeue_after_loss()
        self._schedule_retry()

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
            self.spool.append(self.wire_hdr or self.get_link_hdr(), data)
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
            spool.append(self.get_link_hdr(), data)
            return
        room = self.cfg.queue_size - self.qbytes
        n = len(data)
        if n > room:
            if spool is not None:
                spool.append(self.get_link_hdr(), data)
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

    def link_hdr_changed(self, hdr):
        """A device changed the link header: announce it in order, or restart."""
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
        """Send as much of the queue as the socket takes; refill from the spool."""
        q = self.queue
        t = self.transport
        failed = None
        try:
            while True:
                if not q:
                    if not self._refill():
                        if getattr(t, "pending_output", 0):
                            t.send(b"")   # a TLS transport flushes what it holds
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
            failed = _why(e)
        if failed is not None:
            # Outside the except block: its traceback holds the frames that got a
            # view of the queue head, and _lost() resizes the head.
            self.counters["client:write_err"] += 1
            self._lost("send failed: %s" % failed)
            return
        if q or getattr(t, "pending_output", 0):
            self.loop.add_writer(t.sock, self._send)
        else:
            self.loop.remove_writer(t.sock)

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
        try:
            alive = self.transport.discard_input()
        except OSError as e:
            self._lost("read failed: %s" % _why(e))
            return
        if not alive:
            self._lost("closed by the server")

    # -------------------------------------------------------------- shutdown
    @property
    def busy(self):
        """True while data waits to be sent on an established connection."""
        return self.state == UP and (self.qbytes > 0 or self.from_spool
                                     or (self.spool is not None and self.spool.pending)
                                     or getattr(self.transport, "pending_output", 0) > 0)

    def stop(self):
        """Close; put what is left into the spool when there is one."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.loop.remove(self.transport.sock)
            self.transport.close()
            self.transport = None
        self.counters["server:connected"] = 0
        self.state = STOPPED
        self._requeue_after_loss()
        if self.qbytes:
            data = b"".join(self.queue)
            self._clear_queue()
            if self.spool is not None:
                # older than what the spool holds, but better late than lost
                self.spool.append(self.wire_hdr or self.get_link_hdr(), data)
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


# ---------------------------------------------------------------- ipip (spec 3)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8)


def ipv4_offset(linktype, data, caplen):
    """Return where the IPv4 packet starts in a frame, or -1 (not IPv4/unsupported)."""
    if linktype == 1:
        off = 12
        while off + 2 <= caplen:
            et = (data[off] << 8) | data[off + 1]
            if et in ETHERTYPE_VLAN:
                off += 4
                continue
            if et != ETHERTYPE_IPV4:
                return -1
            off += 2
            break
        else:
            return -1
    elif linktype == 113:
        if caplen < 16 or ((data[14] << 8) | data[15]) != ETHERTYPE_IPV4:
            return -1
        off = 16
    elif linktype == 276:
        if caplen < 20 or ((data[0] << 8) | data[1]) != ETHERTYPE_IPV4:
            return -1
        off = 20
    elif linktype in (12, 14, 101, 228):
        off = 0
    else:
        return -1
    if off + 20 > caplen or data[off] >> 4 != 4:
        return -1
    return off


class IpipSender(object):
    """protocol = ipip: each IPv4 packet as the payload of one IP-in-IP datagram."""

    def __init__(self, cfg, logger):
        self.cfg = cfg
        self.name = cfg.name
        self.log = logger
        self.counters = new_server_counters()
        self.sock = None
        self.state = IDLE
        self.prefix = "server %s (%s ipip)" % (cfg.name, cfg.host)

    def start(self):
        if not self.cfg.enabled:
            return
        try:
            self.counters["server:connect"] += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
            s.setblocking(False)
            if self.cfg.source_ip:
                s.bind((self.cfg.source_ip, 0))
            s.connect((self.cfg.host, 0))
        except OSError as e:
            raise OSError("%s: cannot open the raw IPIP socket: %s" % (self.prefix, _why(e)))
        self.sock = s
        self.state = UP
        self.counters["server:connected"] = 1

    def send_packet(self, linktype, data, caplen):
        """Send one captured frame (data: bytes or a byte memoryview)."""
        off = ipv4_offset(linktype, data, caplen)
        if off < 0:
            self.counters["ipip:skipped"] += 1
            return
        try:
            self.sock.send(data[off:caplen])
            self.counters["ipip:sent"] += 1
        except (BlockingIOError, InterruptedError):
            self.counters["client:queue_err"] += 1
        except OSError:
            # e.g. unreachable for a moment: count, never log per packet
            self.counters["client:write_err"] += 1

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.state = STOPPED
        self.counters["server:connected"] = 0

    @property
    def busy(self):
        return False

    def queue_figures(self):
        return 0, 0, 0


def _why(e):
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)
