# SPDX-License-Identifier: AGPL-3.0-or-later
"""Dropping root to `user`/`group` while keeping the capability capture needs.

A client that switched to an unprivileged user must still be able to open a
capture device again when it comes back (a USB NIC, a VPN tunnel, a VLAN
reconfigured). switch_user() does what a systemd unit with User= and
AmbientCapabilities=CAP_NET_RAW gives a service: the process keeps exactly
CAP_NET_RAW in its permitted, effective, inheritable and ambient sets, the
bounding set is reduced to it, and nothing else remains
(doc/client.md#privileges). Capturing, promiscuous mode and large kernel
buffers (the TPACKET ring) need no other capability.

Linux only, through ctypes on the C library's prctl(2) and capset(2); the
structures have the same layout on 32- and 64-bit systems.
"""

import ctypes
import ctypes.util
import os

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SETPCAP = 8
NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}
KEEP = (CAP_NET_RAW,)

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class PrivilegeError(Exception):
    """Switching the user failed; str() says which step."""


_libc = []


def libc():
    """Return the C library with prctl and capset declared (loaded once)."""
    if not _libc:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        ul = ctypes.c_ulong
        lib.prctl.argtypes = [ctypes.c_int, ul, ul, ul, ul]
        lib.prctl.restype = ctypes.c_int
        lib.capset.argtypes = [ctypes.POINTER(CapHeader), ctypes.POINTER(CapData)]
        lib.capset.restype = ctypes.c_int
        _libc.append(lib)
    return _libc[0]


def _prctl(option, arg2, arg3=0):
    if libc().prctl(option, arg2, arg3, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mask(caps):
    """Return the 64-bit capability mask of a list of capability numbers."""
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def describe(m):
    """Return 'CAP_NET_RAW' for a mask of capabilities ('none' for 0)."""
    names = [NAMES.get(c, "cap %d" % c) for c in range(64) if m >> c & 1]
    return ", ".join(names) or "none"


def last_cap():
    """Return the highest capability number the kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def current(pid="self"):
    """Return {'CapInh': mask, 'CapPrm': ..., 'CapEff', 'CapBnd', 'CapAmb'} from /proc."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Cap"):
                out[key] = int(value.strip(), 16)
    return out


def set_capabilities(caps):
    """Make caps the permitted, effective and inheritable sets; raise OSError."""
    m = mask(caps)
    hdr = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    for i in (0, 1):
        part = (m >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = part
    if libc().capset(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def switch_user(uid, gid, keep=KEEP):
    """As root: become uid/gid (no supplementary groups) keeping only the keep capabilities.

    Return the list of warnings (a kernel without ambient capabilities, ...);
    raise PrivilegeError when the user or group cannot be switched. Without
    a uid only the group changes and the process stays root.
    """
    warnings = []
    if uid is None:
        try:
            os.setgroups([])
            os.setgid(gid)
        except OSError as e:
            raise PrivilegeError("cannot switch to group %s: %s" % (gid, e.strerror or e))
        return warnings
    # Nothing outside keep may ever come back, even through an exec (bounding set).
    for cap in range(last_cap() + 1):
        if cap in keep:
            continue
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            warnings.append("cannot reduce the capability bounding set: %s" % e.strerror)
            break
    try:
        _prctl(PR_SET_KEEPCAPS, 1)
    except OSError as e:
        warnings.append("cannot keep capabilities across the user switch: %s" % e.strerror)
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as e:
        raise PrivilegeError("cannot switch to user %s group %s: %s"
                             % (uid, gid, e.strerror or e))
    try:
        set_capabilities(keep)
    except OSError as e:
        warnings.append("cannot keep %s after the user switch (%s): a device that fails "
                        "cannot be opened again" % (describe(mask(keep)), e.strerror))
        return warnings
    for cap in keep:
        try:
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
        except OSError as e:
            warnings.append("cannot raise %s in the ambient set: %s" % (NAMES.get(cap, cap),
                                                                       e.strerror))
    try:
        _prctl(PR_SET_KEEPCAPS, 0)
    except OSError:
        pass
    return warnings
