# SPDX-License-Identifier: AGPL-3.0-or-later
"""One configured client's trace files: when to open, rotate, close and retry.

A Recorder receives the validated records of its client's connection and
writes them into the current TraceFile, rotating (doc/protocol.md#rotation) by
size, by wall-clock period (also on a timer, so quiet clients' files close on
time), on link-header change and per connection. A file is opened when the
first record for it arrives, so no empty files are made. After a write error
the file is cut back and closed, records are counted as dropped, and a new
file is tried again after `write_retry` seconds.

While the client's connection delivers an acknowledged stream
(doc/protocol.md#acknowledged-delivery), `durable` counts the records that are
in a file (write() returned) and checkpoint() records in the client's state
file what that covers, before the server acknowledges it. A record that
cannot be stored then is never dropped: the Recorder reports it (`broken`),
the server hangs up, and the client sends it again. At start-up, recover()
cuts the file an earlier process left open back to what it had acknowledged.
"""

import collections
import os

from osmo_pcap import log, rotation
from osmo_pcap.server.ackstate import StateFile, StreamState, sync_dir
from osmo_pcap.server.storage import TraceFile, WriteError

COUNTERS = ("connect", "bytes", "pkts", "link_hdr", "file_rotated", "files_closed",
            "dropped", "write_errors", "acked", "duplicates", "seq_gap", "cut_back")

_log = log.get("server")


class FileSettings(collections.namedtuple(
        "FileSettings", "base_path completed_path mode max_size rule write_buffer write_retry "
                        "ack_sync")):
    """How every client's trace files are written ([server] keys, validated)."""

    @classmethod
    def from_config(cls, cfg):
        """Take the values from a server.config.ServerConfig."""
        return cls(cfg.base_path, cfg.completed_path, cfg.file_permission_mask,
                   cfg.max_file_size, cfg.rotate_localtime, cfg.write_buffer, cfg.write_retry,
                   cfg.ack_sync)


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
        self.stored = 0            # records in closed files (or not kept: store = no)
        self.state_file = StateFile(files.base_path, name)
        self.saved = None          # the last StreamState written (or found at start-up)
        self.stream = None         # the StreamState of the acknowledged stream in progress
        self.seq_base = 0          # sequence number = durable + seq_base while streaming
        self.jumps = collections.deque()   # (durable count, gap) not applied yet
        self.broken = None         # why an acknowledged stream cannot be stored (or None)
        self.last_packet = None    # wall-clock time of the last record received

    @property
    def durable(self):
        """Records written to their file (write() returned), or not kept (store = no)."""
        f = self.file
        return self.stored + (f.records - f.pending_records if f is not None else 0)

    # ------------------------------------------------------------ events
    def new_connection(self):
        """A connection proved itself and is the client's now: close the file, forget
        the link header. (The server counts every connection in `connect` when it
        arrives.)"""
        self.close_file("new connection")
        self.link = None

    def set_link(self, link):
        """Take a validated LINK_HDR; a different header starts a new file."""
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
        self.last_packet = t
        if not self.store:
            self.stored += len(out)
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
                self._not_stored(len(out), "no trace file can be created now")
                return
        self.last.update(t, tm)
        limit = self.max_size
        if not limit or f.size + nbytes <= limit:
            try:
                f.append_parts(out, nbytes, len(out))
            except WriteError as e:
                self._write_failed(e, t)
            return
        for i, rec in enumerate(out):
            if f.size + len(rec) > limit and f.records:
                self.close_file("size limit", rotated=True)
                f = self._open(now)
                if f is None:
                    self._not_stored(len(out) - i, "no trace file can be created now")
                    return
            try:
                f.append(rec, 1)
            except WriteError as e:
                self._not_stored(len(out) - i - 1, "a write failed")
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
        """Close the current file now (SIGUSR2); the next record opens a new one."""
        if self.file is not None:
            self.close_file(reason, rotated=True)

    def _not_stored(self, n, why):
        """n accepted records could not be stored: dropped, or, streaming, sent again."""
        if self.stream is None:
            self.counters["dropped"] += n
        elif self.broken is None:
            self.broken = why

    # ------------------------------------------------------------ acknowledged streams
    def recover(self):
        """Start-up: cut the file an earlier process left open back to what it acknowledged.

        Return a line for the log, or None when there was nothing to do.
        Raise OSError when the file or the state cannot be handled.
        """
        st = self.state_file.load()
        self.saved = st
        if st is None or not st.file:
            return None
        fs = self.files
        name = st.file
        note = None
        for d in (fs.base_path, fs.completed_path):
            path = os.path.join(d, name) if d else None
            if path is None or not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            if min(size, st.offset) < TraceFile.MIN_SIZE:
                # Not even a header was acknowledged (or is left): nothing to keep.
                self.counters["cut_back"] += size > st.offset
                os.unlink(path)
                note = "removed it: none of its %d bytes was acknowledged" % size \
                    if st.offset < TraceFile.MIN_SIZE else \
                    "removed it: it has %d bytes, fewer than the %d acknowledged, as a " \
                    "power failure can do with ack_sync = no" % (size, st.offset)
                path = None
            elif size > st.offset:
                self.counters["cut_back"] += 1
                os.truncate(path, st.offset)
                note = "cut it back from %d to %d bytes: the rest was never " \
                    "acknowledged, the client sends it again" % (size, st.offset)
            elif size < st.offset:
                note = "it has %d bytes, fewer than the %d acknowledged: acknowledged " \
                    "records were lost, as a power failure can do with ack_sync = no" \
                    % (size, st.offset)
            else:
                note = "complete (%d bytes)" % size
            if path is not None and d == fs.base_path and fs.completed_path:
                target = os.path.join(fs.completed_path, name)
                os.rename(path, target)
                path = target
            if path is not None and self.on_file_closed is not None:
                self.on_file_closed(self.name, path)
            break
        st.file, st.offset = "", 0
        self.state_file.save(st, sync=fs.ack_sync)
        if note is None:
            return None
        return "client %s: %s was left open by an earlier run: %s" % (self.name, name, note)

    def begin_stream(self, stream_id, first_seq):
        """A connection names its stream; return (skip, gap, start sequence number).

        skip: frames about to arrive that are already stored; gap: frames the
        client gave up before first_seq (never stored here).
        """
        skip = gap = 0
        start = first_seq
        saved = self.saved
        if saved is not None and saved.stream_id == stream_id:
            if first_seq <= saved.next_seq:
                skip = saved.next_seq - first_seq
                start = saved.next_seq
            else:
                gap = first_seq - saved.next_seq
        self.counters["seq_gap"] += gap
        self.stream = StreamState(stream_id, start)
        self.seq_base = start - self.durable
        self.jumps = collections.deque()
        self.broken = None
        return skip, gap, start

    def jump(self, gap):
        """The client gave up the next gap frames of its stream (a STREAM mid-way).

        The numbers move on once the records received before are durable: an ACK
        must never cover a record that is only in the write buffer.
        """
        self.counters["seq_gap"] += gap
        f = self.file
        self.jumps.append((self.durable + (f.pending_records if f is not None else 0), gap))

    def end_stream(self):
        """The stream's connection is gone."""
        self.stream = None
        self.jumps.clear()
        self.broken = None

    def checkpoint(self):
        """Make what is durable known on disk; return the sequence number to acknowledge.

        Raise OSError when the state cannot be written (then nothing may be
        acknowledged).
        """
        st = self.stream
        durable = self.durable
        while self.jumps and durable >= self.jumps[0][0]:
            self.seq_base += self.jumps.popleft()[1]
        seq = durable + self.seq_base
        f = self.file
        sync = self.files.ack_sync
        if sync and f is not None and f.written:
            os.fdatasync(f.fd)
        st.next_seq = seq
        st.file = os.path.basename(f.path) if f is not None else ""
        st.offset = f.written if f is not None else 0
        self.state_file.save(st, sync=sync)
        self.saved = StreamState(st.stream_id, seq, st.file, st.offset)
        return seq

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
        if self.stream is not None:
            # Named before anything is written to it: after a crash, whatever the
            # new file holds beyond this (nothing yet) is cut off.
            try:
                if fs.ack_sync:
                    sync_dir(fs.base_path)
                self.checkpoint()
            except OSError as e:
                self._warn("state", "client %s: cannot write %s: %s" % (
                    self.name, self.state_file.path, e.strerror or e))
                self.broken = "its state file cannot be written"
        _log.info("client %s: writing %s", self.name, f.path)
        return f

    def _write_failed(self, e, t):
        c = self.counters
        c["write_errors"] += 1
        self._not_stored(e.dropped, "a write failed")
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
        path, err = f.close(self.files.completed_path, sync=self.stream is not None
                            and self.files.ack_sync)
        self.stored += f.records - f.pending_records
        if self.stream is not None:
            try:
                self.checkpoint()
            except OSError as e:
                self.broken = "its state file cannot be written: %s" % (e.strerror or e)
        c = self.counters
        c["files_closed"] += 1
        if rotated:
            c["file_rotated"] += 1
        if err is not None:
            if isinstance(err, WriteError):
                c["write_errors"] += 1
                self._not_stored(err.dropped, "a write failed")
            _log.error("client %s: closing %s: %s", self.name, f.path, err)
        if path is None:
            _log.info("client %s: removed %s (%s; nothing was written)", self.name, f.path,
                      reason)
            return
        _log.info("client %s: closed %s (%s; %d records, %d bytes)", self.name, path, reason,
                  records, f.written)
        if self.on_file_closed is not None:
            self.on_file_closed(self.name, path)
