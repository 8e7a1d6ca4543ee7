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
import sys

from osmo_pcap import __version__, COPYRIGHT
from osmo_pcap import log, pcapfile, pcapng
from osmo_pcap.client import capture
from osmo_pcap.client import config as clientconfig
from osmo_pcap.client import libpcap
from osmo_pcap import daemon, metrics, vtyimport
from osmo_pcap.ini import ConfigError
from osmo_pcap.client.forward import LOSS_REASONS, UP, Forwarder
from osmo_pcap.client.ipip import IpipSender
from osmo_pcap.client.gprs import GprsFilter
from osmo_pcap.loop import Loop

PCAP_STATS_INTERVAL = 10.0   # libpcap statistics are polled this often
READ_FILE_IDLE = 0.02


class StartupError(Exception):
    """A problem that stops start-up; str() is the message for the user."""


def build_filter(cfg):
    """Return the effective filter: the user's, minus our own traffic (detect_loop)."""
    parts = []
    if cfg.detect_loop:
        for s in cfg.servers:
            if s.protocol == "ipip":
                parts.append("not (host %s and ip proto 4)" % s.host)
            else:
                parts.append("not (host %s and tcp port %d)" % (s.host, s.port))
    if not parts:
        return cfg.filter   # unchanged, so the pcapng if_filter matches upstream's
    if cfg.filter:
        parts.insert(0, "(%s)" % cfg.filter)
    return " and ".join(parts)


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
        self.filter_expr = build_filter(cfg)
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

    # -------------------------------------------------------------- start-up
    def start(self, detach=None):
        """Run every start-up step; raise StartupError.

        detach() (daemonizing) runs once the devices are open, before
        privileges are dropped, so the pidfile can still be written.
        """
        self.load_library()
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
        if not self.filter_expr:
            return
        h = libpcap.Handle.open_dead(self.library, libpcap.DLT_EN10MB, self.cfg.snaplen)
        try:
            h.check_filter(self.filter_expr)
        except libpcap.LibpcapError as e:
            raise StartupError("%s [client] filter: %s" % (self.cfg.path, e))
        finally:
            h.close()

    def create_connections(self):
        for s in self.cfg.servers:
            if not s.enabled:
                self.log.info("server %s: enabled = no, not connecting", s.name)
            elif s.protocol == "ipip":
                sender = IpipSender(s, self.log)
                try:
                    sender.start()
                except OSError as e:
                    raise StartupError(str(e))
                self.ipip.append(sender)
            else:
                try:
                    self.forwarders.append(Forwarder(s, self.loop, self.log))
                except OSError as e:
                    raise StartupError("%s [server %s] spool_dir: %s" % (
                        self.cfg.path, s.name, e.strerror or e))

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
            os.setgroups([])
            os.setgid(gid)
            if uid is not None:
                os.setuid(uid)
        except (OSError, KeyError) as e:
            raise StartupError("cannot drop privileges to user %s group %s: %s"
                               % (cfg.user, cfg.group, e))
        self.log.info("running as user %s group %s", cfg.user or os.getuid(), cfg.group or gid)

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
        loop.on_signal(signal.SIGUSR2, lambda signum: self.log_stats())
        # The server rotates on SIGUSR1; a client has no files, so a stray
        # SIGUSR1 (e.g. sent to every osmo-pcap process) only logs the counters.
        loop.on_signal(signal.SIGUSR1, lambda signum: self.log_stats())
        loop.on_signal(signal.SIGTERM, self.on_stop_signal)
        loop.on_signal(signal.SIGINT, self.on_stop_signal)
        loop.on_signal(signal.SIGHUP, lambda signum: log.reopen())

    # -------------------------------------------------------------- link header
    def _encode_header(self, snaplen, devices):
        """devices: [(name, dlt)] in interface order."""
        if self.cfg.file_format == "pcap":
            return pcapfile.encode_global_header(snaplen, pcapfile.dlt_to_linktype(devices[0][1]))
        parts = [pcapng.encode_shb()]
        for name, dlt in devices:
            parts.append(pcapng.encode_idb(pcapfile.dlt_to_linktype(dlt), snaplen,
                                           if_name=name, if_filter=self.filter_expr))
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

    # -------------------------------------------------------------- figures
    def totals(self):
        """Global counters including the per-server sums (doc/client.md#counters)."""
        out = dict(self.counters)
        conns = self.forwarders + self.ipip
        for key in ("server:connect", "client:queue_err", "client:write_err"):
            out[key] = sum(c.counters[key] for c in conns)
        out["gprs:dropped"] = self.gprs.dropped if self.gprs else 0
        return out

    def log_stats(self):
        t = self.totals()
        self.log.info("stats: captured %d pkts %d bytes, too_big %d, pcap recv %d drop %d "
                      "ifdrop %d, pcap_err %d, queue_err %d, gprs dropped %d",
                      t["captured:pkts"], t["captured:bytes"], t["bpf:too_big"], t["pcap:recv"],
                      t["pcap:drop"], t["pcap:ifdrop"], t["client:pcap_err"],
                      t["client:queue_err"], t["gprs:dropped"])
        for c in self.forwarders + self.ipip:
            q, sp, files = c.queue_figures()
            k = c.counters
            self.log.info("stats: server %s %s%s, connects %d, queued %d bytes, spool %d bytes "
                          "in %d file(s), dropped %d (%s), acknowledged %d, ack timeouts %d",
                          c.name, c.state, ", acknowledged mode" if k["ack:mode"] else "",
                          k["server:connect"], q, sp, files, k["client:queue_err"],
                          " ".join("%s %d" % (r, k["lost:" + r]) for r in LOSS_REASONS),
                          k["ack:acked"], k["ack:timeouts"])

    def metric_samples(self):
        """Return [(name, type, help, labels, value)] with Prometheus-style names."""
        t = self.totals()
        out = []

        def add(name, kind, text, value, **labels):
            out.append(("osmo_pcap_client_" + name, kind, text, labels, value))

        add("captured_packets_total", "counter", "Frames handed to the servers", t["captured:pkts"])
        add("captured_bytes_total", "counter", "Captured bytes handed to the servers",
            t["captured:bytes"])
        add("truncated_packets_total", "counter", "Frames cut by snaplen (bpf:too_big)",
            t["bpf:too_big"])
        add("cut_packets_total", "counter", "read_file records cut to snaplen",
            t["client:too_large"])
        add("gprs_dropped_packets_total", "counter", "Frames dropped by gprs_filter",
            t["gprs:dropped"])
        add("pcap_errors_total", "counter", "libpcap read and stats errors", t["client:pcap_err"])
        for dev in self.sources:
            c = dev.counters
            add("device_up", "gauge", "1 while the device is capturing", c["up"], device=dev.name)
            add("pcap_received_total", "counter", "libpcap ps_recv", c["pcap:recv"],
                device=dev.name)
            add("pcap_dropped_total", "counter", "libpcap ps_drop (kernel buffer full)",
                c["pcap:drop"], device=dev.name)
            add("pcap_ifdropped_total", "counter", "libpcap ps_ifdrop", c["pcap:ifdrop"],
                device=dev.name)
            add("device_errors_total", "counter", "libpcap errors on the device", c["pcap:err"],
                device=dev.name)
            add("device_captured_packets_total", "counter", "Frames captured on the device",
                c["captured:pkts"], device=dev.name)
        for conn in self.forwarders + self.ipip:
            c = conn.counters
            q, sp, files = conn.queue_figures()
            add("server_connects_total", "counter", "Connection attempts",
                c["server:connect"], server=conn.name)
            add("server_connected", "gauge", "1 while connected", c["server:connected"],
                server=conn.name)
            add("server_dropped_packets_total", "counter",
                "Frames given up for any reason (client:queue_err)",
                c["client:queue_err"], server=conn.name)
            for reason in LOSS_REASONS:
                add("server_lost_packets_total", "counter",
                    "Frames given up, by reason: queue_full, spool_full, too_old, exit",
                    c["lost:" + reason], server=conn.name, reason=reason)
            add("server_acknowledged_mode", "gauge",
                "1 while the connection delivers with acknowledgements", c["ack:mode"],
                server=conn.name)
            add("server_acked_packets_total", "counter",
                "Frames the server acknowledged as stored", c["ack:acked"], server=conn.name)
            add("server_resent_packets_total", "counter",
                "Frames sent again after a reconnect (not acknowledged before)",
                c["ack:resent"], server=conn.name)
            add("server_ack_timeouts_total", "counter",
                "Connections given up for want of acknowledgements (ack_timeout)",
                c["ack:timeouts"], server=conn.name)
            add("server_write_errors_total", "counter", "Send errors", c["client:write_err"],
                server=conn.name)
            add("server_sent_bytes_total", "counter", "Bytes sent", c["sent:bytes"],
                server=conn.name)
            add("server_queue_bytes", "gauge", "Bytes waiting in memory", q, server=conn.name)
            add("server_queue_limit_bytes", "gauge", "queue_size", conn.cfg.queue_size,
                server=conn.name)
            spool = conn.spool
            if spool is not None:
                add("server_spool_bytes", "gauge", "Bytes waiting in the spool", sp,
                    server=conn.name)
                add("server_spool_files", "gauge", "Spool files", files, server=conn.name)
                add("server_spool_dropped_packets_total", "counter",
                    "Spooled frames dropped beyond spool_max or on errors",
                    spool.dropped_frames, server=conn.name)
            if conn.cfg.protocol == "ipip":
                add("server_ipip_skipped_packets_total", "counter",
                    "Frames not sent over IPIP (not IPv4)", c["ipip:skipped"], server=conn.name)
        return out


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


def check_config(cfg):
    """--check-config: validate what can be validated without capturing."""
    try:
        client = Client(cfg)
        client.load_library()
        client.check_filter()
    except StartupError as e:
        print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
        return 2
    print(cfg.summary())
    for note in clientconfig.unchecked(cfg):
        print("not checked: %s" % note)
    return 0


def run(cfg, args):
    """Start the client and run until stopped; return the exit status."""
    try:
        log.configure(cfg.log, program="osmo-pcap-client")
    except ConfigError as e:
        print("osmo_pcap_client.py: %s" % e, file=sys.stderr)
        return 1
    client = Client(cfg)

    def detach():
        try:
            if cfg.metrics:
                metrics.MetricsServer(client.loop, cfg.metrics, client.metric_samples,
                                      program="client", log=log.get("metrics")).start()
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
        client.close()
        return 1
    log.schedule_flush(client.loop)
    daemon.start_watchdog(client.loop)
    daemon.notify_ready("capturing on %s" % " ".join(cfg.devices or [cfg.read_file or "?"]))
    try:
        client.loop.run()
    finally:
        client.close()
    return client.exit_status


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    if args.import_vty:
        return vtyimport.main("client", args.import_vty)
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
