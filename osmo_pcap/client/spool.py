# SPDX-License-Identifier: AGPL-3.0-or-later
"""On-disk spool of frames a server connection could not send (bounded, ordered).

Files live in one directory per server, named by a sequence number. Each file
starts with the LINK_HDR frame its data belongs to, followed by complete
frames exactly as they go on the wire. Replay reads pieces cut at frame
boundaries from the oldest file; a piece is committed (and a fully replayed
file deleted) only once it has been handed to the socket, so a connection lost
during replay rewinds and loses nothing. Beyond max_bytes the oldest file is
deleted and its frames counted as dropped. Files survive restarts.
"""

import os

from osmo_pcap import wire
from osmo_pcap.wire import complete_frames

SUFFIX = ".spool"
FIRST_SEQ = 1
PIECE = 1 << 20


class Spool(object):
    """The spool of one server connection."""

    def __init__(self, directory, max_bytes, logger):
        self.dir = directory
        self.max_bytes = max_bytes
        self.file_max = max(1 << 20, min(64 << 20, max_bytes // 8))
        self.log = logger
        self.dropped_frames = 0
        self.dropped_bytes = 0
        self.write_errors = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.sizes = {}
        for name in os.listdir(directory):
            if name.endswith(SUFFIX) and name[:-len(SUFFIX)].isdigit():
                seq = int(name[:-len(SUFFIX)])
                self.sizes[seq] = os.path.getsize(self._path(seq))
        self.total = sum(self.sizes.values())
        self._wfd = None        # tail file being appended
        self._wseq = None
        self._whdr = None
        self._rseq = None       # head file being replayed
        self._rfd = None
        self._rhdr = None
        self._roff = 0          # offset handed out
        self._committed = 0     # offset known to be sent
        for seq in sorted(self.sizes):
            if self.sizes[seq] == 0:
                self._delete(seq)

    def _path(self, seq):
        return os.path.join(self.dir, "%d%s" % (seq, SUFFIX))

    @property
    def pending(self):
        """True while spooled data waits for replay."""
        return bool(self.sizes)

    @property
    def files(self):
        return len(self.sizes)

    # -------------------------------------------------------------- writing
    def append(self, link_hdr, data):
        """Append complete frames captured under link_hdr (a LINK_HDR payload)."""
        if self._wfd is None or self._whdr != link_hdr or self.sizes[self._wseq] >= self.file_max:
            seq = max(self.sizes) + 1 if self.sizes else FIRST_SEQ
            if not self._open_for_write(seq, link_hdr):
                self._count_lost(data)
                return
        self._write(self._wseq, self._wfd, data)
        self._enforce_limit()

    def _create(self, seq, link_hdr):
        try:
            fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                         0o600)
        except OSError as e:
            self.write_errors += 1
            self.log.error("spool %s: cannot create file: %s", self.dir, e.strerror or e)
            return None
        self.sizes[seq] = 0
        self._write(seq, fd, wire.encode_link_hdr(link_hdr))
        return fd

    def _open_for_write(self, seq, link_hdr):
        self._close_writer()
        fd = self._create(seq, link_hdr)
        if fd is None:
            return False
        self._wfd, self._wseq, self._whdr = fd, seq, link_hdr
        return True

    def _write(self, seq, fd, data):
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
                os.ftruncate(fd, self.sizes[seq])
            except OSError:
                pass
            self._count_lost(data)
            return
        self.sizes[seq] += len(data)
        self.total += len(data)

    def _count_lost(self, data):
        _, n = complete_frames(data)
        self.dropped_frames += n
        self.dropped_bytes += len(data)

    def _close_writer(self):
        if self._wfd is not None:
            os.close(self._wfd)
            self._wfd = self._wseq = self._whdr = None

    def _enforce_limit(self):
        while self.total > self.max_bytes and len(self.sizes) > 1:
            seq = min(self.sizes)
            start = self._roff if seq == self._rseq else 0
            self.dropped_frames += self._count_file_frames(seq, start)
            self.dropped_bytes += self.sizes[seq] - start
            self.log.warning("spool %s: over spool_max, dropped the oldest file", self.dir)
            self._delete(seq)

    def _count_file_frames(self, seq, start):
        try:
            with open(self._path(seq), "rb") as f:
                data = f.read()
        except OSError:
            return 0
        if start == 0 and len(data) >= 4:
            start = 4 + ((data[2] << 8) | data[3])  # the file's LINK_HDR frame
        return complete_frames(data, start)[1]

    def _delete(self, seq):
        if seq == self._wseq:
            self._close_writer()
        if seq == self._rseq:
            if self._rfd is not None:
                os.close(self._rfd)
            self._rfd = self._rseq = self._rhdr = None
            self._roff = self._committed = 0
        size = self.sizes.pop(seq, 0)
        self.total -= size
        try:
            os.unlink(self._path(seq))
        except OSError:
            pass

    # -------------------------------------------------------------- replay
    def next_piece(self, limit=PIECE):
        """Return (link_hdr, frames) to send next, or None when nothing is left.

        The piece stays in the spool until commit(); rewind() hands it out again.
        """
        while self.sizes:
            if self._rseq is None or self._rseq not in self.sizes:
                if not self._open_head():
                    continue
            size = self.sizes[self._rseq]
            if self._roff >= size:
                if self._rseq == self._wseq:
                    return None   # caught up with the file being written
                if self._committed >= self._roff:
                    self._delete(self._rseq)
                    continue
                return None       # wait for the last piece to be committed
            try:
                data = os.pread(self._rfd, min(limit, size - self._roff), self._roff)
            except OSError as e:
                self.log.error("spool %s: read failed: %s; dropping the file", self.dir, e)
                self._delete(self._rseq)
                continue
            end, _ = complete_frames(data)
            if end == 0:
                if len(data) >= size - self._roff:
                    self._delete(self._rseq)   # a torn tail: nothing usable left
                    continue
                return None
            self._roff += end
            return self._rhdr, data[:end]
        return None

    def _open_head(self):
        seq = min(self.sizes)
        try:
            fd = os.open(self._path(seq), os.O_RDONLY)
            head = os.pread(fd, 4, 0)
            n = (head[2] << 8) | head[3] if len(head) == 4 else -1
            hdr = os.pread(fd, n, 4) if n >= 0 else b""
        except OSError as e:
            self.log.error("spool %s: cannot read %s: %s", self.dir, self._path(seq), e)
            self._delete(seq)
            return False
        if len(head) < 4 or head[0] != wire.LINK_HDR or len(hdr) != n:
            os.close(fd)
            self.log.error("spool %s: %s does not start with a link header; dropped",
                           self.dir, self._path(seq))
            self._delete(seq)
            return False
        self._rseq, self._rfd, self._rhdr = seq, fd, hdr
        self._roff = self._committed = 4 + n
        return True

    def commit(self):
        """Everything handed out was sent: forget it (delete a finished file)."""
        if self._rseq is None:
            return
        self._committed = self._roff
        seq = self._rseq
        if self._roff >= self.sizes.get(seq, 0):
            if seq == self._wseq:
                self._close_writer()
            self._delete(seq)

    def rewind(self):
        """The connection was lost: hand out the uncommitted data again."""
        self._roff = self._committed

    def close(self):
        self._close_writer()
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None
        self._rseq = None
