# SPDX-License-Identifier: AGPL-3.0-or-later
"""Talking to the server's live tap: connect (TCP or TLS), ask, read pcapng blocks.

The tap sends a pcapng stream from the first moment; a request line makes it
start a new section whose SHB comments carry the answer
(doc/hooks.md#tap-requests). TapStream reads whole blocks until that answer,
then hands over the raw bytes that follow, which need no parsing: the tap
only sends well-formed blocks.
"""

import os
import socket
import struct
import time

from osmo_pcap import pcapng

REPLY_TAG = "osmo-pcap-tap/1"   # osmo_pcap/server/tap.py REPLY_TAG
RECV_SIZE = 1 << 16
MAX_BLOCK = 1 << 24             # larger than any block the tap sends


class TapError(Exception):
    """A problem reaching or understanding the tap, as one readable line."""


def _where(address):
    host, port = address
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def tls_context(cfg):
    """Return the client-side ssl context for cfg (tls = yes); raise TapError."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if cfg.tls_ca:
            ctx.load_verify_locations(cafile=cfg.tls_ca)
        else:
            ctx.load_default_certs()
        if cfg.tls_cert:
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
    except (OSError, ssl.SSLError) as e:
        raise TapError("cannot load the TLS files (tls_ca %s, tls_cert %s, tls_key %s): %s"
                       % (cfg.tls_ca or "-", cfg.tls_cert or "-", cfg.tls_key or "-",
                          getattr(e, "strerror", None) or getattr(e, "reason", None) or e))
    return ctx


def connect(cfg):
    """Return a connected (TLS-wrapped when configured) blocking socket; raise TapError."""
    where = _where(cfg.tap)
    try:
        sock = socket.create_connection(cfg.tap, timeout=cfg.timeout)
    except OSError as e:
        raise TapError("cannot connect to the tap at %s: %s" % (where, e.strerror or e))
    if not cfg.tls:
        return sock
    import ssl
    ctx = tls_context(cfg)
    try:
        return ctx.wrap_socket(sock, server_hostname=cfg.tls_hostname or cfg.tap[0])
    except ssl.CertificateError as e:
        sock.close()
        raise TapError("TLS with the tap at %s: the server certificate does not match: %s"
                       % (where, e))
    except ssl.SSLError as e:
        sock.close()
        hint = ""
        if "WRONG_VERSION_NUMBER" in str(e) or "wrong version number" in str(e):
            hint = " (the tap speaks plain TCP: set tap_tls = yes on the server, or tls = no here)"
        raise TapError("TLS handshake with the tap at %s failed: %s%s"
                       % (where, getattr(e, "reason", None) or e, hint))
    except OSError as e:
        sock.close()
        raise TapError("TLS handshake with the tap at %s failed: %s" % (where, e.strerror or e))


class TapStream(object):
    """One connection to the tap, read as pcapng blocks until an answer arrives."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.where = _where(cfg.tap)
        self.sock = connect(cfg)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def ask(self, line):
        """Send one request line; raise TapError."""
        try:
            self.sock.sendall(line.encode("ascii") + b"\n")
        except OSError as e:
            raise TapError("cannot send to the tap at %s: %s" % (self.where, e.strerror or e))

    def _fill(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            raise TapError("the tap at %s did not answer within %gs (a server older than this "
                           "extcap ignores requests: update it)" % (self.where, self.cfg.timeout))
        except OSError as e:
            raise TapError("reading from the tap at %s failed: %s" % (self.where,
                                                                      e.strerror or e))
        if not data:
            self.eof = True
        self.buf += data

    def _block(self):
        """Return the next whole block's (type, byte order, length), reading as needed."""
        bo = "<"
        while True:
            if len(self.buf) >= 12:
                bo = pcapng.shb_byteorder(self.buf) or bo
                btype, total = struct.unpack_from(bo + "II", self.buf, 0)
                if total < 12 or total & 3 or total > MAX_BLOCK:
                    raise TapError("the tap at %s sent something that is not pcapng (block of "
                                   "%d bytes): is it an osmo-pcap tap?" % (self.where, total))
                if len(self.buf) >= total:
                    return btype, bo, total
            if self.eof:
                hint = "" if self.cfg.tls else (" (a TLS tap, tap_tls = yes, closes plain "
                                                "connections: then set tls = yes here)")
                raise TapError("the tap at %s closed the connection before answering%s"
                               % (self.where, hint))
            self._fill()

    def answer(self):
        """Skip blocks until the reply section; return (reply, detail lines, SHB bytes).

        The bytes after the reply SHB stay in self.buf. An ERROR reply raises TapError.
        """
        deadline = time.monotonic() + self.cfg.timeout
        self.sock.settimeout(self.cfg.timeout)
        while True:
            btype, bo, total = self._block()
            block = bytes(self.buf[:total])
            del self.buf[:total]
            if btype == pcapng.BT_SHB:
                try:
                    _, _, opts = pcapng.parse_shb(block)
                except pcapng.PcapngFormatError as e:
                    raise TapError("the tap at %s sent a bad section header: %s"
                                   % (self.where, e))
                comments = [v.decode("utf-8", "replace") for c, v in opts
                            if c == pcapng.OPT_COMMENT]
                if comments and comments[0].startswith(REPLY_TAG + " "):
                    reply = comments[0][len(REPLY_TAG) + 1:]
                    if reply.startswith("ERROR"):
                        raise TapError("the tap at %s refused: %s" % (self.where,
                                                                     reply[5:].strip()))
                    return reply, comments[1:], block
            if time.monotonic() > deadline:
                raise TapError("the tap at %s did not answer within %gs (a server older than "
                               "this extcap ignores requests: update it)"
                               % (self.where, self.cfg.timeout))


def list_clients(cfg):
    """Return [(name, peer or None)] of the server's configured clients; raise TapError."""
    t = TapStream(cfg)
    try:
        t.ask("CLIENTS")
        reply, lines, _ = t.answer()
    finally:
        t.close()
    if reply != "OK CLIENTS":
        raise TapError("the tap at %s answered %r to CLIENTS" % (t.where, reply))
    out = []
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] == "client":
            out.append((words[1], words[3] if words[2] == "connected" and len(words) > 3
                        else None))
    return out


def stream(cfg, client, write, header):
    """Stream the packets of client (None: all clients) to write() until the tap closes.

    header is the SHB written first (in the tap's byte order, little-endian); the
    tap's own reply SHB is replaced by it. Raise TapError when the tap refuses
    or the connection fails; return normally when the server closes the stream.
    """
    t = TapStream(cfg)
    try:
        t.ask("STREAM " + (client or "*"))
        t.answer()
        t.sock.settimeout(None)         # a quiet client may send nothing for hours
        write(header + bytes(t.buf))
        t.buf = bytearray()
        while True:
            try:
                data = t.sock.recv(RECV_SIZE)
            except OSError as e:
                raise TapError("reading from the tap at %s failed: %s"
                               % (t.where, e.strerror or e))
            if not data:
                return
            write(data)
    finally:
        t.close()


def fifo_writer(path):
    """Return (write, close) for Wireshark's FIFO (or any file)."""
    fd = os.open(path, os.O_WRONLY)

    def write(data):
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    return write, lambda: os.close(fd)
