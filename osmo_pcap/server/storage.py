# SPDX-License-Identifier: AGPL-3.0-or-later
"""Trace files being written: exclusive create, lock, buffered writes, close and move.

A TraceFile is created with O_EXCL under a name from tracename.format_name,
adding -1, -2, ... when that name exists (never truncating anything:
doc/protocol.md#diff-file-collisions), and holds flock(LOCK_EX) until it is
closed, so the cleanup tool can tell files being written apart. Records are buffered and written in batches; a
failed write truncates the file back to the last complete record, so the file
stays readable (doc/protocol.md#write-errors).
"""

import errno
import fcntl
import os

from osmo_pcap import tracename

# Suffixes the cleanup tool may add; a name is taken if any variant exists.
_TAKEN_SUFFIXES = ("",) + tuple("." + c for c in tracename.COMPRESSED)
MAX_SUFFIX = 999


def _iov_max():
    try:
        return max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
    except (AttributeError, ValueError, OSError):
        return 16


IOV_MAX = _iov_max()      # buffers per writev call
# Below this many bytes per record on average, joining a batch and writing it
# once costs less than handing writev one buffer per record (60 against 85-94 ns
# per 116-byte record, measured on CPython 3.6-3.13; equal at about 1400 bytes).
WRITEV_MIN = 1024


def _write_rest(fd, data, done):
    """Write data[done:] after a short write (a full disk, a signal): the rest
    goes out, or OSError is raised."""
    with memoryview(data) as mv:
        while done < len(mv):
            done += os.write(fd, mv[done:])


class WriteError(Exception):
    """Writing a trace file failed; the file was cut back to its last complete record.

    `dropped` records were lost, `error` is the OSError.
    """

    def __init__(self, path, error, dropped):
        Exception.__init__(self, "%s: %s" % (path, error.strerror or error))
        self.path = path
        self.error = error
        self.dropped = dropped


def _taken(dirs, name):
    for d in dirs:
        for suffix in _TAKEN_SUFFIXES:
            if os.path.lexists(os.path.join(d, name + suffix)):
                return True
    return False


def create_exclusive(base_path, client, st, ext, mode, other_dirs=()):
    """Create and lock a new trace file; return (path, fd).

    The name is format_name(client, st, ext) with the first free collision
    suffix; a name also counts as taken when it (or a compressed form of it)
    exists in one of other_dirs (the completed_path). Raise OSError.
    """
    dirs = (base_path,) + tuple(other_dirs)
    for seq in range(MAX_SUFFIX + 1):
        name = tracename.format_name(client, st, ext, seq)
        if _taken(dirs, name):
            continue
        path = os.path.join(base_path, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The umask must not narrow the configured mode (upstream's did:
            # doc/protocol.md#diff-file-mode); the lock needs no write permission.
            os.fchmod(fd, mode)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        return path, fd
    raise OSError(errno.EEXIST, "more than %d files named %s in one second"
                  % (MAX_SUFFIX, tracename.format_name(client, st, ext)))


class TraceFile(object):
    """One open trace file: header plus records, buffered, locked while open.

    `size` counts every byte accepted (written or buffered), `written` the
    bytes on disk, which always end on a record boundary.
    """

    __slots__ = ("path", "fd", "header_len", "size", "written", "records", "pending",
                 "pending_records", "buffer_limit")
    MIN_SIZE = 24   # no trace file is shorter than its header: a pcap one is 24 bytes

    def __init__(self, path, fd, header, buffer_limit):
        self.path = path
        self.fd = fd
        self.header_len = len(header)
        self.buffer_limit = buffer_limit
        self.pending = bytearray(header)
        self.pending_records = 0
        self.size = self.header_len
        self.written = 0
        self.records = 0

    @classmethod
    def create(cls, base_path, client, st, link, mode, buffer_limit, other_dirs=()):
        """Create the file for a client at local time st, starting with link.header."""
        path, fd = create_exclusive(base_path, client, st, link.ext, mode, other_dirs)
        return cls(path, fd, link.header, buffer_limit)

    def append(self, data, nrecords):
        """Buffer nrecords complete records (bytes-like); write when the buffer is full.

        Raise WriteError (after cutting the file back) when a write fails.
        """
        self.size += len(data)
        self.records += nrecords
        if not self.pending and len(data) >= self.buffer_limit:
            self._write(data, nrecords)  # a big batch goes out without another copy
            return
        self.pending += data
        self.pending_records += nrecords
        if len(self.pending) >= self.buffer_limit:
            self.flush()

    def flush(self):
        """Write everything buffered; raise WriteError after cutting the file back."""
        if self.pending:
            pending, nrec = self.pending, self.pending_records
            self.pending = bytearray()
            self.pending_records = 0
            self._write(pending, nrec)

    def append_parts(self, parts, nbytes, nrecords):
        """Like append(b"".join(parts), nrecords): nrecords records in parts
        (bytes-likes of nbytes in all, valid only during the call). A big batch
        of large records with nothing buffered goes to the file by writev,
        without being joined.
        """
        if self.pending or nbytes < self.buffer_limit or nbytes < WRITEV_MIN * len(parts):
            self.append(b"".join(parts), nrecords)
            return
        self.size += nbytes
        self.records += nrecords
        fd = self.fd
        try:
            for i in range(0, len(parts), IOV_MAX):
                group = parts[i:i + IOV_MAX]
                done = os.writev(fd, group)
                if done < sum(map(len, group)):
                    _write_rest(fd, b"".join(group), done)
        except OSError as e:
            self._cut_back(e, nbytes, nrecords)
        self.written += nbytes

    def _write(self, data, nrecords):
        fd = self.fd
        total = len(data)
        try:
            done = os.write(fd, data)
            if done < total:
                _write_rest(fd, data, done)
        except OSError as e:
            self._cut_back(e, total, nrecords)
        self.written += total

    def _cut_back(self, e, total, nrecords):
        """A write of total bytes (nrecords records) failed: cut the file back
        to what was written before it; raise WriteError."""
        self.size -= total
        self.records -= nrecords
        try:
            os.ftruncate(self.fd, self.written)
            os.lseek(self.fd, self.written, os.SEEK_SET)
        except OSError:
            pass
        raise WriteError(self.path, e, nrecords)

    def close(self, completed_path=None, sync=False):
        """Flush, move to completed_path and close; return (final path, error or None).

        With sync, the data is on stable storage (fdatasync) before the move.

        A file that never got its header onto disk is removed instead (path
        None). A failed flush or move is returned, not raised: the file is
        closed either way.
        """
        err = None
        try:
            self.flush()
            if sync and self.written:
                os.fdatasync(self.fd)
        except (WriteError, OSError) as e:
            # Returned as a value: without the traceback, which would hold this
            # frame and its caller in a cycle (HACKING.md#mem-release).
            e.__traceback__ = e.__context__ = e.__cause__ = None
            err = e
        path = self.path
        if self.written < self.header_len or self.written == 0:
            try:
                os.unlink(path)
            except OSError:
                pass
            path = None
        elif completed_path:
            target = os.path.join(completed_path, os.path.basename(path))
            try:
                # Renamed while still locked: a file in base_path is either
                # locked by us or left over from a crash.
                os.rename(path, target)
                path = target
            except OSError as e:
                err = err or e
        os.close(self.fd)
        self.fd = -1
        return path, err
