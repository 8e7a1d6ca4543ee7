# SPDX-License-Identifier: AGPL-3.0-or-later
"""The trace directories on disk, as the cleanup tool sees them.

scan() lists the trace files of one directory (not recursive; symlinks and
other names are never touched) and the temporary files an interrupted
compression left. The server holds flock(LOCK_EX) on every file it is still
writing; is_locked()/open_unused() test that with a shared, non-blocking lock
on our own descriptor.
"""

import errno
import fcntl
import os

from osmo_pcap import tracename
from osmo_pcap.clean import compress
from osmo_pcap.clean.plan import FoundTrace

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
    getattr(os, "O_NOFOLLOW", 0)


class InUse(Exception):
    """The file is locked by its writer."""


def open_unused(path):
    """Open path for reading with a shared lock held; raise InUse if its writer holds it.

    The lock lives as long as the returned file object.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in _BUSY:
            raise InUse(path)
        raise
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def is_locked(path):
    """Tell whether another process holds an exclusive lock on path (errors: False)."""
    try:
        open_unused(path).close()
    except InUse:
        return True
    except OSError:
        return False  # the action on it will report the real problem
    return False


def scan(directory, check_locks=True):
    """Return (FoundTrace list, leftover temporary file paths) for directory.

    Ages come from the time in the name (local time, as the server writes
    it), else from the mtime. Only uncompressed files can be in use, so only
    those are tested for a lock. Raises OSError if the directory is unreadable.
    """
    dev = os.stat(directory).st_dev
    files, temps = [], []
    it = os.scandir(directory)
    try:
        for de in it:
            name = de.name
            tn = tracename.parse_name(name)
            try:
                if not de.is_file(follow_symlinks=False):
                    continue
                if tn is None:
                    if compress.is_temp_name(name):
                        temps.append(de.path)
                    continue
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we looked
            t = tn.timestamp()
            if t is None:
                t = st.st_mtime
            locked = check_locks and tn.compression is None and is_locked(de.path)
            files.append(FoundTrace(de.path, directory, tn.client, t, tn.seq, st.st_size,
                                   st.st_blocks * 512, dev, tn.compression, locked))
    finally:
        if hasattr(it, "close"):
            it.close()
    return files, temps


def fs_space(directory):
    """Return (dev, total bytes, bytes available to unprivileged users) for directory."""
    st = os.statvfs(directory)
    return os.stat(directory).st_dev, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
