# SPDX-License-Identifier: AGPL-3.0-or-later
"""On-disk spool of frames a Forwarder cannot keep in memory (bounded, ordered).

One directory per server. Each file is named by the sequence number of its
first LINK_DATA frame (20 digits, so names sort in stream order) and holds
the LINK_HDR frame its data belongs to, then LINK_DATA frames exactly as they
go on the wire, numbered consecutively. The file `stream` holds the stream
identity those numbers belong to: a restarted client goes on with the same
stream, and a server that already stored part of it skips what it has
(doc/protocol.md#acknowledged-delivery).

Replay hands out pieces cut at frame boundaries, oldest first. A piece stays
on disk until it is committed: when the server acknowledged it or, toward a
server without acknowledgements, once it was sent; a file is deleted when it
is committed to its end; how far the oldest file is committed is kept in
`progress`, so a restarted client goes on from there. Beyond max_bytes the
oldest file is deleted and its frames are counted as dropped. Files survive restarts; spools written by
earlier versions (files 1.spool, 2.spool, ... and no `stream` file) are
renumbered once.
"""

import os
import struct

from osmo_pcap import wire
from osmo_pcap.wire import complete_frames

SUFFIX = ".spool"
STREAM_FILE = "stream"
PROGRESS_FILE = "progress"
_PROGRESS = struct.Struct("!QQ")  # file (its first sequence number), committed offset
PIECE = 1 << 20
NAME_DIGITS = 20


class Spool(object):
    """The spool of one server's stream."""

    def __init__(self, directory, max_bytes, logger):
        self.dir = directory
        self.max_bytes = max_bytes
        self.file_max = max(1 << 20, min(64 << 20, max_bytes // 8))
        self.log = logger
        self.dropped_frames = 0
        self.dropped_bytes = 0
        self.write_errors = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.sizes = {}          # first seq of a file -> its size in bytes
        self._wfd = None         # tail file being appended
        self._wkey = None
        self._whdr = None
        self._wend = None        # sequence number after the tail file's last frame
        self._rkey = None        # file being replayed
        self._rfd = None
        self._rhdr = None
        self._roff = 0           # offset handed out so far
        self._rseq = 0           # sequence number of the next frame handed out
        self.committed = {}      # file -> offset up to which it was committed
        self._pfd = None         # the progress file
        self.stream_id = self._load_stream_id()
        self._scan()
        self._load_progress()

    # -------------------------------------------------------------- start-up
    def _path(self, key):
        return os.path.join(self.dir, "%0*d%s" % (NAME_DIGITS, key, SUFFIX))

    def _load_stream_id(self):
        path = os.path.join(self.dir, STREAM_FILE)
        try:
            with open(path, "rb") as f:
                sid = f.read(wire.STREAM_ID_SIZE + 1)
            if len(sid) == wire.STREAM_ID_SIZE and any(sid):
                return sid
            self.log.error("spool %s: %s is damaged; starting a new stream", self.dir, path)
        except FileNotFoundError:
            pass
        sid = os.urandom(wire.STREAM_ID_SIZE)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(sid)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        return sid

    def _scan(self):
        old = []
        for name in os.listdir(self.dir):
            if not (name.endswith(SUFFIX) and name[:-len(SUFFIX)].isdigit()):
                continue
            digits = name[:-len(SUFFIX)]
            path = os.path.join(self.dir, name)
            if len(digits) != NAME_DIGITS:
                old.append((int(digits), path))
                continue
            size = os.path.getsize(path)
            if size == 0:
                os.unlink(path)
                continue
            self.sizes[int(digits)] = size
        if old:
            self._renumber(sorted(old))
        self.total = sum(self.sizes.values())

    def _renumber(self, old):
        """Give the files of an earlier version's spool sequence numbers after ours."""
        seq = self.next_seq_on_disk()
        for _, path in old:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                self.log.error("spool %s: cannot read %s: %s; dropped", self.dir, path, e)
                continue
            hdr_end = wire.HEADER_SIZE + ((data[2] << 8) | data[3]) if len(data) >= 4 else 0
            _, n = complete_frames(data, hdr_end)
            if not n:
                os.unlink(path)
                continue
            os.rename(path, self._path(seq))
            self.sizes[seq] = os.path.getsize(self._path(seq))
            seq += n
        self.log.info("spool %s: %d file(s) of an earlier version renumbered", self.dir,
                      len(old))

    def _load_progress(self):
        try:
            with open(os.path.join(self.dir, PROGRESS_FILE), "rb") as f:
                data = f.read(_PROGRESS.size)
        except FileNotFoundError:
            return
        if len(data) == _PROGRESS.size:
            key, offset = _PROGRESS.unpack(data)
            if key in self.sizes and offset <= self.sizes[key]:
                self.committed[key] = offset

    def _save_progress(self, key, offset):
        if self._pfd is None:
            self._pfd = os.open(os.path.join(self.dir, PROGRESS_FILE),
                                os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(self._pfd, _PROGRESS.pack(key, offset), 0)
        except OSError as e:
            # Only costs frames sent twice after a restart (a server of ours skips them).
            self.log.warning("spool %s: cannot note progress: %s", self.dir, e.strerror or e)

    def next_seq_on_disk(self):
        """Return the sequence number after the last spooled frame (0 when empty)."""
        if not self.sizes:
            return 0
        key = max(self.sizes)
        return key + self._count_frames(key, 0)

    def _count_frames(self, key, start):
        """Frames in a file from offset start (0: after its LINK_HDR frame)."""
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except OSError:
            return 0
        if start == 0 and len(data) >= 4:
            start = 4 + ((data[2] << 8) | data[3])
        return complete_frames(data, start)[1]

    @property
    def pending(self):
        """True while spooled data waits to be sent or acknowledged."""
        return bool(self.sizes)

    @property
    def files(self):
        return len(self.sizes)

    # -------------------------------------------------------------- writing
    def append(self, link_hdr, data, first_seq, count):
        """Append count LINK_DATA frames numbered from first_seq, captured under link_hdr."""
        if (self._wfd is None or self._whdr != link_hdr or self._wend != first_seq
                or self.sizes[self._wkey] >= self.file_max):
            self._close_writer()
            fd = self._create(first_seq, link_hdr)
            if fd is None:
                self._count_lost(data)
                return
            self._wfd, self._wkey, self._whdr = fd, first_seq, link_hdr
        if self._write(self._wkey, self._wfd, data):
            self._wend = first_seq + count
        else:
            self._wend = None   # the next append starts a new file
        self._enforce_limit()

    def write_file(self, link_hdr, data, first_seq):
        """Store frames older than the tail in a file of their own (at shutdown)."""
        if first_seq in self.sizes:
            return  # still on disk (it came from here)
        fd = self._create(first_seq, link_hdr)
        if fd is None:
            self._count_lost(data)
            return
        self._write(first_seq, fd, data)
        os.close(fd)
        self._enforce_limit()

    def _create(self, key, link_hdr):
        try:
            fd = os.open(self._path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                         0o600)
        except OSError as e:
            self.write_errors += 1
            self.log.error("spool %s: cannot create file: %s", self.dir, e.strerror or e)
            return None
        self.sizes[key] = 0
        if not self._write(key, fd, wire.encode_link_hdr(link_hdr)):
            os.close(fd)
            self._delete(key)
            return None
        return fd

    def _write(self, key, fd, data):
        mv = memoryview(data)
        try:
            while mv:
                n = os.write(fd, mv)
                mv = mv[n:]
        except OSError as e:
            self.write_errors += 1
            self.log.error("spool %s: write failed: %s", self.dir, e.strerror or e)
            # A partial frame would corrupt the file: cut it back.
            try:
                os.ftruncate(fd, self.sizes[key])
            except OSError:
                pass
            self._count_lost(data)
            return False
        self.sizes[key] += len(data)
        self.total += len(data)
        return True

    def _count_lost(self, data):
        _, n = complete_frames(data)
        self.dropped_frames += n
        self.dropped_bytes += len(data)

    def _close_writer(self):
        if self._wfd is not None:
            os.close(self._wfd)
            self._wfd = self._wkey = self._whdr = self._wend = None

    def _enforce_limit(self):
        while self.total > self.max_bytes and len(self.sizes) > 1:
            key = min(self.sizes)
            # Frames already handed out are in the Forwarder's memory and still go out.
            start = self._roff if key == self._rkey else self.committed.get(key, 0)
            self.dropped_frames += self._count_frames(key, start)
            self.dropped_bytes += self.sizes[key] - start
            self.log.warning("spool %s: over spool_max, dropped the oldest file", self.dir)
            self._delete(key)

    def drop_older_than(self, when):
        """Delete files last written before `when` (epoch seconds); return frames dropped."""
        dropped = 0
        for key in sorted(self.sizes):
            if key == self._rkey or key == self._wkey:
                break  # in use: it holds recent data, or the reader is on it
            try:
                if os.stat(self._path(key)).st_mtime >= when:
                    break
            except OSError:
                pass
            n = self._count_frames(key, self.committed.get(key, 0))
            dropped += n
            self.dropped_bytes += self.sizes[key]
            self._delete(key)
        return dropped

    def _delete(self, key):
        if key == self._wkey:
            self._close_writer()
        if key == self._rkey:
            if self._rfd is not None:
                os.close(self._rfd)
            self._rfd = self._rkey = self._rhdr = None
            self._roff = 0
        self.committed.pop(key, None)
        size = self.sizes.pop(key, 0)
        self.total -= size
        try:
            os.unlink(self._path(key))
        except OSError:
            pass

    # -------------------------------------------------------------- replay
    def next_piece(self, limit=PIECE):
        """Return (link_hdr, frames, first_seq, count, token), or None when nothing is left.

        The piece stays in the spool until commit(token).
        """
        while self.sizes:
            if self._rkey is None or self._rkey not in self.sizes:
                if not self._open_next():
                    return None
            size = self.sizes[self._rkey]
            if self._roff >= size:
                if self._rkey == self._wkey:
                    return None   # caught up with the file being written
                if not self._open_next():
                    return None
                continue
            try:
                data = os.pread(self._rfd, min(limit, size - self._roff), self._roff)
            except OSError as e:
                self.log.error("spool %s: read failed: %s; dropping the file", self.dir, e)
                self.dropped_frames += self._count_frames(self._rkey, self._roff)
                self._delete(self._rkey)
                continue
            end, count = complete_frames(data)
            if end == 0:
                if len(data) >= size - self._roff and self._rkey != self._wkey:
                    # A torn tail (a crash in the middle of a write): cut it off.
                    try:
                        os.truncate(self._path(self._rkey), self._roff)
                    except OSError:
                        pass
                    self.total -= size - self._roff
                    self.sizes[self._rkey] = self._roff
                    continue
                return None
            start_seq = self._rseq
            self._roff += end
            self._rseq += count
            return self._rhdr, data[:end], start_seq, count, (self._rkey, self._roff)
        return None

    def _open_next(self):
        """Open the file after the one being read; return False if there is none."""
        later = [k for k in self.sizes if self._rkey is None or k > self._rkey]
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None
        while later:
            key = min(later)
            later.remove(key)
            if self._open(key):
                return True
        self._rkey = None
        return False

    def _open(self, key):
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
            head = os.pread(fd, 4, 0)
            n = (head[2] << 8) | head[3] if len(head) == 4 else -1
            hdr = os.pread(fd, n, 4) if n >= 0 else b""
        except OSError as e:
            self.log.error("spool %s: cannot read %s: %s", self.dir, path, e)
            self._delete(key)
            return False
        if len(head) < 4 or head[0] != wire.LINK_HDR or len(hdr) != n:
            os.close(fd)
            self.log.error("spool %s: %s does not start with a link header; dropped",
                           self.dir, path)
            self._delete(key)
            return False
        start = 4 + n
        self._rkey, self._rfd, self._rhdr = key, fd, hdr
        self._roff = max(start, self.committed.get(key, start))
        self._rseq = key + (self._count_frames(key, start) - self._count_frames(key, self._roff)
                            if self._roff > start else 0)
        self.committed.setdefault(key, start)
        return True

    def commit(self, token):
        """The piece ending at token is stored by the server: forget everything up to it."""
        key, end = token
        for k in sorted(self.sizes):
            if k > key:
                break
            if k < key:
                self._delete(k)   # wholly before this piece: committed by order
                continue
            self.committed[k] = end
            if end >= self.sizes[k]:
                self._delete(k)
            else:
                self._save_progress(k, end)

    def close(self):
        self._close_writer()
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None
        if self._pfd is not None:
            os.close(self._pfd)
            self._pfd = None
        self._rkey = None
