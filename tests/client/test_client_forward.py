# SPDX-License-Identifier: AGPL-3.0-or-later
"""Forwarders and the spool without processes: queue bounds, LINK_HDR first, the
partly sent frame after a loss, acknowledged delivery (offer, STREAM, ACKs,
resending after a loss, time-outs), spool order, limits and restarts."""

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


def batch(seqs, size=100):
    """(frames, count) as the client hands a capture round to Forwarder.enqueue."""
    seqs = list(seqs)
    return frames(seqs, size), len(seqs)


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

    def call_every(self, interval, cb, *args):
        return _Repeat(self, interval, cb, args)

    def run_timers(self):
        due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for t in due:
            t.cb(*t.args)

    def add_reader(self, *a):
        pass

    add_writer = remove = remove_writer = add_reader


class _Repeat(object):
    def __init__(self, loop, interval, cb, args):
        self.loop, self.interval, self.cb, self.args = loop, interval, cb, args
        self.cancelled = False
        self.timer = loop.call_later(interval, self._tick)

    def _tick(self):
        if not self.cancelled:
            self.timer = self.loop.call_later(self.interval, self._tick)
            self.cb(*self.args)

    def cancel(self):
        self.cancelled = True
        self.timer.cancel()


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
        self.inbox = bytearray()   # what the fake server says
        self.closed = False
        FakeTransport.instances.append(self)

    def say(self, data):
        """The server sends data; the Forwarder reads it."""
        self.inbox += data
        if self.reader is not None:
            self.reader()

    def set_reader(self, cb):
        self.reader = cb

    def set_writer(self, cb):
        self.writer = cb

    def recv_into(self, buf):
        if not self.inbox:
            return None
        n = min(len(buf), len(self.inbox))
        buf[:n] = self.inbox[:n]
        del self.inbox[:n]
        return n

    def send(self, data):
        n = min(len(data), self.window)
        self.window -= n
        self.sent += data[:n]
        return n

    def close(self):
        self.closed = True


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


class ForwarderCase(support.TempDirTestCase):
    """A Forwarder on a fake loop with fake connections (FakeDial)."""

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
        cfg.ack = "no"            # the plain protocol, as toward an upstream server
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


class ConnectionTest(ForwarderCase):
    """The plain protocol (ack = no, or a server that offers nothing)."""

    def test_link_hdr_first_then_data_queued_while_away(self):
        c = self.conn()
        c.enqueue(*batch(range(5)))              # before any connection: kept
        t = self.connect(c)
        msgs = decode(t.sent)
        self.assertEqual(msgs[0], (wire.LINK_HDR, HDR_A))
        self.assertEqual(seqs(t.sent), list(range(5)))
        c.enqueue(*batch(range(5, 10)))
        self.assertEqual(seqs(t.sent), list(range(10)))

    def test_queue_bound_drops_newest_and_counts(self):
        c = self.conn(queue_size=1040)            # room for ten 104-byte frames
        c.enqueue(*batch(range(8)))
        c.enqueue(*batch(range(8, 20)))
        self.assertEqual(c.counters["client:queue_err"], 10)
        self.assertEqual(c.counters["lost:queue_full"], 10)
        t = self.connect(c)
        self.assertEqual(seqs(t.sent), list(range(10)))

    def test_partly_sent_frame_goes_again_whole_after_loss(self):
        c = self.conn()
        t = self.connect(c)
        t.window = 4 + 24 + 104 * 3 + 50         # header, three frames, half of the fourth
        c.enqueue(*batch(range(10)))
        c._lost("test")
        self.assertEqual(c.counters["client:queue_err"], 0)
        self.loop.now += 10
        self.loop.run_timers()
        t2 = FakeDial.instances[-1].succeed()
        self.assertEqual(decode(t2.sent)[0], (wire.LINK_HDR, HDR_A))
        # the server threw the cut frame away with the old connection: it goes whole
        self.assertEqual(seqs(t2.sent), list(range(3, 10)))

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
        c.enqueue(*batch([1]))
        c.set_link_hdr(HDR_B)
        c.enqueue(*batch([2]))
        self.assertEqual([m[0] for m in decode(t.sent)], [0, 1, 0, 1])
        self.assertEqual(decode(t.sent)[2][1], HDR_B)

    def test_frames_keep_their_header_across_an_outage(self):
        c = self.conn()
        c.enqueue(*batch([1, 2]))
        c.set_link_hdr(HDR_B)                     # a device changed while away
        c.enqueue(*batch([3]))
        t = self.connect(c)
        self.assertEqual([(m[0], m[1] if m[0] == 0 else None) for m in decode(t.sent)],
                         [(0, HDR_A), (1, None), (1, None), (0, HDR_B), (1, None)])
        self.assertEqual(c.counters["client:queue_err"], 0)

    def test_spool_while_away_replayed_before_new_data(self):
        c = self.conn(spool_dir=self.tmp, queue_size=65536)
        t = self.connect(c)
        c.enqueue(*batch(range(3)))
        c._lost("test")
        c.enqueue(*batch(range(3, 2000)))         # away: everything into the spool
        self.assertTrue(c.spool.pending)
        self.loop.now += 10
        self.loop.run_timers()
        t2 = FakeDial.instances[-1].succeed(window=5000)   # a slow server: replay in steps
        c.enqueue(*batch(range(2000, 2010)))      # new data waits behind the spool
        while c.busy:
            t2.window = 5000
            c._send()
        self.assertEqual(seqs(t.sent), [0, 1, 2])
        self.assertEqual(seqs(t2.sent), list(range(3, 2010)))
        self.assertFalse(c.spool.pending)
        self.assertEqual([n for n in os.listdir(os.path.join(self.tmp, "t")) if n.endswith(".spool")], [])

    def test_stop_puts_unsent_data_into_the_spool(self):
        c = self.conn(spool_dir=self.tmp)
        t = self.connect(c)
        t.window = 4 + 24 + 104 * 2 + 10         # the server stopped reading
        c.enqueue(*batch(range(10)))
        self.assertTrue(c.busy)
        c.stop()
        self.assertEqual(c.counters["client:queue_err"], 0)   # the half-sent frame is kept
        sp = c.spool.__class__(os.path.join(self.tmp, "t"), 1 << 30, LOG)
        piece = sp.next_piece()
        self.assertEqual(piece[0], HDR_A)
        self.assertEqual(seqs(piece[1]), list(range(2, 10)))
        self.assertEqual(piece[2:4], (2, 8))              # first sequence number, count
        self.assertEqual(sp.stream_id, c.stream_id)       # the same stream next run

    def test_stop_without_spool_counts_what_is_left(self):
        c = self.conn()
        t = self.connect(c)
        t.window = 0
        c.enqueue(*batch(range(10)))
        c.stop()
        self.assertEqual(c.counters["client:queue_err"], 10)
        self.assertEqual(c.counters["lost:exit"], 10)

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


class AcknowledgedTest(ForwarderCase):
    """A server of ours: it offers acknowledged delivery, the Forwarder opts in."""

    def conn(self, **kw):
        kw.setdefault("ack", "auto")
        return ForwarderCase.conn(self, **kw)

    def test_offer_stream_and_acks(self):
        c = self.conn()
        t = self.connect(c)
        c.enqueue(*batch(range(10)))
        self.assertEqual(decode_any(t.sent), [(wire.LINK_HDR, HDR_A)])   # waits for the offer
        t.say(wire.encode_ack_offer())
        msgs = decode_any(t.sent)
        self.assertEqual(msgs[1], (wire.STREAM, wire.STREAM_BODY.pack(1, 0, 0, c.stream_id, 0)))
        self.assertEqual(seqs_any(t.sent), list(range(10)))
        self.assertEqual(c.counters["ack:mode"], 1)
        t.say(wire.encode_ack(4))
        self.assertEqual(c.acked, 4)
        self.assertEqual(c.counters["ack:acked"], 4)
        self.assertTrue(c.busy)                    # frames 4..9 still wait for their ACK
        t.say(wire.encode_ack(10))
        self.assertEqual((c.qbytes, c.counters["ack:acked"], c.busy), (0, 10, False))

    def test_loss_resends_from_the_first_frame_not_acknowledged(self):
        c = self.conn()
        t = self.connect(c)
        t.say(wire.encode_ack_offer())
        c.enqueue(*batch(range(10)))
        t.say(wire.encode_ack(3))
        c._lost("test")
        self.loop.now += 10
        self.loop.run_timers()
        t2 = FakeDial.instances[-1].succeed()
        t2.say(wire.encode_ack_offer())
        self.assertEqual(decode_any(t2.sent)[1][1][-8:], (3).to_bytes(8, "big"))
        self.assertEqual(seqs_any(t2.sent), list(range(3, 10)))
        self.assertEqual(c.counters["ack:resent"], 7)
        c.enqueue(*batch(range(10, 12)))
        t2.say(wire.encode_ack(12))
        self.assertEqual((c.qbytes, c.counters["client:queue_err"]), (0, 0))

    def test_without_an_offer_the_plain_protocol_follows_byte_for_byte(self):
        plain = ForwarderCase.conn(self)           # ack = no
        t_plain = self.connect(plain)
        plain.enqueue(*batch(range(5)))
        c = self.conn()
        t = self.connect(c)
        c.enqueue(*batch(range(5)))
        self.assertEqual(decode_any(t.sent), [(wire.LINK_HDR, HDR_A)])
        self.loop.now += 2.5                       # HELLO_WAIT passes: an upstream server
        self.loop.run_timers()
        self.assertEqual(bytes(t.sent), bytes(t_plain.sent))
        self.assertEqual(c.counters["ack:mode"], 0)
        self.assertEqual(c.qbytes, 0)              # let go once the kernel took them

    def test_silent_server_times_out(self):
        c = self.conn(ack_timeout=10.0)
        t = self.connect(c)
        t.say(wire.encode_ack_offer())
        c.enqueue(*batch(range(3)))
        for _ in range(9):
            self.loop.now += 1
            self.loop.run_timers()
        self.assertEqual(c.state, UP)
        self.loop.now += 2.5
        self.loop.run_timers()
        self.assertEqual(c.state, WAITING)
        self.assertEqual(c.counters["ack:timeouts"], 1)
        self.assertEqual(c.qbytes, 3 * 104)        # nothing let go

    def test_idle_acknowledged_connection_does_not_time_out(self):
        c = self.conn(ack_timeout=10.0)
        t = self.connect(c)
        t.say(wire.encode_ack_offer())
        c.enqueue(*batch(range(3)))
        t.say(wire.encode_ack(3))
        self.loop.now += 60
        self.loop.run_timers()
        self.assertEqual((c.state, c.counters["ack:timeouts"]), (UP, 0))

    def test_acknowledging_more_than_was_sent_is_a_protocol_error(self):
        c = self.conn()
        t = self.connect(c)
        t.say(wire.encode_ack_offer())
        c.enqueue(*batch(range(3)))
        t.say(wire.encode_ack(50))
        self.assertEqual(c.state, WAITING)
        self.assertTrue(t.closed)
        self.assertEqual(c.qbytes, 3 * 104)

    def test_unknown_message_from_the_server_is_a_protocol_error(self):
        c = self.conn()
        t = self.connect(c)
        t.say(b"\x09\x00\x00\x00")
        self.assertEqual(c.state, WAITING)

    def test_spooled_frames_are_committed_only_when_acknowledged(self):
        c = self.conn(spool_dir=self.tmp, queue_size=65536)
        c.start()                                  # away: everything into the spool
        c.enqueue(*batch(range(50)))
        t = FakeDial.instances[-1].succeed()
        t.say(wire.encode_ack_offer())
        self.assertEqual(seqs_any(t.sent), list(range(50)))
        self.assertTrue(c.spool.pending)           # sent, not acknowledged
        t.say(wire.encode_ack(50))
        self.assertFalse(c.spool.pending)

    def test_spool_overflow_while_sending_names_the_next_frame(self):
        c = self.conn(spool_dir=self.tmp, queue_size=65536, spool_max=1 << 20)
        c.start()
        for i in range(0, 9000, 100):             # capture rounds, away: ~0.9 MB spooled
            c.enqueue(*batch(range(i, i + 100)))
        t = FakeDial.instances[-1].succeed(window=0)
        t.say(wire.encode_ack_offer())
        t.window = 40000                          # a slow server: the spool is being read
        c._send()
        for i in range(9000, 25000, 100):         # the spool overflows meanwhile
            c.enqueue(*batch(range(i, i + 100)))
        for _ in range(10000):
            if not c.busy:
                break
            sent = seqs_any(t.sent)
            t.say(wire.encode_ack(sent[-1] + 1))
            t.window = 40000
            c._send()
        msgs = decode_any(t.sent)
        streams = [(i, int.from_bytes(p[-8:], "big")) for i, (m, p) in enumerate(msgs)
                   if m == wire.STREAM]
        self.assertEqual(len(streams), 2, streams)
        got = seqs_any(t.sent)
        lost = c.counters["lost:spool_full"]
        self.assertGreater(lost, 0)
        # after the second STREAM the numbers continue at the frame it names
        gap_at = streams[1][1]
        self.assertEqual(len(got) + lost, 25000)
        self.assertEqual(got, sorted(got))
        self.assertEqual(sorted(set(range(25000)) - set(got)),
                         list(range(gap_at - lost, gap_at)))

    def test_max_age_gives_up_old_frames_while_away(self):
        c = self.conn(max_age=30.0)
        c.enqueue(*batch(range(5)))
        c.start()
        self.loop.now += 29
        c.enqueue(*batch(range(5, 8)))
        self.loop.now += 3
        self.loop.run_timers()
        self.assertEqual(c.counters["lost:too_old"], 5)
        self.assertEqual(c.counters["client:queue_err"], 5)
        t = FakeDial.instances[-1].succeed()
        t.say(wire.encode_ack_offer())
        self.assertEqual(decode_any(t.sent)[1][1][-8:], (5).to_bytes(8, "big"))
        self.assertEqual(seqs_any(t.sent), [5, 6, 7])


def decode_any(stream):
    """[(type, payload bytes)] of a stream that may carry extension messages."""
    out = []
    pos = 0
    while pos + 4 <= len(stream):
        t, _, n = wire.FRAME_HDR.unpack_from(stream, pos)
        if pos + 4 + n > len(stream):
            break                       # the rest is still to come
        out.append((t, bytes(stream[pos + 4:pos + 4 + n])))
        pos += 4 + n
    return out


def seqs_any(stream):
    return [int(p[:8]) for t, p in decode_any(stream) if t == wire.LINK_DATA]


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
            sp.commit(piece[4])

    def test_order_headers_numbers_and_restart(self):
        sp = self.spool()
        sid = sp.stream_id
        sp.append(HDR_A, frames(range(0, 50)), 0, 50)
        sp.append(HDR_B, frames(range(50, 60)), 50, 10)
        sp.close()
        sp = self.spool()                          # a restarted client finds both files
        self.assertEqual(sp.files, 2)
        self.assertEqual(sp.stream_id, sid)
        self.assertEqual(sp.next_seq_on_disk(), 60)
        pieces = self.drain(sp)
        self.assertEqual([p[0] for p in pieces][0], HDR_A)
        self.assertEqual([p[0] for p in pieces][-1], HDR_B)
        self.assertEqual(seqs(b"".join(p[1] for p in pieces)), list(range(60)))
        for hdr, data, first, count, _ in pieces:   # the numbers travel with the frames
            self.assertEqual(seqs(data), list(range(first, first + count)))
        self.assertFalse(sp.pending)
        self.assertEqual([n for n in os.listdir(self.path("sp")) if n.endswith(".spool")], [])

    def test_uncommitted_data_is_handed_out_again_after_a_restart(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(100)), 0, 100)
        first = sp.next_piece(limit=1000)
        sp.commit(first[4])
        second = sp.next_piece(limit=1000)         # sent, never acknowledged
        sp.close()
        sp = self.spool()
        again = sp.next_piece(limit=1000)
        self.assertEqual(again[1:4], second[1:4])
        rest = self.drain(sp)
        self.assertEqual(seqs(again[1] + b"".join(p[1] for p in rest)), list(range(9, 100)))

    def test_older_frames_go_into_a_file_of_their_own(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(100, 110)), 100, 10)
        sp.write_file(HDR_A, frames(range(90, 100)), 90)
        self.assertEqual(seqs(b"".join(p[1] for p in self.drain(sp))), list(range(90, 110)))

    def test_files_of_an_earlier_version_are_renumbered(self):
        os.makedirs(self.path("sp"))
        for n, rng in ((1, range(0, 5)), (2, range(5, 8))):
            with open(self.path("sp", "%d.spool" % n), "wb") as f:
                f.write(wire.encode_link_hdr(HDR_A) + frames(rng))
        sp = self.spool()
        self.assertEqual(sp.next_seq_on_disk(), 8)
        pieces = self.drain(sp)
        self.assertEqual(seqs(b"".join(p[1] for p in pieces)), list(range(8)))
        self.assertEqual([p[2] for p in pieces], [0, 5])

    def test_limit_drops_oldest_and_counts(self):
        sp = self.spool(max_bytes=1 << 20)         # files of 1 MiB
        for i in range(30):
            sp.append(HDR_A, frames(range(i * 1000, i * 1000 + 1000)), i * 1000, 1000)
        self.assertLessEqual(sp.total, (1 << 20) + 200000)
        got = seqs(b"".join(p[1] for p in self.drain(sp)))
        self.assertEqual(len(got) + sp.dropped_frames, 30000)
        self.assertGreater(sp.dropped_frames, 0)
        self.assertEqual(got, list(range(30000 - len(got), 30000)))  # the newest survive

    def test_torn_tail_is_cut_at_a_frame_boundary(self):
        sp = self.spool()
        sp.append(HDR_A, frames(range(10)), 0, 10)
        sp.close()
        name = [n for n in os.listdir(self.path("sp")) if n.endswith(".spool")][0]
        with open(self.path("sp", name), "ab") as f:
            f.write(frames([10])[:50])            # a crash in the middle of a write
        sp = self.spool()
        self.assertEqual(sp.next_seq_on_disk(), 10)
        got = seqs(b"".join(p[1] for p in self.drain(sp)))
        self.assertEqual(got, list(range(10)))

    def test_complete_frames(self):
        data = frames(range(3))
        self.assertEqual(complete_frames(data), (len(data), 3))
        self.assertEqual(complete_frames(data[:-1]), (208, 2))
        self.assertEqual(complete_frames(data, 0, 150), (104, 1))


if __name__ == "__main__":
    unittest.main()
