# SPDX-License-Identifier: AGPL-3.0-or-later
"""Prometheus metrics over HTTP from the program's own event loop.

`[metrics] listen = 127.0.0.1:9101` (off by default) serves GET /metrics in
the text exposition format 0.0.4. The program supplies a callable returning
samples (name, type, help, labels dict, value); this module adds the process
figures, renders, and answers HTTP/1.0 and 1.1 requests without threads:
one small non-blocking connection object per scraper, bounded in number,
request size and time.
"""

import errno
import os
import re
import socket
import time

from osmo_pcap import __version__
from osmo_pcap.ini import parse_host_port

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192      # bytes of request line + headers we are willing to hold
MAX_CLIENTS = 16        # concurrent scrapers; beyond, the oldest without a request goes
CLIENT_TIMEOUT = 10.0   # seconds a scraper may take to send its request
ACCEPT_PAUSE = 1.0      # out of descriptors: stop accepting this long (no spinning)
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
PATH = "/metrics"


class MetricsError(Exception):
    """The metrics endpoint cannot start (address in use, bad address)."""


def read_config(section):
    """Return (host, port) from a config.Section for [metrics], or None when off."""
    def parse_listen(text):
        if text.lower() in ("off", "no", "none"):
            return None
        return parse_host_port(text)
    listen = section.get("listen", parse_listen, None)
    section.finish()
    return listen


# ------------------------------------------------------------ rendering
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = ("counter", "gauge", "untyped", "summary", "histogram")


def escape_help(text):
    """Escape a HELP text: backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(value):
    """Escape a label value: backslash, double quote and newline."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def format_value(value):
    """Return a sample value as the exposition format writes it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "%d" % value
    v = float(value)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return "%d" % v
    return repr(v)


def render(samples):
    """Return the exposition text for samples [(name, type, help, labels, value)].

    Samples of one name are grouped under one HELP/TYPE pair, in order of
    first appearance. An invalid name or label name, or the same name and
    labels twice (Prometheus rejects the whole scrape then), raises
    ValueError: that is a bug in the caller, not something to hide.
    """
    order = []
    groups = {}
    seen = set()
    for name, mtype, help_text, labels, value in samples:
        if not _NAME_RE.match(name):
            raise ValueError("invalid metric name %r" % name)
        if mtype not in TYPES:
            raise ValueError("invalid metric type %r for %s" % (mtype, name))
        key = (name, tuple(sorted((k, str(v)) for k, v in (labels or {}).items())))
        if key in seen:
            raise ValueError("duplicate sample %s%s" % (name, dict(key[1])))
        seen.add(key)
        if name not in groups:
            groups[name] = (mtype, help_text, [])
            order.append(name)
        groups[name][2].append((labels or {}, value))
    out = []
    for name in order:
        mtype, help_text, rows = groups[name]
        out.append("# HELP %s %s\n" % (name, escape_help(help_text or name)))
        out.append("# TYPE %s %s\n" % (name, mtype))
        for labels, value in rows:
            if labels:
                parts = []
                for k in sorted(labels):
                    if not _LABEL_RE.match(k) or k.startswith("__"):
                        raise ValueError("invalid label name %r on %s" % (k, name))
                    parts.append('%s="%s"' % (k, escape_label(labels[k])))
                out.append("%s{%s} %s\n" % (name, ",".join(parts), format_value(value)))
            else:
                out.append("%s %s\n" % (name, format_value(value)))
    return "".join(out)


# ------------------------------------------------------------ process figures
def _process_start_time():
    """Return the Unix time this process started (from /proc), or now."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat", "r") as f:
            btime = next(int(l.split()[1]) for l in f if l.startswith("btime "))
        return btime + ticks / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


START_TIME = _process_start_time()


def _max_fds():
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == getattr(resource, "RLIM_INFINITY", -1) else soft


def process_samples(program=None):
    """Return the process samples every osmo-pcap program exports.

    The names and meanings are those of the Prometheus client libraries'
    process collector (as node_exporter's and most exporters' process_*
    series), so stock dashboards and alerts work unchanged.
    """
    t = os.times()
    out = [
        ("process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.", None, START_TIME),
        ("process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.", None, t[0] + t[1]),
    ]
    try:
        with open("/proc/self/statm", "r") as f:
            fields = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        out.append(("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                    None, int(fields[0]) * page))
        out.append(("process_resident_memory_bytes", "gauge",
                    "Resident memory size in bytes.", None, int(fields[1]) * page))
    except (OSError, ValueError, IndexError):
        pass
    try:
        out.append(("process_open_fds", "gauge", "Number of open file descriptors.",
                    None, len(os.listdir("/proc/self/fd"))))
    except OSError:
        pass
    limit = _max_fds()
    if limit is not None:
        out.append(("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                    None, limit))
    labels = {"version": __version__}
    if program:
        labels["program"] = program
    out.append(("osmo_pcap_build_info", "gauge", "Program and version; the value is always 1.",
                labels, 1))
    return out


# ------------------------------------------------------------ HTTP
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}


def http_response(status, body=b"", content_type="text/plain; charset=utf-8",
                  head=False, extra=()):
    """Return a complete HTTP/1.1 response that closes the connection."""
    lines = ["HTTP/1.1 %d %s" % (status, _REASONS[status]),
             "Content-Type: " + content_type,
             "Content-Length: %d" % len(body),
             "Connection: close"]
    lines.extend(extra)
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head_bytes if head else head_bytes + body


def parse_request_line(data):
    """Return (method, path) from the request bytes up to the blank line, or None."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
        return None
    return parts[0], parts[1].split("?", 1)[0]


class _Scraper(object):
    """One HTTP connection: read one request, write one response, close."""

    __slots__ = ("sock", "inbuf", "out", "timer")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.out = None
        self.timer = None


class MetricsServer(object):
    """Serve samples() at /metrics on address from loop (a loop.Loop)."""

    def __init__(self, loop, address, samples, program=None, log=None):
        self.loop = loop
        self.address = address
        self.samples = samples
        self.program = program
        self.log = log
        self.sock = None
        self.clients = {}
        self.scrapes = 0

    def start(self):
        """Bind and listen; raise MetricsError with the address in the message."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(16)
            s.setblocking(False)
        except (OSError, OverflowError) as e:
            s.close()
            raise MetricsError("[metrics] listen = %s: cannot listen: %s"
                               % (self.where(), getattr(e, "strerror", None) or e))
        self.sock = s
        self.address = s.getsockname()[:2]
        self.loop.add_reader(s, self._accept)
        if self.log:
            self.log.info("metrics: serving http://%s%s", self.where(), PATH)
        return self

    def where(self):
        host, port = self.address
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)

    def close(self):
        """Stop listening and drop every open scraper connection."""
        for c in list(self.clients.values()):
            self._drop(c)
        if self.sock is not None:
            self.loop.remove(self.sock)
            self.sock.close()
            self.sock = None

    # ------------------------------------------------ connections
    def _accept(self):
        for _ in range(MAX_CLIENTS):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno not in _RESOURCE_ERRNOS:
                    return  # ECONNABORTED...: try again on the next wake-up
                # EMFILE and friends: the socket stays readable; retrying at once
                # would spin the loop (and log) until a descriptor is free.
                if self.log:
                    self.log.warning("metrics: accept failed: %s; pausing accepts for %gs",
                                     e.strerror or e, ACCEPT_PAUSE)
                self.loop.remove_reader(self.sock)
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accept, self.sock)
                return
            if len(self.clients) >= MAX_CLIENTS:
                # Connections that send nothing must not lock scrapers out for
                # CLIENT_TIMEOUT: the oldest one still without a request makes room.
                idle = next((o for o in self.clients.values() if o.out is None), None)
                if idle is None:
                    conn.close()
                    continue
                self._drop(idle)
            conn.setblocking(False)
            c = _Scraper(conn)
            c.timer = self.loop.call_later(CLIENT_TIMEOUT, self._timeout, c)
            self.clients[conn.fileno()] = c
            self.loop.add_reader(conn, lambda c=c: self._read(c))

    def _resume_accept(self, sock):
        if self.sock is sock:  # not closed (or restarted) in the meantime
            self.loop.add_reader(sock, self._accept)

    def _timeout(self, c):
        c.timer = None
        if c.out is None:
            self._respond(c, http_response(408, b"request timeout\n"))
            c.timer = self.loop.call_later(CLIENT_TIMEOUT, self._timeout, c)
        else:
            self._drop(c)  # a scraper that does not read its answer

    def _read(self, c):
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(c)
            return
        c.inbuf += data
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = c.inbuf.find(b"\n\n")
        if end < 0:
            if len(c.inbuf) > MAX_REQUEST:
                self._respond(c, http_response(431, b"request too large\n"))
            return
        self._respond(c, self.handle(c.inbuf[:end]))

    def handle(self, request):
        """Return the response bytes for one request (line and headers)."""
        parsed = parse_request_line(request)
        if parsed is None:
            return http_response(400, b"bad request\n")
        method, path = parsed
        if method not in ("GET", "HEAD"):
            return http_response(405, b"only GET and HEAD\n", extra=("Allow: GET, HEAD",))
        if path != PATH:
            return http_response(404, b"not found; try /metrics\n", head=method == "HEAD")
        try:
            text = render(list(self.samples()) + process_samples(self.program))
        except Exception:  # a bug in a samples() provider: keep serving, log it
            if self.log:
                self.log.exception("metrics: cannot render samples")
            return http_response(500, b"internal error\n")
        self.scrapes += 1
        return http_response(200, text.encode("utf-8"), CONTENT_TYPE, head=method == "HEAD")

    def _respond(self, c, data):
        c.out = memoryview(data)
        self.loop.remove_reader(c.sock)
        self.loop.add_writer(c.sock, lambda c=c: self._write(c))

    def _write(self, c):
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c)
            return
        c.out = c.out[n:]
        if not len(c.out):
            self._drop(c)

    def _drop(self, c):
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None
        self.clients.pop(c.sock.fileno(), None)
        self.loop.remove(c.sock)
        c.sock.close()
