# SPDX-License-Identifier: AGPL-3.0-or-later
"""Checks that start-up and --check-config share: files, directories, listeners.

A configuration can be valid key by key and still fail at start: a log file in
a directory that does not exist, a spool directory under a read-only mount,
two listeners on one port. These helpers find such problems without starting
anything. Every program's config module combines them into its own checks,
run both by --check-config and at start-up, so the two cannot disagree; what
cannot be checked beforehand is said, not guessed (doc/operations.md#check-config).

file_problem() and dir_problem() return None or a reason; check_listeners()
raises ConfigError for the first pair of listeners that cannot both listen.
"""

import collections
import ipaddress
import os
import socket

from osmo_pcap.ini import ConfigError


def file_problem(path):
    """Return None if path can be opened for appending (made if missing), else why not.

    The check opens the file as the program will; a file it had to create is
    removed again.
    """
    if os.path.isdir(path):
        return "%s is a directory" % path
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), 0o640)
    except OSError as e:
        return "cannot open %s for writing: %s" % (path, e.strerror or e)
    os.close(fd)
    if not existed:
        try:
            os.unlink(path)
        except OSError:
            pass
    return None


def dir_problem(path, create=False):
    """Return None if files can be created in directory path, else why not.

    create: the program makes the directory (and its parents) when missing;
    then the nearest existing parent must be a writable directory.
    """
    if not os.path.lexists(path):
        if not create:
            return "%s does not exist" % path
        parent = path
        while not os.path.lexists(parent):
            up = os.path.dirname(parent)
            if up == parent:
                break
            parent = up
        if not os.path.isdir(parent):
            return "cannot create %s: %s is not a directory" % (path, parent)
        return _writable(parent, "cannot create %s in %s" % (path, parent))
    if not os.path.isdir(path):
        return "%s is not a directory" % path
    probe = os.path.join(path, ".osmo-pcap-probe-%d" % os.getpid())
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return "cannot create a file in %s: %s" % (path, e.strerror or e)
    os.close(fd)
    os.unlink(probe)
    return None


def _writable(directory, what):
    """Check, without writing, that entries can be made in an existing directory."""
    try:
        readonly = os.statvfs(directory).f_flag & getattr(os, "ST_RDONLY", 1)
    except OSError as e:
        return "%s: %s" % (what, e.strerror or e)
    if readonly:
        return "%s: read-only file system" % what
    if not os.access(directory, os.W_OK | os.X_OK):
        return "%s: permission denied" % what
    return None


def user_note(notes):
    """Add to notes that file checks made as root say nothing about another user."""
    if os.geteuid() == 0:
        notes.append("writing as another user: files and directories were checked as root "
                     "(a service started under its own user needs the same permissions)")


# ------------------------------------------------------------------ listeners
class Listener(collections.namedtuple("Listener", "section key host port")):
    """One listening socket a configuration asks for: where it is set, and its address."""

    def name(self):
        return "[%s] %s" % (self.section, self.key)

    def address(self):
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host \
            else "%s:%d" % (self.host, self.port)


def _address(host):
    """Return the ipaddress object a listener on host binds to, or None if unknown now."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # A name: the programs bind to its first address of the family that
        # ":" in the name selects (IPv4 for every name).
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET6 if ":" in host
                                       else socket.AF_INET, socket.SOCK_STREAM)
            ip = ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])
        except (OSError, UnicodeError, ValueError, IndexError):
            return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _overlap(a, b):
    """True if sockets bound to addresses a and b on one port would collide.

    0.0.0.0 takes every IPv4 address; :: takes every IPv6 address and, as the
    server's listener is dual-stack and Linux makes the others so by default,
    every IPv4 address as well.
    """
    if a == b:
        return True
    for x, y in ((a, b), (b, a)):
        if x.is_unspecified and (x.version == 6 or y.version == 4):
            return True
    return False


def check_listeners(listeners, path, notes=None):
    """Raise ConfigError if two of listeners cannot listen at once; note what is unknown.

    listeners: Listener tuples in configuration order; the error names the
    later one of the first colliding pair. notes (a list) gets a line for each
    listener whose host cannot be resolved now.
    """
    known = []
    for lis in listeners:
        ip = _address(lis.host)
        if ip is None:
            if notes is not None:
                notes.append("%s: cannot resolve %r now, so collisions with its port are "
                             "not checked" % (lis.name(), lis.host))
            continue
        for other, other_ip in known:
            if other.port == lis.port and _overlap(ip, other_ip):
                raise ConfigError(
                    "%s collides with %s = %s: the two cannot listen at once"
                    % (lis.address(), other.name(), other.address()),
                    path, lis.section, lis.key)
        known.append((lis, ip))
    if notes is None or not listeners:
        return
    notes.append("whether %s free now: a running server or another program may hold %s"
                 % ("the ports are" if len(listeners) > 1 else "the port is",
                    "them" if len(listeners) > 1 else "it"))
    if os.geteuid() != 0:
        for lis in listeners:
            if lis.port < 1024:
                notes.append("%s: port %d is below 1024: binding it needs root or "
                             "CAP_NET_BIND_SERVICE" % (lis.name(), lis.port))
