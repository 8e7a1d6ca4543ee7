# SPDX-License-Identifier: AGPL-3.0-or-later
"""Listening sockets and bounded per-peer send queues for the server's hooks.

The ZeroMQ publisher and the live tap both hand the same bytes to many peers
that the server does not trust to keep up. A Sender holds one peer's queue:
whole messages are queued or dropped (and counted), never split, so a slow
peer costs at most `limit` bytes and never a blocking call.
"""

import errno
import socket
import time

# Bytes per send() call: large enough to batch many small messages.
_SEND_CHUNK = 1 << 20
# Out of descriptors or memory, a listening socket stays readable: accepting is
# paused this long instead of spinning (the server's own listener does the same).
ACCEPT_PAUSE = 1.0
RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def listen(host, port, backlog=16):
    """Return a non-blocking listening TCP socket bound to (host, port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def accept_all(sock, on_exhausted=None):
    """Yield (conn, peer) for every pending connection on a listening socket.

    on_exhausted(error) is called when accept() fails for lack of descriptors
    or memory (see pause_accepting); other errors just end the batch.
    """
    while True:
        try:
            conn, peer = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            # ECONNABORTED...: nothing to hand out now; the loop retries.
            if e.errno in RESOURCE_ERRNOS and on_exhausted is not None:
                on_exhausted(e)
            return
        conn.setblocking(False)
        yield conn, peer[:2]


def pause_accepting(loop, sock, reader, seconds=None):
    """Stop watching a listening socket for a while, then call reader() on it again.

    For EMFILE and friends: the socket stays readable, and retrying at once
    would spin the loop at full CPU until a descriptor is free.
    """
    loop.remove_reader(sock)

    def resume():
        if sock.fileno() >= 0:  # not closed in the meantime
            loop.add_reader(sock, reader)
    loop.call_later(ACCEPT_PAUSE if seconds is None else seconds, resume)


def format_peer(peer):
    """Return 'host:port' for a socket address."""
    host, port = peer[0], peer[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class Sender(object):
    """One peer's non-blocking socket with a bounded output queue on the loop.

    on_error(sender, reason) is called once when a send fails; the owner then
    calls close(). `dropped` and `dropped_bytes` count what did not fit.
    """

    __slots__ = ("loop", "sock", "limit", "out", "dropped", "dropped_bytes", "sent",
                 "on_error", "closed", "_writing")

    def __init__(self, loop, sock, limit, on_error):
        self.loop = loop
        self.sock = sock
        self.limit = limit
        self.out = bytearray()
        self.dropped = 0
        self.dropped_bytes = 0
        self.sent = 0
        self.on_error = on_error
        self.closed = False
        self._writing = False

    def fits(self, size):
        """Return True if a message of size bytes fits in the queue now."""
        return len(self.out) + size <= self.limit

    def drop(self, size):
        """Count one message of size bytes that did not fit."""
        self.dropped += 1
        self.dropped_bytes += size

    def push(self, data):
        """Append bytes to the queue without checking the limit (caller did)."""
        self.out += data
        if not self._writing and not self.closed:
            self._writing = True
            self.loop.add_writer(self.sock, self._flush)

    def queue(self, data):
        """Queue data whole if it fits, else drop it; return True if queued."""
        if len(self.out) + len(data) > self.limit:
            self.drop(len(data))
            return False
        self.push(data)
        return True

    def _flush(self):
        out = self.out
        try:
            n = self.sock.send(memoryview(out)[:_SEND_CHUNK]) if len(out) > _SEND_CHUNK \
                else self.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._stop_writing()
            self.on_error(self, e.strerror or str(e))
            return
        del out[:n]
        self.sent += n
        if not out:
            self._stop_writing()

    def _stop_writing(self):
        if self._writing and not self.closed:
            self._writing = False
            self.loop.remove_writer(self.sock)

    def flush_until(self, deadline):
        """Send what is queued, blocking until deadline (time.monotonic()) at most."""
        if self.closed or not self.out:
            return
        try:
            while self.out:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                n = self.sock.send(self.out)
                del self.out[:n]
                self.sent += n
        except OSError:
            return

    def close(self):
        """Forget the socket in the loop and close it; drop what is queued."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        self.out = bytearray()
