# SPDX-License-Identifier: AGPL-3.0-or-later
"""One configured client's trace files: when to open, rotate, close and retry.

A Recorder receives the validated records of its client's connection and
writes them into the current TraceFile, rotating by size (spec 4.6 step 1),
by wall-clock period (4.6.1, also on a timer so quiet clients' files close on
time), on link-header change and per connection. A file is opened when the
first record for it arrives, so no empty files are made. After a write error
the file is cut back and closed, records are counted as dropped, and a new
file is tried again after `write_retry` seconds.
"""

import collections

from osmo_pcap import log, rotation
from osmo_pcap.server.storage import TraceFile, WriteError

COUNTERS = ("connect", "bytes", "pkts", "link_hdr", "file_rotated", "files_closed",
            "dropped", "write_errors")

_log = log.get("server")


class FileSettings(collections.namedtuple(
        "FileSettings", "base_path completed_path mode max_size rule write_buffer write_retry")):
    """How every client's trace files are written ([server] keys, validated)."""

    @classmethod
    def from_config(cls, cfg):
        """Take the values from a server.config.ServerConfig."""
        return cls(cfg.base_path, cfg.completed_path, cfg.file_permission_mask,
                   cfg.max_file_size, cfg.rotate_localtime, cfg.write_buffer, cfg.write_retry)


class Recorder(object):
    """The files and counters of one [client NAME]."""

    def __init__(self, name, store, files, on_file_closed=None, limiter=None):
        self.name = name
        self.store = store
        self.files = files
        self.rule = files.rule
        self.max_size = files.max_size
        self.on_file_closed = on_file_closed
        self.limiter = limiter or log.RateLimiter(10.0)
        self.counters = dict((k, 0) for k in COUNTERS)
        self.rejected = {}
        self.link = None
        self.file = None
        self.last = rotation.LastWrite()
        self.retry_at = None

    # ------------------------------------------------------------ events
    def new_connection(self):
        """A new connection starts: close the file, forget the link header (spec 4.3)."""
        self.counters["connect"] += 1
        self.close_file("new connection")
        self.link = None

    def set_link(self, link):
        """Take a validated LINK_HDR; a different header starts a new file (spec 4.4)."""
        self.counters["link_hdr"] += 1
        if self.link is not None and self.link.header == link.header:
            return
        if self.file is not None:
            self.close_file("link header changed", rotated=True)
        self.link = link

    def write(self, out, nbytes, now):
        """Store the records in out (bytes-likes, valid only during the call).

        now is a rotation.Instant.
        """
        c = self.counters
        c["pkts"] += len(out)
        c["bytes"] += nbytes
        t, tm = now.epoch, now.tm
        if not self.store:
            self.last.update(t, tm)
            return
        f = self.file
        if f is not None and self.rule is not None and rotation.new_period(
                self.last.tm, tm, *self.rule):
            self.close_file("time period", rotated=True)
            f = None
        if f is None:
            f = self._open(now)
            if f is None:
                c["dropped"] += len(out)
                return
        self.last.update(t, tm)
        limit = self.max_size
        if not limit or f.size + nbytes <= limit:
            try:
                f.append(b"".join(out), len(out))
            except WriteError as e:
                self._write_failed(e, t)
            return
        for i, rec in enumerate(out):
            if f.size + len(rec) > limit and f.records:
                self.close_file("size limit", rotated=True)
                f = self._open(now)
                if f is None:
                    c["dropped"] += len(out) - i
                    return
            try:
                f.append(rec, 1)
            except WriteError as e:
                c["dropped"] += len(out) - i - 1
                self._write_failed(e, t)
                return

    def tick(self, now):
        """Timer work: close the file when its period ended, else flush it."""
        f = self.file
        if f is None:
            return
        if self.rule is not None and rotation.new_period(self.last.tm, now.tm, *self.rule):
            self.close_file("time period", rotated=True)
            return
        try:
            f.flush()
        except WriteError as e:
            self._write_failed(e, now.epoch)

    def rotate(self, reason):
        """Close the current file now (SIGUSR1/SIGHUP); the next record opens a new one."""
        if self.file is not None:
            self.close_file(reason, rotated=True)

    # ------------------------------------------------------------ files
    def _open(self, now):
        t = now.epoch
        if self.retry_at is not None and t < self.retry_at:
            return None
        if self.link is None:
            return None
        fs = self.files
        others = (fs.completed_path,) if fs.completed_path else ()
        try:
            f = TraceFile.create(fs.base_path, self.name, now.local, self.link, fs.mode,
                                 fs.write_buffer, others)
        except OSError as e:
            self.counters["write_errors"] += 1
            self.retry_at = t + fs.write_retry
            self._warn("open", "client %s: cannot create a trace file in %s: %s; retrying in "
                       "%gs" % (self.name, fs.base_path, e.strerror or e, fs.write_retry))
            return None
        self.retry_at = None
        self.file = f
        self.last.update(t, now.tm)
        _log.info("client %s: writing %s", self.name, f.path)
        return f

    def _write_failed(self, e, t):
        c = self.counters
        c["write_errors"] += 1
        c["dropped"] += e.dropped
        self.retry_at = t + self.files.write_retry
        self._warn("write", "client %s: writing %s failed: %s; %d record(s) dropped, file cut "
                   "back to its last complete record and closed; retrying in %gs"
                   % (self.name, e.path, e.error.strerror or e.error, e.dropped,
                      self.files.write_retry))
        self.close_file("write error")

    def _warn(self, key, message):
        held = self.limiter.ok((self.name, key))
        if held is not None:
            if held:
                message += " (%d similar message(s) suppressed)" % held
            _log.error("%s", message)

    def close_file(self, reason, rotated=False):
        """Flush, close and move the current file, if any; count it."""
        f = self.file
        if f is None:
            return
        self.file = None
        records = f.records
        path, err = f.close(self.files.completed_path)
        c = self.counters
        c["files_closed"] += 1
        if rotated:
            c["file_rotated"] += 1
        if err is not None:
            if isinstance(err, WriteError):
                c["write_errors"] += 1
                c["dropped"] += err.dropped
            _log.error("client %s: closing %s: %s", self.name, f.path, err)
        if path is None:
            _log.info("client %s: removed %s (%s; nothing was written)", self.name, f.path,
                      reason)
            return
        _log.info("client %s: closed %s (%s; %d records, %d bytes)", self.name, path, reason,
                  records, f.written)
        if self.on_file_closed is not None:
            self.on_file_closed(self.name, path)
