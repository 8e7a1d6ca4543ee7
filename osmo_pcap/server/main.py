# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_server.py: receive clients' capture streams and write trace files.

One thread, one selectors loop (doc/server.md#behaviour). Admission
(admission.py) matches each accepted connection to a configured client, by its
source address and, with TLS, its certificate (doc/protocol.md#server-connection),
and hands it over ready; ingest decodes and validates its frames; a Recorder
per client writes, rotates, closes and moves its files, and acknowledges what
is stored to clients that ask for it (doc/protocol.md#acknowledged-delivery).
This module keeps the data flow, shutdown and metrics. Signals only set
flags; the loop does the work.

A new connection is a candidate until its first valid LINK_HDR
(doc/protocol.md#takeover): it gets the ACK_OFFER, but it touches neither the
client's live connection nor its recorder; with the LINK_HDR it is promoted
and replaces the live one.
"""

import argparse
import collections
import gc
import os
import signal
import socket
import sys
import time

from osmo_pcap import __version__, COPYRIGHT, daemon, log, memory, metrics, vtyimport, wire
from osmo_pcap.ini import ConfigError
from osmo_pcap.loop import Loop
from osmo_pcap.rotation import LocalClock
from osmo_pcap.server import config as serverconfig
from osmo_pcap.server import hooks
from osmo_pcap.server.admission import Admission
from osmo_pcap.server.ingest import Connection, format_peer
from osmo_pcap.server.recorder import COUNTERS, FileSettings, Recorder

DEFAULT_CONFIG = "osmo-pcap-server.ini"
# One receive buffer for all connections (HACKING.md#performance-notes): a read
# of up to RECV_SIZE bytes lands after the connection's incomplete last frame.
RECV_SIZE = 1 << 20
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 1.0
SHUTDOWN_GRACE = 2.0
STATUS_INTERVAL = 10.0   # systemd's STATUS= line is refreshed this often
PEER_LOG_INTERVAL = 10.0  # lines about one client's connections, per kind (doc/server.md#behaviour)

_log = log.get("server")


class Server(object):
    """The running server: listening socket, connections, recorders, hooks."""

    def __init__(self, cfg, loop=None, clock=None):
        self.cfg = cfg
        self.loop = loop or Loop()
        self.clock = clock or LocalClock()
        self.hooks = hooks.create(cfg.hooks, self.loop, clients=[c.name for c in cfg.clients])
        self.counters = {"hook_errors": 0}
        limiter = log.RateLimiter(10.0)
        files = FileSettings.from_config(cfg)
        self.recorders = [Recorder(c.name, c.store, files, self._file_closed, limiter)
                          for c in cfg.clients]
        self.recorder_of = dict((r.name, r) for r in self.recorders)
        self.admission = Admission(self.loop, cfg.clients, cfg.tls, self.attach)
        self.accept_log = log.RateLimiter(10.0)
        # Lines about one client's connections: at most one per client and kind
        # every 10 s, whoever connects from its address (doc/server.md#behaviour).
        self.peer_log = log.RateLimiter(PEER_LOG_INTERVAL)
        self.peer_held = {}       # key -> (level, the last line held back)
        self.conns = {}           # client name -> its live (promoted) Connection
        self.candidates = {}      # client name -> OrderedDict of candidates, oldest first
        self.candidate_max = self.admission.pending_per_ip
        self.trimmer = memory.Trimmer()
        self.listener = None
        self.rbuf = bytearray(RECV_SIZE + wire.HEADER_SIZE + wire.MAX_PAYLOAD)
        self.rview = memoryview(self.rbuf)
        self.bytes_read = 0
        self.stopping = False
        self._timers = []
        self.started_at = time.monotonic()
        self.stats_rates = daemon.RateMeter(time.monotonic)
        self.status_rates = daemon.RateMeter(time.monotonic)

    # ------------------------------------------------------------ start-up
    def recover(self):
        """Cut files an earlier run left open back to what it acknowledged; raise OSError."""
        for rec in self.recorders:
            line = rec.recover()
            if line is not None:
                _log.warning("%s", line)

    def listen(self):
        """Open the listening socket (raise OSError)."""
        cfg = self.cfg
        family = socket.AF_INET6 if ":" in cfg.listen else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # "::" takes IPv4 clients as well; their addresses are unmapped in admit().
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind((cfg.listen, cfg.port))
            s.listen(1024)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.listener = s
        self.loop.add_reader(s, self._on_accept)
        return s

    def start(self):
        """Register timers and signal handlers (after listen())."""
        loop = self.loop
        self._timers.append(loop.call_every(self.cfg.flush_interval, self.tick))
        if self.cfg.stats_interval:
            self._timers.append(loop.call_every(self.cfg.stats_interval, self.log_stats))
        self._timers.append(loop.call_every(PEER_LOG_INTERVAL, self.flush_peer_lines))
        if daemon.status_wanted():
            self._timers.append(loop.call_every(STATUS_INTERVAL, self.report_status))
        # The signals of all three programs (doc/operations.md#signals).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.on_signal(sig, self._on_stop_signal)
        loop.on_signal(signal.SIGHUP, self._on_hup)
        loop.on_signal(signal.SIGUSR1, self._on_status_signal)
        loop.on_signal(signal.SIGUSR2, self._on_rotate_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if memory.steady_heap():
            _log.debug("C heap: mmap threshold %d, trim threshold %d bytes",
                       memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD)
        kept = memory.keep_arenas()
        if kept:
            _log.debug("small-object arenas: %d bytes held by %d objects",
                       memory.ARENA_KEEP, kept)
        _log.info("listening on %s, %s", format_peer(self.listener.getsockname()),
                  self.cfg.summary())

    # ------------------------------------------------------------ connections
    def _on_accept(self):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: the listener stays readable, so pause
                # accepting for a moment instead of spinning.
                if self.accept_log.ok("accept") is not None:
                    _log.error("accept failed: %s; pausing accepts for %gs",
                               e.strerror or e, ACCEPT_PAUSE)
                self.loop.remove_reader(self.listener)
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accept)
                return
            self.admission.admit(sock, addr)

    def _resume_accept(self):
        if self.listener is not None:
            self.loop.add_reader(self.listener, self._on_accept)

    def peer_line(self, name, kind, level, message):
        """Log a line about client name's connections, rate-limited per client and kind."""
        key = (name, kind)
        held = self.peer_log.ok(key)
        if held is None:
            self.peer_held[key] = (level, message)
            return
        self.peer_held.pop(key, None)
        _log.log(level, "%s%s", message, " (%d similar suppressed)" % held if held else "")

    def flush_peer_lines(self, everything=False):
        """Timer: log the last line held back of every kind whose interval ended."""
        for key, held in self.peer_log.due(everything):
            item = self.peer_held.pop(key, None)
            if item is not None:
                _log.log(item[0], "%s%s", item[1],
                         " (%d similar suppressed)" % (held - 1) if held > 1 else "")

    def attach(self, entry, transport, peer):
        """Start reading an admitted connection, as a candidate (doc/protocol.md#takeover)."""
        rec = self.recorder_of[entry.name]
        rec.counters["connect"] += 1
        try:
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = Connection(self, transport, peer, rec, self.cfg.max_snaplen, self.cfg.acks)
        waiting = self.candidates.get(rec.name)
        if waiting is not None and len(waiting) >= self.candidate_max:
            self.drop(next(iter(waiting)), "%d newer connections from the client's address "
                      "are waiting for their LINK_HDR (limit %d)"
                      % (len(waiting), self.candidate_max), 30, "evicted")
        self.candidates.setdefault(rec.name, collections.OrderedDict())[conn] = True
        transport.set_reader(conn.on_readable)
        if self.cfg.acks:
            # Upstream clients read and drop what a server says; ours opt in with STREAM.
            conn.send(wire.encode_ack_offer(wire.ACK_FLAG_SYNC if self.cfg.ack_sync else 0))
        how = ""
        if transport.is_tls:
            self.admission.counters["tls_connect"] += 1
            how = " (%s)" % transport.describe()
        if self.cfg.header_timeout:
            conn.header_timer = self.loop.call_later(self.cfg.header_timeout,
                                                     self._check_header, conn)
        self.peer_line(rec.name, "connected", 20, "%s: connected%s" % (conn.label, how))
        return conn

    def promote(self, conn):
        """A candidate sent a valid LINK_HDR: it becomes the client's live connection."""
        rec = conn.recorder
        waiting = self.candidates.get(rec.name)
        if waiting is not None:
            waiting.pop(conn, None)
            if not waiting:
                del self.candidates[rec.name]
        if conn.header_timer is not None:
            conn.header_timer.cancel()
            conn.header_timer = None
        old = self.conns.get(rec.name)
        if old is not None:
            self.drop(old, "replaced by a new connection from %s, which sent a valid LINK_HDR"
                      % format_peer(conn.peer), 20, "replaced")
        conn.live = True
        self.conns[rec.name] = conn
        rec.new_connection()
        self.call_hooks("client_connected", rec.name, conn.peer)

    def _check_header(self, conn):
        conn.header_timer = None
        if not conn.closed and conn.parser.link is None:
            self.drop(conn, "no LINK_HDR within header_timeout (%gs)" % self.cfg.header_timeout,
                      30, "header_timeout")

    def drop(self, conn, reason, level=20, kind="end"):
        """Close a connection; a live one also closes its client's current file.

        kind groups the log line for rate limiting (per client, and apart for
        candidates, so a flood of them cannot hide the live connection's lines).
        """
        if conn.closed:
            return
        rec = conn.recorder
        if not conn.live:
            waiting = self.candidates.get(rec.name)
            if waiting is not None:
                waiting.pop(conn, None)
                if not waiting:
                    del self.candidates[rec.name]
            live = self.conns.get(rec.name)
            self.peer_line(rec.name, ("candidate", kind), level, "%s: disconnected: %s%s" % (
                conn.label, reason, "; the live connection from %s goes on"
                % format_peer(live.peer) if live is not None else ""))
            conn.close()
            return
        if self.conns.get(rec.name) is conn:
            del self.conns[rec.name]
        self.peer_line(rec.name, kind, level, "%s: disconnected: %s" % (conn.label, reason))
        rec.close_file("disconnect")
        if conn.streaming:
            conn.streaming = False
            if rec.broken is None and rec.durable != conn.acked_durable:
                # What the last file got, acknowledged if the client still listens:
                # it need not send that again.
                try:
                    conn.send_ack(rec.checkpoint())
                except OSError:
                    pass
            rec.end_stream()
        conn.close()
        self.call_hooks("client_disconnected", rec.name)

    def reject(self, conn, err):
        """A peer broke a rule: count it by reason and disconnect it."""
        rej = conn.recorder.rejected
        rej[err.code] = rej.get(err.code, 0) + 1
        self.drop(conn, "protocol violation [%s]: %s" % (err.code, err), 30, err.code)

    # ------------------------------------------------------------ data
    def link_header(self, conn, link):
        """The connection's parser accepted a LINK_HDR (a validate.LinkInfo)."""
        if not conn.live:
            self.promote(conn)
        rec = conn.recorder
        rec.set_link(link)
        self.call_hooks("link_header", rec.name, link)

    def records(self, conn, out, nbytes):
        """Hand a connection's validated LINK_DATA payloads to the hooks and the recorder."""
        rec = conn.recorder
        if self.hooks:
            name = rec.name
            link = conn.parser.link
            for h in tuple(self.hooks):  # hook_failed() may remove one
                try:
                    for p in out:
                        h.data(name, link, p)
                except Exception:
                    self.hook_failed(h, "data")
        rec.write(out, nbytes, self.clock.now())
        if rec.broken is not None and conn.streaming:
            self.drop(conn, "cannot store: %s; the client keeps the records and sends "
                      "them again" % rec.broken, 40)

    # ------------------------------------------------------------ acknowledged delivery
    def stream_start(self, conn, msg):
        """A client names its stream (STREAM): answer what is stored; False if dropped."""
        rec = conn.recorder
        if not conn.live:
            # Only a connection that proved itself may touch the client's stream state.
            self.reject(conn, wire.FrameError("stream-early", "STREAM before the "
                                              "connection's first LINK_HDR"))
            return False
        if conn.streaming:
            return self._stream_jump(conn, msg)
        if conn.frames:
            self.reject(conn, wire.FrameError("stream-late", "STREAM after %d LINK_DATA "
                                              "frame(s)" % conn.frames))
            return False
        skip, gap, start = rec.begin_stream(msg.stream_id, msg.first_seq)
        conn.streaming = True
        conn.next_in, conn.want = msg.first_seq, start
        if gap:
            self._gap_log(conn, start - gap, start - 1)
        self.peer_line(rec.name, "stream", 20, "%s: acknowledged stream %s from frame %d%s" % (
            conn.label, msg.stream_id.hex()[:16], msg.first_seq,
            ", %d frame(s) stored already are skipped" % skip if skip else ""))
        self.acknowledge(conn)
        return not conn.closed

    def _stream_jump(self, conn, msg):
        """A STREAM during the stream: the client gave frames up; the next one is later."""
        rec = conn.recorder
        if msg.stream_id != rec.stream.stream_id or msg.first_seq < conn.next_in:
            self.reject(conn, wire.FrameError(
                "stream-twice", "a second STREAM that does not continue the stream (frame "
                "%d of %s after frame %d of %s)" % (msg.first_seq, msg.stream_id.hex()[:16],
                                                  conn.next_in, rec.stream.stream_id.hex()[:16])))
            return False
        conn.next_in = msg.first_seq
        if msg.first_seq > conn.want:
            gap = msg.first_seq - conn.want
            rec.jump(gap)
            self._gap_log(conn, conn.want, msg.first_seq - 1)
            conn.want = msg.first_seq
        return True

    def _gap_log(self, conn, first, last):
        self.peer_line(conn.recorder.name, "gap", 30, "%s: frames %d to %d never arrived: the "
                       "client gave them up (queue or spool full, max_age, or it restarted "
                       "without a spool)" % (conn.label, first, last))

    def acknowledge(self, conn):
        """Write the client's state, then acknowledge what is durable."""
        rec = conn.recorder
        try:
            seq = rec.checkpoint()
        except OSError as e:
            self.drop(conn, "cannot write %s: %s; nothing more is acknowledged"
                      % (rec.state_file.path, e.strerror or e), 40)
            return
        rec.counters["acked"] += rec.durable - conn.acked_durable
        conn.acked_durable = rec.durable
        conn.send_ack(seq)

    def call_hooks(self, method, *args):
        """Call method on every hook; a hook that raises is logged and removed."""
        for h in list(self.hooks):
            try:
                getattr(h, method)(*args)
            except Exception:
                self.hook_failed(h, method)

    def hook_failed(self, hook, method):
        """Drop a hook whose code raised: a bug there must not stop capture."""
        _log.exception("hook %s failed in %s(); it is disabled until restart",
                       type(hook).__name__, method)
        self.counters["hook_errors"] += 1
        if hook in self.hooks:
            self.hooks.remove(hook)
            if method != "close":
                try:
                    hook.close()
                except Exception:
                    pass

    def _file_closed(self, name, path):
        self.call_hooks("file_closed", name, path)

    # ------------------------------------------------------------ timers, signals
    def tick(self):
        """Flush buffered data and close files whose period ended."""
        now = self.clock.now()
        for rec in self.recorders:
            rec.tick(now)
        for conn in [c for c in self.conns.values() if c.streaming]:
            rec = conn.recorder
            if rec.broken is not None:
                self.drop(conn, "cannot store: %s; the client keeps the records and sends "
                          "them again" % rec.broken, 40)
            elif rec.durable != conn.acked_durable:
                self.acknowledge(conn)
        self.trimmer.maybe_trim(self.admission.counters["connect"])
        idle = self.cfg.idle_timeout
        if idle:
            limit = time.monotonic() - idle
            for conn in [c for c in self.all_connections() if c.last_rx < limit]:
                self.drop(conn, "nothing received for idle_timeout (%gs)" % idle, 30, "idle")

    def all_connections(self):
        """Return every connection: the live ones and the candidates."""
        out = list(self.conns.values())
        for waiting in self.candidates.values():
            out.extend(waiting)
        return out

    def rotate_all(self, reason):
        for rec in self.recorders:
            rec.rotate(reason)

    def _on_hup(self, signum):
        # Logs only: logrotate's postrotate must not split the traces.
        if log.reopen():
            _log.info("SIGHUP: log file reopened")
        else:
            _log.info("SIGHUP: no log file to reopen")

    def _on_rotate_signal(self, signum):
        _log.info("SIGUSR2: rotating all files")
        self.rotate_all("SIGUSR2")

    def _on_status_signal(self, signum):
        _log.info("SIGUSR1: status")
        self.log_stats()
        for line in self.status_lines():
            _log.info("status: %s", line)
        self.report_status()   # systemd's STATUS= line too

    def _on_stop_signal(self, signum):
        if not self.stopping:
            _log.info("signal %d: stopping", signum)
            daemon.notify_stopping()
            self.stopping = True
            self.loop.stop()

    # ------------------------------------------------------------ shutdown
    def shutdown(self, grace=SHUTDOWN_GRACE):
        """Stop accepting, read what already arrived, close and move every file."""
        self.stopping = True
        if self.listener is not None:
            self.loop.remove(self.listener)
            self.listener.close()
            self.listener = None
        for t in self._timers:
            t.cancel()
        deadline = time.monotonic() + grace
        while self.conns and time.monotonic() < deadline:
            before = self.bytes_read
            self.loop.run_once(0.05)
            if self.bytes_read == before:
                break
        self.admission.close_pending()
        for conn in self.all_connections():
            self.drop(conn, "server shutting down")
        self.flush_peer_lines(everything=True)
        for rec in self.recorders:
            rec.close_file("shutdown")
            rec.state_file.close()
        self.call_hooks("close")
        self.loop.close()

    # ------------------------------------------------------------ metrics
    def metric_samples(self):
        """Return [(name, type, help, labels, value)] (doc/operations.md#metrics)."""
        out = []

        def add(name, kind, text, labels, value):
            out.append(("osmo_pcap_server_" + name, kind, text, labels, value))
        c = self.admission.counters
        add("connections_total", "counter", "Accepted TCP connections, known or unknown", {},
            c["connect"])
        for reason in sorted(k for k in c if k not in ("connect", "tls_connect")):
            add("refused_connections_total", "counter",
                "Connections refused before reaching a client entry, by reason", {"reason": reason},
                c[reason])
        if self.cfg.tls is not None:
            add("tls_connections_total", "counter", "TLS connections admitted for a client entry",
                {}, c["tls_connect"])
        add("clients_connected", "gauge", "Configured clients with an open connection", {},
            len(self.conns))
        add("open_files", "gauge", "Trace files being written", {},
            sum(1 for r in self.recorders if r.file is not None))
        add("hook_errors_total", "counter", "Hooks disabled after an error in their code", {},
            self.counters["hook_errors"])
        for key in ("base_path", "completed_path"):
            path = getattr(self.cfg, key)
            if path is None:
                continue
            try:
                st = os.statvfs(path)
            except OSError:
                continue
            lab = {"directory": key}
            add("filesystem_avail_bytes", "gauge",
                "Bytes available to unprivileged users on the filesystem of the directory",
                lab, st.f_bavail * st.f_frsize)
            add("filesystem_size_bytes", "gauge", "Size of the filesystem of the directory",
                lab, st.f_blocks * st.f_frsize)
        for rec in self.recorders:
            lab = {"client": rec.name}
            k = rec.counters
            for key, name, text in _CLIENT_METRICS:
                add("client_" + name, "counter", text, lab, k[key])
            for code in sorted(rec.rejected):
                add("client_rejected_connections_total", "counter",
                    "Connections dropped for a protocol violation, by rule",
                    dict(lab, reason=code), rec.rejected[code])
            add("client_connected", "gauge", "1 while the client is connected", lab,
                1 if rec.name in self.conns else 0)
            if rec.last_packet is not None:
                add("client_last_packet_timestamp_seconds", "gauge",
                    "Time of the last packet received from the client (Unix time)", lab,
                    rec.last_packet)
        out.extend(hooks.metric_samples(self.hooks))
        return out

    def log_stats(self):
        """Log the counters (stats_interval, SIGUSR1) in upstream's names (doc/server.md#counters),
        with the rates since the last stats line and the uptime."""
        counters = dict(self.admission.counters, **self.counters)
        parts = ["server:%s=%d" % (k, v) for k, v in sorted(counters.items())]
        tot = dict((k, sum(r.counters[k] for r in self.recorders)) for k in COUNTERS)
        parts += ["server:%s=%d" % (k, tot[k]) for k in COUNTERS if k != "connect"]
        values = {"pkts": tot["pkts"], "bytes": tot["bytes"]}
        for rec in self.recorders:
            values["pkts " + rec.name] = rec.counters["pkts"]
            values["bytes " + rec.name] = rec.counters["bytes"]
        r = self.stats_rates.rates(values)
        _log.info("stats %s (%s pkts/s, %s/s over %s; uptime %s)", " ".join(parts),
                  _rate(r["pkts"]), _human(r["bytes"]), daemon.format_duration(r["interval"]),
                  daemon.format_duration(time.monotonic() - self.started_at))
        for rec in self.recorders:
            rej = sum(rec.rejected.values())
            _log.info("stats %s: %s rejected=%d (%s pkts/s, %s/s)", rec.name,
                      " ".join("peer:%s=%d" % (k, rec.counters[k]) for k in COUNTERS), rej,
                      _rate(r["pkts " + rec.name]), _human(r["bytes " + rec.name]))

    def status_lines(self):
        """The state of every client and hook, for the SIGUSR1 status report."""
        now = time.time()
        out = ["uptime %s, %d of %d client(s) connected, %d file(s) open" % (
            daemon.format_duration(time.monotonic() - self.started_at), len(self.conns),
            len(self.recorders), sum(1 for r in self.recorders if r.file is not None))]
        for rec in self.recorders:
            conn = self.conns.get(rec.name)
            f = rec.file
            out.append("client %s: %s, %s, %s" % (
                rec.name, "connected from %s" % format_peer(conn.peer) if conn is not None
                else "not connected",
                "open file %s (%d bytes)" % (f.path, f.size) if f is not None else "no open file",
                "last packet %s ago" % daemon.format_duration(now - rec.last_packet)
                if rec.last_packet is not None else "no packet yet"))
        for name, kind, _, labels, value in hooks.metric_samples(self.hooks):
            if kind == "gauge":
                out.append("hook %s%s = %d" % (name[len("osmo_pcap_server_"):],
                                               " %s" % labels["key"] if "key" in labels else "",
                                               value))
        return out

    def report_status(self):
        """Refresh systemd's STATUS= line (every STATUS_INTERVAL under systemd)."""
        daemon.notify_status(self.status_text())

    def status_text(self):
        tot = sum(r.counters["pkts"] for r in self.recorders)
        byt = sum(r.counters["bytes"] for r in self.recorders)
        r = self.status_rates.rates({"pkts": tot, "bytes": byt})
        where = format_peer(self.listener.getsockname()) if self.listener else "-"
        return "listening on %s; %d of %d client(s) connected, %s pkts/s, %s/s, %d file(s) " \
            "open" % (where, len(self.conns), len(self.recorders), _rate(r["pkts"]),
                      _human(r["bytes"]), sum(1 for x in self.recorders if x.file is not None))


def _rate(value):
    return "%.1f" % value if value < 100 else "%d" % value


def _human(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0


# Per-client counters (recorder.COUNTERS) as osmo_pcap_server_client_NAME{client}.
_CLIENT_METRICS = (
    ("connect", "connections_total", "Connections of the client (peer:connect)"),
    ("pkts", "packets_total", "LINK_DATA records accepted (peer:pkts)"),
    ("bytes", "received_bytes_total",
     "Bytes of accepted LINK_DATA payloads: pcap record headers or pcapng blocks with "
     "the packet data (peer:bytes)"),
    ("link_hdr", "link_headers_total", "LINK_HDR messages accepted"),
    ("file_rotated", "file_rotations_total",
     "Files closed by rotation: size, time, link change, signal (peer:file_rotated)"),
    ("files_closed", "files_closed_total", "Files closed for any reason"),
    ("dropped", "dropped_packets_total", "Accepted records that could not be written"),
    ("write_errors", "write_errors_total", "Failed trace file creations and writes"),
    ("acked", "acknowledged_packets_total",
     "LINK_DATA records acknowledged to the client as stored"),
    ("duplicates", "duplicate_packets_total",
     "Records sent again after a reconnect and skipped: stored already"),
    ("seq_gap", "lost_packets_total",
     "Records the client gave up before sending them (gaps in its acknowledged stream)"),
    ("cut_back", "cut_back_files_total",
     "Files left open by a crash and cut back to what was acknowledged"),
)


# ---------------------------------------------------------------- main
def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="osmo_pcap_server.py",
        description="Receive osmo-pcap client streams and write rotating trace files.")
    ap.add_argument("-V", "--version", action="version",
                    version="osmo_pcap_server.py %s\n%s" % (__version__, COPYRIGHT))
    ap.add_argument("-c", "--config-file", metavar="FILE", default=DEFAULT_CONFIG,
                    help="INI configuration file (default: %(default)s)")
    ap.add_argument("--check-config", action="store_true",
                    help="load and validate the configuration, print a summary, exit")
    daemon.add_arguments(ap)
    ap.add_argument("--import-vty", metavar="FILE",
                    help="print the INI equivalent of an upstream osmo-pcap-server VTY "
                         "config file, then exit")
    return ap.parse_args(argv)


def load_config(path):
    """Load and check the config and what start-up writes; raise ConfigError.

    --check-config and start-up run the same checks (doc/operations.md#check-config).
    """
    cfg = serverconfig.load(path)
    serverconfig.check_dirs(cfg)
    serverconfig.check_files(cfg)
    return cfg


def open_server(cfg):
    """Build the server (hooks included) and open its listening socket.

    Return the Server, or None after logging why it could not start.
    """
    try:
        server = Server(cfg)
    except OSError as e:
        _log.error("cannot start the server hooks: %s", e)
        return None
    try:
        server.recover()
    except OSError as e:
        _log.error("cannot recover the files of an earlier run: %s", e)
        for h in server.hooks:
            h.close()
        return None
    try:
        server.listen()
    except OSError as e:
        _log.error("cannot listen on %s port %d: %s", cfg.listen, cfg.port, e.strerror or e)
        for h in server.hooks:
            h.close()
        return None
    return server


def detach(server, args):
    """Start the metrics endpoint, then daemonize or write the pidfile; raise on failure.

    Return the metrics endpoint (None without [metrics]) for the caller to close.
    """
    endpoint = None
    if server.cfg.metrics:
        endpoint = metrics.MetricsServer(server.loop, server.cfg.metrics, server.metric_samples,
                                         program="server", log=log.get("metrics")).start()
    try:
        if args.daemonize:
            daemon.daemonize(pidfile=args.pidfile)
        elif args.pidfile:
            daemon.own_pidfile(args.pidfile)
    except BaseException:
        if endpoint is not None:
            endpoint.close()
        raise
    return endpoint


def run(server):
    """Run the loop until SIGTERM/SIGINT, then shut down in order."""
    # Thousands of memoryview slices per read wake the cyclic collector for
    # nothing (HACKING.md#perf-gc): raise its threshold.
    gc.set_threshold(100000, 50, 50)
    server.start()
    log.schedule_flush(server.loop)
    daemon.start_watchdog(server.loop)
    daemon.notify_ready(server.status_text())
    try:
        server.loop.run()
    finally:
        # Also after an exception in a callback: buffered records reach their files.
        server.shutdown()
        _log.info("stopped")


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    if args.import_vty:
        return vtyimport.main("server", args.import_vty, load=load_config)
    try:
        cfg = load_config(args.config_file)
    except ConfigError as e:
        print("osmo_pcap_server.py: %s" % e, file=sys.stderr)
        return 2 if args.check_config else 1
    if args.check_config:
        print("config OK: %s: %s" % (args.config_file, cfg.summary()))
        for note in serverconfig.unchecked(cfg):
            print("not checked: %s" % note)
        return 0
    try:
        if args.pidfile:
            daemon.check_pidfile(daemon.absolute(args.pidfile))
        note = log.configure_daemon(cfg.log, "osmo-pcap-server", args.daemonize)
    except (ConfigError, daemon.DaemonError) as e:
        print("osmo_pcap_server.py: %s" % e, file=sys.stderr)
        return 1
    if note and sys.stderr.isatty():
        print("osmo_pcap_server.py: %s" % note, file=sys.stderr)
    server = open_server(cfg)
    if server is None:
        return 1
    try:
        endpoint = detach(server, args)
    except (metrics.MetricsError, daemon.DaemonError) as e:
        _log.error("%s", e)
        return 1
    try:
        run(server)
    finally:
        if endpoint is not None:  # its listening socket, not left to the finalizer
            endpoint.close()
    return 0
