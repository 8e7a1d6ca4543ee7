# SPDX-License-Identifier: AGPL-3.0-or-later
"""The server's INI configuration: [server] and one [client NAME] per client.

load() reads and validates a file and returns a ServerConfig; every mistake
becomes one ConfigError naming the file, section and key. The keys are
documented in doc/server.md; upstream's commands map to them as
doc/migration.md#server-commands shows.
"""

import errno
import ipaddress
import os

from osmo_pcap import log, metrics, preflight, rotation
from osmo_pcap import ini
from osmo_pcap.server import hooks
from osmo_pcap.ini import ConfigError
from osmo_pcap.validate import DEFAULT_MAX_SNAPLEN, MAX_SNAPLEN_LIMIT

DEFAULT_PORT = 54321
DEFAULT_MAX_FILE_SIZE = 1 << 30  # 1 GiB, as upstream
DEFAULT_MODE = 0o440
CLIENT_PREFIX = "client "
ANY = "any"  # ip = any: the entry is chosen by the certificate identity (doc/tls.md)


class ClientEntry(object):
    """One [client NAME] section: a client the server accepts and stores."""

    __slots__ = ("name", "ip", "store", "tls")

    def __init__(self, name, ip, store, tls=None):
        self.name = name
        self.ip = ip        # an ipaddress object, or ANY
        self.store = store
        self.tls = tls      # tlsconfig.ClientEntryTLS when the file uses TLS, else None


class ServerConfig(object):
    """The validated server configuration (attributes named like the keys)."""

    def __init__(self):
        self.path = None
        self.listen = "0.0.0.0"
        self.port = DEFAULT_PORT
        self.base_path = None
        self.completed_path = None
        self.file_permission_mask = DEFAULT_MODE
        self.max_snaplen = DEFAULT_MAX_SNAPLEN
        self.max_file_size = DEFAULT_MAX_FILE_SIZE
        self.rotate_localtime = ("day", 1)
        self.write_buffer = 64 << 10
        self.flush_interval = 0.5
        self.write_retry = 10.0
        self.stats_interval = 0.0
        self.header_timeout = 60.0
        self.idle_timeout = 0.0
        self.acks = True        # offer acknowledged delivery (doc/protocol.md)
        self.ack_sync = False   # fdatasync before acknowledging
        self.log_level = "info"
        self.hooks = None
        self.tls = None  # tlsconfig.ServerTLS when tls_cert is set
        self.log = None
        self.metrics = None
        self.clients = []
        self.listeners = []  # preflight.Listener for every listening socket, in order

    def summary(self):
        """Return a one-line description for --check-config and the start-up log."""
        return ("listen %s port %d, %d client(s), base_path %s%s, rotate_localtime %s, "
                "max_file_size %s" % (
                    self.listen, self.port, len(self.clients), self.base_path,
                    ", completed_path %s" % self.completed_path if self.completed_path else "",
                    rotation.format_rotate(self.rotate_localtime),
                    self.max_file_size or "off")
                + (", TLS (tls_client_auth %s)" % self.tls.client_auth if self.tls else ""))


def _listen_addr(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address: %r" % text)


def _client_ip(text):
    if text.strip().lower() == ANY:
        return ANY
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address: %r" % text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _duration(text):
    return ini.parse_duration(text)


def _duration_or_off(text):
    if text.strip().lower() in ("off", "no", "0"):
        return 0.0
    return ini.parse_duration(text)


def _file_mode(text):
    """Return a trace file mode: read and write bits only (the files are data from the
    network; an execute, set-ID or sticky bit on them is never wanted)."""
    mode = ini.parse_octal_mode(text)
    if mode & ~0o666:
        raise ValueError("0%o has bits other than read and write (allowed: any of 0666, "
                         "e.g. 0440 or 0640): %s" % (mode, _extra_bits(mode)))
    return mode


def _extra_bits(mode):
    names = [(0o4000, "set-user-ID"), (0o2000, "set-group-ID"), (0o1000, "sticky"),
             (0o111, "execute")]
    return ", ".join(n for bit, n in names if mode & bit)


def _snaplen(text):
    return ini.parse_int(text, 1, MAX_SNAPLEN_LIMIT)


def _level(text):
    if text.lower() not in log.LEVELS:
        raise ValueError("expected one of %s, got %r" % (", ".join(sorted(log.LEVELS)), text))
    return text.lower()


def _tlsconfig(cp, path):
    """Return osmo_pcap.tlsconfig if the file uses TLS (a tls* key or ip = any), else None.

    Without TLS the ssl module (about 4.5 MB of resident memory) is not loaded.
    """
    for name in cp.sections():
        sect = ini.Section(cp, name, path)
        if sect.sets_any("tls") or (sect.raw("ip") or "").strip().lower() == ANY:
            from osmo_pcap import tlsconfig
            return tlsconfig
    return None


def load(path):
    """Read and validate the server config file at path; return a ServerConfig."""
    cp = ini.read_ini(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    cfg = ServerConfig()
    cfg.path = path
    if not cp.has_section("server"):
        raise ConfigError("missing [server] section", path)
    s = ini.Section(cp, "server", path)
    cfg.listen = s.get("listen", _listen_addr, cfg.listen)
    cfg.port = s.get("port", ini.parse_port, cfg.port)
    cfg.base_path = ini.resolve_path(base_dir, s.get("base_path", None, "."))
    cfg.completed_path = ini.resolve_path(base_dir, s.get("completed_path"))
    cfg.file_permission_mask = s.get("file_permission_mask", _file_mode,
                                     cfg.file_permission_mask)
    cfg.max_snaplen = s.get("max_snaplen", _snaplen, cfg.max_snaplen)
    cfg.max_file_size = s.get("max_file_size", lambda t: ini.parse_size(t, allow_off=True),
                              cfg.max_file_size)
    if s.has("rotate_localtime"):
        cfg.rotate_localtime = s.get("rotate_localtime", rotation.parse_rotate)
    cfg.write_buffer = s.get("write_buffer", lambda t: ini.parse_size(t), cfg.write_buffer)
    if not 4096 <= cfg.write_buffer <= 64 << 20:
        raise s.error("write_buffer", "must be between 4K and 64M")
    cfg.flush_interval = s.get("flush_interval", _duration, cfg.flush_interval)
    if not 0.01 <= cfg.flush_interval <= 1.0:
        raise s.error("flush_interval", "must be between 10ms and 1s")
    cfg.write_retry = s.get("write_retry", _duration, cfg.write_retry)
    if not 0.1 <= cfg.write_retry <= 3600:
        raise s.error("write_retry", "must be between 100ms and 1h")
    cfg.stats_interval = s.get("stats_interval", _duration_or_off, cfg.stats_interval)
    # upstream had no timeouts at all (doc/protocol.md#diff-timeouts)
    cfg.header_timeout = s.get("header_timeout", _duration_or_off, cfg.header_timeout)
    cfg.idle_timeout = s.get("idle_timeout", _duration_or_off, cfg.idle_timeout)
    cfg.acks = s.get("acks", ini.parse_bool, cfg.acks)
    cfg.ack_sync = s.get("ack_sync", ini.parse_bool, cfg.ack_sync)
    if cfg.ack_sync and not cfg.acks:
        raise s.error("ack_sync", "needs acks = yes")
    cfg.log_level = s.get("log_level", _level, cfg.log_level)
    cfg.hooks = hooks.read_config(s)
    tlsconfig = _tlsconfig(cp, path)
    if tlsconfig is not None:
        cfg.tls = tlsconfig.read_server_tls(s)
    if cfg.hooks.tap_tls:
        if cfg.tls is None:
            raise s.error("tap_tls", "needs tls_cert (and tls_key): the tap uses the server "
                          "certificate (doc/hooks.md#tap-tls)")
        cfg.hooks.tap_tls_context = tlsconfig.read_tap_tls(s)
    s.finish()

    # [log] and [metrics] are shared with the client (doc/operations.md#logging, #metrics)
    cfg.log = log.read_config(ini.Section(cp, "log", path))
    if not cp.has_option("log", "level"):
        cfg.log.level = cfg.log_level  # [server] log_level, kept as an alias
    cfg.metrics = metrics.read_config(ini.Section(cp, "metrics", path))

    names = {}
    ips = {}
    for sect in cp.sections():
        if sect in ("server", "log", "metrics"):
            continue
        if not sect.startswith(CLIENT_PREFIX):
            raise ConfigError("unknown section (expected [server], [client NAME], [log] or "
                              "[metrics])", path, sect)
        name = sect[len(CLIENT_PREFIX):].strip()
        try:
            ini.check_safe_name(name)
        except ValueError as e:
            raise ConfigError("client name: %s" % e, path, sect)
        if name in names:
            raise ConfigError("duplicate client name %r (also [%s])" % (name, names[name]),
                              path, sect)
        names[name] = sect
        c = ini.Section(cp, sect, path)
        ip = c.get("ip", _client_ip)
        if ip is None:
            raise c.error("ip", "missing: the client's IPv4 or IPv6 address is required")
        if ip is not ANY and ip in ips:
            raise c.error("ip", "address %s is already used by [%s]" % (ip, ips[ip]))
        ips[ip] = sect
        store = c.get("store", ini.parse_bool, True)
        entry_tls = None
        if tlsconfig is not None:
            entry_tls = tlsconfig.read_client_entry_tls(c, name, cfg.tls,
                                                        any_ip=(ip is ANY))
        c.finish()
        cfg.clients.append(ClientEntry(name, ip, store, entry_tls))
    cfg.listeners = listeners(cfg)
    preflight.check_listeners(cfg.listeners, path)
    return cfg


def listeners(cfg):
    """Return the preflight.Listener of every socket the server will listen on."""
    out = [preflight.Listener("server", "listen", cfg.listen, cfg.port)]
    h = cfg.hooks
    if h is not None:
        if h.zmq_publish:
            out.append(preflight.Listener("server", "zmq_publish", *h.zmq_publish))
        if h.tap_listen:
            out.append(preflight.Listener("server", "tap_listen", *h.tap_listen))
        for name, addr in sorted(h.tap_clients.items()):
            out.append(preflight.Listener("server", hooks.TAP_PREFIX + name, *addr))
    if cfg.metrics:
        out.append(preflight.Listener("metrics", "listen", *cfg.metrics))
    return out


def check_files(cfg):
    """Check the files and directories start-up writes besides the trace directories
    (the [log] file, the stream state directory); raise ConfigError."""
    if cfg.log is not None and cfg.log.target == "file":
        why = preflight.file_problem(cfg.log.file)
        if why is not None:
            raise ConfigError(why, cfg.path, "log", "file")
    from osmo_pcap.server.ackstate import STATE_DIR
    why = preflight.dir_problem(os.path.join(cfg.base_path, STATE_DIR), create=True)
    if why is not None:
        raise ConfigError("the stream state directory: %s" % why, cfg.path, "server",
                          "base_path")


def unchecked(cfg):
    """Return what --check-config cannot know beforehand, one line each."""
    notes = []
    preflight.check_listeners(cfg.listeners, cfg.path, notes)
    preflight.user_note(notes)
    return notes


def check_dirs(cfg):
    """Check base_path and completed_path at start-up; raise ConfigError.

    Both must be writable directories, and a file must be movable from one
    to the other with rename(2): a cross-filesystem setup is refused here
    instead of failing at the first rotation
    (doc/protocol.md#diff-completed-path).
    """
    for key in ("base_path", "completed_path"):
        d = getattr(cfg, key)
        if d is None:
            continue
        if not os.path.isdir(d):
            raise ConfigError("%s is not an existing directory" % d, cfg.path, "server", key)
        if not os.access(d, os.W_OK | os.X_OK):
            raise ConfigError("directory %s is not writable" % d, cfg.path, "server", key)
    if cfg.completed_path is None:
        return
    probe = os.path.join(cfg.base_path, ".osmo-pcap-probe-%d" % os.getpid())
    target = os.path.join(cfg.completed_path, os.path.basename(probe))
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as e:
        raise ConfigError("cannot create a file in %s: %s" % (cfg.base_path, e.strerror),
                          cfg.path, "server", "base_path")
    try:
        os.rename(probe, target)
    except OSError as e:
        os.unlink(probe)
        if e.errno == errno.EXDEV:
            raise ConfigError("%s and %s are on different filesystems; closed files are moved "
                              "with rename(2), so both must be on one filesystem"
                              % (cfg.base_path, cfg.completed_path),
                              cfg.path, "server", "completed_path")
        raise ConfigError("cannot move a file from %s to %s: %s"
                          % (cfg.base_path, cfg.completed_path, e.strerror),
                          cfg.path, "server", "completed_path")
    os.unlink(target)
