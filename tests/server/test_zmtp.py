# SPDX-License-Identifier: AGPL-3.0-or-later
"""The stdlib ZeroMQ publisher (osmo_pcap.zmtp) against libzmq and raw ZMTP peers."""

import unittest

from tests import support
from tests.zmtp_peers import (END_TOPIC, RawPeer, ZmqSub, command, frame, greeting,
                              need_pyzmq, ready, wait_for)
from osmo_pcap.server import zmtp
from osmo_pcap.loop import Loop


class EncodingTest(unittest.TestCase):

    def test_short_and_long_frames(self):
        self.assertEqual(zmtp.encode_frame(b"abc"), b"\x00\x03abc")
        self.assertEqual(zmtp.encode_frame(b"abc", more=True), b"\x01\x03abc")
        body = b"x" * 256
        self.assertEqual(zmtp.encode_frame(body), b"\x02" + (256).to_bytes(8, "big") + body)
        self.assertEqual(zmtp.encode_frame(b"", more=True), b"\x01\x00")

    def test_message_sets_more_on_all_but_last(self):
        self.assertEqual(zmtp.encode_message([b"t", b"", b"xy"]),
                         b"\x01\x01t\x01\x00\x00\x02xy")

    def test_greeting_and_ready(self):
        g = zmtp.GREETING
        self.assertEqual(len(g), 64)
        self.assertEqual((g[0], g[9], g[10], g[11]), (0xFF, 0x7F, 3, 1))
        self.assertEqual(g[12:32], b"NULL" + b"\0" * 16)
        self.assertEqual(zmtp.READY, b"\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB")

    def test_properties_are_bounds_checked(self):
        self.assertEqual(zmtp.parse_properties(b"\x0bSocket-Type\x00\x00\x00\x03SUB"),
                         {b"socket-type": b"SUB"})
        for bad in (b"\x0bSocket-Type\x00\x00\x00\x09SUB", b"\x20abc", b"\x03abc\x00\x00"):
            with self.assertRaises(zmtp.ZmtpError):
                zmtp.parse_properties(bad)

    def test_endpoints(self):
        self.assertEqual(zmtp.parse_endpoint("tcp://127.0.0.1:6666"), ("127.0.0.1", 6666))
        self.assertEqual(zmtp.parse_endpoint("tcp://*:6666"), ("0.0.0.0", 6666))
        self.assertEqual(zmtp.parse_endpoint("tcp://[::1]:6666"), ("::1", 6666))
        self.assertEqual(zmtp.parse_endpoint("6666"), ("127.0.0.1", 6666))
        for bad in ("ipc:///tmp/x", "tcp://host", "tcp://h:0"):
            with self.assertRaises(ValueError):
                zmtp.parse_endpoint(bad)


class PublisherTestCase(unittest.TestCase):

    def setUp(self):
        self.loop = Loop()
        self.addCleanup(self.loop.close)
        self.pub = zmtp.Publisher(self.loop, "127.0.0.1", 0, queue_max=256 * 1024)
        self.addCleanup(self.pub.close, 0)
        self.endpoint = "tcp://127.0.0.1:%d" % self.pub.port

    def raw(self, minor=1, socket_type=b"SUB", **kw):
        p = RawPeer(self.pub.port, **kw)
        self.addCleanup(p.close)
        p.send(greeting(3, minor) + ready(socket_type))
        return p

    def wait_subs(self, n, subs=None):
        def ok():
            s = self.pub.subscribers()
            return len(s) == n and (subs is None or all(len(x[1]) >= subs for x in s))
        wait_for(self.loop, ok)


class RawPeerTest(PublisherTestCase):

    def test_zmtp30_subscription_as_data_frames(self):
        p = self.raw(minor=0)
        p.send(frame(b"\x01event.") + frame(b"\x01data.v1.b"))
        self.wait_subs(1, 2)
        self.pub.publish([b"event.v1.connect.a"])
        self.pub.publish([b"data.v1.a", b"hdr", b"rec"])
        self.pub.publish([b"data.v1.b", b"hdr", b"rec2"])
        wait_for(self.loop, lambda: len(p.messages()) == 2, also=p.pump)
        self.assertEqual(p.greeting[:12], zmtp.GREETING[:12])
        self.assertEqual(p.commands()[0], b"\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB")
        self.assertEqual(p.messages(), [[b"event.v1.connect.a"], [b"data.v1.b", b"hdr", b"rec2"]])
        # cancel: nothing more for data.v1.b
        p.send(frame(b"\x00data.v1.b"))
        wait_for(self.loop, lambda: self.pub.subscribers()[0][1] == [b"event."])
        self.pub.publish([b"data.v1.b", b"hdr", b"rec3"])
        self.pub.publish([b"event.v1.disconnect.b"])
        wait_for(self.loop, lambda: len(p.messages()) == 3, also=p.pump)
        self.assertEqual(p.messages()[2], [b"event.v1.disconnect.b"])

    def test_zmtp31_commands_ping_and_counted_subscriptions(self):
        p = self.raw(minor=1)
        p.send(command(b"SUBSCRIBE", b"ev") + command(b"SUBSCRIBE", b"ev")
               + command(b"CANCEL", b"ev") + command(b"PING", b"\x00\x0actx"))
        self.wait_subs(1, 1)
        wait_for(self.loop, lambda: len(p.commands()) == 2, also=p.pump)
        self.assertEqual(p.commands()[1], b"\x04PONGctx")
        self.pub.publish([b"event.x", b"a" * 300])
        wait_for(self.loop, lambda: len(p.messages()) == 1, also=p.pump)
        self.assertEqual(p.messages(), [[b"event.x", b"a" * 300]])

    def test_bad_peers_are_dropped(self):
        http = RawPeer(self.pub.port)
        self.addCleanup(http.close)
        http.send(b"GET / HTTP/1.0\r\n\r\n")
        wait_for(self.loop, lambda: http.eof, also=http.pump)
        pub_peer = self.raw(socket_type=b"PUB")
        wait_for(self.loop, lambda: pub_peer.eof, also=pub_peer.pump)
        self.assertIn(b"\x05ERROR", pub_peer.commands()[-1])
        curve = RawPeer(self.pub.port)
        self.addCleanup(curve.close)
        curve.send(greeting(mechanism=b"CURVE"))
        wait_for(self.loop, lambda: curve.eof, also=curve.pump)
        huge = self.raw()
        huge.send(b"\x02" + (1 << 40).to_bytes(8, "big"))
        wait_for(self.loop, lambda: huge.eof, also=huge.pump)
        self.assertEqual(self.pub.subscribers(), [])
        self.assertEqual(self.pub.pending, set())

    def test_silent_peers_do_not_lock_subscribers_out(self):
        # All slots taken by peers that never greet: the oldest makes room for a
        # real subscriber at once, instead of after HANDSHAKE_TIMEOUT.
        self.pub.max_subscribers = 3
        silent = []
        for _ in range(3):
            silent.append(RawPeer(self.pub.port))
            self.addCleanup(silent[-1].close)
            n = len(silent)
            wait_for(self.loop, lambda: len(self.pub.pending) == n)
        p = self.raw()
        p.send(frame(b"\x01event."))
        self.wait_subs(1, 1)
        wait_for(self.loop, lambda: silent[0].eof, also=silent[0].pump)
        self.assertEqual(len(self.pub.pending), 2)
        # full of finished handshakes: a newcomer is refused, nobody is dropped
        for q in silent[1:]:
            q.close()
        wait_for(self.loop, lambda: not self.pub.pending)
        self.pub.max_subscribers = 1
        late = RawPeer(self.pub.port)
        self.addCleanup(late.close)
        wait_for(self.loop, lambda: late.eof, also=late.pump)
        self.assertEqual(len(self.pub.subscribers()), 1)

    def test_stuck_subscriber_is_bounded_and_counted(self):
        stuck = self.raw(rcvbuf=4096)
        stuck.send(frame(b"\x01"))
        self.wait_subs(1, 1)
        payload = b"p" * 1000
        sender = self.pub.ready[0].sender
        sent = 0
        # The kernel takes some megabytes first; go on until the queue overflows
        # a good number of times (bounded: 64 MB at most).
        while sender.dropped < 100 and sent < 64000:
            self.pub.publish([b"data.v1.a", b"h", payload])
            sent += 1
            if sent % 100 == 0:
                self.loop.run_once(0)
        (name, subs, dropped, dropped_bytes), = self.pub.subscribers()
        self.assertLessEqual(len(sender.out), 256 * 1024)
        self.assertGreaterEqual(dropped, 100)
        self.assertEqual(dropped_bytes, dropped * len(zmtp.encode_message(
            [b"data.v1.a", b"h", payload])))
        # Whole messages only: once the peer reads, it sees a clean stream.
        # Until the queue is empty and everything sent has been read (the
        # kernel buffers hold data for a while after the queue empties).
        wait_for(self.loop, lambda: not sender.out and len(stuck.messages()) >= sent - dropped,
                 also=stuck.pump)
        msgs = stuck.messages()
        self.assertEqual(len(msgs), sent - dropped)
        self.assertTrue(all(m == [b"data.v1.a", b"h", payload] for m in msgs))


class PyzmqTest(PublisherTestCase):

    def setUp(self):
        need_pyzmq()
        PublisherTestCase.setUp(self)

    def sub(self, topics, **kw):
        s = ZmqSub(self.endpoint, topics, **kw)
        self.addCleanup(s.kill)
        s.wait_subscribed()
        return s

    def test_filtered_and_unfiltered_subscribers_get_exact_parts(self):
        every = self.sub([b""])
        events = self.sub([b"event."])
        one = self.sub([b"data.v1.b"])
        self.wait_subs(3, 2)
        header = bytes(range(24))
        big = bytes(range(256)) * 5
        sent = [
            [b"event.v1.connect.a"],
            [b"data.v1.a", header, b"\x01" * 20],
            [b"data.v1.b", header, big],
            [b"event.v1.closingtracefile.b", b"/tmp/trace-b.pcap"],
            [b"data.v1.bb", header, b""],
        ]
        for m in sent[:2]:
            self.pub.publish(m)
        # the data path's pre-encoded variant must give identical bytes
        enc = zmtp.encode_message(sent[2])
        self.pub.publish_frames(b"data.v1.b", [enc[:10], enc[10:]], len(enc))
        for m in sent[3:] + [[END_TOPIC]]:
            self.pub.publish(m)
        wait_for(self.loop, lambda: all(not s.sender.out for s in self.pub.ready))
        self.assertEqual(every.result(), sent)
        self.assertEqual(events.result(), [sent[0], sent[3]])
        self.assertEqual(one.result(), [sent[2], sent[4]])

    def test_stalled_libzmq_subscriber_does_not_stall_others(self):
        stalled = self.sub([b""], stall=True)
        fast = self.sub([b"data."])
        self.wait_subs(2, 1)
        rec = b"r" * 1400
        stalled_sub = [s for s in self.pub.ready if b"" in s.subs][0]
        n = 0
        # Until the stalled peer's queue overflows (the kernel takes a few MB
        # first); bounded at 20000 messages.
        while stalled_sub.sender.dropped < 50 and n < 20000:
            self.pub.publish([b"data.v1.a", b"hdr", rec])
            n += 1
            self.loop.run_once(0)
        self.pub.publish([END_TOPIC])
        fast_sub = [s for s in self.pub.ready if s.subs.get(b"data.")][0]
        wait_for(self.loop, lambda: not fast_sub.sender.out)
        self.assertEqual(len(fast.result()), n)
        self.assertGreaterEqual(stalled_sub.sender.dropped, 50)
        self.assertEqual(fast_sub.sender.dropped, 0)
        self.assertLessEqual(len(stalled_sub.sender.out), 256 * 1024)


if __name__ == "__main__":
    unittest.main()
