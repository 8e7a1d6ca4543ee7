# SPDX-License-Identifier: AGPL-3.0-or-later
"""What the server has stored of each client's acknowledged stream, on disk.

One small file per client in `<base_path>/.osmo-pcap-state/`: the stream
identity, the sequence number of the next LINK_DATA frame not yet stored, and
the trace file being written with the number of its bytes those frames fill.
It is written after the frames are in the file and before they are
acknowledged, so after a crash the server knows exactly what it has: it cuts
the file back to that size (what follows was never acknowledged; the client
sends it again) and skips frames it is sent again below that sequence number
(doc/protocol.md#acknowledged-delivery).

The file has two slots written in turn, each with a counter and a CRC-32:
loading takes the valid slot with the higher counter, so a write torn by a
power failure leaves the previous state readable.
"""

import errno
import os
import struct
import zlib

STATE_DIR = ".osmo-pcap-state"
SUFFIX = ".state"
SLOT = 512
MAGIC = b"OPAS"
VERSION = 1
# magic, version, flags, name length, counter, stream id, next seq, file offset
_HEAD = struct.Struct("!4sBBHQ16sQQ")
_CRC = struct.Struct("!I")
MAX_NAME = SLOT - _HEAD.size - _CRC.size


class StreamState(object):
    """The stored part of one client's stream.

    stream_id: 16 bytes; next_seq: the first frame not stored; file: the base
    name of the trace file being written ("" when none is open); offset: its
    bytes that hold stored frames (the header included).
    """

    __slots__ = ("stream_id", "next_seq", "file", "offset")

    def __init__(self, stream_id, next_seq, file="", offset=0):
        self.stream_id = stream_id
        self.next_seq = next_seq
        self.file = file
        self.offset = offset

    def __repr__(self):
        return "StreamState(%s, %d, %r, %d)" % (self.stream_id.hex(), self.next_seq,
                                                self.file, self.offset)


class StateFile(object):
    """The state file of one client: load() once, then save() after each stored batch."""

    def __init__(self, base_path, client):
        self.dir = os.path.join(base_path, STATE_DIR)
        self.path = os.path.join(self.dir, client + SUFFIX)
        self.fd = -1
        self.counter = None     # known after load(); save() loads first if needed

    def _open(self):
        if self.fd < 0:
            try:
                os.mkdir(self.dir, 0o700)
            except FileExistsError:
                pass
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self.fd

    def load(self):
        """Return the newest valid StreamState, or None (no file, or nothing valid)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * SLOT)
        except FileNotFoundError:
            self.counter = 0
            return None
        best = None
        for i in range(2):
            slot = data[i * SLOT:(i + 1) * SLOT]
            if len(slot) < SLOT:
                continue
            if _CRC.unpack_from(slot, SLOT - _CRC.size)[0] != zlib.crc32(slot[:-_CRC.size]):
                continue
            magic, version, _, nlen, counter, sid, seq, off = _HEAD.unpack_from(slot)
            if magic != MAGIC or version != VERSION or nlen > MAX_NAME:
                continue
            name = slot[_HEAD.size:_HEAD.size + nlen].decode("utf-8", "replace")
            if best is None or counter > best[0]:
                best = (counter, StreamState(sid, seq, name, off))
        if best is None:
            self.counter = 0
            return None
        self.counter = best[0]
        return best[1]

    def save(self, state, sync=False):
        """Write state into the older slot; with sync, on stable storage before returning.

        Raise OSError.
        """
        if self.counter is None:
            self.load()     # go on from the counter on disk, or this write loses
        fd = self._open()
        self.counter += 1
        name = state.file.encode("utf-8")[:MAX_NAME]
        body = _HEAD.pack(MAGIC, VERSION, 0, len(name), self.counter, state.stream_id,
                          state.next_seq, state.offset) + name
        body += bytes(SLOT - _CRC.size - len(body))
        slot = body + _CRC.pack(zlib.crc32(body))
        os.pwrite(fd, slot, (self.counter % 2) * SLOT)
        if sync:
            os.fdatasync(fd)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def sync_dir(path):
    """fdatasync a directory, so a file created or renamed in it survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EACCES):
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
