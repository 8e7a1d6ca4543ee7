# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_server.py: receive clients' capture streams and write trace files.

One thread, one selectors loop (spec 4). Each connection is matched to a
configured client by its source address (spec 4.2), its frames are decoded
and validated (ingest), and a Recorder per client writes, rotates, closes and
moves its files. Signals only set flags; the loop does the work.
"""

import argparse
import collections
import gc
import ipaddress
import resource
import signal
import socket
import sys
import time

from osmo_pcap import __version__, COPYRIGHT, daemon, log, metrics, validate, vtyimport
from osmo_pcap.server import hooks
from osmo_pcap.server import config as serverconfig
from osmo_pcap.ini import ConfigError
from osmo_pcap.server.ingest import Connection, TLSConnection, format_peer
from osmo_pcap.loop import Loop
from osmo_pcap.server.recorder import COUNTERS, Recorder
from osmo_pcap.rotation import LocalClock
from osmo_pcap import wire

DEFAULT_CONFIG = "osmo-pcap-server.ini"
# One receive buffer for all connections (perf-notes): a read of up to
# RECV_SIZE bytes lands after the connection's incomplete last frame.
RECV_SIZE = 1 << 20
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 1.0
SHUTDOWN_GRACE = 2.0
# Connections not yet attached (waiting for their first bytes, or in their TLS
# handshake) each hold a descriptor for up to tls_handshake_timeout: a
# peer opening many must not starve the server of descriptors for its trace
# files and clients. At most PENDING_MAX wait (and a quarter of RLIMIT_NOFILE),
# a quarter of that (at most PENDING_PER_IP) from one address; beyond, the
# oldest waiting connection (of that address) is closed, counted as pending_full.
PENDING_MAX = 1024
PENDING_PER_IP = 64

_log = log.get("server")

# Connections refused before they reach a client entry (server with tls_cert):
# no_data (closed or silent before the first byte), tls_mode (TLS to a
# plaintext entry or the reverse), tls_identity (certificate names no fitting
# entry), tls_<kind> for failed handshakes (tls_timeout: the stall counter).
TLS_COUNTERS = ("tls_connect", "no_data", "tls_mode", "tls_identity", "tls_timeout",
                "tls_verify", "tls_rejected", "tls_not_tls", "tls_eof", "tls_io",
                "tls_protocol", "pending_full")
_NO_DATA = {"eof": "closed before sending anything",
            "error": "socket error before sending anything"}


TLS_RECORD_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello (tls.py; ssl is
                             # imported only when TLS is configured)


def pending_limits(nofile=None):
    """Return (total, per address) limits of waiting connections for a descriptor limit."""
    if nofile is None:
        try:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            nofile = resource.RLIM_INFINITY
    if nofile == resource.RLIM_INFINITY or nofile < 0:
        total = PENDING_MAX
    else:
        total = max(8, min(PENDING_MAX, nofile // 4))
    return total, max(2, min(PENDING_PER_IP, total // 4))


class _TLSKind(object):
    """Stands for a TLS connection in ClientEntryTLS.check_peer before its handshake."""
    is_tls = True


class Server(object):
    """The running server: listening socket, connections, recorders, hooks."""

    def __init__(self, cfg, loop=None, clock=None):
        self.cfg = cfg
        self.loop = loop or Loop()
        self.clock = clock or LocalClock()
        self.hooks = hooks.create(cfg.hooks, self.loop)
        self.counters = {"connect": 0, "no_client": 0}
        self.unknown_log = log.RateLimiter(10.0)
        limiter = log.RateLimiter(10.0)
        self.recorders = [Recorder(c, cfg, self._file_closed, limiter) for c in cfg.clients]
        self.by_ip = dict((r.ip, r) for r in self.recorders if r.ip is not serverconfig.ANY)
        self.any_ip = [r for r in self.recorders if r.ip is serverconfig.ANY]
        self.entry_tls = dict((c.name, c.tls) for c in cfg.clients)
        # Connections still sniffed or in their handshake, oldest first:
        # key -> (peer, close), and the same by address.
        self.pending = collections.OrderedDict()
        self.pending_by_ip = {}
        self.pending_max, self.pending_per_ip = pending_limits()
        self.refuse_log = log.RateLimiter(10.0)
        if cfg.tls is not None:
            for k in TLS_COUNTERS:
                self.counters[k] = 0
        self.conns = {}
        self.listener = None
        self.rbuf = bytearray(RECV_SIZE + wire.HEADER_SIZE + wire.MAX_PAYLOAD)
        self.rview = memoryview(self.rbuf)
        self.bytes_read = 0
        self.stopping = False
        self._timers = []

    # ------------------------------------------------------------ start-up
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.on_signal(sig, self._on_stop_signal)
        loop.on_signal(signal.SIGHUP, self._on_hup)
        loop.on_signal(signal.SIGUSR1, self._on_usr1)
        loop.on_signal(signal.SIGUSR2, lambda signum: self.log_stats())
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
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
                if self.unknown_log.ok("accept") is not None:
                    _log.error("accept failed: %s; pausing accepts for %gs",
                               e.strerror or e, ACCEPT_PAUSE)
                self.loop.remove_reader(self.listener)
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accept)
                return
            self.counters["connect"] += 1
            self.admit(sock, addr)

    def _resume_accept(self):
        if self.listener is not None:
            self.loop.add_reader(self.listener, self._on_accept)

    def admit(self, sock, addr):
        """Match an accepted socket to a configured client by source address (spec 4.2).

        A later TLS step (peek the first byte: 0x16 = ClientHello) fits here,
        before attach().
        """
        ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        rec = self.by_ip.get(ip)
        if rec is None and not self.any_ip:
            self.counters["no_client"] += 1
            held = self.unknown_log.ok("unknown")
            if held is not None:
                _log.warning("connection from unknown address %s closed (no [client] has this "
                             "ip)%s", ip, " (%d more suppressed)" % held if held else "")
            sock.close()
            return None
        peer = (str(ip), addr[1])
        if self.cfg.tls is None:
            return self.attach(rec, sock, peer)  # no TLS here: plain as ever
        self._sniff(rec, sock, peer)
        return None

    # ------------------------------------------------------------ TLS (doc/tls.md)
    def _sniff(self, rec, sock, peer):
        """Wait for the first bytes: a TLS ClientHello or an osmo-pcap frame."""
        from osmo_pcap import tls as tlsmod
        key = id(sock)
        started = self.loop.clock()

        def on_result(kind, first):
            self._release(key)
            self._sniffed(rec, sock, peer, kind, started)

        sniffer = tlsmod.Sniffer(self.loop, sock, on_result, self.cfg.tls.handshake_timeout)

        def cancel():
            sniffer.cancel()
            sock.close()
        self._hold(key, peer, cancel)

    def _hold(self, key, peer, close):
        """Track a connection that is not attached yet, within the pending limits."""
        ip = peer[0]
        mine = self.pending_by_ip.get(ip)
        if mine is not None and len(mine) >= self.pending_per_ip:
            self._evict(next(iter(mine)), "%d connections from this address" % len(mine))
        elif len(self.pending) >= self.pending_max:
            self._evict(next(iter(self.pending)), "%d connections" % len(self.pending))
        self.pending[key] = (peer, close)
        self.pending_by_ip.setdefault(ip, collections.OrderedDict())[key] = True

    def _release(self, key):
        """Forget a pending connection (attached, refused or closed); return its entry."""
        entry = self.pending.pop(key, None)
        if entry is not None:
            ip = entry[0][0]
            mine = self.pending_by_ip[ip]
            del mine[key]
            if not mine:
                del self.pending_by_ip[ip]
        return entry

    def _evict(self, key, how_many):
        peer, close = self._release(key)
        self.counters["pending_full"] += 1
        held = self.refuse_log.ok((peer[0], "pending_full"))
        if held is not None:
            _log.warning("connection from %s closed before its first bytes or TLS handshake "
                         "completed: %s already waiting (limits %d, %d per address)%s",
                         format_peer(peer), how_many, self.pending_max, self.pending_per_ip,
                         " (%d more suppressed)" % held if held else "")
        close()

    def _sniffed(self, rec, sock, peer, kind, started):
        from osmo_pcap import tls as tlsmod
        if kind in ("eof", "timeout", "error"):
            why = _NO_DATA.get(kind) or "no data within %g s" % self.cfg.tls.handshake_timeout
            self._refuse(sock, peer, rec, "no_data", why, 20 if kind == "eof" else 30)
            return
        if kind != "tls":  # osmo-pcap (or garbage, which validation rejects)
            if rec is None:
                self.counters["no_client"] += 1
                self._refuse(sock, peer, None, None, "plaintext, and no [client] has this "
                             "ip (ip = any entries take TLS with a certificate only)")
                return
            entry = self.entry_tls[rec.name]
            if not entry.allows(False):
                self._refuse(sock, peer, rec, "tls_mode",
                             entry.check_peer(tlsmod.PlainStream(self.loop, sock)))
                return
            self.attach(rec, sock, peer)
            return
        entry = self.entry_tls[rec.name] if rec is not None else None
        if entry is not None and not entry.allows(True) and not self.any_ip:
            self._refuse(sock, peer, rec, "tls_mode", entry.check_peer(_TLSKind()))
            return
        st = self.cfg.tls.stream(self.loop, sock)
        key = id(st)
        timeout = self.cfg.tls.handshake_timeout
        self._hold(key, peer, st.close)

        def on_ready():
            self._release(key)
            self._tls_ready(rec, st, peer)

        def on_error(err):
            self._release(key)
            self._refuse(st, peer, rec, "tls_" + err.kind.replace("-", "_"),
                         "TLS handshake failed: %s" % err if err.kind != tlsmod.TIMEOUT
                         else "TLS handshake not completed within %g s" % timeout)
        # tls_handshake_timeout counts from the accept, not from the first byte:
        # a peer trickling its ClientHello cannot hold on for twice as long.
        st.start(on_ready, on_error, max(0.001, timeout - (self.loop.clock() - started)))

    def _tls_ready(self, rec, st, peer):
        """The handshake is done: find the entry the connection may feed."""
        from osmo_pcap import tls as tlsmod
        names = st.peer_names()
        counter = "tls_identity"
        why = None
        if rec is not None:
            entry = self.entry_tls[rec.name]
            why = entry.check_peer(st)
            if why is None:
                return self.attach(rec, st.sock, peer, st)
            if not entry.allows(True):
                counter = "tls_mode"
        for other in self.any_ip:
            entry = self.entry_tls[other.name]
            if tlsmod.identity_matches(entry.identity, names) and entry.check_peer(st) is None:
                return self.attach(other, st.sock, peer, st)
        if why is None:
            why = "no [client] has this ip, and %s" % (
                "the client certificate names %s, which no ip = any entry expects"
                % ", ".join(repr(n) for n in names) if names
                else "it presented no certificate (ip = any entries need one)")
        self._refuse(st, peer, rec, counter, why)
        return None

    def _refuse(self, closer, peer, rec, counter, reason, level=30):
        """Count, log (rate-limited per address and reason) and close a new connection."""
        if counter is not None:
            self.counters[counter] = self.counters.get(counter, 0) + 1
        held = self.refuse_log.ok((peer[0], counter))
        if held is not None:
            _log.log(level, "connection from %s%s refused: %s%s", format_peer(peer),
                     " (client %s)" % rec.name if rec is not None else "", reason,
                     " (%d more suppressed)" % held if held else "")
        closer.close()

    def attach(self, rec, sock, peer, stream=None):
        """Start reading a configured client's new connection; it replaces an old one."""
        old = self.conns.get(rec.name)
        if old is not None:
            self.drop(old, "replaced by a new connection from %s" % format_peer(peer))
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        rec.new_connection()
        if stream is None:
            conn = Connection(self, sock, peer, rec)
            self.conns[rec.name] = conn
            self.loop.add_reader(sock, conn.on_readable)
            how = ""
        else:
            conn = TLSConnection(self, stream, peer, rec)
            self.conns[rec.name] = conn
            stream.set_reader(conn.on_readable)
            self.counters["tls_connect"] += 1
            names = stream.peer_names()
            how = " (%s, %s)" % (stream.version(), "certificate %s" % ", ".join(names)
                                 if names else "no client certificate")
        if self.cfg.header_timeout:
            conn.header_timer = self.loop.call_later(self.cfg.header_timeout,
                                                     self._check_header, conn)
        _log.info("%s: connected%s", conn.label, how)
        self.call_hooks("client_connected", rec.name, peer)
        return conn

    def _check_header(self, conn):
        if not conn.closed and conn.parser.link is None:
            self.drop(conn, "no LINK_HDR within header_timeout (%gs)" % self.cfg.header_timeout,
                      30)

    def drop(self, conn, reason, level=20):
        """Close a connection and its client's current file."""
        if conn.closed:
            return
        self.loop.remove(conn.sock)
        conn.close()
        rec = conn.recorder
        if self.conns.get(rec.name) is conn:
            del self.conns[rec.name]
        _log.log(level, "%s: disconnected: %s", conn.label, reason)
        rec.close_file("disconnect")
        self.call_hooks("client_disconnected", rec.name)

    def reject(self, conn, err):
        """A peer broke a rule: count it by reason and disconnect it."""
        rej = conn.recorder.rejected
        rej[err.code] = rej.get(err.code, 0) + 1
        if err.code == "unknown-type" and conn.parser.link is None \
                and str(err).startswith("unknown message type %d " % TLS_RECORD_HANDSHAKE):
            err = "%s: a TLS ClientHello, but the server has no tls_cert" % err
            self.drop(conn, "protocol violation [unknown-type]: %s" % err, 30)
            return
        self.drop(conn, "protocol violation [%s]: %s" % (err.code, err), 30)

    # ------------------------------------------------------------ data
    def link_header(self, conn, payload):
        """Validate a LINK_HDR; return False when the connection was dropped."""
        try:
            link = validate.check_link_hdr(payload, self.cfg.max_snaplen)
        except validate.ValidationError as e:
            self.reject(conn, e)
            return False
        conn.parser.set_link(link)
        rec = conn.recorder
        rec.set_link(link)
        self.call_hooks("link_header", rec.name, link)
        return True

    def records(self, rec, link, out, nbytes):
        """Hand validated LINK_DATA payloads to the hooks and the recorder."""
        if self.hooks:
            name = rec.name
            for h in tuple(self.hooks):  # hook_failed() may remove one
                try:
                    for p in out:
                        h.data(name, link, p)
                except Exception:
                    self.hook_failed(h, "data")
        rec.write(out, nbytes, self.clock.now())

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
        self.counters["hook_errors"] = self.counters.get("hook_errors", 0) + 1
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
        idle = self.cfg.idle_timeout
        if idle:
            limit = time.monotonic() - idle
            for conn in [c for c in self.conns.values() if c.last_rx < limit]:
                self.drop(conn, "nothing received for idle_timeout (%gs)" % idle, 30)

    def rotate_all(self, reason):
        for rec in self.recorders:
            rec.rotate(reason)

    def _on_hup(self, signum):
        log.reopen()
        _log.info("SIGHUP: log reopened, starting new files")
        self.rotate_all("SIGHUP")

    def _on_usr1(self, signum):
        _log.info("SIGUSR1: rotating all files")
        self.rotate_all("SIGUSR1")

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
        for _, close in list(self.pending.values()):
            close()
        self.pending.clear()
        self.pending_by_ip.clear()
        for conn in list(self.conns.values()):
            self.drop(conn, "server shutting down")
        for rec in self.recorders:
            rec.close_file("shutdown")
        self.call_hooks("close")
        self.loop.close()

    # ------------------------------------------------------------ metrics
    def metric_samples(self):
        """Return [(name, type, help, labels, value)] with stable osmo_pcap_ names."""
        out = []
        total = dict((k, 0) for k in COUNTERS)
        rejected = {}
        for rec in self.recorders:
            for k in COUNTERS:
                total[k] += rec.counters[k]
            for code, n in rec.rejected.items():
                rejected[code] = rejected.get(code, 0) + n
        c = self.counters
        out.append(("osmo_pcap_server_connect_total", "counter",
                    "Accepted TCP connections, known or unknown", {}, c["connect"]))
        out.append(("osmo_pcap_server_no_client_total", "counter",
                    "Connections from addresses of no configured client", {}, c["no_client"]))
        for key, help_ in _PEER_METRICS:
            if key != "connect":  # server:connect counts every accept, above
                out.append(("osmo_pcap_server_%s_total" % key, "counter", help_, {},
                            total[key]))
        for code in sorted(rejected):
            out.append(("osmo_pcap_server_rejected_total", "counter",
                        "Connections dropped for a protocol violation, by rule",
                        {"reason": code}, rejected[code]))
        if self.cfg.tls is not None:
            out.append(("osmo_pcap_server_tls_connect_total", "counter",
                        "TLS connections accepted for a client entry", {},
                        c["tls_connect"]))
            for key in TLS_COUNTERS[1:]:
                out.append(("osmo_pcap_server_refused_total", "counter",
                            "Connections refused before reaching a client entry "
                            "(TLS mode, identity, handshake, no data), by reason",
                            {"reason": key}, c[key]))
        out.append(("osmo_pcap_server_clients_connected", "gauge",
                    "Configured clients with an open connection", {}, len(self.conns)))
        out.append(("osmo_pcap_server_open_files", "gauge", "Trace files being written", {},
                    sum(1 for r in self.recorders if r.file is not None)))
        for rec in self.recorders:
            lab = {"client": rec.name}
            for key, help_ in _PEER_METRICS:
                out.append(("osmo_pcap_peer_%s_total" % key, "counter", help_, dict(lab),
                            rec.counters[key]))
            for code in sorted(rec.rejected):
                out.append(("osmo_pcap_peer_rejected_total", "counter",
                            "Connections dropped for a protocol violation, by rule",
                            dict(lab, reason=code), rec.rejected[code]))
            out.append(("osmo_pcap_peer_connected", "gauge", "1 while the client is connected",
                        dict(lab), 1 if rec.name in self.conns else 0))
        return out

    def log_stats(self):
        """Log the counters (stats_interval, SIGUSR2) in upstream's names (spec 4.11)."""
        parts = ["server:%s=%d" % (k, v) for k, v in sorted(self.counters.items())]
        tot = dict((k, sum(r.counters[k] for r in self.recorders)) for k in COUNTERS)
        parts += ["server:%s=%d" % (k, tot[k]) for k in COUNTERS if k != "connect"]
        _log.info("stats %s", " ".join(parts))
        for rec in self.recorders:
            rej = sum(rec.rejected.values())
            _log.info("stats %s: %s rejected=%d", rec.name,
                      " ".join("peer:%s=%d" % (k, rec.counters[k]) for k in COUNTERS), rej)


_PEER_METRICS = (
    ("connect", "Connections of the client (peer:connect)"),
    ("pkts", "LINK_DATA records accepted (peer:pkts)"),
    ("bytes", "Payload bytes of accepted LINK_DATA records (peer:bytes)"),
    ("link_hdr", "LINK_HDR messages accepted"),
    ("file_rotated", "Files closed by rotation: size, time, link change, signal"),
    ("files_closed", "Files closed for any reason"),
    ("dropped", "Accepted records that could not be written"),
    ("write_errors", "Failed trace file creations and writes"),
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
    """Load and check the config and its directories; raise ConfigError."""
    cfg = serverconfig.load(path)
    serverconfig.check_dirs(cfg)
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
    # nothing (perf-notes): raise its threshold.
    gc.set_threshold(100000, 50, 50)
    server.start()
    log.schedule_flush(server.loop)
    daemon.start_watchdog(server.loop)
    daemon.notify_ready("listening on %s" % format_peer(server.listener.getsockname()))
    server.loop.run()
    server.shutdown()
    _log.info("stopped")


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    if args.import_vty:
        return vtyimport.main("server", args.import_vty)
    try:
        cfg = load_config(args.config_file)
    except ConfigError as e:
        print("osmo_pcap_server.py: config error: %s" % e, file=sys.stderr)
        return 2 if args.check_config else 1
    if args.check_config:
        print("config OK: %s: %s" % (args.config_file, cfg.summary()))
        return 0
    try:
        if args.pidfile:
            daemon.check_pidfile(daemon.absolute(args.pidfile))
        log.configure(cfg.log, program="osmo-pcap-server")
    except (ConfigError, daemon.DaemonError) as e:
        print("osmo_pcap_server.py: %s" % e, file=sys.stderr)
        return 1
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
