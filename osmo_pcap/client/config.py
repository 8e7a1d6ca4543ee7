# SPDX-License-Identifier: AGPL-3.0-or-later
"""The client's INI configuration: [client] and one [server NAME] per destination.

load() returns a ClientConfig or raises ConfigError naming file, section and
key. Every key, its default and meaning is documented in doc/client.md and
contrib/osmo-pcap-client.ini.
"""

import grp
import os
import pwd

from osmo_pcap import log, metrics, preflight
import socket

from osmo_pcap.ini import (ConfigError, Section, check_safe_name, parse_bool, parse_duration, parse_int, parse_port, parse_size, read_ini, resolve_path)

DEFAULT_PATH = "osmo-pcap-client.ini"

# A frame carries at most 65531 payload bytes (doc/protocol.md#limits): the largest
# caplen that fits a pcap record (16-byte header) and a pcapng EPB (36 + pad).
MAX_CAPLEN = {"pcap": 65531 - 16, "pcapng": 65531 - 36 - 3}
DEFAULT_SNAPLEN = 9000
PROTOCOLS = ("osmo-pcap", "ipip")
FORMATS = ("pcap", "pcapng")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical")


class ServerEntry(object):
    """One [server NAME] section: a server this client forwards to."""

    def __init__(self, name):
        self.name = name
        self.host = None
        self.port = None
        self.source_ip = None
        self.protocol = "osmo-pcap"
        self.queue_size = 16 << 20
        self.spool_dir = None
        self.spool_max = 1 << 30
        self.reconnect_min = 1.0
        self.reconnect_max = 30.0
        self.enabled = True
        self.ack = "auto"      # acknowledged delivery when the server offers it
        self.ack_timeout = 10.0
        self.max_age = 0.0     # 0: frames are kept however long an outage lasts
        self.tls = None       # tlsconfig.ClientTLS when tls = yes

    def describe(self):
        if self.protocol == "ipip":
            return "%s %s ipip" % (self.name, self.host)
        ack = "" if self.ack == "auto" else " (no acknowledgements)"
        if self.tls is not None:
            return "%s %s:%d TLS%s%s" % (self.name, self.host, self.port,
                                         "" if self.tls.verify else " (server not verified)",
                                         ack)
        return "%s %s:%d%s" % (self.name, self.host, self.port, ack)


class ClientConfig(object):
    """The whole client configuration with defaults."""

    def __init__(self):
        self.path = None
        self.devices = []
        self.filter = ""
        self.detect_loop = True
        self.gprs_filter = False
        self.gprs_ports = None
        self.snaplen = DEFAULT_SNAPLEN
        self.file_format = "pcap"
        self.buffer_size = 16 << 20
        self.promisc = False
        self.capture_timeout = 0.1
        self.immediate_mode = False
        self.ignore_outgoing = "auto"
        self.dispatch_max = 10000
        self.libpcap = None
        self.read_file = None
        self.user = None
        self.group = None
        self.reopen_interval = 5.0
        self.stats_interval = 60.0
        self.flush_timeout = 3.0
        self.log_level = "info"
        self.servers = []

    def summary(self):
        """One line for --check-config."""
        src = ("file %s" % self.read_file if self.read_file else
               "%d device(s) %s" % (len(self.devices), " ".join(self.devices)))
        return "config OK: %s: %s, format %s, snaplen %d, %d server(s)%s" % (
            self.path, src, self.file_format, self.snaplen, len(self.servers),
            (": " + ", ".join(s.describe() for s in self.servers)) if self.servers else "")


def _choice(options):
    def parse(text):
        if text not in options:
            raise ValueError("expected one of %s, got %r" % (", ".join(options), text))
        return text
    return parse


def _ports(text):
    out = []
    for word in text.replace(",", " ").split():
        out.append(parse_port(word))
    return out


def _ip(text):
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, text)
            return text
        except (OSError, ValueError):
            pass
    raise ValueError("not an IPv4 or IPv6 address: %r" % text)


def _user(text):
    try:
        pwd.getpwnam(text)
    except KeyError:
        raise ValueError("no such user: %r" % text)
    return text


def _group(text):
    try:
        grp.getgrnam(text)
    except KeyError:
        raise ValueError("no such group: %r" % text)
    return text


def _duration_or_off(text):
    if text.strip().lower() in ("off", "no", "0"):
        return 0.0
    return _positive_duration(text)


def _positive_duration(text):
    v = parse_duration(text)
    if v <= 0:
        raise ValueError("must be greater than 0: %r" % text)
    return v


def load(path):
    """Read and validate the client configuration at path."""
    cp = read_ini(path)
    base = os.path.dirname(os.path.abspath(path))
    cfg = ClientConfig()
    cfg.path = path
    for name in cp.sections():
        if name not in ("client", "log", "metrics") and not name.startswith("server "):
            raise ConfigError("unknown section (expected [client], [server NAME], [log] or "
                              "[metrics])", path, name)
    if not cp.has_section("client"):
        raise ConfigError("missing [client] section", path)
    sec = Section(cp, "client", path)
    # The defaults are the attributes of a fresh ClientConfig.
    cfg.devices = (sec.get("devices") or "").split()
    if len(set(cfg.devices)) != len(cfg.devices):
        raise sec.error("devices", "a device is listed twice")
    cfg.filter = sec.get("filter", None, cfg.filter)
    cfg.detect_loop = sec.get("detect_loop", parse_bool, cfg.detect_loop)
    cfg.gprs_filter = sec.get("gprs_filter", parse_bool, cfg.gprs_filter)
    cfg.gprs_ports = sec.get("gprs_ports", _ports, cfg.gprs_ports)
    cfg.file_format = sec.get("file_format", _choice(FORMATS), cfg.file_format)
    limit = MAX_CAPLEN[cfg.file_format]
    cfg.snaplen = sec.get("snaplen", lambda t: parse_int(t, 1, limit), cfg.snaplen)
    cfg.buffer_size = sec.get("buffer_size", parse_size, cfg.buffer_size)
    if cfg.buffer_size > 0x7FFFFFFF:
        raise sec.error("buffer_size", "at most 2047M")
    cfg.promisc = sec.get("promisc", parse_bool, cfg.promisc)
    cfg.capture_timeout = sec.get("capture_timeout", _positive_duration, cfg.capture_timeout)
    cfg.immediate_mode = sec.get("immediate_mode", parse_bool, cfg.immediate_mode)
    cfg.ignore_outgoing = sec.get("ignore_outgoing", _choice(("auto", "yes", "no")),
                                  cfg.ignore_outgoing)
    cfg.dispatch_max = sec.get("dispatch_max", lambda t: parse_int(t, 1, 1000000),
                               cfg.dispatch_max)
    cfg.libpcap = sec.get("libpcap", None, cfg.libpcap)
    cfg.read_file = resolve_path(base, sec.get("read_file", None, cfg.read_file))
    cfg.user = sec.get("user", _user, cfg.user)
    cfg.group = sec.get("group", _group, cfg.group)
    cfg.reopen_interval = sec.get("reopen_interval", _positive_duration, cfg.reopen_interval)
    cfg.stats_interval = sec.get("stats_interval", parse_duration, cfg.stats_interval)
    cfg.flush_timeout = sec.get("flush_timeout", parse_duration, cfg.flush_timeout)
    cfg.log_level = sec.get("log_level", _choice(LOG_LEVELS), cfg.log_level)
    sec.finish()
    cfg.log = log.read_config(Section(cp, "log", path))
    if not cp.has_option("log", "level"):
        cfg.log.level = cfg.log_level  # [client] log_level, kept as an alias
    cfg.metrics = metrics.read_config(Section(cp, "metrics", path))
    if cfg.read_file and cfg.devices:
        raise sec.error("read_file", "set either devices or read_file, not both")
    if not cfg.read_file and not cfg.devices:
        raise sec.error("devices", "no capture device configured (or set read_file)")
    for name in cp.sections():
        if name.startswith("server "):
            cfg.servers.append(_load_server(cp, name, path, base))
    if not cfg.servers:
        raise ConfigError("no [server NAME] section: the client would capture for nobody "
                          "(add one with host and port)", path)
    if not any(s.enabled for s in cfg.servers):
        first = cfg.servers[0]
        raise ConfigError("every [server NAME] has enabled = no: the client would capture "
                          "for nobody", path, "server " + first.name, "enabled")
    return cfg


def check_files(cfg):
    """Check the files and directories start-up writes: the [log] file and each
    spool_dir (doc/operations.md#check-config); raise ConfigError."""
    if cfg.log is not None and cfg.log.target == "file":
        why = preflight.file_problem(cfg.log.file)
        if why is not None:
            raise ConfigError(why, cfg.path, "log", "file")
    for s in cfg.servers:
        if s.spool_dir and s.enabled:
            why = preflight.dir_problem(os.path.join(s.spool_dir, s.name), create=True)
            if why is not None:
                raise ConfigError(why, cfg.path, "server " + s.name, "spool_dir")


def unchecked(cfg):
    """Return what --check-config cannot know beforehand, one line each."""
    notes = []
    if cfg.metrics:
        preflight.check_listeners([preflight.Listener("metrics", "listen", *cfg.metrics)],
                                  cfg.path, notes)
    preflight.user_note(notes)
    return notes


def _load_server(cp, section, path, base):
    name = section[len("server "):].strip()
    try:
        check_safe_name(name)
    except ValueError as e:
        raise ConfigError("bad server name: %s" % e, path, section)
    sec = Section(cp, section, path)
    s = ServerEntry(name)
    # The defaults are the attributes of a fresh ServerEntry.
    s.protocol = sec.get("protocol", _choice(PROTOCOLS), s.protocol)
    s.host = sec.get("host")
    if not s.host:
        raise sec.error("host", "missing: the server's address")
    s.port = sec.get("port", parse_port, s.port)
    if s.protocol == "osmo-pcap" and s.port is None:
        raise sec.error("port", "missing: the server's TCP port")
    s.source_ip = sec.get("source_ip", _ip, s.source_ip)
    s.queue_size = sec.get("queue_size", parse_size, s.queue_size)
    if s.queue_size < 65536:
        raise sec.error("queue_size", "at least 64K (one frame must fit)")
    s.spool_dir = resolve_path(base, sec.get("spool_dir", None, s.spool_dir))
    s.spool_max = sec.get("spool_max", parse_size, s.spool_max)
    if s.spool_dir and s.spool_max < (1 << 20):
        raise sec.error("spool_max", "at least 1M")
    if s.spool_dir and s.protocol == "ipip":
        raise sec.error("spool_dir", "not available with protocol = ipip")
    s.reconnect_min = sec.get("reconnect_min", _positive_duration, s.reconnect_min)
    s.reconnect_max = sec.get("reconnect_max", _positive_duration, s.reconnect_max)
    if s.reconnect_max < s.reconnect_min:
        raise sec.error("reconnect_max", "smaller than reconnect_min")
    s.enabled = sec.get("enabled", parse_bool, s.enabled)
    s.ack = sec.get("ack", _choice(("auto", "no")), s.ack)
    s.ack_timeout = sec.get("ack_timeout", _positive_duration, s.ack_timeout)
    if not 2.0 <= s.ack_timeout <= 3600:
        raise sec.error("ack_timeout", "must be between 2s and 1h (the server acknowledges "
                        "at least once a second while data flows)")
    s.max_age = sec.get("max_age", _duration_or_off, s.max_age)
    if s.protocol == "ipip":
        for key in ("ack", "ack_timeout", "max_age"):
            if sec.has(key):
                raise sec.error(key, "not available with protocol = ipip")
    if sec.sets_any("tls"):
        # Only TLS configurations load ssl (about 4.5 MB of resident memory).
        from osmo_pcap import tlsconfig
        s.tls = tlsconfig.read_client_tls(sec, s.host)
        if s.tls is not None and s.protocol != "osmo-pcap":
            raise sec.error("tls", "only with protocol = osmo-pcap")
    sec.finish()
    return s
