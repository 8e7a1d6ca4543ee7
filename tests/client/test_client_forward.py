# SPDX-License-Identifier: AGPL-3.0-or-later
"""Server connections and the spool without processes: queue bounds, LINK_HDR
first, the partly sent frame after a loss, spool order, limits and restarts."""

import logging
import os
import unittest

from tests import support
from osmo_pcap import wire
from osmo_pcap.client.config import ServerEntry
from osmo_pcap.client.forward import UP, WAITING, Forwarder
from osmo_pcap.client.ipip import ipv4_offset
from osmo_pcap.client.spool import Spool
from osmo_pcap.wire import complete_frames

LOG = logging.getLogger("osmo-pcap.test-forward")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False
HDR_A = b"A" * 24
HDR_B = b"B" * 24


def frames(seqs, size=100):
    """Complete LINK_DATA frames whose payload starts with the sequence number."""
    return b"".join(wire.encode_link_data(b"%08d" % i + b"x" * (size - 8)) for i in seqs)


def decode(stream):
    """Return [(type, payload bytes)] of a byte stream of frames."""
    return [(t, bytes(p)) for t, p in wire.Decoder().feed(stream)]


def seqs(stream):
    return [int(p[:8]) for t, p in decode(stream) if t == wire.LINK_DATA]


class FakeLoop(object):
    def __init__(self):
        self.now = 0.0
        self.timers = []

    def clock(self):
        return self.now

    def call_later(self, delay, cb, *args):
        t = _Timer(self.now + delay, cb, args)
        self.timers.append(t)
        return t

    def run_timers(self):
        due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for t in due:
            t.cb(*t.args)

    def add_reader(self, *a):
        pass

    add_writer = remove = remove_writer = add_reader


class _Timer(object):
    def __init__(self, when, cb, args):
        self.when, self.cb, self.args, self.cancelled = when, cb, args, False

    def cancel(self):
        self.cancelled = True


class FakeTransport(object):
    """Takes at most `window` more bytes (until raised); records what was sent."""
    instances = []

    def __init__(self):
        self.sent = bytearray()
        self.window = 1 << 30
        self.writer = self.reader = None
        self.pending_output = 0
        FakeTransport.instances.append(self)

    def set_reader(self, cb):
        self.reader = cb

    def set_writer(self, cb):
        self.writer = cb

    def recv_into(self, buf):
        return None

    def send(self, data):
        n = min(len(data), self.window)
        self.window -= n
        self.sent += data[:n]
        return n

    def close(self):
        pass


class FakeDial(object):
    """Stands for transport.Dial: the test decides when the connection is up."""
    instances = []
    fail_open = False

    def __init__(self, loop, host, port, source_ip, wrap, on_ready, on_error, timeout=None):
        if FakeDial.fail_open:
            raise OSError(101, "Network is unreachable")
        self.on_ready = on_ready
        FakeDial.instances.append(self)

    def succeed(self, window=1 << 30):
        t = FakeTransport()
        t.window = window
        self.on_ready(t)
        return t

    def cancel(self):
        pass


class ConnectionTest(support.TempDirTestCase):
    def setUp(self):
        support.TempDirTestCase.setUp(self)
        FakeTransport.instances = []
        FakeDial.instances = []
        FakeDial.fail_open = False
        self.loop = FakeLoop()
        self.hdr = HDR_A

    def conn(self, **kw):
        cfg = ServerEntry("t")
        cfg.host, cfg.port = "127.0.0.1", 9
        for k, v in kw.items():
            setattr(cfg, k, v)
        c = Forwarder(cfg, self.loop, LOG, dial=FakeDial, rng=lambda: 0.5)
        c.set_link_hdr(self.hdr)
        return c

    def connect(self, c):
        c._attempt() if c.state == WAITING else c.start()
        t = FakeDial.instances[-1].succeed()
        self.assertEqual(c.state, UP)
        return t

    def test_link_hdr_first_then_data_queued_while_away(self):
        c = self.conn()
        c.enqueue(frames(range(5)))              # before any connection: kept
        t = self.connect(c)
        msgs = decode(t.sent)
        self.assertEqual(msgs[0], (wire.LINK_HDR, HDR_A))
        self.assertEqual(seqs(t.sent), list(range(5)))
        c.enqueue(frames(range(5, 10)))
        self.assertEqual(seqs(t.sent), list(range(10)))

    def test_queue_bound_drops_newest_and_counts(self):
        c = self.conn(queue_size=1040)            # room for ten 104-byte frames
        c.enqueue(frames(range(8)))
        c.enqueue(frames(range(8, 20)))
        self.assertEqual(c.counters["client:queue_err"], 10)
        t = self.connect(c)
        self.assertEqual(seqs(t.sent), list(range(10)))

    def test_partly_sent_frame_dropped_after_loss(self):
        c = self.conn()
        t = self.connect(c)
        t.window = 4 + 24 + 104 * 3 + 50         # header, three frames, half of the fourth
        c.enqueue(frames(range(10)))
        c._lost("test")
        self.assertEqual(c.counters["client:queue_err"], 1)
        self.loop.now += 10
        self.loop.run_timers()
        t2 = FakeDial.instances[-1].succeed()
        self.assertEqual(decode(t2.sent)[0], (wire.LINK_HDR, HDR_A))
        self.assertEqual(seqs(t2.sent), list(range(4, 10)))

    def test_backoff_doubles_to_max_and_sync_failures_retry(self):
        FakeDial.fail_open = True
        c = self.conn(reconnect_min=1.0, reconnect_max=4.0)
        c.start()
        delays = []
        for _ in range(5):
            t = [x for x in self.loop.timers if not x.cancelled][-1]
            delays.append(t.when - self.loop.now)
            self.loop.now = t.when
            self.loop.run_timers()
        self.assertEqual(delays, [1.0, 2.0, 4.0, 4.0, 4.0])  # jitter is 0 with rng 0.5
        self.assertEqual(c.counters["server:connect"], 6)

    def test_link_hdr_change_is_announced_in_order(self):
        c = self.conn()
        t = self.connect(c)
        c.enqueue(frames([1]))
        c.set_link_hdr(HDR_B)
        c.enqueue(frames([2]))
        self.assertEqual([m[0] for m in decode(t.sent)], [0, 1, 0, 1])
        self.assertEqual(decode(t.sent)[2][1], HDR_B)

    def test_spool_while_away_replayed_before_new_data(self):
        c = self.conn(spool_dir=self.tmp, queue_size=65536)
        t = self.connect(c)
        c.enqueue(frames(range(3)))
        c._lost("test")
        c.enqueue(frames(range(3, 2000)))         # away: everything into the spool
        self.assertTrue(c.spool.pending)
        self.loop.now += 10
        self.loop.run_timers()
        t2 = FakeDial.instances[-1].succeed(window=5000)   # a slow server: replay in steps
        c.enqueue(frames(range(2000, 2010)))      # new data waits behind the spool
        while c.busy:
            t2.window = 5000
            c._send()
        self.assertEqual(seqs(t.sent), [0, 1, 2])
        self.assertEqual(seqs(t2.sent), list(range(3, 2010)))
        self.assertFalse(c.spool.pending)
        self.assertEqual(os.listdir(os.path.join(self.tmp, "t")), [])

    def test_stop_puts_unsent_data_into_the_spool(self):
        c = self.conn(spool_dir=self.tmp)
        t = self.connect(c)
        t.window = 4 + 24 + 104 * 2 + 10         # the server stopped reading
        c.enqueue(frames(range(10)))
        self.assertTrue(c.busy)
        c.stop()
        self.assertEqual(c.counters["client:queue_err"], 1)   # the half-sent frame
        sp = c.spool.__class__(os.path.join(self.tmp, "t"), 1 << 30, LOG)
        piece = sp.next_piece()
        self.assertEqual(piece[0], HDR_A)
        self.assertEqual(seqs(piece[1]), list(range(3, 10)))

    def test_stop_without_spool_counts_what_is_left(self):
        c = self.conn()
        t = self.connect(c)
        t.window = 0
        c.enqueue(frames(range(10)))
        c.stop()
        self.assertEqual(c.counters["client:queue_err"], 10)

    def test_ipv4_offsets(self):
        ip = bytes([0x45]) + bytes(19)
        self.assertEqual(ipv4_offset(1, b"\0" * 12 + b"\x08\x00" + ip, 34), 14)
        self.assertEqual(ipv4_offset(1, b"\0" * 12 + b"\x81\x00\0\x05\x08\x00" + ip, 38), 18)
        self.assertEqual(ipv4_offset(1, b"\0" * 12 + b"\x86\xdd" + ip, 34), -1)
        self.assertEqual(ipv4_offset(113, b"\0" * 14 + b"\x08\x00" + ip, 36), 16)
        self.assertEqual(ipv4_offset(276, b"\x08\x00" + b"\0" * 18 + ip, 40), 20)
        self.assertEqual(ipv4_offset(101, ip, 20), 0)
        self.assertEqual(ipv4_offset(101, bytes([0x60]) + bytes(39), 40), -1)
        self.assertEqual(ipv4_offset(147, ip, 20), -1)


class SpoolTest(support.TempDirTestCase):
    def spool(self, max_bytes=1 << 30):
        return Spool(self.path("sp"), max_bytes, LOG)

    def drain(self, sp):
        out = []
        while True:
            piece = sp.next_piece(limit=3000)
            if piece is None:
                return out
            out.append(piece)
            sp.commit()

    def test_order_headers_and_restart(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(0, 50)))
        sp.append(HDR_B, frames(range(50, 60)))
        sp.close()
        sp = self.spool()                          # a restarted client finds both files
        self.assertEqual(sp.files, 2)
        pieces = self.drain(sp)
        self.assertEqual([h for h, _ in pieces][0], HDR_A)
        self.assertEqual([h for h, _ in pieces][-1], HDR_B)
        self.assertEqual(seqs(b"".join(f for _, f in pieces)), list(range(60)))
        self.assertFalse(sp.pending)
        self.assertEqual(os.listdir(self.path("sp")), [])

    def test_rewind_hands_out_uncommitted_data_again(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(100)))
        h, first = sp.next_piece(limit=1000)
        sp.rewind()
        h2, again = sp.next_piece(limit=1000)
        self.assertEqual(first, again)
        sp.commit()
        rest = self.drain(sp)
        self.assertEqual(seqs(first + b"".join(f for _, f in rest)), list(range(100)))

    def test_limit_drops_oldest_and_counts(self):
        sp = self.spool(max_bytes=1 << 20)         # files of 1 MiB
        for i in range(30):
            sp.append(HDR_A, frames(range(i * 1000, i * 1000 + 1000)))   # 104 KB each
        self.assertLessEqual(sp.total, (1 << 20) + 200000)
        got = seqs(b"".join(f for _, f in self.drain(sp)))
        self.assertEqual(len(got) + sp.dropped_frames, 30000)
        self.assertGreater(sp.dropped_frames, 0)
        self.assertEqual(got, list(range(30000 - len(got), 30000)))  # the newest survive

    def test_torn_tail_is_cut_at_a_frame_boundary(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(10)))
        sp.close()
        name = os.listdir(self.path("sp"))[0]
        with open(self.path("sp", name), "ab") as f:
            f.write(frames([10])[:50])            # a crash in the middle of a write
        got = seqs(b"".join(f for _, f in self.drain(self.spool())))
        self.assertEqual(got, list(range(10)))

    def test_complete_frames(self):
        data = frames(range(3))
        self.assertEqual(complete_frames(data), (len(data), 3))
        self.assertEqual(complete_frames(data[:-1]), (208, 2))
        self.assertEqual(complete_frames(data, 0, 150), (104, 1))


if __name__ == "__main__":
    unittest.main()
