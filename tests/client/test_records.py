# SPDX-License-Identifier: AGPL-3.0-or-later
"""Packets through libpcap's pcap_dump into memory (Handle.dispatch_records) and
the record framers give exactly what the per-packet callback and sink give.

Offline files cover odd lengths, truncated records, seconds past 2038 and a
buffer too small for one call; the live test captures the same frames
(VLAN-tagged ones included, which libpcap re-inserts the tag into) with one
handle per path on the same veth at the same time.
"""

import random
import socket
import struct
import sys
import time
import unittest

from tests import netns, support
from osmo_pcap import pcapfile
from osmo_pcap.client import capture, libpcap

SO_TIMESTAMP = 29     # asm-generic value (x86, ARM); other architectures differ


def load_library():
    try:
        lib = libpcap.load()
    except libpcap.LibpcapError as e:
        support.need(False, str(e))
    support.need(libpcap.records_supported(lib), "fmemopen() is not usable here")
    return lib


def via_callback(handle, count=-1):
    """Return [(sec, usec, caplen, len, data)] read with the per-packet callback."""
    got = []
    handle.sink = lambda sec, usec, caplen, length, data: got.append(
        (sec & 0xFFFFFFFF, usec, caplen, length, bytes(data)))
    while handle.dispatch(count) > 0:
        pass
    return got


def via_records(handle, count=-1):
    """Return the same list read with dispatch_records()."""
    got = []
    rb = handle.records
    while True:
        n, end = handle.dispatch_records(count)
        pos = k = 0
        while pos < end:
            sec, usec, caplen, length = libpcap.RECORD_HDR.unpack_from(rb.view, pos)
            got.append((sec, usec, caplen, length, rb.view[pos + 16:pos + 16 + caplen].tobytes()))
            pos += 16 + caplen
            k += 1
        assert pos == end and k == max(n, 0) and not rb.failed(), (pos, end, k, n)
        rb.reset()
        if n <= 0:
            return got


def sample_records():
    """(sec, usec, data, orig_len): odd lengths, cut records, times past 2038."""
    out = []
    for i in range(300):
        data = bytes((i * 7 + j) & 0xFF for j in range((i * 37) % 1600 + 1))
        orig = len(data) + (i % 5) * 100       # every fifth one uncut
        sec = 1700000000 + i if i % 3 else 2 ** 31 + 5 + i
        out.append((sec, (i * 3331) % 1000000, data, orig))
    return out


class OfflineRecordsTest(support.TempDirTestCase):
    def setUp(self):
        support.TempDirTestCase.setUp(self)
        self.lib = load_library()

    def write_pcap(self, records, snaplen=65535):
        path = self.path("in-%d.pcap" % len(records))
        with open(path, "wb") as f:
            f.write(pcapfile.encode_global_header(snaplen, 1))
            for sec, usec, data, orig in records:
                f.write(pcapfile.encode_record(sec, usec, data, orig))
        return path

    def open(self, path):
        h = libpcap.Handle.open_offline(self.lib, path)
        self.addCleanup(h.close)
        return h

    def test_same_records_as_the_callback(self):
        path = self.write_pcap(sample_records())
        expect = via_callback(self.open(path), 7)
        self.assertEqual(len(expect), 300)
        for size in (libpcap.RECORDS_SIZE, 5 * (16 + 65535)):
            h = self.open(path)
            self.assertTrue(h.use_records(size))
            self.assertEqual(via_records(h, 64), expect, size)

    def test_a_buffer_for_one_record_takes_one_per_call(self):
        records = sample_records()[:40]
        path = self.write_pcap(records, snaplen=2000)
        h = self.open(path)
        self.assertTrue(h.use_records(16 + 2000))
        calls = []
        real = h.lib.pcap_dispatch
        h.lib = type("Spy", (), {})()
        h.lib.pcap_dispatch = lambda *a: calls.append(a[1]) or real(*a)
        h.lib.pcap_close = self.lib.lib.pcap_close
        n, end = h.dispatch_records(-1)
        self.assertEqual((n, calls), (1, [1]))
        self.assertEqual(end, 16 + len(records[0][2]))

    def test_records_that_do_not_fit_are_counted_and_logged(self):
        # Only possible if libpcap handed out more than its snapshot length:
        # pretend it can by making the buffer think records are small.
        records = [(1700000000 + i, 0, bytes(300), 300) for i in range(20)]
        path = self.write_pcap(records, snaplen=400)
        h = self.open(path)
        self.assertTrue(h.use_records(4 * (16 + 400)))
        h._bound = 16 + 100     # 14 "fit" the 1664 bytes; 5 records of 316 bytes do
        client = StubClient()
        src = capture.FileSource(client, path)
        src.handle, src.dlt = h, h.datalink()
        src.attach_sink()
        self.assertEqual(src.dispatch(), 14)
        self.assertEqual(client.counters["client:no_mem"], 14 - 5)
        self.assertEqual(src.counters["captured:pkts"], 5)
        self.assertIn("did not fit", client.log.lines[0])
        # the frames that did fit are complete and in order
        frames = client.batch
        self.assertEqual(len(frames), 5 * (4 + 16 + 300))
        self.assertEqual(frames[:4], b"\x01\x00\x01\x3c")
        self.assertFalse(h.records.failed())     # cleared for the next round
        self.assertEqual(src.dispatch(), 6)
        self.assertEqual(src.counters["captured:pkts"], 10)      # 5 more fit, 1 did not
        self.assertEqual(client.counters["client:no_mem"], 10)

    def test_a_new_batch_is_used_on_both_paths(self):
        # The client may hand a batch to a connection and start a new one.
        path = self.write_pcap(sample_records()[:20])
        for records in (True, False):
            h = self.open(path)
            if records:
                self.assertTrue(h.use_records())
            client = StubClient()
            src = capture.FileSource(client, path)
            src.handle, src.dlt = h, h.datalink()
            src.attach_sink()
            src.dispatch_max = 10          # the round size this source was given
            self.assertEqual(src.dispatch(), 10)
            first = client.batch
            client.batch = bytearray()
            self.assertEqual(src.dispatch(), 10)
            sizes = [20 + len(r[2]) for r in sample_records()[:20]]
            self.assertEqual((len(first), len(client.batch)),
                             (sum(sizes[:10]), sum(sizes[10:])), records)

    def test_no_buffer_when_a_record_cannot_fit(self):
        h = self.open(self.write_pcap(sample_records()[:3], snaplen=65535))
        self.assertFalse(h.use_records(4096))
        self.assertIsNone(h.records)


class StubLog(object):
    def __init__(self):
        self.lines = []

    def error(self, fmt, *args):
        self.lines.append(fmt % args)


class StubClient(object):
    """What a capture Source uses of the Client."""

    def __init__(self, fmt="pcap"):
        self.cfg = type("Cfg", (), {"file_format": fmt, "dispatch_max": 10000})()
        self.counters = {"captured:pkts": 0, "captured:bytes": 0, "bpf:too_big": 0,
                         "client:too_large": 0, "client:no_mem": 0}
        self.log = StubLog()
        self.batch = bytearray()
        self.max_caplen = 65000
        self.gprs = None
        self.ipip = []


class FramerTest(unittest.TestCase):
    """make_framer() over pcap records == make_sink() per packet, byte for byte."""

    def records(self, items):
        buf = bytearray()
        for sec, usec, data, orig in items:
            buf += libpcap.RECORD_HDR.pack(sec & 0xFFFFFFFF, usec, len(data), orig) + data
        return memoryview(bytes(buf)), len(items)

    def compare(self, fmt, items, max_caplen, fast, gprs=None):
        view, count = self.records(items)
        via_sink, acc_sink = bytearray(), [0] * 4
        sink = capture.make_sink(fmt, 3, 1, max_caplen, via_sink, acc_sink, gprs, [])
        for sec, usec, data, orig in items:
            sink(sec, usec, len(data), orig, data)
        framed, acc = bytearray(), [0] * 4
        sink2 = capture.make_sink(fmt, 3, 1, max_caplen, framed, acc, gprs, [])
        framer = capture.make_framer(fmt, 3, acc, sink2, fast)
        framer(view, count, len(view), framed)
        self.assertEqual(framed, via_sink)
        self.assertEqual(acc, acc_sink)
        return acc

    def test_pcap_and_pcapng(self):
        items = sample_records()
        for fmt in ("pcap", "pcapng"):
            for fast in (True, False):
                acc = self.compare(fmt, items, 65000, fast)
                self.assertEqual(acc[0], 300)
                self.assertEqual(acc[2], 240)        # cut by snaplen (len > caplen)

    def test_runs_of_one_length(self):
        # Runs of equal records are framed in bulk (capture.RUN at a time):
        # runs a record shorter or longer than RUN, broken by another length
        # at every place, cut records inside runs, a run ending the buffer;
        # several rounds through one framer (it keeps its back-off).
        run = capture.RUN
        rng = random.Random(7)
        split_calls = []
        real = capture._run_parts

        def counting(caplen):
            check, split, head, span = real(caplen)

            def counted(view, pos):
                split_calls.append(caplen)
                return split(view, pos)
            return check, counted, head, span
        orig_parts, capture._run_parts = capture._run_parts, counting
        self.addCleanup(setattr, capture, "_run_parts", orig_parts)
        for fmt in ("pcap", "pcapng"):
            view_items = []
            for round_no in range(40):
                items = []
                for _ in range(rng.randint(1, 6)):
                    size = rng.choice((1, 60, 100, 214, 1400, 1500))
                    count = rng.choice((1, 2, run - 1, run, run + 1, 2 * run, 3 * run + 5))
                    for k in range(count):
                        cut = rng.random() < 0.1
                        data = bytes((round_no + k + j) & 0xFF for j in range(size))
                        items.append((1700000000 + k, k, data, size + (40 if cut else 0)))
                view_items.append(items)
            # One framer over all the rounds, as a device's.
            framed, acc = bytearray(), [0] * 4
            sink2 = capture.make_sink(fmt, 3, 1, 65000, framed, acc, None, [])
            framer = capture.make_framer(fmt, 3, acc, sink2, True)
            via_sink, acc_sink = bytearray(), [0] * 4
            sink = capture.make_sink(fmt, 3, 1, 65000, via_sink, acc_sink, None, [])
            for items in view_items:
                view, count = self.records(items)
                framer(view, count, len(view), framed)
                for sec, usec, data, orig in items:
                    sink(sec, usec, len(data), orig, data)
                self.assertEqual(framed, via_sink)
                self.assertEqual(acc, acc_sink)
            if fmt == "pcap" and capture.LITTLE_ENDIAN:
                self.assertGreater(len(split_calls), 20)    # the bulk path ran

    def test_records_longer_than_max_caplen_are_cut(self):
        for fmt in ("pcap", "pcapng"):
            acc = self.compare(fmt, sample_records(), 500, False)
            self.assertGreater(acc[3], 0)

    def test_gprs_filter_sees_every_record(self):
        seen = []

        def gprs(linktype, mv, caplen):
            seen.append(caplen)
            return caplen % 2 == 0      # drop the even ones
        acc = self.compare("pcap", sample_records(), 65000, False, gprs)
        self.assertEqual(len(seen), 600)    # both runs
        self.assertEqual(acc[0], sum(1 for s in seen[:300] if s % 2))


SEND_FRAMES = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
src, dst = b"\x02\x00\x00\x00\x00\x01", b"\xff" * 6
for i in range(120):
    body = bytes((i + j) & 0xFF for j in range(40 + (i * 61) % 1400))
    if i % 3 == 0:      # 802.1Q: the kernel strips it, libpcap puts it back
        head = struct.pack("!HH", 0x8100, (i % 8) << 13 | (100 + i))
    elif i % 3 == 1:    # 802.1ad outer tag over an 802.1Q one
        head = struct.pack("!HHHH", 0x88A8, 7, 0x8100, 300 + i)
    else:
        head = b""
    s.send(dst + src + head + b"\x88\xb5" + b"OPC-REC%04d" % i + body)
"""


class LiveRecordsTest(support.TempDirTestCase):
    """Two handles on one veth, one per path, capturing the same frames at once."""

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        netns.require_netns()
        self.lib = load_library()

    def test_same_records_on_the_same_traffic(self):
        gen = netns.add_ns(self, "r")
        peer, here = netns.veth(self, gen, None, None, None, prefix="r")
        # With a socket asking for time stamps the kernel stamps each frame once
        # on receipt, and every capture socket reports that same time.
        stamp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(stamp.close)
        stamp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        handles = []
        for _ in range(2):
            h, _ = libpcap.Handle.open_live(self.lib, here, 256, False, 20, 2 << 20, False)
            self.addCleanup(h.close)
            h.set_filter("ether proto 0x88b5 or vlan")
            handles.append(h)
        self.assertTrue(handles[1].use_records())
        time.sleep(0.3)   # the time-stamping switch is applied asynchronously
        netns.python_in(gen, SEND_FRAMES, peer)
        time.sleep(0.3)   # blocks close after the 20 ms time-out
        by_callback = via_callback(handles[0])
        by_records = via_records(handles[1])
        marks = [r[4].find(b"OPC-REC") for r in by_records]
        self.assertEqual(len(by_records), 120)
        self.assertEqual(by_records, by_callback)
        tagged = [r for r, m in zip(by_records, marks) if m == 18]
        qinq = [r for r, m in zip(by_records, marks) if m == 22]
        self.assertEqual((len(tagged), len(qinq)), (40, 40))
        self.assertEqual(tagged[0][4][12:16], struct.pack("!HH", 0x8100, 100))
        self.assertTrue(any(r[2] < r[3] for r in by_records))    # cut at 256 bytes
        for r in by_records:
            self.assertLessEqual(r[2], 256)

        # The client's framers turn both into the same stream.
        out = []
        for fmt in ("pcap", "pcapng"):
            a, b = bytearray(), bytearray()
            sink = capture.make_sink(fmt, 0, 1, 65000, a, [0] * 4, None, [])
            for sec, usec, caplen, length, data in by_callback:
                sink(sec, usec, caplen, length, data)
            view = memoryview(b"".join(libpcap.RECORD_HDR.pack(*r[:4]) + r[4]
                                       for r in by_records))
            capture.make_framer(fmt, 0, [0] * 4, None, True)(view, len(by_records), len(view), b)
            out.append(a == b)
        self.assertEqual(out, [True, True])


if __name__ == "__main__":
    unittest.main()
