# SPDX-License-Identifier: AGPL-3.0-or-later
"""The extcap's INI file: the server's tap address and its TLS settings.

Wireshark starts the extcap without arguments to list interfaces, so where
the tap is comes from a file (doc/wireshark.md#configuration): the first of
$OSMO_PCAP_EXTCAP_CONFIG, the user's own file and /etc/osmo-pcap/osmo-pcap-extcap.ini
that exists. The capture dialog's values, passed as options, override it.
read() returns an ExtcapConfig or raises ini.ConfigError naming the file,
section and key.
"""

import os
import sys

from osmo_pcap import ini

MAIN = "extcap"
ENV = "OSMO_PCAP_EXTCAP_CONFIG"
SYSTEM_FILE = "/etc/osmo-pcap/osmo-pcap-extcap.ini"
DEFAULT_TAP = "127.0.0.1:57012"
DEFAULT_TIMEOUT = 3.0


class ExtcapConfig(object):
    """Where the tap is and how to reach it."""

    def __init__(self):
        self.path = None                # the file read, or None (defaults)
        self.tap = ini.parse_host_port(DEFAULT_TAP)
        self.tls = False
        self.tls_ca = None              # CA file that issued the server certificate
        self.tls_cert = None            # our certificate (tap_tls_ca on the server)
        self.tls_key = None
        self.tls_hostname = None        # name checked in the server certificate
        self.timeout = DEFAULT_TIMEOUT  # connect, TLS handshake and the tap's answer

    def describe(self):
        host, port = self.tap
        where = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        return "%s%s" % (where, " (TLS)" if self.tls else "")


def user_file():
    """Return the per-user config file's path for this system."""
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or os.path.expanduser("~")
        return os.path.join(base, "osmo-pcap", "extcap.ini")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "osmo-pcap", "extcap.ini")


def find():
    """Return the config file to read: $OSMO_PCAP_EXTCAP_CONFIG, else the first existing
    of the user's file and the system file, else None (built-in defaults)."""
    env = os.environ.get(ENV)
    if env:
        return env
    for path in (user_file(), SYSTEM_FILE):
        if os.path.isfile(path):
            return path
    return None


def _positive_duration(text):
    v = ini.parse_duration(text)
    if not 0.1 <= v <= 300:
        raise ValueError("must be between 100ms and 5m, got %r" % text)
    return v


def read(path):
    """Read the config file at path (None: defaults only); return an ExtcapConfig."""
    cfg = ExtcapConfig()
    if path is None:
        return cfg
    cfg.path = path
    cp = ini.read_ini(path)
    for name in cp.sections():
        if name != MAIN:
            raise ini.ConfigError("unknown section (expected [%s])" % MAIN, path, name)
    base = os.path.dirname(os.path.abspath(path))
    s = ini.Section(cp, MAIN, path)

    def file_key(key):
        return s.get(key, lambda t: ini.resolve_path(base, t))
    cfg.tap = s.get("tap", ini.parse_host_port, cfg.tap)
    cfg.tls = s.get("tls", ini.parse_bool, False)
    cfg.tls_ca = file_key("tls_ca")
    cfg.tls_cert = file_key("tls_cert")
    cfg.tls_key = file_key("tls_key")
    cfg.tls_hostname = s.get("tls_hostname")
    cfg.timeout = s.get("timeout", _positive_duration, cfg.timeout)
    for key in ("tls_ca", "tls_cert", "tls_key", "tls_hostname"):
        if s.has(key) and not cfg.tls:
            raise s.error(key, "only used with tls = yes")
    if cfg.tls_key and not cfg.tls_cert:
        raise s.error("tls_key", "set tls_cert too (the viewer certificate)")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(cfg, key)
        if value and not os.path.isfile(value):
            raise s.error(key, "no such file: %s" % value)
    s.finish()
    return cfg
