#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Proposed changes to modules this benchmark's author does not own, measured
before they are made: each prototype patches the package (imported from the
source tree) and runs the program. Not part of the product.

    python3 bench/prototypes.py PROTOTYPE ARGS...

PROTOTYPE is one of:
  client                  the client as it is (the baseline, started the same way)
  server                  the server as it is
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


# ---------------------------------------------------------------- server

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
    "server": ("server", None),
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
