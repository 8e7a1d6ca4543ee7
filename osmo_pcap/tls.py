# SPDX-License-Identifier: AGPL-3.0-or-later
"""TLS for osmo-pcap connections: tls.TLSTransport, identities, error reasons.

TLSTransport runs TLS over ssl.MemoryBIO/SSLObject on a connected, non-blocking
socket, driven by osmo_pcap.loop, with the interface of transport.PlainTransport
(see osmo_pcap/transport.py), so server and client code has one path for both.
TLSSession is the loop-free engine under it. peer_identity() and
identity_problem() read and check certificate names; describe_ssl_error() turns
ssl exceptions into transport.TLSError with a readable reason and a kind.
This module imports ssl (about 4.5 MB of resident memory): only TLS
configurations load it.
"""

import errno
import re
import ssl

from osmo_pcap.transport import (EOF, IO, NOT_TLS, PROTOCOL, REJECTED, TIMEOUT, VERIFY,
                                 TLSError, RECV_CHUNK)

OUT_LIMIT = 256 * 1024       # TLS output buffered before send() says "full"
WRITE_CHUNK = 4 * 16384      # plaintext encrypted per send() call (four records)
# Ciphertext taken from the socket per call, through one buffer all sessions
# share (TLS copies it at once): fewer calls and no new object per call.
FILL_CHUNK = 256 * 1024

_RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)
_NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                    "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")
_ALERT_RE = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_ALERT_(.*)$")


def describe_ssl_error(exc, established=False):
    """Return a TLSError with a readable reason for an ssl or socket exception.

    established: the handshake is done. A peer that completed a handshake speaks
    TLS, so a record the layer rejects then (RECORD_LAYER_FAILURE from OpenSSL 3.6
    on, a bad length...) is a protocol error, not a "does not speak TLS" peer.
    """
    if isinstance(exc, TLSError):
        return exc
    detail = getattr(exc, "verify_message", None)
    if detail:  # Python 3.7+: SSLCertVerificationError says what failed
        return TLSError(VERIFY, "certificate verification failed: %s" % detail)
    if isinstance(exc, ssl.CertificateError):  # 3.6 checks the host name after the handshake
        return TLSError(VERIFY, "certificate verification failed: %s" % exc)
    if not isinstance(exc, ssl.SSLError):
        return TLSError(IO, "socket error: %s" % (getattr(exc, "strerror", None) or exc))
    reason = getattr(exc, "reason", None) or ""
    text = reason.lower().replace("_", " ") if reason else str(exc)
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return TLSError(VERIFY, "certificate verification failed")
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return TLSError(VERIFY, "the peer presented no certificate, but one is required")
    if reason in _NOT_TLS_REASONS and not established:
        return TLSError(NOT_TLS, "the peer does not speak TLS (%s)" % text)
    m = _ALERT_RE.match(reason)
    if m:
        return TLSError(REJECTED, "the peer rejected the TLS session: %s"
                        % m.group(1).lower().replace("_", " "))
    return TLSError(PROTOCOL, "TLS error: %s" % text)


# ------------------------------------------------------------------ TLS session
class TLSSession(object):
    """The TLS engine of one connection: SSLObject over memory BIOs and a socket.

    No loop here: callers drive it. handshake_step() returns "done", or "read"
    / "write" to wait for; recv_into() and send() work like a non-blocking
    socket's (None / 0 instead of BlockingIOError). Every error is a TLSError.
    """

    _fill_view = None            # the FILL_CHUNK buffer, made at the first read

    def __init__(self, sock, context, server_side=False, server_hostname=None, initial=b""):
        self.sock = sock
        self._inbio = ssl.MemoryBIO()
        self._outbio = ssl.MemoryBIO()
        if initial:
            self._inbio.write(initial)  # bytes the server already read to sniff the port
        self.ssl = context.wrap_bio(self._inbio, self._outbio, server_side=server_side,
                                    server_hostname=None if server_side else server_hostname)
        self._out = bytearray()  # ciphertext the socket has not taken yet
        self.eof = False         # the socket reported end of stream
        self.drained = False     # recv_into last said "nothing more" (None or 0)
        self.ready = False
        self.clean_eof = None    # after EOF: True if the peer sent close_notify
        self._deferred = None    # an error found after data that was returned first

    def handshake_step(self):
        """Advance the handshake as far as the socket allows; return "done"/"read"/"write"."""
        while not self.ready:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                self.flush()
                if self._out:
                    return "write"
                if self.eof:
                    raise TLSError(EOF, "the peer closed the connection during the TLS "
                                   "handshake")
                if not self._fill():
                    return "read"
                continue
            except (ssl.SSLError, ssl.CertificateError) as e:
                self._flush_quietly()  # let the peer see our alert
                raise describe_ssl_error(e)
            self.ready = True
        self.flush()
        return "write" if self._out else "done"

    def recv_into(self, buf, nbytes=0):
        """Decrypt into buf; return n > 0, 0 at EOF, or None when nothing is waiting.

        Fills buf with as many records as are waiting (one record is at most
        16 KiB), so large buffers cost one call, not one call per record.
        """
        if not self.ready:
            return None
        if self._deferred is not None:
            err, self._deferred = self._deferred, None
            raise err
        view = memoryview(buf)
        want = min(nbytes or len(view), len(view))
        total = 0
        self.drained = False
        while total < want:
            try:
                got = self.ssl.read(want - total, view[total:])
            except ssl.SSLWantReadError:
                if self.eof:
                    if total:
                        break  # EOF is reported by the next call
                    if self.clean_eof is None:
                        self.clean_eof = False  # closed without close_notify
                    self.drained = True
                    return 0
                if not self._fill():
                    self.drained = True
                    break
                continue
            except ssl.SSLZeroReturnError:
                got = 0
            except (ssl.SSLError, ssl.CertificateError) as e:
                # TLS 1.3: a server that refuses our certificate says so only now.
                err = describe_ssl_error(e, established=True)
                if not total:
                    raise err
                self._deferred = err  # deliver the data first
                break
            if got == 0:
                if total:
                    break
                if self.clean_eof is None:
                    self.clean_eof = True
                self.drained = True
                return 0
            total += got
        if self._outbio.pending:  # reading can make TLS answer (key update)
            self.flush()
        return total or None

    def send(self, data):
        """Encrypt up to WRITE_CHUNK bytes of data; return how many were taken (0: full)."""
        if not self.ready or not data:
            return 0
        if len(self._out) >= OUT_LIMIT:
            self.flush()
            if len(self._out) >= OUT_LIMIT:
                return 0
        try:
            n = self.ssl.write(memoryview(data)[:WRITE_CHUNK])
        except ssl.SSLError as e:
            raise describe_ssl_error(e, established=True)
        self.flush()
        return n

    @property
    def pending_output(self):
        """Bytes accepted by send() that the socket has not taken yet."""
        return len(self._out) + self._outbio.pending

    def flush(self):
        """Move TLS output to the socket as far as it takes it; raise TLSError."""
        if self._outbio.pending:
            self._out += self._outbio.read()
        while self._out:
            try:
                n = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                raise self._socket_error(e)
            del self._out[:n]

    def shutdown(self):
        """Send close_notify if the session is up and read what waits; never blocks."""
        if self.ready:
            try:
                self.ssl.unwrap()
            except (ssl.SSLError, ValueError, OSError):
                pass  # it wants the peer's close_notify, which we do not wait for
            self._flush_quietly()
        # Closing with unread input (say, session tickets) makes the kernel send a
        # reset, and a reset can destroy data the peer has not read yet.
        for _ in range(16):
            try:
                if not self.sock.recv(RECV_CHUNK):
                    return
            except OSError:
                return

    def peer_names(self):
        """Return the CN and DNS SANs of the verified peer certificate."""
        return peer_identity(self.ssl) if self.ready else []

    def version(self):
        return self.ssl.version() if self.ready else None

    def cipher(self):
        return self.ssl.cipher() if self.ready else None

    def _fill(self):
        """Move waiting socket bytes into TLS; return False when there were none."""
        view = TLSSession._fill_view
        if view is None:
            view = TLSSession._fill_view = memoryview(bytearray(FILL_CHUNK))
        try:
            n = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            raise self._socket_error(e)
        if not n:
            self.eof = True
        else:
            self._inbio.write(view[:n])
        return True

    def _flush_quietly(self):
        try:
            self.flush()
        except TLSError:
            pass

    def _socket_error(self, exc):
        if not self.ready and exc.errno in _RESET_ERRNOS:
            # Typically a server that saw TLS on a plain port (or the reverse).
            return TLSError(EOF, "the peer closed the connection during the TLS "
                            "handshake (%s)" % (exc.strerror or exc))
        return describe_ssl_error(exc)


# ------------------------------------------------------------------ TLS transport
class TLSTransport(object):
    """A TLSSession driven by osmo_pcap.loop, with the transport interface."""

    is_tls = True

    def __init__(self, loop, sock, context, server_side=False, server_hostname=None,
                 initial=b""):
        self.loop = loop
        self.sock = sock
        sock.setblocking(False)
        self.session = TLSSession(sock, context, server_side, server_hostname, initial)
        self.ssl = self.session.ssl
        self._reader = self._writer = None
        self._on_ready = self._on_error = None
        self._timer = self._refire = None
        self._registered = (False, False)
        self._wait = "read"      # what the handshake waits for
        self._error = None
        self.started = self.ready = self.closed = False

    @property
    def clean_eof(self):
        """After EOF: True if the peer sent close_notify, False if it just hung up."""
        return self.session.clean_eof

    @property
    def pending_output(self):
        """Bytes accepted by send() that the socket has not taken yet."""
        return self.session.pending_output

    # -------------------------------------------------------------- public
    def start(self, on_ready, on_error, timeout=None):
        """Begin the handshake; on_ready() or on_error(TLSError) follows from the loop."""
        self._on_ready, self._on_error = on_ready, on_error
        self.started = True
        if timeout:
            self._timer = self.loop.call_later(timeout, self._timed_out, timeout)
        self.loop.call_later(0, self._handshake)

    def set_reader(self, callback):
        """Call callback() while received data or EOF may be waiting (None: stop)."""
        self._reader = callback
        if callback is not None and self.ready:
            self.session.drained = False  # the handshake's last read may hold data
            self._schedule_reader()
        self._update()

    def set_writer(self, callback):
        """Call callback() while send() would accept data (None: stop)."""
        self._writer = callback
        self._update()

    def recv_into(self, buf, nbytes=0):
        """Decrypt into buf; return n > 0, 0 at EOF, or None when nothing is waiting."""
        if self._error is not None:
            raise self._error_again()
        if not self.ready or self.closed:
            return None
        try:
            n = self.session.recv_into(buf, nbytes)
        except TLSError as e:
            raise self._fail(e, report=False)
        if self.session.pending_output:
            self._update()
        return n

    def read(self, size=RECV_CHUNK):
        """Return decrypted bytes, b"" at EOF, or None when nothing is waiting."""
        buf = bytearray(size)
        n = self.recv_into(buf)
        return None if n is None else bytes(buf[:n])

    def send(self, data):
        """Encrypt up to WRITE_CHUNK bytes of data; return how many were taken (0: full)."""
        if self._error is not None:
            raise self._error_again()
        if not self.ready or self.closed:
            return 0
        try:
            n = self.session.send(data)
        except TLSError as e:
            raise self._fail(e, report=False)
        self._update()
        return n

    def close(self):
        """Send close_notify if the session is up (best effort, never blocks); close."""
        if self.closed:
            return
        if self._error is None:
            self.session.shutdown()
        self.closed = True
        self._cancel_timers()
        self.loop.remove(self.sock)
        self.sock.close()
        # Owners' callbacks usually reference this transport (a closure, a bound
        # method of the connection): let go of them, so that nothing waits for
        # the cyclic garbage collector.
        self._on_ready = self._on_error = self._reader = self._writer = None

    def peer_names(self):
        """Return the CN and DNS SANs of the verified peer certificate."""
        return self.session.peer_names()

    def version(self):
        return self.session.version()

    def cipher(self):
        return self.session.cipher()

    def describe(self):
        """Return the protocol version and the peer's certificate names, for log lines."""
        names = self.peer_names()
        return "%s, %s" % (self.version(), "certificate %s" % ", ".join(names) if names
                           else "no verified peer certificate")

    # -------------------------------------------------------------- internals
    def _handshake(self):
        if self.closed or self._error is not None or self.ready:
            return
        try:
            self._wait = self.session.handshake_step()
        except TLSError as e:
            self._fail(e)
            return
        if self._wait != "done":
            self._update()
            return
        self.ready = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._update()
        on_ready = self._on_ready
        self._on_ready = self._on_error = None   # each is called at most once
        if on_ready is not None:
            on_ready()

    def _update(self):
        """Register the socket for what the stream and its owner need now."""
        live = self.started and not self.closed and self._error is None
        if not live:
            want_r = want_w = False
        elif not self.ready:
            want_r, want_w = self._wait == "read", self._wait == "write"
        else:
            want_r = self._reader is not None
            want_w = bool(self.session.pending_output) or self._writer is not None
        if (want_r, want_w) == self._registered:
            return
        if want_r:
            self.loop.add_reader(self.sock, self._sock_readable)
        else:
            self.loop.remove_reader(self.sock)
        if want_w:
            self.loop.add_writer(self.sock, self._sock_writable)
        else:
            self.loop.remove_writer(self.sock)
        self._registered = (want_r, want_w)

    def _sock_readable(self):
        if self.ready:
            self._fire_reader()
        else:
            self._handshake()

    def _sock_writable(self):
        if not self.ready:
            self._handshake()
            return
        try:
            self.session.flush()
        except TLSError as e:
            self._fail(e)
            return
        self._update()
        if self._writer is not None and self.session.pending_output < OUT_LIMIT:
            self._writer()

    def _schedule_reader(self):
        if self._refire is None:
            self._refire = self.loop.call_later(0, self._fire_reader)

    def _fire_reader(self):
        if self._refire is not None:
            self._refire.cancel()
            self._refire = None
        if self._reader is None or self.closed:
            return
        self._reader()
        # The owner stopped before "would block": decrypted data or whole records
        # may sit inside TLS, and the socket will not become readable for them.
        if self._reader is not None and not self.session.drained and not self.closed \
                and self._error is None:
            self._schedule_reader()

    def _timed_out(self, timeout):
        self._timer = None
        if not self.ready and not self.closed and self._error is None:
            self._fail(TLSError(TIMEOUT, "TLS handshake not completed within %g s" % timeout))

    def _cancel_timers(self):
        for t in (self._timer, self._refire):
            if t is not None:
                t.cancel()
        self._timer = self._refire = None

    def _fail(self, err, report=True):
        """Stop all activity; report err to on_error once, or return it to raise.

        The error kept for later calls is a copy without a traceback: a traceback
        holds the frames it passed through, and one of them holds this transport.
        """
        if self._error is None:
            self._error = TLSError(err.kind, err.reason)
            self._cancel_timers()
            self.loop.remove(self.sock)
            self._registered = (False, False)
            on_error = self._on_error
            self._on_ready = self._on_error = None
            if report and on_error is not None:
                on_error(self._error)
        return err

    def _error_again(self):
        """Return a fresh copy of the stored error to raise (see _fail)."""
        return TLSError(self._error.kind, self._error.reason)


# ------------------------------------------------------------------ identity
def peer_identity(ssl_obj):
    """Return [CN..., DNS SAN...] of the verified peer certificate ([] if none).

    ssl_obj is an SSLObject or SSLSocket. An unverified certificate (verify mode
    CERT_NONE) gives no names: it proves nothing.
    """
    try:
        cert = ssl_obj.getpeercert()
    except ValueError:  # no handshake yet
        return []
    names = []
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value not in names:
                names.append(value)
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "DNS" and value not in names:
            names.append(value)
    return names


def identity_matches(expected, names):
    """Return True if expected equals one of names (case-insensitive, no wildcards)."""
    want = expected.lower()
    return any(n.lower() == want for n in names)


def identity_problem(expected, names):
    """Return None when names contain expected, else a reason for the log."""
    if not names:
        return "no verified client certificate (expected one naming %r)" % expected
    if identity_matches(expected, names):
        return None
    return "the client certificate names %s, expected %r" % (
        ", ".join(repr(n) for n in names), expected)
