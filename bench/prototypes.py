#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Proposed changes to modules this benchmark's author does not own, measured
before they are made: each prototype patches the package (imported from the
source tree) and runs the program. Not part of the product.

    python3 bench/prototypes.py PROTOTYPE ARGS...

PROTOTYPE is one of:
  client                  the client as it is (the baseline, started the same way)
  client-owned-batch      the capture batch is handed to the one connection's
                          queue instead of copied into it; capture starts a new one
  client-direct-send      a batch is sent at once when the queue is empty; only
                          what the socket did not take is copied into the queue
  server                  the server as it is
  server-direct-write     records go from the receive buffer to the file with
                          os.writev (no b"".join, no bytearray append) when
                          the file's buffer is empty
  server-tls-fill         TLS reads the socket with recv_into into one reused
                          256 KiB buffer (no bytes object per read, 4x larger)
  server-pending-list     a trace file buffers the joined batches as a list and
                          writes them with one os.writev (no second copy into a
                          bytearray)
  server-write-through    every batch is written at once (write_buffer ignored):
                          what writing before acknowledging each read costs
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


# ---------------------------------------------------------------- client

def patch_client_owned_batch():
    from osmo_pcap.client import forward, main

    def take(self, data):
        """enqueue(), keeping data itself (the caller lets go of it)."""
        if (self.spool is not None or self.state != forward.UP
                or self.qbytes + len(data) > self.cfg.queue_size):
            return False
        self.queue.append(data)
        self.qbytes += len(data)
        self._send()
        return True

    def flush_batch(self):
        batch = self.batch
        if not batch:
            return
        if len(self.streams) == 1 and self.streams[0].take(batch):
            self.batch = bytearray()   # capture looks the batch up every round
            return
        for conn in self.streams:
            conn.enqueue(batch)
        del batch[:]

    forward.Connection.take = take
    main.Client.flush_batch = flush_batch


def patch_client_direct_send():
    from osmo_pcap.client import forward
    enqueue = forward.Connection.enqueue

    def direct(self, data):
        t = self.transport
        if (self.state != forward.UP or self.queue or self.from_spool
                or (self.spool is not None and self.spool.pending)
                or getattr(t, "pending_output", 0)):
            return enqueue(self, data)
        try:
            sent = t.send(data)
        except OSError:
            return enqueue(self, data)     # _send() meets the error again and handles it
        self.counters["sent:bytes"] += sent
        if sent == len(data):
            return
        # The rest waits in the queue as if the queue had sent `sent` bytes of it.
        self.queue.append(bytearray(data))
        self.head_off = sent
        self.qbytes += len(data) - sent
        self.loop.add_writer(t.sock, self._send)

    forward.Connection.enqueue = direct


# ---------------------------------------------------------------- server

def patch_server_direct_write():
    import errno
    from osmo_pcap.server import recorder, storage

    def append_parts(self, parts, nbytes, nrecords):
        """Like append(b"".join(parts)): straight from the receive buffer with
        writev when nothing is buffered and the parts fill at least a buffer."""
        if self.pending or nbytes < self.buffer_limit:
            self.append(b"".join(parts), nrecords)
            return
        self.size += nbytes
        self.records += nrecords
        fd = self.fd
        done = 0
        try:
            i = 0
            iov_max = 1024
            while i < len(parts):
                chunk = parts[i:i + iov_max]
                want = sum(len(p) for p in chunk)
                n = os.writev(fd, chunk)
                done += n
                if n < want:   # short write: finish this chunk the slow way
                    rest = b"".join(chunk)[n:]
                    while rest:
                        k = os.write(fd, rest)
                        done += k
                        rest = rest[k:]
                i += iov_max
        except OSError as e:
            self.size -= nbytes
            self.records -= nrecords
            try:
                os.ftruncate(fd, self.written)
                os.lseek(fd, self.written, os.SEEK_SET)
            except OSError:
                pass
            raise storage.WriteError(self.path, e, nrecords)
        self.written += done

    storage.TraceFile.append_parts = append_parts
    write = recorder.Recorder.write

    def write_direct(self, out, nbytes, now):
        f = self.file
        limit = self.max_size
        if (f is None or not self.store or (limit and f.size + nbytes > limit)
                or (self.rule is not None and recorder.rotation.new_period(
                    self.last.tm, now[1], *self.rule))):
            return write(self, out, nbytes, now)
        c = self.counters
        c["pkts"] += len(out)
        c["bytes"] += nbytes
        self.last.update(now[0], now[1])
        try:
            f.append_parts(out, nbytes, len(out))
        except storage.WriteError as e:
            self._write_failed(e, now[0])

    recorder.Recorder.write = write_direct
    del errno


def patch_server_tls_fill():
    import ssl
    from osmo_pcap import tls
    scratch = bytearray(256 * 1024)
    view = memoryview(scratch)

    def _fill(self):
        try:
            n = self.sock.recv_into(scratch)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            raise self._socket_error(e)
        if not n:
            self.eof = True
        else:
            self._inbio.write(view[:n])
        return True

    tls.TLSSession._fill = _fill
    del ssl


def patch_server_pending_list():
    from osmo_pcap.server import storage
    IOV_MAX = 1024

    def append(self, data, nrecords):
        self.size += len(data)
        self.records += nrecords
        if not self.pending and len(data) >= self.buffer_limit:
            self._write(data, nrecords)
            return
        if not isinstance(self.pending, list):   # the header, as created
            self.pending = [bytes(self.pending)] if self.pending else []
            self.pending_bytes = sum(len(p) for p in self.pending)
        self.pending.append(data if isinstance(data, bytes) else bytes(data))
        self.pending_bytes += len(data)
        self.pending_records += nrecords
        if self.pending_bytes >= self.buffer_limit:
            self.flush()

    def flush(self):
        pending = self.pending
        if not pending:
            return
        if not isinstance(pending, list):
            self.pending = bytearray()
            nrec, self.pending_records = self.pending_records, 0
            self._write(pending, nrec)
            return
        nrec, total = self.pending_records, self.pending_bytes
        self.pending, self.pending_bytes, self.pending_records = [], 0, 0
        fd = self.fd
        try:
            done = 0
            for i in range(0, len(pending), IOV_MAX):
                part = pending[i:i + IOV_MAX]
                n = os.writev(fd, part)
                want = sum(len(p) for p in part)
                done += n
                if n < want:
                    rest = b"".join(part)[n:]
                    while rest:
                        k = os.write(fd, rest)
                        done += k
                        rest = rest[k:]
        except OSError as e:
            self.size -= total
            self.records -= nrec
            try:
                os.ftruncate(fd, self.written)
                os.lseek(fd, self.written, os.SEEK_SET)
            except OSError:
                pass
            raise storage.WriteError(self.path, e, nrec)
        self.written += done

    class TraceFile(storage.TraceFile):    # slotted: the new field needs a subclass
        __slots__ = ("pending_bytes",)

    TraceFile.append = append
    TraceFile.flush = flush
    storage.TraceFile = TraceFile
    from osmo_pcap.server import recorder
    recorder.TraceFile = TraceFile


def patch_server_write_through():
    from osmo_pcap.server import storage

    def append(self, data, nrecords):
        self.size += len(data)
        self.records += nrecords
        if self.pending:
            self.flush()       # the header
        self._write(data, nrecords)

    storage.TraceFile.append = append


PROTOTYPES = {
    "client": ("client", None),
    "client-owned-batch": ("client", patch_client_owned_batch),
    "client-direct-send": ("client", patch_client_direct_send),
    "server": ("server", None),
    "server-direct-write": ("server", patch_server_direct_write),
    "server-tls-fill": ("server", patch_server_tls_fill),
    "server-pending-list": ("server", patch_server_pending_list),
    "server-write-through": ("server", patch_server_write_through),
}


def main():
    if len(sys.argv) < 2:
        print(__doc__)     # (make bench runs every bench/*.py without arguments)
        return 0
    if sys.argv[1] not in PROTOTYPES:
        print(__doc__)
        return 2
    program, patch = PROTOTYPES[sys.argv[1]]
    if patch is not None:
        patch()
    if program == "client":
        from osmo_pcap.client.main import main as run
    else:
        from osmo_pcap.server.main import main as run
    return run(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
