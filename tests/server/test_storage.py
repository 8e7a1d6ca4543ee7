# SPDX-License-Identifier: AGPL-3.0-or-later
"""Trace files (storage) and a client's file decisions (recorder), without sockets.

Time is driven by a fake clock; files are read back with tcpdump/tshark.
"""

import errno
import fcntl
import logging
import os
import subprocess
import time
import unittest

from tests import peer, support
from osmo_pcap import pcapfile, rotation, tracename, validate
from osmo_pcap.server import config as serverconfig
from osmo_pcap.server import storage
from osmo_pcap.server.recorder import FileSettings, Recorder

# The recorder logs its errors; keep them out of the test output.
logging.getLogger("osmo-pcap").addHandler(logging.NullHandler())
logging.getLogger("osmo-pcap").propagate = False

ST = time.struct_time((2025, 3, 1, 14, 5, 9, 0, 0, 0))


def link():
    return validate.check_link_hdr(pcapfile.encode_global_header(9000, 1))


BIG = storage.WRITEV_MIN   # payload bytes: records this big go by writev


def records(first, count, size=100):
    return [peer.pcap_record(i, size) for i in range(first, first + count)]


class FakeClock(object):
    """A LocalClock over a settable epoch (local time computed as UTC)."""

    def __init__(self, t=1740837909.0):
        self.t = t
        self.clock = rotation.LocalClock(lambda: self.t, time.gmtime)

    def now(self):
        return self.clock.now()


class Files(support.TempDirTestCase):
    def test_exclusive_create_with_suffixes(self):
        other = self.path("done")
        os.makedirs(other)
        with open(self.path("trace-a-20250301_140509.pcap"), "wb") as f:
            f.write(b"keep")
        with open(os.path.join(other, "trace-a-20250301_140509-1.pcap.gz"), "wb") as f:
            f.write(b"keep")
        p, fd = storage.create_exclusive(self.tmp, "a", ST, "pcap", 0o640, (other,))
        self.addCleanup(os.close, fd)
        self.assertEqual(os.path.basename(p), "trace-a-20250301_140509-2.pcap")
        self.assertEqual(tracename.parse_name(os.path.basename(p)).seq, 2)
        with open(self.path("trace-a-20250301_140509.pcap"), "rb") as f:
            self.assertEqual(f.read(), b"keep")
        self.assertEqual(os.stat(p).st_mode & 0o7777, 0o640)

    def test_mode_not_narrowed_by_umask(self):
        old = os.umask(0o077)
        try:
            p, fd = storage.create_exclusive(self.tmp, "a", ST, "pcapng", 0o444)
        finally:
            os.umask(old)
        os.close(fd)
        self.assertEqual(os.stat(p).st_mode & 0o7777, 0o444)

    def test_locked_while_open_and_moved_on_close(self):
        os.makedirs(self.path("done"))
        f = storage.TraceFile.create(self.tmp, "a", ST, link(), 0o440, 1 << 20)
        other = os.open(f.path, os.O_RDONLY)
        self.addCleanup(os.close, other)
        with self.assertRaises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        f.append(b"".join(records(0, 3)), 3)
        # buffered: nothing on disk yet, a flush writes header + records at once
        self.assertEqual(os.path.getsize(f.path), 0)
        f.flush()
        self.assertEqual(os.path.getsize(f.path), 24 + 3 * 116)
        path, err = f.close(self.path("done"))
        self.assertIsNone(err)
        self.assertEqual(path, self.path("done", os.path.basename(f.path)))
        self.assertFalse(os.path.exists(f.path))
        fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released
        self.assertEqual(len(support.tshark_packets(path)), 3)

    def test_buffer_limit_writes(self):
        f = storage.TraceFile.create(self.tmp, "a", ST, link(), 0o440, 4096)
        self.addCleanup(f.close)
        f.append(b"".join(records(0, 40)), 40)
        self.assertEqual(os.path.getsize(f.path), 24 + 40 * 116)
        self.assertEqual((f.size, f.written, f.records), (24 + 40 * 116,) * 2 + (40,))


    def test_parts_written_without_joining(self):
        # More parts than one writev takes, views into a buffer that is reused
        # right after the call (as the server's receive buffer is). Records of
        # at least WRITEV_MIN bytes go by writev, smaller ones are joined.
        f = storage.TraceFile.create(self.tmp, "a", ST, link(), 0o440, 4096)
        self.addCleanup(f.close)
        calls = []
        real_writev = os.writev

        def counting_writev(fd, bufs):
            calls.append(len(bufs))
            return real_writev(fd, bufs)
        self.addCleanup(setattr, os, "writev", real_writev)
        os.writev = counting_writev
        f.flush()   # the header, buffered until now
        expect = bytearray(link().header)
        scratch = bytearray(4 * storage.IOV_MAX * BIG)
        view = memoryview(scratch)
        for first, count, size in ((3, 3 * storage.IOV_MAX + 7, BIG), (0, 3, BIG),
                                   (10000, 2, BIG), (20000, 500, 100)):
            recs = records(first, count, size)
            data = b"".join(recs)
            scratch[:len(data)] = data
            parts, pos = [], 0
            for r in recs:
                parts.append(view[pos:pos + len(r)])
                pos += len(r)
            f.append_parts(parts, len(data), count)
            scratch[:len(data)] = b"\xee" * len(data)
            expect += data
        f.flush()
        with open(f.path, "rb") as fh:
            self.assertEqual(fh.read(), bytes(expect))
        self.assertEqual((f.size, f.written, f.records),
                         (len(expect), len(expect), 505 + 3 * storage.IOV_MAX + 7))
        # Only the batch of big records that found nothing buffered
        self.assertEqual(calls, [storage.IOV_MAX] * 3 + [7])


    def test_short_writes_are_completed(self):
        # writev and write may take less than offered (a signal, a nearly full
        # disk): the rest follows, in order.
        real_writev, real_write = os.writev, os.write

        def short_writev(fd, bufs):
            return real_writev(fd, [memoryview(bufs[0])[:len(bufs[0]) // 2]])

        def short_write(fd, data):
            return real_write(fd, memoryview(data)[:max(1, len(data) // 3)])
        self.addCleanup(setattr, os, "writev", real_writev)
        self.addCleanup(setattr, os, "write", real_write)
        os.writev, os.write = short_writev, short_write
        f = storage.TraceFile.create(self.tmp, "a", ST, link(), 0o440, 4096)
        self.addCleanup(f.close)
        f.flush()
        recs = records(0, 2 * storage.IOV_MAX + 3, BIG)
        f.append_parts(recs, sum(map(len, recs)), len(recs))
        big = b"".join(records(5000, 60))
        f.append(big, 60)
        os.writev, os.write = real_writev, real_write
        with open(f.path, "rb") as fh:
            self.assertEqual(fh.read(), link().header + b"".join(recs) + big)
        self.assertEqual(f.written, os.path.getsize(f.path))


class DiskFull(support.TempDirTestCase):
    def setUp(self):
        support.TempDirTestCase.setUp(self)
        support.require_root()
        self.mnt = self.path("small")
        os.makedirs(self.mnt)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", self.mnt])
        self.addCleanup(subprocess.call, ["umount", "-l", self.mnt])

    def test_cut_back_to_last_complete_record(self):
        f = storage.TraceFile.create(self.mnt, "a", ST, link(), 0o440, 64 << 10)
        written = 0
        with self.assertRaises(storage.WriteError) as cm:
            for i in range(0, 100000, 100):
                f.append(b"".join(records(i, 100, 1000)), 100)
                written += 100
        self.assertEqual(cm.exception.error.errno, errno.ENOSPC)
        self.assertGreater(cm.exception.dropped, 0)
        size = os.path.getsize(f.path)
        self.assertEqual(size, f.written)
        self.assertEqual((size - 24) % 1016, 0)
        path, err = f.close()
        n = (size - 24) // 1016
        self.assertGreater(n, 100)
        rows = support.tshark_packets(path, ("frame.cap_len",))
        self.assertEqual(len(rows), n)
        self.assertEqual(len(peer.file_records(path)), n)

    def test_cut_back_after_writev(self):
        f = storage.TraceFile.create(self.mnt, "a", ST, link(), 0o440, 4096)
        with self.assertRaises(storage.WriteError) as cm:
            for i in range(0, 100000, 100):
                recs = records(i, 100, BIG)
                f.append_parts(recs, sum(map(len, recs)), 100)
        self.assertEqual(cm.exception.error.errno, errno.ENOSPC)
        self.assertEqual(cm.exception.dropped, 100)
        size = os.path.getsize(f.path)
        self.assertEqual(size, f.written)
        self.assertEqual((size - 24) % (100 * (BIG + 16)), 0)
        path, err = f.close()
        self.assertEqual(len(peer.file_records(path)), (size - 24) // (BIG + 16))

    def test_recorder_drops_counts_and_resumes(self):
        cfg = serverconfig.ServerConfig()
        cfg.base_path = self.mnt
        cfg.max_file_size = 0
        cfg.rotate_localtime = None
        cfg.write_retry = 5.0
        clock = FakeClock()
        closed = []
        rec = Recorder("a", True, FileSettings.from_config(cfg), lambda n, p: closed.append(p))
        rec.new_connection()
        rec.set_link(link())
        sent = 0
        while not rec.counters["write_errors"]:
            rec.write(records(sent, 50, 1000), 50 * 1016, clock.now())
            sent += 50
        self.assertIsNone(rec.file)
        self.assertEqual(len(closed), 1)
        kept = len(peer.file_records(closed[0]))
        self.assertEqual(kept + rec.counters["dropped"], sent)
        # still full, before the retry time: dropped without trying
        rec.write(records(sent, 10, 1000), 10 * 1016, clock.now())
        sent += 10
        self.assertEqual(rec.counters["write_errors"], 1)
        self.assertEqual(kept + rec.counters["dropped"], sent)
        # space returns; after write_retry a new file is made
        os.unlink(closed[0])
        clock.t += 6
        rec.write(records(sent, 10, 1000), 10 * 1016, clock.now())
        self.assertIsNotNone(rec.file)
        rec.close_file("test")
        self.assertEqual(len(peer.file_records(closed[-1])), 10)
        self.assertEqual(len(support.tshark_packets(closed[-1])), 10)


class RecorderRotation(support.TempDirTestCase):
    def recorder(self, **kw):
        cfg = serverconfig.ServerConfig()
        cfg.base_path = self.tmp
        for k, v in kw.items():
            setattr(cfg, k, v)
        self.closed = []
        rec = Recorder("c1", kw.pop("store", True), FileSettings.from_config(cfg),
                       lambda n, p: self.closed.append(p))
        rec.new_connection()
        rec.set_link(link())
        return rec

    def test_size_limit_exact(self):
        # header 24 + 4 records of 116 = 488: a limit of 488 holds exactly 4
        rec = self.recorder(max_file_size=488, rotate_localtime=None)
        clock = FakeClock()
        for i in range(10):
            rec.write(records(i, 1), 116, clock.now())
        rec.write(records(10, 5), 5 * 116, clock.now())
        rec.close_file("end")
        sizes = [os.path.getsize(p) for p in self.closed]
        self.assertEqual(sizes, [488, 488, 488, 24 + 3 * 116])
        self.assertEqual(len(set(self.closed)), 4)
        self.assertEqual(rec.counters["file_rotated"], 3)
        self.assertEqual(rec.counters["files_closed"], 4)
        got = [r.data[:4] for p in self.closed for r in peer.file_records(p)]
        self.assertEqual(got, [peer.payload(i, 4) for i in range(15)])

    def test_oversized_record_alone(self):
        rec = self.recorder(max_file_size=100, rotate_localtime=None)
        clock = FakeClock()
        rec.write(records(0, 3), 3 * 116, clock.now())
        rec.close_file("end")
        self.assertEqual([os.path.getsize(p) for p in self.closed], [140] * 3)

    def test_minute_mod_2_and_timer(self):
        rec = self.recorder(rotate_localtime=("minute", 2), max_file_size=0)
        clock = FakeClock(1740837600.0)  # 14:00:00 UTC
        rec.write(records(0, 1), 116, clock.now())
        clock.t += 119
        rec.write(records(1, 1), 116, clock.now())
        rec.tick(clock.now())
        self.assertEqual(self.closed, [])
        clock.t += 1  # 14:02:00
        rec.tick(clock.now())  # quiet client: closed on the timer
        self.assertEqual(len(self.closed), 1)
        self.assertIsNone(rec.file)
        clock.t += 30
        rec.write(records(2, 1), 116, clock.now())
        clock.t += 100  # 14:04:10 at the next record
        rec.write(records(3, 1), 116, clock.now())
        rec.close_file("end")
        names = [os.path.basename(p) for p in self.closed]
        self.assertEqual(names, ["trace-c1-20250301_140000.pcap", "trace-c1-20250301_140230.pcap",
                                 "trace-c1-20250301_140410.pcap"])
        self.assertEqual([len(peer.file_records(p)) for p in self.closed], [2, 1, 1])

    def test_clock_backwards_no_rotation_no_clobber(self):
        rec = self.recorder(rotate_localtime=("second", 1), max_file_size=0)
        clock = FakeClock(1740837600.0)
        rec.write(records(0, 1), 116, clock.now())
        clock.t -= 3600
        rec.write(records(1, 1), 116, clock.now())
        rec.tick(clock.now())
        self.assertEqual(self.closed, [])
        rec.rotate("test")  # new file an hour "earlier" in name
        rec.write(records(2, 1), 116, clock.now())
        clock.t += 3600  # back to the first second: same name as the first file
        rec.rotate("test")
        rec.write(records(3, 1), 116, clock.now())
        rec.close_file("end")
        names = [os.path.basename(p) for p in self.closed]
        self.assertEqual(names, ["trace-c1-20250301_140000.pcap", "trace-c1-20250301_130000.pcap",
                                 "trace-c1-20250301_140000-1.pcap"])
        self.assertEqual([len(peer.file_records(p)) for p in self.closed], [2, 1, 1])

    def test_link_change_and_same_header(self):
        rec = self.recorder(rotate_localtime=None)
        clock = FakeClock()
        rec.write(records(0, 1), 116, clock.now())
        rec.set_link(link())  # same bytes: same file
        rec.write(records(1, 1), 116, clock.now())
        rec.set_link(validate.check_link_hdr(pcapfile.encode_global_header(9000, 113)))
        rec.write(records(2, 1), 116, clock.now())
        rec.close_file("end")
        self.assertEqual([len(peer.file_records(p)) for p in self.closed], [2, 1])
        self.assertTrue(self.closed[1].endswith("-1.pcap"))

    def test_store_no_writes_nothing(self):
        rec = self.recorder(store=False)
        rec.write(records(0, 5), 5 * 116, FakeClock().now())
        rec.close_file("end")
        self.assertEqual(os.listdir(self.tmp), [])
        self.assertEqual(rec.counters["pkts"], 5)


if __name__ == "__main__":
    unittest.main()
