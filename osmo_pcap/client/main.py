# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_client.py: capture with libpcap and forward to osmo-pcap servers.

Client wires the parts together: capture sources (capture.py) append framed
records to one batch per round; the batch goes to every server connection
(forward.py), to the IPIP senders per packet. Start-up steps are separate
functions so that daemonising and other process features can be slotted in.
"""

import argparse
import grp
import os
import pwd
import signal
import socket
import sys

from osmo_pcap import __version__, COPYRIGHT
from osmo_pcap import log, pcapfile, pcapng
from osmo_pcap.client import capture
from osmo_pcap.client import config as clientconfig
from osmo_pcap.client import libpcap
from osmo_pcap import daemon, memory, metrics, vtyimport
from osmo_pcap.ini import ConfigError, suggest
from osmo_pcap.client.forward import LOSS_REASONS, UP, Forwarder
from osmo_pcap.client.ipip import IpipSender
from osmo_pcap.client.gprs import GprsFilter
from osmo_pcap.client import privileges
from osmo_pcap.loop import Loop

PCAP_STATS_INTERVAL = 10.0   # libpcap statistics are polled this often (and when read)
STATUS_INTERVAL = 10.0       # systemd's STATUS= line is refreshed this often
READ_FILE_IDLE = 0.02
# Small-object arenas kept (memory.keep_arenas) before CPython 3.10, for a capture
# round of 10000 100-byte frames (about 1.5 MiB): 1.07x on 3.6. From 3.10 CPython
# keeps one empty 1 MiB arena itself, and keeping more measured no gain (0.97-0.98x).
ARENA_KEEP = (2 << 20) if sys.version_info < (3, 10) else 0


class StartupError(Exception):
    """A problem that stops start-up; str() is the message for the user."""


def exclusion_filter(peers):
    """Return the filter text that leaves out our own traffic (detect_loop).

    peers: [(protocol, address, port)] of the servers connected to or being
    dialled, by address: a host name never reaches libpcap, so a name that
    does not resolve cannot stop the capture (doc/client.md#detect-loop).
    """
    parts = []
    for proto, addr, port in sorted(set(peers), key=lambda p: (p[1], p[2], p[0])):
        if proto == "ipip":
            parts.append("not (host %s and ip proto 4)" % addr)
        else:
            parts.append("not (host %s and tcp port %d)" % (addr, port))
    return " and ".join(parts)


def combine_filters(user, exclusion):
    """Return the filter installed in libpcap: the user's and the exclusion."""
    if not exclusion:
        return user
    if user:
        return "(%s) and %s" % (user, exclusion)
    return exclusion


def new_client_counters():
    """Global counters, upstream's names plus ours (doc/client.md#counters)."""
    return {"captured:pkts": 0, "captured:bytes": 0, "bpf:too_big": 0, "client:no_mem": 0,
            "client:pcap_err": 0, "pcap:recv": 0, "pcap:drop": 0, "pcap:ifdrop": 0,
            "client:too_large": 0}


class Client(object):
    """The running client: sources, connections, counters, timers."""

    def __init__(self, cfg, loop=None, logger=None):
        self.cfg = cfg
        self.loop = loop or Loop()
        self.log = logger or log.get("client")
        self.counters = new_client_counters()
        self.batch = bytearray()
        self.batch_base = 0        # captured:pkts when the batch was last handed on
        self.max_caplen = clientconfig.MAX_CAPLEN[cfg.file_format]
        self.gprs = GprsFilter(cfg.gprs_ports, self.log) if cfg.gprs_filter else None
        self.peers = {}            # server name -> (protocol, address, port) (detect_loop)
        self.filter_expr = cfg.filter   # what live handles have installed
        self.library = None
        self.sources = []
        self.file_source = None
        self.ipip = []
        self.forwarders = []
        self.link_hdr = None
        self.header_dlt = None
        self.header_device = None
        self.started = False
        self.stopping = False
        self.exit_status = 0
        self.tick_interval = cfg.capture_timeout
        self.ready = False         # READY=1 sent: every device captured at least once
        self.started_at = self.loop.clock()
        self.stats_rates = daemon.RateMeter(self.loop.clock)
        self.status_rates = daemon.RateMeter(self.loop.clock)

    # -------------------------------------------------------------- start-up
    def start(self, detach=None):
        """Run every start-up step; raise StartupError.

        detach() (daemonizing) runs once the devices are open, before
        privileges are dropped, so the pidfile can still be written.
        """
        self.load_library()
        if memory.steady_heap():
            self.log.debug("C heap: mmap threshold %d, trim threshold %d bytes",
                           memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD)
        kept = memory.keep_arenas(ARENA_KEEP)
        if kept:
            self.log.debug("small-object arenas: %d bytes held by %d objects", ARENA_KEEP, kept)
        self.check_filter()
        self.create_connections()
        self.open_sources()
        if detach is not None:
            detach()
        self.drop_privileges()
        self.start_connections()
        self.install_handlers()

    def load_library(self):
        try:
            self.library = libpcap.load(self.cfg.libpcap)
        except libpcap.LibpcapError as e:
            raise StartupError(str(e))
        self.log.debug("libpcap %s (%s), %s", self.library.version, self.library.path,
                       self.library.layout.describe())

    def check_filter(self):
        """Compile the filter once up front: an invalid one stops start-up
        (doc/protocol.md#diff-filter)."""
        if not self.cfg.filter:
            return
        h = libpcap.Handle.open_dead(self.library, libpcap.DLT_EN10MB, self.cfg.snaplen)
        try:
            h.check_filter(self.cfg.filter)
        except libpcap.LibpcapError as e:
            hint = ""
            if "unknown host" in str(e):
                hint = " (libpcap resolves host names when it compiles the filter, so " \
                       "DNS must answer at start-up; write addresses to avoid that)"
            raise StartupError("%s[client] filter: %s%s" % (_at(self.cfg), e, hint))
        finally:
            h.close()

    def create_connections(self):
        for s in self.cfg.servers:
            if not s.enabled:
                self.log.info("server %s: enabled = no, not connecting", s.name)
            elif s.protocol == "ipip":
                sender = IpipSender(s, self.log, self.loop)
                sender.on_address = self.peer_address
                try:
                    sender.start()
                except OSError as e:
                    raise StartupError(str(e))
                self.ipip.append(sender)
            else:
                try:
                    fwd = Forwarder(s, self.loop, self.log)
                except OSError as e:
                    raise StartupError("%s [server %s] spool_dir: %s" % (
                        self.cfg.path, s.name, e.strerror or e))
                fwd.on_address = self.peer_address
                self.forwarders.append(fwd)

    # -------------------------------------------------------------- detect_loop
    def peer_address(self, conn, address):
        """A connection is about to use address: keep its traffic out of the capture.

        Only the BPF program of the open handles changes; the link header (and
        its pcapng if_filter, the configured filter) stays, so a reconnect
        starts no new trace file.
        """
        if not self.cfg.detect_loop:
            return
        cfg = conn.cfg
        self.peers[conn.name] = (cfg.protocol, address, cfg.port or 0)
        expr = combine_filters(self.cfg.filter, exclusion_filter(self.peers.values()))
        if expr == self.filter_expr:
            return
        self.filter_expr = expr
        self.log.info("detect_loop: capture filter now %r", expr)
        for dev in self.sources:
            if dev.handle is not None and dev is not self.file_source:
                try:
                    dev.handle.set_filter(expr)
                except libpcap.LibpcapError as e:
                    self.log.error("%s: %s", dev.prefix, e)

    def open_sources(self):
        """Open the capture file or every device; absent devices are retried later."""
        if self.cfg.read_file:
            src = capture.FileSource(self, self.cfg.read_file)
            try:
                h = src.open()
            except libpcap.LibpcapError as e:
                raise StartupError("[client] read_file: %s" % e)
            self.file_source = src
            self.sources = [src]
            # Records longer than snaplen are cut to it (counted as oversize).
            self.max_caplen = min(self.max_caplen, self.cfg.snaplen)
            src.attach_sink()
            self.set_link_hdr(self._encode_header(self.cfg.snaplen, [(src.name, src.dlt)]))
            return
        self.sources = [capture.Device(self, name, i) for i, name in enumerate(self.cfg.devices)]
        for dev in self.sources:
            try:
                dev.open(fatal=False)
            except libpcap.LibpcapError as e:
                raise StartupError(str(e))
            if dev.refused_dlt is not None:
                raise StartupError(
                    "device %s has link type %d but %s has %d: one pcap stream carries one "
                    "link type; set [client] file_format = pcapng" % (
                        dev.name, dev.refused_dlt, self.header_device, self.header_dlt))
        self.update_link_hdr()
        for dev in self.sources:
            if dev.handle is not None:
                req = dev.handle.required_timeout()
                if req:
                    self.tick_interval = min(self.tick_interval, req)

    def drop_privileges(self):
        """Switch to user/group, keeping CAP_NET_RAW to reopen devices (privileges.py)."""
        cfg = self.cfg
        if not cfg.user and not cfg.group:
            return
        # Modules imported lazily later may be unreadable for the new user (a
        # Python installed under /root): load them while we still can.
        import encodings.idna  # noqa: F401  (host names in getaddrinfo)
        try:
            gid = grp.getgrnam(cfg.group).gr_gid if cfg.group else pwd.getpwnam(cfg.user).pw_gid
            uid = pwd.getpwnam(cfg.user).pw_uid if cfg.user else None
            for conn in self.forwarders:
                if conn.spool is not None:
                    _chown_tree(conn.spool.dir, uid if uid is not None else -1, gid)
            warnings = privileges.switch_user(uid, gid)
        except (OSError, KeyError, privileges.PrivilegeError) as e:
            raise StartupError("cannot drop privileges to user %s group %s: %s"
                               % (cfg.user, cfg.group, e))
        for w in warnings:
            self.log.warning("%s", w)
        kept = privileges.current().get("CapEff", 0) if uid is not None else None
        self.log.info("running as user %s group %s%s", cfg.user or os.getuid(),
                      cfg.group or gid, "" if kept is None else
                      ", keeping %s to reopen devices" % privileges.describe(kept))

    def start_connections(self):
        self.started = True
        for conn in self.forwarders:
            conn.start()

    def install_handlers(self):
        loop = self.loop
        if self.file_source is not None:
            loop.call_later(0, self.pump_file)
        else:
            loop.call_every(self.tick_interval, self.tick)
            loop.call_every(PCAP_STATS_INTERVAL, self.poll_stats)
        if self.cfg.stats_interval > 0:
            loop.call_every(self.cfg.stats_interval, self.log_stats)
        if daemon.status_wanted():
            loop.call_every(STATUS_INTERVAL, self.report_state)
        # The signals of all three programs (doc/operations.md#signals).
        loop.on_signal(signal.SIGUSR1, self.on_status_signal)
        loop.on_signal(signal.SIGUSR2, self.on_rotate_signal)
        loop.on_signal(signal.SIGTERM, self.on_stop_signal)
        loop.on_signal(signal.SIGINT, self.on_stop_signal)
        loop.on_signal(signal.SIGHUP, self.on_hup_signal)

    def on_hup_signal(self, signum):
        if log.reopen():
            self.log.info("SIGHUP: log file reopened")
        else:
            self.log.info("SIGHUP: no log file to reopen")

    def on_status_signal(self, signum):
        self.log.info("SIGUSR1: status")
        self.log_stats()
        for dev in self.sources:
            self.log.info("status: %s", dev.describe_state())
        self.report_state()   # systemd's STATUS= line too

    def on_rotate_signal(self, signum):
        # The server cuts its trace files on SIGUSR2; a client has none, so a
        # SIGUSR2 sent to every osmo-pcap process changes nothing here.
        self.log.info("SIGUSR2: the client writes no trace files; nothing to rotate "
                      "(SIGUSR1 logs the status)")

    # -------------------------------------------------------------- link header
    def _encode_header(self, snaplen, devices):
        """devices: [(name, dlt)] in interface order."""
        if self.cfg.file_format == "pcap":
            return pcapfile.encode_global_header(snaplen, pcapfile.dlt_to_linktype(devices[0][1]))
        parts = [pcapng.encode_shb()]
        for name, dlt in devices:
            # if_filter is the configured filter, not the installed one: the
            # detect_loop exclusion changes with the connected addresses, and a
            # new header would start a new trace file on every reconnect.
            parts.append(pcapng.encode_idb(pcapfile.dlt_to_linktype(dlt), snaplen,
                                           if_name=name, if_filter=self.cfg.filter))
        return b"".join(parts)

    def _device_dlts(self):
        # predicted_dlt becomes the real one when a device opens
        return [(d.name, d.predicted_dlt) for d in self.sources]

    def update_link_hdr(self):
        """Rebuild the header from what the devices are (or are expected to be)."""
        devs = self._device_dlts()
        if self.cfg.file_format == "pcap":
            dlt = self.header_dlt
            if dlt is None:
                dlt = devs[0][1]
            devs = [(devs[0][0], dlt)]
        self.set_link_hdr(self._encode_header(self.cfg.snaplen, devs))

    def set_link_hdr(self, hdr):
        if hdr == self.link_hdr:
            return
        old = self.link_hdr
        self.link_hdr = hdr
        if old is not None and self.started:
            self.log.info("link header changed; announcing it to the servers")
        for fwd in self.forwarders:
            fwd.set_link_hdr(hdr)

    def accept_dlt(self, device, dlt):
        """Decide whether a device that just opened with dlt fits the stream."""
        if self.cfg.file_format == "pcapng":
            if dlt != device.predicted_dlt:
                device.predicted_dlt = dlt
                if self.link_hdr is not None:
                    self.update_link_hdr()
            return True
        if self.header_dlt is None:
            self.header_dlt = dlt
            self.header_device = device.name
            if self.link_hdr is not None:
                self.update_link_hdr()
            return True
        if dlt == self.header_dlt:
            return True
        if device.refused_dlt is None:
            self.log.error("device %s: link type %d differs from the stream's %d; not capturing "
                           "on it (use file_format = pcapng)", device.name, dlt, self.header_dlt)
        return False

    # -------------------------------------------------------------- data path
    def flush_batch(self):
        """Hand the frames of this round to every server's Forwarder."""
        batch = self.batch
        if batch:
            # The sources count each frame they append to the batch.
            count = self.counters["captured:pkts"] - self.batch_base
            self.batch_base += count
            for fwd in self.forwarders:
                fwd.enqueue(batch, count)
            del batch[:]

    def tick(self):
        """Dispatch after the capture time-out, for frames the fd did not announce."""
        for dev in self.sources:
            dev.run_round()
        self.flush_batch()

    def poll_stats(self):
        for dev in self.sources:
            dev.check_present()
            dev.poll_stats()

    def pump_file(self):
        """Replay read_file at the pace the servers accept; exit when all is sent."""
        if self.stopping:
            return
        src = self.file_source
        if not src.finished:
            if all(c.state == UP and c.qbytes < c.cfg.queue_size // 2
                   and not (c.spool is not None and c.spool.pending)
                   for c in self.forwarders if c.cfg.enabled):
                src.run_round()
                self.flush_batch()
                self.loop.call_later(0, self.pump_file)
                return
        elif not any(c.busy or (c.cfg.enabled and c.state != UP) for c in self.forwarders):
            self.log.info("read_file %s: %d packet(s) replayed and sent; exiting",
                          src.path, self.counters["captured:pkts"])
            self.begin_stop()
            return
        self.loop.call_later(READ_FILE_IDLE, self.pump_file)

    # -------------------------------------------------------------- stopping
    def on_stop_signal(self, signum):
        self.log.info("signal %d: stopping", signum)
        daemon.notify_stopping()
        self.begin_stop()

    def begin_stop(self):
        """Stop capturing, flush to connected servers for flush_timeout, then exit."""
        if self.stopping:
            return
        self.stopping = True
        for src in self.sources:
            if src.handle is not None and src is not self.file_source:
                src.run_round()
                src.poll_stats()
            src.close()
        self.flush_batch()
        self._deadline = self.loop.clock() + self.cfg.flush_timeout
        self._wait_flushed()

    def _wait_flushed(self):
        if any(c.busy for c in self.forwarders) and self.loop.clock() < self._deadline:
            self.loop.call_later(0.05, self._wait_flushed)
            return
        for conn in self.forwarders:
            conn.stop()
        for sender in self.ipip:
            sender.stop()
        self.log_stats()
        self.loop.stop()

    def close(self):
        for src in self.sources:
            src.close()
        self.loop.close()

    # -------------------------------------------------------------- readiness
    def device_changed(self):
        """A device opened or failed: tell systemd (READY=1 once all capture)."""
        if not self.started or self.stopping:
            return
        self.report_state()

    def waiting_devices(self):
        return [d for d in self.sources if d.handle is None and d is not self.file_source]

    def report_state(self):
        """Send READY=1 once every device captures, and the STATUS= line."""
        text = self.status_text()
        if not self.ready and not self.waiting_devices() and self.started:
            self.ready = True
            if self.file_source is None:
                self.log.info("all %d device(s) capturing", len(self.sources))
            daemon.notify_ready(text)
        else:
            daemon.notify_status(text)

    def status_text(self):
        """One line for systemd: what waits and why, then the rates."""
        waiting = self.waiting_devices()
        parts = []
        for d in waiting:
            parts.append("waiting for device %s (%s; retrying every %gs)"
                         % (d.name, d.waiting_why or "not open yet", self.cfg.reopen_interval))
        capturing = [d.name for d in self.sources if d.handle is not None]
        if self.file_source is not None:
            head = "replaying %s" % self.file_source.path
        elif capturing:
            head = "capturing on %s" % " ".join(capturing)
        else:
            head = "capturing on no device"
        conns = self.forwarders + self.ipip
        r = self.status_rates.rates(self._rate_values())
        line = "%s: %s pkts/s captured, %s pkts/s forwarded" % (
            head, _rate(r["captured"]), _rate(r["forwarded"]))
        for c in conns:
            q, sp, _ = c.queue_figures()
            line += "; server %s %s%s, queue %s%s" % (
                c.name, c.state, " (acknowledged)" if c.counters["ack:mode"] else "",
                human_bytes(q), ", spool %s" % human_bytes(sp) if c.spool is not None else "")
        return "; ".join(parts + [line])

    def _rate_values(self):
        return {"captured": self.counters["captured:pkts"],
                "bytes": self.counters["captured:bytes"],
                "forwarded": sum(c.delivered for c in self.forwarders + self.ipip)}

    # -------------------------------------------------------------- figures
    def totals(self):
        """Global counters including the per-server sums (doc/client.md#counters)."""
        out = dict(self.counters)
        conns = self.forwarders + self.ipip
        for key in ("server:connect", "client:queue_err", "client:write_err"):
            out[key] = sum(c.counters[key] for c in conns)
        out["gprs:dropped"] = self.gprs.dropped if self.gprs else 0
        return out

    def fresh_stats(self):
        """Fold libpcap's current statistics in (they are polled every 10 s otherwise)."""
        for dev in self.sources:
            if dev is not self.file_source:
                dev.poll_stats()

    def log_stats(self):
        self.fresh_stats()
        t = self.totals()
        r = self.stats_rates.rates(self._rate_values())
        self.log.info("stats: captured %d pkts %d bytes, too_big %d, pcap recv %d drop %d "
                      "ifdrop %d, pcap_err %d, queue_err %d, gprs dropped %d; %s pkts/s "
                      "%s/s captured, %s pkts/s forwarded over %s, uptime %s",
                      t["captured:pkts"], t["captured:bytes"], t["bpf:too_big"], t["pcap:recv"],
                      t["pcap:drop"], t["pcap:ifdrop"], t["client:pcap_err"],
                      t["client:queue_err"], t["gprs:dropped"], _rate(r["captured"]),
                      human_bytes(r["bytes"]), _rate(r["forwarded"]),
                      daemon.format_duration(r["interval"]),
                      daemon.format_duration(self.loop.clock() - self.started_at))
        for c in self.forwarders + self.ipip:
            q, sp, files = c.queue_figures()
            k = c.counters
            self.log.info("stats: server %s %s%s, connects %d, queued %d bytes, spool %d bytes "
                          "in %d file(s), dropped %d (%s), acknowledged %d, ack timeouts %d, "
                          "forwarded %d",
                          c.name, c.state, ", acknowledged mode" if k["ack:mode"] else "",
                          k["server:connect"], q, sp, files, k["client:queue_err"],
                          " ".join("%s %d" % (r_, k["lost:" + r_]) for r_ in LOSS_REASONS),
                          k["ack:acked"], k["ack:timeouts"], c.delivered)

    def metric_samples(self):
        """Return [(name, type, help, labels, value)] (doc/operations.md#metrics)."""
        self.fresh_stats()
        t = self.totals()
        out = []

        def add(name, kind, text, value, **labels):
            out.append(("osmo_pcap_client_" + name, kind, text, labels, value))

        add("captured_packets_total", "counter",
            "Frames captured and handed to the servers, after the filters (captured:pkts)",
            t["captured:pkts"])
        add("captured_bytes_total", "counter",
            "Captured bytes (caplen) of those frames (captured:bytes)", t["captured:bytes"])
        add("truncated_packets_total", "counter", "Frames cut by snaplen (bpf:too_big)",
            t["bpf:too_big"])
        add("cut_packets_total", "counter", "read_file records cut to snaplen",
            t["client:too_large"])
        add("gprs_dropped_packets_total", "counter", "Frames dropped by gprs_filter",
            t["gprs:dropped"])
        add("devices_waiting", "gauge", "Configured devices not capturing now",
            len(self.waiting_devices()))
        for dev in self.sources:
            c = dev.counters
            lab = {"device": dev.name}
            add("device_up", "gauge", "1 while the device is capturing", c["up"], **lab)
            add("device_captured_packets_total", "counter", "Frames captured on the device",
                c["captured:pkts"], **lab)
            add("device_received_packets_total", "counter",
                "Packets the kernel passed the filter (libpcap ps_recv, pcap:recv)",
                c["pcap:recv"], **lab)
            add("device_dropped_packets_total", "counter",
                "Packets dropped for want of room in the kernel buffer (ps_drop, pcap:drop)",
                c["pcap:drop"], **lab)
            add("device_interface_dropped_packets_total", "counter",
                "Packets dropped by the interface or its driver (ps_ifdrop, pcap:ifdrop)",
                c["pcap:ifdrop"], **lab)
            add("device_errors_total", "counter", "libpcap errors on the device (pcap:err)",
                c["pcap:err"], **lab)
            add("device_opens_total", "counter", "Times the device was opened", dev.opens,
                **lab)
        for conn in self.forwarders + self.ipip:
            c = conn.counters
            q, sp, files = conn.queue_figures()
            lab = {"server": conn.name}
            add("server_connection_attempts_total", "counter", "Connection attempts "
                "(server:connect)", c["server:connect"], **lab)
            add("server_connected", "gauge", "1 while connected", c["server:connected"], **lab)
            for reason in LOSS_REASONS:
                add("server_lost_packets_total", "counter",
                    "Frames given up, by reason: queue_full, spool_full, too_old, exit "
                    "(their sum is client:queue_err)", c["lost:" + reason], reason=reason,
                    **lab)
            add("server_forwarded_packets_total", "counter",
                "Frames delivered: acknowledged by the server, or (plain protocol, ipip) "
                "taken by the kernel", conn.delivered, **lab)
            add("server_write_errors_total", "counter", "Send errors (client:write_err)",
                c["client:write_err"], **lab)
            add("server_sent_bytes_total", "counter", "Bytes sent, framing included",
                c["sent:bytes"], **lab)
            if conn.cfg.protocol == "ipip":
                add("server_ipip_skipped_packets_total", "counter",
                    "Frames not sent over IPIP (not IPv4)", c["ipip:skipped"], **lab)
                continue
            add("server_acknowledged_mode", "gauge",
                "1 while the connection delivers with acknowledgements", c["ack:mode"], **lab)
            add("server_acknowledged_packets_total", "counter",
                "Frames the server acknowledged as stored", c["ack:acked"], **lab)
            add("server_resent_packets_total", "counter",
                "Frames sent again after a reconnect (not acknowledged before)",
                c["ack:resent"], **lab)
            add("server_ack_timeouts_total", "counter",
                "Connections given up for want of acknowledgements (ack_timeout)",
                c["ack:timeouts"], **lab)
            add("server_queue_bytes", "gauge", "Bytes waiting in memory", q, **lab)
            add("server_queue_limit_bytes", "gauge", "queue_size", conn.cfg.queue_size, **lab)
            if conn.spool is not None:
                add("server_spool_bytes", "gauge", "Bytes waiting in the spool", sp, **lab)
                add("server_spool_files", "gauge", "Spool files", files, **lab)
                add("server_spool_limit_bytes", "gauge", "spool_max", conn.cfg.spool_max,
                    **lab)
        return out


def human_bytes(n):
    """Return a byte count (or rate) as a short text: 512 B, 1.5 kB, 12.0 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0


def _rate(value):
    return "%.1f" % value if value < 100 else "%d" % value


def _chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for name in os.listdir(path):
        os.chown(os.path.join(path, name), uid, gid)


# ---------------------------------------------------------------- command line

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="osmo_pcap_client.py",
        description="Capture packets with libpcap and forward them to osmo-pcap servers.")
    ap.add_argument("-V", "--version", action="version",
                    version="osmo_pcap_client.py %s\n%s" % (__version__, COPYRIGHT))
    ap.add_argument("-c", "--config-file", metavar="FILE", default=None,
                    help="configuration file (default: %s in the current directory)"
                    % clientconfig.DEFAULT_PATH)
    ap.add_argument("--check-config", action="store_true",
                    help="load and validate the configuration, print a summary and exit")
    ap.add_argument("--libpcap-info", action="store_true",
                    help="print the libpcap found, its version and pcap_pkthdr layout")
    daemon.add_arguments(ap)
    ap.add_argument("--import-vty", metavar="FILE",
                    help="print the INI equivalent of an upstream osmo-pcap-client VTY "
                         "config file, then exit")
    return ap.parse_args(argv)


def libpcap_info(config_path):
    """Print library path, version and pkthdr layout; return the exit status."""
    explicit = None
    if config_path and os.path.exists(config_path):
        try:
            explicit = clientconfig.load(config_path).libpcap
        except ConfigError:
            explicit = None
    try:
        lib = libpcap.load(explicit)
    except libpcap.LibpcapError as e:
        print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
        return 1
    for line in lib.info_lines():
        print(line)
    return 0


def _at(cfg):
    return "%s " % cfg.path if cfg.path else ""


def device_problems(cfg, library):
    """Return one line per configured device this process cannot capture on now.

    Each device is opened and activated as start-up does, with the
    privileges the client keeps after `user =` (CAP_NET_RAW), then closed.
    """
    out = []
    if cfg.read_file:
        return out
    try:
        present = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        present = []
    for dev in cfg.devices:
        try:
            h, _ = libpcap.Handle.open_live(library, dev, cfg.snaplen, cfg.promisc, 100,
                                            cfg.buffer_size, cfg.immediate_mode)
            h.close()
            continue
        except libpcap.LibpcapError as e:
            error = str(e)
        if dev != "any" and dev not in present:
            likely = suggest(dev, present)
            out.append("%s[client] devices: no device %s on this host (%s)" % (
                _at(cfg), dev, "did you mean %s?" % " or ".join(likely) if likely else
                "devices here: %s" % " ".join(present)))
        else:
            hint = ""
            if "permission" in error.lower() or "not permitted" in error.lower():
                hint = " (capturing needs root or CAP_NET_RAW)"
            out.append("%s[client] devices: cannot capture on %s: %s%s"
                       % (_at(cfg), dev, error, hint))
    if cfg.user and os.geteuid() != 0 and pwd.getpwnam(cfg.user).pw_uid != os.geteuid():
        out.append("%s[client] user: switching to user %s needs root (running as uid %d)"
                   % (_at(cfg), cfg.user, os.geteuid()))
    return out


def start_problems(cfg):
    """Return one line per problem that stops cfg (loaded) from starting here:
    libpcap, the filter, every device (--check-config, --import-vty)."""
    client = Client(cfg)
    try:
        try:
            client.load_library()
            client.check_filter()
        except StartupError as e:
            return [str(e)]
    finally:
        client.loop.close()
    return device_problems(cfg, client.library)


def check_config(cfg):
    """--check-config: the configuration, the filter, and every device opened once."""
    problems = start_problems(cfg)
    for p in problems:
        print("osmo_pcap_client.py: %s" % p, file=sys.stderr)
    if problems:
        return 2
    print(cfg.summary())
    for note in clientconfig.unchecked(cfg):
        print("not checked: %s" % note)
    return 0


def _imported_problems(cfg):
    cfg.path = None   # a temporary file: the lines name [section] key only
    return start_problems(cfg)


def run(cfg, args):
    """Start the client and run until stopped; return the exit status."""
    try:
        note = log.configure_daemon(cfg.log, "osmo-pcap-client", args.daemonize)
    except ConfigError as e:
        print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
        return 1
    if note and sys.stderr.isatty():
        print("osmo_pcap_client.py: %s" % note, file=sys.stderr)
    client = Client(cfg)
    endpoints = []  # the metrics endpoint, closed at the end (not left to the finalizer)

    def detach():
        try:
            if cfg.metrics:
                endpoints.append(metrics.MetricsServer(
                    client.loop, cfg.metrics, client.metric_samples, program="client",
                    log=log.get("metrics")).start())
            if args.daemonize:
                daemon.daemonize(pidfile=args.pidfile)
            elif args.pidfile:
                daemon.own_pidfile(args.pidfile)
        except (metrics.MetricsError, daemon.DaemonError) as e:
            raise StartupError(str(e))
    try:
        client.start(detach)
    except StartupError as e:
        client.log.error("%s", e)
        for ep in endpoints:
            ep.close()
        client.close()
        return 1
    log.schedule_flush(client.loop)
    daemon.start_watchdog(client.loop)
    # READY=1 once every device captures; until then STATUS= says which waits
    client.report_state()
    try:
        client.loop.run()
    finally:
        for ep in endpoints:
            ep.close()
        client.close()
    return client.exit_status


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    if args.import_vty:
        return vtyimport.main("client", args.import_vty, load=clientconfig.load,
                              after=_imported_problems)
    if args.libpcap_info:
        return libpcap_info(args.config_file)
    path = args.config_file or clientconfig.DEFAULT_PATH
    try:
        cfg = clientconfig.load(path)
        clientconfig.check_files(cfg)   # the same checks for --check-config and start-up
    except ConfigError as e:
        print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
        return 2 if args.check_config else 1
    if args.check_config:
        return check_config(cfg)
    if args.pidfile:
        try:
            daemon.check_pidfile(daemon.absolute(args.pidfile))
        except daemon.DaemonError as e:
            print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
            return 1
    return run(cfg, args)
