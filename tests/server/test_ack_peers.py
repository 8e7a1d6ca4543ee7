# SPDX-License-Identifier: AGPL-3.0-or-later
"""Acknowledged delivery from the server's side, with crafted peers.

The extension messages (doc/protocol.md#acknowledged-delivery) seen by a real
server process: the offer on every connection, acknowledgements only of what is
in the file, resent frames skipped after a restart, and everything a hostile peer
might try with STREAM refused and counted (bad identities, lengths, versions,
sequence numbers, a STREAM late or twice), without disturbing a good client.
A stream identity is per client entry: one client cannot skip another's data,
and identities never become file names. A peer that never reads its ACKs makes
the server hold no more than a few KiB for it.
"""

import logging
import os
import signal
import socket
import struct
import time
import unittest

from tests import peer, support
from osmo_pcap import wire

logging.getLogger("osmo-pcap").addHandler(logging.NullHandler())
logging.getLogger("osmo-pcap").propagate = False
WAIT = 20.0
SID = bytes(range(1, 17))


def stream(sid=SID, first=0, version=1):
    return wire.frame_header(wire.STREAM, wire.STREAM_BODY.size) + wire.STREAM_BODY.pack(
        version, 0, 0, sid, first)


def read_messages(sock, until, timeout=WAIT):
    """Read server messages until until(list of (type, body)) is true; return them."""
    got = []
    buf = b""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError("server messages so far: %r" % got)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        while len(buf) >= 4:
            t, _, n = wire.FRAME_HDR.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            got.append((t, buf[4:4 + n]))
            buf = buf[4 + n:]
    return got


def seq(data):
    """The number peer.payload() put at the start of a packet."""
    return struct.unpack_from("<I", data)[0]


def acked(msgs):
    return [wire.ACK_BODY.unpack(b)[0] for t, b in msgs if t == wire.ACK]


class AckServerTest(support.TempDirTestCase):

    def server(self, extra=""):
        srv = peer.ServerProcess(self.tmp, [("good", "127.0.0.1", "yes"),
                                            ("bad", "127.0.0.2", "yes")],
                                 "flush_interval = 0.05s\n" + extra)
        srv.start()
        self.addCleanup(srv.kill)
        return srv

    def test_offer_acks_and_resent_frames_skipped_after_a_restart(self):
        srv = self.server()
        s = peer.connect(srv.port)
        self.addCleanup(s.close)
        msgs = read_messages(s, lambda m: m)
        self.assertEqual(msgs[0], (wire.ACK_OFFER, wire.ACK_OFFER_BODY.pack(1, 0, 0)))
        s.sendall(peer.pcap_hdr() + stream(first=0))
        self.assertEqual(acked(read_messages(s, acked)), [0])  # nothing stored yet
        s.sendall(b"".join(peer.pcap_data(i) for i in range(10)))
        self.assertEqual(max(acked(read_messages(s, lambda m: 10 in acked(m)))), 10)
        # Killed: what it acknowledged is in a file; a client that never got the
        # ACK sends frames 5.. again, and they are skipped.
        srv.kill()
        s.close()
        srv.start()
        srv.wait_log("was left open by an earlier run")
        s = peer.connect(srv.port)
        self.addCleanup(s.close)
        read_messages(s, lambda m: m)
        s.sendall(peer.pcap_hdr() + stream(first=5)
                  + b"".join(peer.pcap_data(i) for i in range(5, 15)))
        self.assertIn(15, acked(read_messages(s, lambda m: 15 in acked(m))))
        srv.wait_log("5 frame(s) stored already are skipped")
        s.close()
        srv.stop()
        got = [seq(r.data) for f in srv.files() for r in peer.file_records(f)]
        self.assertEqual(got, list(range(15)))
        self.assertEqual(sorted(os.listdir(os.path.join(srv.base, ".osmo-pcap-state"))),
                         ["good.state"])

    def test_bad_stream_messages_are_refused_and_counted(self):
        srv = self.server()
        good = peer.connect(srv.port)
        self.addCleanup(good.close)
        good.sendall(peer.pcap_hdr() + stream(first=0))
        cases = [
            ("stream-id", peer.pcap_hdr() + stream(sid=bytes(16))),
            ("stream-length", peer.pcap_hdr() + peer.raw_frame(wire.STREAM, b"\x01" * 10)),
            ("stream-version", peer.pcap_hdr() + stream(version=0)),
            ("stream-seq", peer.pcap_hdr() + stream(first=1 << 63)),
            ("stream-twice", peer.pcap_hdr() + stream(first=5) + stream(first=0)),
            ("stream-late", peer.pcap_hdr() + peer.pcap_data(0) + stream()),
        ]
        sent = 0
        for code, data in cases:
            self.assertTrue(peer.send_all_then_wait_closed(srv.port, data, "127.0.0.2"), code)
            srv.wait_log("protocol violation [%s]" % code)
            good.sendall(b"".join(peer.pcap_data(i) for i in range(sent, sent + 10)))
            sent += 10
        self.assertEqual(max(acked(read_messages(good, lambda m: sent in acked(m)))), sent)
        self.assertNotIn("client good (127.0.0.1:%d): disconnected" % good.getsockname()[1],
                         srv.log())
        good.close()
        srv.signal(signal.SIGUSR1)             # the stats lines, with the rejections
        srv.wait_log("stats bad: ")
        self.assertRegex(srv.log(), r"stats bad: .* rejected=6")
        srv.stop()
        good_files = [f for f in srv.files() if "-good-" in f]
        self.assertEqual(len(good_files), 1)   # never split by the hostile peer
        self.assertEqual(len(peer.file_records(good_files[0])), sent)

    def test_a_stream_that_jumps_forward_counts_the_gap(self):
        srv = self.server()
        s = peer.connect(srv.port)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_hdr() + stream(first=0)
                  + b"".join(peer.pcap_data(i) for i in range(10))
                  + stream(first=20) + b"".join(peer.pcap_data(i) for i in range(20, 30)))
        self.assertIn(30, acked(read_messages(s, lambda m: 30 in acked(m))))
        srv.wait_log("frames 10 to 19 never arrived")
        # backwards, or another identity: refused
        s.sendall(stream(first=25))
        self.assertTrue(peer.wait_closed(s))
        srv.wait_log("protocol violation [stream-twice]")
        t = peer.connect(srv.port)
        self.addCleanup(t.close)
        t.sendall(peer.pcap_hdr() + stream(first=30) + peer.pcap_data(30)
                  + stream(sid=bytes(range(2, 18)), first=31))
        self.assertTrue(peer.wait_closed(t))
        srv.signal(signal.SIGUSR1)          # stats: both refusals counted (the second
        srv.wait_log("stats good: ")        # log line may be held back: rate-limited)
        self.assertRegex(srv.log(), r"stats good: .*peer:seq_gap=10 .* rejected=2")
        srv.stop()
        got = [seq(r.data) for f in srv.files() for r in peer.file_records(f)]
        self.assertEqual(got, list(range(10)) + list(range(20, 31)))

    def test_stream_on_a_server_without_acks_is_an_unknown_type(self):
        srv = self.server("acks = no\n")
        s = peer.connect(srv.port, "127.0.0.2")
        self.addCleanup(s.close)
        s.sendall(peer.pcap_hdr() + stream())
        self.assertTrue(peer.wait_closed(s))
        srv.wait_log("protocol violation [unknown-type]")
        quiet = peer.connect(srv.port)
        self.addCleanup(quiet.close)
        self.assertEqual(read_messages(quiet, lambda m: True, 0.5), [])

    def test_a_stream_identity_belongs_to_one_client_entry(self):
        srv = self.server()
        good = peer.connect(srv.port)
        self.addCleanup(good.close)
        good.sendall(peer.pcap_hdr() + stream(first=0)
                     + b"".join(peer.pcap_data(i) for i in range(100)))
        read_messages(good, lambda m: 100 in acked(m))
        # Another client names the same identity at 0: nothing of its own is skipped.
        bad = peer.connect(srv.port, "127.0.0.2")
        self.addCleanup(bad.close)
        bad.sendall(peer.pcap_hdr() + stream(first=0)
                    + b"".join(peer.pcap_data(i) for i in range(1000, 1010)))
        self.assertIn(10, acked(read_messages(bad, lambda m: 10 in acked(m))))
        good.close()
        bad.close()
        srv.stop()
        bad_files = [f for f in srv.files() if "-bad-" in f]
        self.assertEqual([seq(r.data) for r in peer.file_records(bad_files[0])],
                         list(range(1000, 1010)))
        self.assertEqual(sorted(os.listdir(os.path.join(srv.base, ".osmo-pcap-state"))),
                         ["bad.state", "good.state"])


class FullTransport(object):
    """A client that reads nothing: the transport takes no more bytes."""

    def __init__(self):
        self.writer = None

    def send(self, data):
        return 0

    def set_writer(self, cb):
        self.writer = cb

    def close(self):
        pass


class SilentReaderTest(unittest.TestCase):
    """A peer that never reads its ACKs gets a few KiB queued, the newest ACK kept."""

    def test_unread_acknowledgements_are_bounded(self):
        from osmo_pcap.server.ingest import Connection

        class Rec(object):
            name = "c"
        t = FullTransport()
        conn = Connection(None, t, ("127.0.0.1", 1), Rec(), 9000, streams=True)
        conn.send(wire.encode_ack_offer())
        for n in range(1, 10000):
            conn.send_ack(n)
        self.assertLessEqual(len(conn.wbuf), 4096 + 12)
        self.assertEqual(conn.ack_due, 9999)
        self.assertIsNotNone(t.writer)


if __name__ == "__main__":
    unittest.main()
