# SPDX-License-Identifier: AGPL-3.0-or-later
"""The byte stream under an osmo-pcap connection, plain or TLS, on both sides.

Every connection, the server's accepted ones and the client's outgoing ones,
is a transport driven by osmo_pcap.loop. PlainTransport (here) and
tls.TLSTransport have the same interface, so the code above them has one path:

  start(on_ready, on_error, timeout)  begin (TLS: the handshake); exactly one of
                                      on_ready() / on_error(OSError) follows, from
                                      the loop, never from inside start().
  set_reader(cb) / set_reader(None)   cb() runs while data, EOF or an error may be
                                      waiting; it calls recv_into() once or until
                                      None (TLS data decrypted but not yet read
                                      makes cb() run again without the socket
                                      being readable).
  recv_into(buf) -> n > 0 | 0 (EOF) | None (nothing now); raises OSError.
  set_writer(cb) / set_writer(None)   cb() runs while send() would take bytes.
  send(data) -> bytes taken, 0 when full; raises OSError.
  pending_output                      bytes taken by send() but not yet on the socket.
  close()                             TLS: close_notify when possible; closes.
  is_tls, peer_names(), describe()    what the peer is, for checks and logs.

dial() makes the client's connections: a non-blocking connect through the loop,
then a transport started on the connected socket.
"""

import errno
import os
import socket

RECV_CHUNK = 65536

# TLSError kinds, for counters and log lines.
TIMEOUT, VERIFY, REJECTED, NOT_TLS, EOF, IO, PROTOCOL = (
    "timeout", "verify", "rejected", "not-tls", "eof", "io", "protocol")


class TLSError(OSError):
    """A TLS failure (raised by tls.TLSTransport): kind is one of the constants above."""

    def __init__(self, kind, reason):
        OSError.__init__(self, reason)
        self.kind = kind
        self.reason = reason

    def __str__(self):
        return self.reason


class PlainTransport(object):
    """A plain TCP connection with the transport interface (no handshake, no names)."""

    is_tls = False

    def __init__(self, loop, sock):
        self.loop = loop
        self.sock = sock
        sock.setblocking(False)
        self._reader = None
        self._start_timer = None
        self.closed = False

    @property
    def pending_output(self):
        """A plain socket takes or refuses bytes at once: nothing is ever held here."""
        return 0

    def start(self, on_ready, on_error=None, timeout=None):
        """Call on_ready() from the loop (a plain connection is ready at once)."""
        def ready():
            self._start_timer = None
            if not self.closed:
                on_ready()
        self._start_timer = self.loop.call_later(0, ready)

    def set_reader(self, callback):
        self._reader = callback
        if self.closed:
            return
        if callback is None:
            self.loop.remove_reader(self.sock)
        else:
            self.loop.add_reader(self.sock, callback)

    def set_writer(self, callback):
        if self.closed:
            return
        if callback is None:
            self.loop.remove_writer(self.sock)
        else:
            self.loop.add_writer(self.sock, callback)

    def recv_into(self, buf, nbytes=0):
        try:
            return self.sock.recv_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            return None

    def send(self, data):
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def close(self):
        if not self.closed:
            self.closed = True
            self._reader = None   # usually a bound method of the owner, which holds us
            if self._start_timer is not None:
                self._start_timer.cancel()
                self._start_timer = None
            self.loop.remove(self.sock)
            self.sock.close()

    def peer_names(self):
        return []

    def describe(self):
        """Return how the connection is protected, for log lines."""
        return "plain TCP"


def open_socket(host, port, source_ip=None):
    """Create a non-blocking TCP socket and start connecting it; raise OSError."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    family, kind, proto, _, addr = infos[0]
    s = socket.socket(family, kind, proto)
    try:
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source_ip:
            s.bind((source_ip, 0))
        rc = s.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            raise OSError(rc, "connect: %s" % errno.errorcode.get(rc, rc))
    except BaseException:
        s.close()
        raise
    return s


class Dial(object):
    """One outgoing connection attempt: TCP connect, then the transport's start().

    Exactly one of on_ready(transport) or on_error(reason, error) follows from the
    loop; reason says which step failed ("connect failed: ...", "TLS handshake
    failed: ..."), error is the OSError (a TLSError for the handshake).
    wrap(loop, sock) returns the unstarted transport for a connected socket.
    timeout bounds the whole attempt (connect and handshake): a host that has
    vanished answers nothing, and TCP alone would retry for minutes. The first
    error (e.g. DNS) is raised by the constructor instead.
    """

    def __init__(self, loop, host, port, source_ip, wrap, on_ready, on_error, timeout=None):
        self.loop = loop
        self.wrap = wrap
        self.on_ready, self.on_error = on_ready, on_error
        self.transport = None
        self.timer = None
        self.sock = open_socket(host, port, source_ip)
        loop.add_writer(self.sock, self._connected)
        if timeout:
            self.timer = loop.call_later(timeout, self._timed_out, timeout)

    def _timed_out(self, timeout):
        self.timer = None
        step = "connect" if self.sock is not None else "TLS handshake"
        self.cancel()
        self.on_error("%s failed: no answer within %gs" % (step, timeout),
                      OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT)))

    def _connected(self):
        sock = self.sock
        self.loop.remove(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.cancel()
            self.on_error("connect failed: %s" % os.strerror(err), OSError(err, os.strerror(err)))
            return
        self.transport = t = self.wrap(self.loop, sock)
        self.sock = None
        t.start(self._ready, self._failed)

    def _ready(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        t, self.transport = self.transport, None
        self.on_ready(t)

    def _failed(self, err):
        self.cancel()
        self.on_error("%s failed: %s" % ("TLS handshake" if isinstance(err, TLSError)
                                          else "connect", why(err)), err)

    def cancel(self):
        """Give the attempt up; close what it opened."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.loop.remove(self.sock)
            self.sock.close()
            self.sock = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def why(e):
    """Return the readable part of an exception for a log line."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


# A TLS connection starts with a handshake record carrying a ClientHello
# (RFC 8446 sections 5.1 and 4); an osmo-pcap one with a frame of type 0 or 1.
TLS_RECORD_HANDSHAKE = 0x16
TLS_CLIENT_HELLO = 0x01


def looks_like_tls(first_bytes):
    """Return True when the bytes start like a TLS ClientHello record.

    One byte tells TLS (0x16) from an osmo-pcap frame (type 0 or 1); further
    bytes, when given, must also fit: version 3.x, handshake type ClientHello.
    """
    b = bytearray(first_bytes[:6])
    if not b or b[0] != TLS_RECORD_HANDSHAKE:
        return False
    if len(b) > 1 and b[1] != 3:
        return False
    if len(b) > 2 and b[2] > 4:
        return False
    if len(b) > 5 and b[5] != TLS_CLIENT_HELLO:
        return False
    return True
