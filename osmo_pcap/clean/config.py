# SPDX-License-Identifier: AGPL-3.0-or-later
"""The cleanup tool's INI file: [clean] and optional [client NAME] sections.

read() returns a CleanConfig or raises ini.ConfigError naming the file,
section and key. Keys and defaults are documented in doc/clean.md.
"""

import os
import re
import shlex
import sys

from osmo_pcap import ini
from osmo_pcap.clean.plan import METHODS, Policy

MAIN = "clean"
CLIENT_PREFIX = "client "
LOCK_NAME = ".osmo-pcap-clean.lock"
# keys that only make sense once, for the whole run
GLOBAL_ONLY = ("paths", "min_free", "lock_file")
# python modules behind each method: a build without one is a config error
_MODULES = {"gzip": "gzip", "bz2": "bz2", "xz": "lzma", "zstd": "compression.zstd"}
# compress_level: 1 to 9 for gzip, bz2 and xz; zstd goes on to 22
MAX_LEVEL = {"zstd": 22}
ZSTD_SINCE = (3, 14)


class CleanConfig(object):
    """The parsed configuration of one cleanup run."""

    def __init__(self, path, paths, lock_file, default, clients, max_bytes, min_free):
        self.path = path            # the config file
        self.paths = paths          # absolute directories to clean
        self.lock_file = lock_file  # absolute path
        self.default = default      # Policy from [clean]
        self.clients = clients      # {name: Policy}
        self.max_bytes = max_bytes  # global budget, 0 = off
        self.min_free = min_free    # None, ("bytes", n) or ("percent", p)

    def policy(self, client):
        return self.clients.get(client, self.default)


def parse_age(text):
    """Return seconds for '120d', '36h', '2w' (plain numbers are days); None for off."""
    if text.strip().lower() in ("off", "no", "none", "0"):
        return None
    secs = ini.parse_duration(text, default_unit="d")
    return secs or None


def parse_count(text):
    """Return a file count >= 0; 'off' is 0 (rule disabled)."""
    if text.strip().lower() in ("off", "no", "none"):
        return 0
    return ini.parse_int(text, 0)


def parse_min_free(text):
    """Return None (off), ('bytes', n) or ('percent', p) for '10%', '20G', 'off'."""
    t = text.strip()
    m = re.match(r"^(\d+(?:\.\d+)?)\s*%$", t)
    if m:
        pct = float(m.group(1))
        if not 0 < pct < 100:
            raise ValueError("a percentage must be above 0 and below 100: %r" % text)
        return ("percent", pct)
    n = ini.parse_size(t, allow_off=True)
    return ("bytes", n) if n else None


def parse_method(text, version=None):
    """Return one of gzip, bz2, xz, zstd, none; fail if this Python lacks the module.

    version: the interpreter's (major, minor), for tests; sys.version_info when None.
    """
    t = text.strip().lower()
    if t not in METHODS:
        raise ValueError("expected one of %s, got %r" % (" | ".join(METHODS), text))
    version = tuple(version or sys.version_info[:2])
    if t == "zstd" and version < ZSTD_SINCE:
        raise ValueError("zstd needs Python %d.%d or later (its compression.zstd module); "
                         "this is Python %d.%d: choose gzip, bz2 or xz, or run the cleanup "
                         "tool with python3.14 or newer" % (ZSTD_SINCE + version[:2]))
    if t in _MODULES:
        try:
            __import__(_MODULES[t])
        except ImportError:
            raise ValueError("%s needs the Python module %s, which this interpreter "
                             "lacks; choose another method" % (t, _MODULES[t]))
    return t


def _policy(sec, base):
    """Read the per-client keys of sec on top of the Policy base."""
    p = base.replace()
    p.max_age = sec.get("max_age", parse_age, p.max_age)
    p.max_files = sec.get("max_files", parse_count, p.max_files)
    p.compress_after = sec.get("compress_after", parse_count, p.compress_after)
    p.compress = sec.get("compress", parse_method, p.compress)
    p.compress_level = sec.get("compress_level", lambda t: ini.parse_int(t, 1, 22),
                               p.compress_level)
    top = MAX_LEVEL.get(p.compress, 9)
    if p.compress != "none" and p.compress_level > top:
        raise sec.error("compress_level" if sec.has("compress_level") else "compress",
                        "compress_level %d is above the maximum %d for %s (only zstd goes "
                        "up to 22)" % (p.compress_level, top, p.compress))
    return p


def read(path):
    """Read and check the config file at path; return a CleanConfig."""
    cp = ini.read_ini(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    if not cp.has_section(MAIN):
        raise ini.ConfigError("no [%s] section" % MAIN, path)
    for name in cp.sections():
        if name != MAIN and not name.startswith(CLIENT_PREFIX):
            raise ini.ConfigError("unknown section (expected [clean] or [client NAME])",
                                     path, name)

    sec = ini.Section(cp, MAIN, path)
    raw_paths = sec.get("paths")
    if not raw_paths:
        raise sec.error("paths", "missing: name the directories to clean")
    try:
        words = shlex.split(raw_paths)
    except ValueError as e:
        raise sec.error("paths", "cannot split the list: %s" % e)
    paths = []
    for w in words:
        p = ini.resolve_path(base_dir, w)
        if p not in paths:
            paths.append(p)
    lock_file = ini.resolve_path(base_dir, sec.get("lock_file")) or \
        os.path.join(paths[0], LOCK_NAME)
    min_free = sec.get("min_free", parse_min_free)
    max_bytes = sec.get("max_bytes", lambda t: ini.parse_size(t, allow_off=True), 0)
    default = _policy(sec, Policy())
    sec.finish()

    clients = {}
    for name in cp.sections():
        if not name.startswith(CLIENT_PREFIX):
            continue
        client = name[len(CLIENT_PREFIX):].strip()
        try:
            ini.check_safe_name(client)
        except ValueError as e:
            raise ini.ConfigError("bad client name: %s" % e, path, name)
        csec = ini.Section(cp, name, path)
        for key in GLOBAL_ONLY:
            if csec.has(key):
                raise csec.error(key, "only allowed in [%s] (it applies to the whole run)"
                                 % MAIN)
        pol = _policy(csec, default)
        # in [client NAME], max_bytes is that client's own budget
        pol.max_bytes = csec.get("max_bytes", lambda t: ini.parse_size(t, allow_off=True), 0)
        csec.finish()
        if client in clients:
            raise ini.ConfigError("client %s configured twice" % client, path, name)
        clients[client] = pol
    return CleanConfig(path, paths, lock_file, default, clients, max_bytes, min_free)


def min_free_bytes(min_free, total_bytes):
    """Return the bytes that must stay free on a filesystem of total_bytes."""
    if min_free is None:
        return 0
    kind, value = min_free
    if kind == "percent":
        return int(total_bytes * value / 100.0)
    return value
