# SPDX-License-Identifier: AGPL-3.0-or-later
"""Stress (make test-stress): 10,000 connections from a streaming client's address.

A client streams into the server at a steady pace while 10,000 other
connections come from its own address: half connect and close, half send
garbage (an unknown message type, LINK_DATA or STREAM first, a broken
LINK_HDR). None of them has proved itself (doc/protocol.md#takeover), so the
client's file must be complete and unsplit, every attempt counted once in
`connect` and every garbage one in `rejected`, the log short (rate-limited
lines), and the server's descriptors back where they were.
"""

import os
import shutil
import socket
import struct
import tempfile
import threading
import time

from tests import peer, support
from osmo_pcap import wire

ATTEMPTS = 10000
WAIT = 120.0       # hang guard, never a speed assertion
GARBAGE = (b"\x07\x00\x00\x04abcd", peer.pcap_data(0),
           wire.encode_stream(b"\x05" * 16, 0), peer.raw_frame(0, b"\x00" * 24))
CODES = ("unknown-type", "data-before-header", "stream-early", "hdr-unknown-format")


class PlainStorm(support.TempDirTestCase):

    def setUp(self):
        # A prefix of its own: cleaners of other runs on a shared machine leave it alone.
        self.tmp = tempfile.mkdtemp(prefix="osmo-pcap-stress-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_ten_thousand_connections_from_the_address_of_a_streaming_client(self):
        srv = peer.ServerProcess(self.tmp, [("c", "127.0.0.1", "yes")], completed=True)
        srv.start()
        self.addCleanup(srv.kill)
        quiet = len(os.listdir("/proc/%d/fd" % srv.proc.pid))
        live = peer.connect(srv.port)
        self.addCleanup(live.close)
        live.sendall(peer.pcap_hdr())
        live_port = live.getsockname()[1]
        srv.wait_log("client c (127.0.0.1:%d): connected" % live_port)
        sent = [0]
        stop = threading.Event()

        def stream():
            while not stop.is_set():
                live.sendall(b"".join(peer.pcap_data(i) for i in range(sent[0], sent[0] + 20)))
                sent[0] += 20
                stop.wait(0.005)
        streamer = threading.Thread(target=stream)
        streamer.start()
        garbage = 0
        try:
            for i in range(ATTEMPTS):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.connect(("127.0.0.1", srv.port))
                if i % 2:
                    s.sendall(GARBAGE[(i // 2) % len(GARBAGE)])
                    garbage += 1
                s.close()
        finally:
            stop.set()
            streamer.join(WAIT)
        live.close()
        srv.wait_log("client c (127.0.0.1:%d): disconnected: connection closed by the client"
                     % live_port, timeout=WAIT)

        def stats():
            return srv.stats("c", timeout=WAIT)
        # The server may still be accepting the last connections of the backlog.
        deadline = time.monotonic() + WAIT
        while stats()["connect"] < ATTEMPTS + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = stats()
        # Every attempt ended: the server holds only the listener, the log and the
        # closed client's file until it moves it (the descriptors of a quiet server + 2).
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            fds = len(os.listdir("/proc/%d/fd" % srv.proc.pid))
            if fds <= quiet + 2:
                break
            time.sleep(0.1)
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        self.assertNotIn("Traceback", log)
        self.assertEqual(stats["connect"], ATTEMPTS + 1)
        # Garbage closed before the server read it may end as a plain close (a reset).
        self.assertLessEqual(stats["rejected"], garbage)
        self.assertGreater(stats["rejected"], garbage // 2)
        self.assertEqual(stats["pkts"], sent[0])
        self.assertLessEqual(fds, quiet + 2)   # the live connection's socket and file
        self.assertNotIn("replaced", log)
        lines = log.count("\n")
        print("\n  %d connections, %d garbage (%d rejected), %d records in one file; %d log "
              "lines" % (ATTEMPTS, garbage, stats["rejected"], sent[0], lines))
        self.assertLess(lines, 200)
        (path,) = srv.files(srv.completed)
        recs = peer.file_records(path)
        self.assertEqual([struct.unpack("<I", r.data[:4])[0] for r in recs],
                         list(range(sent[0])))
