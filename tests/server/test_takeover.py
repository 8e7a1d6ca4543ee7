# SPDX-License-Identifier: AGPL-3.0-or-later
"""A new connection takes over a client's stream only once it proved itself.

doc/protocol.md#takeover: connections from a configured client's address that
send garbage, close at once, send STREAM or LINK_DATA first, stay silent, or
come in too great a number are closed and counted while the client's live
connection streams on into one file. A valid LINK_HDR takes over; with
acknowledged delivery the candidate gets its ACK_OFFER before it proved
anything. Lines about such connections are rate-limited per client.
"""

import socket
import struct
import time

from tests import peer
from tests.server.test_server_behaviour import GOOD, ServerTest
from osmo_pcap import wire

WAIT = 30.0  # hang guard, never a speed assertion


class Takeover(ServerTest):

    def live(self, srv):
        """Connect the real client; return its socket after its first file exists."""
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_hdr() + b"".join(peer.pcap_data(i) for i in range(10)))
        srv.wait_log("writing")
        return s

    def test_nothing_short_of_a_valid_link_hdr_disturbs_the_live_stream(self):
        srv = self.start([("c", GOOD, "yes")], "header_timeout = 1s")
        live = self.live(srv)
        seq = 10
        attempts = [
            b"\x07\x00\x00\x04abcd",                                   # garbage
            b"",                                                        # connect, close
            peer.pcap_data(99),                                         # data first
            wire.encode_stream(b"\x01" * 16, 0),                        # STREAM first
            peer.raw_frame(0, b"\xd4\xc3\xb2\xa1" + b"\x00" * 10),      # bad LINK_HDR
        ]
        for data in attempts:
            s = peer.connect(srv.port, GOOD)
            # Every connection gets the offer at once, before it proved anything.
            self.assertEqual(s.recv(8), wire.encode_ack_offer(0))
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
            self.assertTrue(peer.wait_closed(s, WAIT))
            s.close()
            live.sendall(b"".join(peer.pcap_data(i) for i in range(seq, seq + 10)))
            seq += 10
        silent = peer.connect(srv.port, GOOD)        # closed at header_timeout
        self.addCleanup(silent.close)
        self.assertTrue(peer.wait_closed(silent, WAIT))
        live.sendall(b"".join(peer.pcap_data(i) for i in range(seq, seq + 10)))
        seq += 10
        live.close()
        srv.wait_log("(disconnect;")
        st = self.srv.stats("c")
        self.assertEqual(st["connect"], 1 + len(attempts) + 1)
        self.assertEqual(st["rejected"], 4)
        self.stop()
        log = srv.log()
        for code in ("unknown-type", "data-before-header", "stream-early", "pcap-hdr-length"):
            self.assertIn("[%s]" % code, log)
        self.assertIn("; the live connection from %s:%d goes on" % (GOOD, live_port(live, log)),
                      log)
        self.assertNotIn("replaced", log)
        (path,) = srv.files()
        self.assertEqual(self.packets(path), list(range(seq)))

    def test_valid_link_hdr_takes_over_and_its_stream_is_acknowledged(self):
        srv = self.start([("c", GOOD, "yes")], completed=True)
        live = self.live(srv)
        new = peer.connect(srv.port, GOOD)
        self.addCleanup(new.close)
        self.assertEqual(new.recv(8), wire.encode_ack_offer(0))
        new.sendall(peer.pcap_hdr() + wire.encode_stream(b"\x02" * 16, 500)
                    + b"".join(peer.pcap_data(i) for i in range(500, 505)))
        self.assertTrue(peer.wait_closed(live, WAIT))
        # The STREAM of the connection that took over is answered and acknowledged.
        acked = 0
        buf = b""
        new.settimeout(WAIT)
        while acked < 505:
            buf += new.recv(4096)
            while len(buf) >= 12:
                mtype, _, n = struct.unpack("!BBH", buf[:4])
                self.assertEqual((mtype, n), (wire.ACK, 8))
                acked = struct.unpack("!Q", buf[4:12])[0]
                buf = buf[12:]
        new.close()
        srv.wait_log("(disconnect;", 2)
        self.stop()
        files = srv.files(srv.completed)
        self.assertEqual([self.packets(p) for p in files],
                         [list(range(10)), list(range(500, 505))])

    def test_oldest_of_too_many_candidates_is_closed(self):
        import resource
        srv = peer.ServerProcess(self.tmp, [("c", GOOD, "yes")])
        self.srv = srv
        # 64 descriptors: at most 4 connections may wait per address (as for handshakes)
        srv.start(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
        self.addCleanup(srv.kill)
        self.addCleanup(self.check_log)
        live = self.live(srv)
        waiting = []
        for _ in range(6):
            s = peer.connect(srv.port, GOOD)
            self.addCleanup(s.close)
            waiting.append(s)
        self.assertTrue(peer.wait_closed(waiting[0], WAIT))
        self.assertTrue(peer.wait_closed(waiting[1], WAIT))
        live.sendall(b"".join(peer.pcap_data(i) for i in range(10, 20)))
        live.close()
        srv.wait_log("(disconnect;")
        self.stop()
        self.assertIn("newer connections from the client's address are waiting for their "
                      "LINK_HDR (limit 4)", srv.log())
        (path,) = srv.files()
        self.assertEqual(self.packets(path), list(range(20)))

    def test_lines_about_a_clients_connections_are_rate_limited(self):
        srv = self.start([("c", GOOD, "yes")])
        live = self.live(srv)
        for i in range(300):
            s = peer.connect(srv.port, GOOD)
            if i % 2:
                s.sendall(b"\x07\x00\x00\x04abcd")
                self.assertTrue(peer.wait_closed(s, WAIT))   # read, and refused
            s.close()
        live.sendall(peer.pcap_data(10))
        deadline = time.monotonic() + WAIT
        while self.srv.stats("c")["connect"] < 301 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.srv.stats("c")["connect"], 301)
        live.close()
        srv.wait_log("(disconnect;")
        self.stop()
        log = srv.log()
        # Not 600 lines: per kind, the first line, then at exit (or 10 s later) the
        # last one held back with the number of the others; and the live
        # connection's own lines besides.
        self.assertEqual(log.count("): connected"), 2, log)   # not the status lines
        self.assertIn(": connected (299 similar suppressed)", log)
        self.assertEqual(log.count(": disconnected:"), 5, log)
        self.assertIn("goes on (148 similar suppressed)", log)
        self.assertIn("[unknown-type]", log)
        self.assertEqual(log.count("client c (%s:%d): disconnected: connection closed by the "
                                   "client" % (GOOD, live_port(live, log))), 1, log)


def live_port(sock, log):
    """Return the source port the live client had (its socket may be closed already)."""
    import re
    return int(re.search(r"client c \(%s:(\d+)\): connected" % GOOD, log).group(1))
