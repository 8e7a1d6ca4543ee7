# SPDX-License-Identifier: AGPL-3.0-or-later
"""The real server process: connections, validation, rotation, signals, files.

Each test starts osmo_pcap_server.py on an ephemeral port with its own temp
dir; clients are told apart by their source address on 127.0.0.0/8. Every
file produced is read back with tshark.
"""

import fcntl
import os
import re
import signal
import struct
import threading
import time
import unittest

from tests import peer, support
from osmo_pcap import pcapfile, pcapng, wire

GOOD = "127.0.0.2"
BAD = "127.0.0.9"


class ServerTest(support.TempDirTestCase):
    def start(self, clients, extra="", completed=False):
        self.srv = peer.ServerProcess(self.tmp, clients, extra, completed).start()
        self.addCleanup(self.srv.kill)
        self.addCleanup(self.check_log)
        return self.srv

    def check_log(self):
        log = self.srv.log()
        self.assertNotIn("Traceback", log)

    def stop(self):
        self.assertEqual(self.srv.stop(), 0, self.srv.log()[-3000:])

    def packets(self, path):
        """Return the first 4 payload bytes (the sequence number) of each packet, via tshark."""
        rows = support.tshark_packets(path, ("frame.cap_len", "frame.len"))
        recs = peer.file_records(path)
        self.assertEqual(len(rows), len(recs), path)
        self.assertEqual([int(r[0]) for r in rows], [r.caplen for r in recs])
        return [struct.unpack("<I", r.data[:4])[0] for r in recs]


def _pcapng_block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def violations():
    """Return (rule code, stream) pairs, one per validation rule (doc/protocol.md#error-codes)."""
    hdr = peer.pcap_hdr()
    ng = peer.pcapng_hdr()
    rec = peer.pcap_record(0)
    epb = pcapng.encode_epb(0, 1, b"x" * 60)
    shb = pcapng.encode_shb()
    idb = pcapng.encode_idb(1, 9000, if_name="eth0")
    return [
        ("unknown-type", hdr + peer.raw_frame(2, rec)),
        ("unknown-type", peer.raw_frame(255, b"")),
        ("frame-too-long", hdr + struct.pack("!BBH", 1, 0, 65532) + b"\0" * 100),
        ("hdr-empty", peer.raw_frame(0, b"")),
        ("hdr-unknown-format", peer.raw_frame(0, b"\x01\x02\x03\x04" * 6)),
        ("pcap-hdr-length", peer.raw_frame(0, pcapfile.encode_global_header(9000, 1) + b"\0")),
        ("pcap-hdr-snaplen", peer.pcap_hdr(snaplen=9001)),
        ("pcap-hdr-snaplen", peer.pcap_hdr(snaplen=0)),
        ("data-before-header", peer.pcap_data(0)),
        ("pcap-record-short", hdr + peer.raw_frame(1, rec[:15])),
        ("pcap-caplen-mismatch", hdr + peer.raw_frame(1, rec + b"x")),
        ("pcap-caplen-too-big", peer.pcap_hdr(snaplen=50) + peer.pcap_data(0, 51)),
        ("pcapng-block-short", ng + peer.raw_frame(1, b"\0" * 8)),
        ("pcapng-block-length", ng + peer.raw_frame(1, epb + b"\0\0\0\0")),
        ("pcapng-block-trailer", ng + peer.raw_frame(1, epb[:-4] + b"\0\0\0\0")),
        ("pcapng-epb-short", ng + peer.raw_frame(1, _pcapng_block(6, b"\0" * 16))),
        ("pcapng-epb-interface", ng + peer.raw_frame(1, pcapng.encode_epb(1, 1, b"x" * 60))),
        ("pcapng-epb-caplen", peer.pcapng_hdr(snaplen=50) + peer.raw_frame(
            1, pcapng.encode_epb(0, 1, b"x" * 60))),
        ("pcapng-data-shb", ng + peer.raw_frame(1, shb)),
        ("pcapng-data-idb", ng + peer.raw_frame(1, idb)),
        ("pcapng-hdr-block", peer.raw_frame(0, shb + epb)),
        ("pcapng-idb-snaplen", peer.pcapng_hdr(snaplen=9001)),
    ]


class Validation(ServerTest):
    def test_every_rule_drops_only_the_offender(self):
        srv = self.start([("good", GOOD, "yes"), ("bad", BAD, "yes")])
        neighbour = peer.connect(srv.port, GOOD)
        self.addCleanup(neighbour.close)
        neighbour.sendall(peer.pcap_hdr())
        seq = 0
        cases = violations()
        for code, stream in cases:
            neighbour.sendall(b"".join(peer.pcap_data(i) for i in range(seq, seq + 10)))
            seq += 10
            # a valid record first: it is kept although the connection is then dropped
            self.assertTrue(peer.send_all_then_wait_closed(srv.port, stream, BAD), code)
            srv.wait_log("[%s]" % code)
        neighbour.sendall(b"".join(peer.pcap_data(i) for i in range(seq, seq + 10)))
        seq += 10
        neighbour.close()
        srv.wait_log("client good (%s" % GOOD)
        srv.wait_log("(disconnect;")
        st = self.srv.stats("bad")
        self.assertEqual(st["rejected"], len(cases))
        self.assertEqual(st["connect"], len(cases))
        self.stop()
        log = srv.log()
        for code, _ in cases:
            self.assertRegex(log, r"client bad \(127\.0\.0\.9:\d+\): disconnected: protocol "
                             r"violation \[%s\]: \S" % re.escape(code))
        good = [p for p in srv.files() if "-good-" in p]
        self.assertEqual(len(good), 1)
        self.assertEqual(self.packets(good[0]), list(range(seq)))
        for p in srv.files():
            support.tshark_packets(p)  # every file the offender left is readable

    def test_valid_records_before_violation_are_kept(self):
        srv = self.start([("bad", BAD, "yes")])
        stream = peer.pcap_stream(5) + peer.raw_frame(7, b"zz")
        self.assertTrue(peer.send_all_then_wait_closed(srv.port, stream, BAD))
        srv.wait_log("(disconnect;")
        self.stop()
        self.assertEqual([self.packets(p) for p in srv.files()], [[0, 1, 2, 3, 4]])


class Connections(ServerTest):
    def test_unknown_address_closed_and_log_rate_limited(self):
        srv = self.start([("good", GOOD, "yes")])
        for _ in range(5):
            s = peer.connect(srv.port, "127.0.0.50")
            self.assertTrue(peer.wait_closed(s))
            s.close()
        st = self.srv.stats("good")
        self.assertEqual(st["connect"], 0)
        log = srv.log()
        self.assertIn("server:no_client=5", log)
        self.assertIn("server:connect=5", log)
        self.assertEqual(log.count("unknown address 127.0.0.50"), 1)
        self.stop()

    def test_reconnect_replaces_old_connection(self):
        """The new connection takes over with its LINK_HDR (doc/protocol.md#takeover)."""
        srv = self.start([("c", GOOD, "yes")], completed=True)
        a = peer.connect(srv.port, GOOD)
        self.addCleanup(a.close)
        a.sendall(peer.pcap_stream(5))
        srv.wait_log("writing")
        b = peer.connect(srv.port, GOOD)
        self.addCleanup(b.close)
        b_port = b.getsockname()[1]
        self.assertFalse(peer.wait_closed(a, 0.5))    # b has not proved itself yet
        b.sendall(peer.pcap_stream(3, first=100))
        self.assertTrue(peer.wait_closed(a))
        b.close()
        srv.wait_log("(disconnect;", 2)
        self.stop()
        self.assertIn("replaced by a new connection from %s:%d, which sent a valid LINK_HDR"
                      % (GOOD, b_port), srv.log())
        files = srv.files(srv.completed)
        self.assertEqual([self.packets(p) for p in files], [[0, 1, 2, 3, 4], [100, 101, 102]])

    def test_several_clients_at_once(self):
        n = 8
        clients = [("c%d" % i, "127.0.1.%d" % (i + 1), "yes") for i in range(n)]
        srv = self.start(clients, completed=True)

        def send(i):
            s = peer.connect(srv.port, "127.0.1.%d" % (i + 1))
            data = peer.pcap_stream(2000, size=60 + i, first=i * 10000)
            for k in range(0, len(data), 10000):
                s.sendall(data[k:k + 10000])
            s.close()
        threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        srv.wait_log("(disconnect;", n)
        self.stop()
        for i in range(n):
            files = [p for p in srv.files(srv.completed) if "-c%d-" % i in p]
            self.assertEqual(len(files), 1)
            self.assertEqual(self.packets(files[0]), list(range(i * 10000, i * 10000 + 2000)))

    def test_out_of_descriptors_pauses_accepting_then_resumes(self):
        import resource
        n = 30
        clients = [("c%d" % i, "127.0.3.%d" % (i + 1), "yes") for i in range(n)]
        self.srv = peer.ServerProcess(self.tmp, clients)
        self.srv.start(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (30, 30)))
        self.addCleanup(self.srv.kill)
        self.addCleanup(self.check_log)
        srv = self.srv
        socks = []
        for i in range(n):
            s = peer.connect(srv.port, "127.0.3.%d" % (i + 1))
            self.addCleanup(s.close)
            socks.append(s)
        srv.wait_log("pausing accepts")
        for s in socks[:15]:
            s.close()
        # the waiting connections are accepted once descriptors are free again
        srv.wait_log(": connected", n)
        for k, s in enumerate(socks[15:]):
            s.sendall(peer.pcap_stream(2))
            s.close()
            srv.wait_log("(disconnect;", k + 1)
        self.stop()
        files = srv.files()
        self.assertEqual([len(peer.file_records(p)) for p in files], [2] * 15)
        self.assertEqual(len(self.packets(files[0])), 2)

    def test_metrics_endpoint(self):
        import urllib.request
        mport = support.free_port()
        srv = self.start([("c", GOOD, "yes")], "[metrics]\nlisten = 127.0.0.1:%d" % mport)
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_stream(3) + peer.raw_frame(1, b"short"))
        self.assertTrue(peer.wait_closed(s))
        srv.wait_log("(disconnect;")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
            text = r.read().decode()
        for line in ('osmo_pcap_server_client_packets_total{client="c"} 3',
                     'osmo_pcap_server_client_received_bytes_total{client="c"} 348',
                     'osmo_pcap_server_client_rejected_connections_total{client="c",'
                     'reason="pcap-record-short"} 1',
                     'osmo_pcap_server_clients_connected 0',
                     'osmo_pcap_server_client_files_closed_total{client="c"} 1'):
            self.assertIn(line + "\n", text)
        self.assertIn("# TYPE osmo_pcap_server_client_packets_total counter", text)
        # Prometheus' own linter has nothing to say about the names, types and help
        p = support.run([support.require_promtool(), "check", "metrics"], input=text,
                        check=False)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))
        self.stop()

    def test_header_and_idle_timeouts(self):
        srv = self.start([("mute", BAD, "yes"), ("quiet", GOOD, "yes")],
                         "header_timeout = 0.3s\nidle_timeout = 1s")
        mute = peer.connect(srv.port, BAD)
        self.addCleanup(mute.close)
        quiet = peer.connect(srv.port, GOOD)
        self.addCleanup(quiet.close)
        quiet.sendall(peer.pcap_stream(2))
        self.assertTrue(peer.wait_closed(mute))
        self.assertTrue(peer.wait_closed(quiet))
        log = srv.wait_log("(disconnect;")
        self.assertRegex(log, r"client mute \(127\.0\.0\.9:\d+\): disconnected: no LINK_HDR "
                         r"within header_timeout \(0\.3s\)")
        self.assertRegex(log, r"client quiet \(127\.0\.0\.2:\d+\): disconnected: nothing "
                         r"received for idle_timeout \(1s\)")
        self.stop()
        self.assertEqual([self.packets(p) for p in srv.files()], [[0, 1]])

    def test_link_header_change_starts_new_file(self):
        srv = self.start([("c", GOOD, "yes")])
        s = peer.connect(srv.port, GOOD)
        s.sendall(peer.pcap_hdr() + b"".join(peer.pcap_data(i) for i in range(3)) +
                  peer.pcap_hdr(linktype=113) + b"".join(peer.pcap_data(i) for i in range(3, 6)) +
                  peer.pcap_hdr(linktype=113) + b"".join(peer.pcap_data(i) for i in range(6, 8)))
        s.close()
        srv.wait_log("(disconnect;")
        self.stop()
        files = srv.files()
        self.assertEqual([self.packets(p) for p in files], [[0, 1, 2], [3, 4, 5, 6, 7]])
        self.assertEqual([pcapfile.parse_global_header(peer.read_file(p)).linktype
                          for p in files], [1, 113])
        self.assertTrue(files[1].endswith("-1.pcap") or files[0][-20:-5] != files[1][-20:-5])

    def test_store_no_writes_nothing_and_survives_data_before_header(self):
        srv = self.start([("quiet", GOOD, "no")])
        s = peer.connect(srv.port, GOOD)
        s.sendall(peer.pcap_stream(50) + peer.pcapng_hdr() + peer.pcapng_data(1))
        s.close()
        srv.wait_log("(%s" % GOOD)
        srv.wait_log("disconnected")
        self.assertTrue(peer.send_all_then_wait_closed(srv.port, peer.pcap_data(0), GOOD))
        srv.wait_log("[data-before-header]")
        st = self.srv.stats("quiet")
        self.assertEqual((st["pkts"], st["link_hdr"], st["files_closed"]), (51, 2, 0))
        self.stop()
        self.assertEqual(os.listdir(srv.base), [])

    def test_collision_adds_suffix_and_truncates_nothing(self):
        srv = self.start([("c", GOOD, "yes")])
        now = time.time()
        taken = []
        for d in range(0, 4):
            name = "trace-c-%s.pcap" % time.strftime("%Y%m%d_%H%M%S", time.localtime(now + d))
            with open(os.path.join(srv.base, name), "wb") as f:
                f.write(b"precious")
            taken.append(name)
        s = peer.connect(srv.port, GOOD)
        s.sendall(peer.pcap_stream(4))
        s.close()
        srv.wait_log("(disconnect;")
        self.stop()
        for name in taken:
            self.assertEqual(peer.read_file(os.path.join(srv.base, name)), b"precious")
        new = [p for p in srv.files() if os.path.basename(p) not in taken]
        self.assertEqual(len(new), 1)
        self.assertTrue(new[0].endswith("-1.pcap"), new)
        self.assertEqual(self.packets(new[0]), [0, 1, 2, 3])


class Rotation(ServerTest):
    def test_size_rotation(self):
        srv = self.start([("c", GOOD, "yes")], "max_file_size = 1K\nrotate_localtime = off",
                         completed=True)
        s = peer.connect(srv.port, GOOD)
        s.sendall(peer.pcap_stream(30))
        s.close()
        srv.wait_log("(disconnect;")
        self.stop()
        files = srv.files(srv.completed)
        self.assertEqual([os.path.getsize(p) for p in files], [24 + 8 * 116] * 3 + [24 + 6 * 116])
        self.assertEqual([x for p in files for x in self.packets(p)], list(range(30)))

    def test_time_rotation_on_timer_for_quiet_client(self):
        srv = self.start([("c", GOOD, "yes")], "rotate_localtime = second mod 2",
                         completed=True)
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_stream(5))
        # the client stays connected and quiet: the timer closes the file
        srv.wait_log("(time period;", timeout=10)
        self.assertEqual(srv.files(), [])
        s.sendall(b"".join(peer.pcap_data(i) for i in range(5, 8)))
        s.close()
        srv.wait_log("(disconnect;")
        self.stop()
        files = srv.files(srv.completed)
        self.assertEqual([self.packets(p) for p in files], [[0, 1, 2, 3, 4], [5, 6, 7]])

    def test_signals_sigusr2_rotates_sighup_and_sigusr1_do_not(self):
        # doc/operations.md#signals: SIGHUP reopens the log (logrotate's postrotate
        # must not split traces), SIGUSR1 reports, SIGUSR2 starts new files.
        srv = self.start([("c", GOOD, "yes"), ("idle", BAD, "yes")])
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_stream(3))
        srv.wait_log("writing")
        srv.signal(signal.SIGUSR2)
        srv.wait_log("(SIGUSR2;")
        s.sendall(b"".join(peer.pcap_data(i) for i in range(3, 5)))
        srv.wait_log("writing", 2)
        srv.signal(signal.SIGHUP)
        srv.wait_log("SIGHUP: no log file to reopen")
        srv.signal(signal.SIGUSR1)
        srv.wait_log("status: client c: connected from")
        log = srv.wait_log("status: client idle: not connected, no open file, no packet yet")
        s.sendall(b"".join(peer.pcap_data(i) for i in range(5, 6)))
        s.close()
        srv.wait_log("(disconnect;")
        self.stop()
        self.assertEqual([self.packets(p) for p in srv.files()], [[0, 1, 2], [3, 4, 5]])
        self.assertIn("uptime ", log)
        self.assertEqual(srv.log().count("writing"), 2)


class FilesAndShutdown(ServerTest):
    def test_open_file_locked_flushed_within_a_second_then_moved(self):
        srv = self.start([("c", GOOD, "yes")], completed=True)
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_stream(3))
        srv.wait_log("writing")
        (path,) = srv.files()
        # buffered, but flushed by the timer well within a second or two
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < 24 + 3 * 116 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(os.path.getsize(path), 24 + 3 * 116)
        fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        with self.assertRaises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o440)
        s.close()
        srv.wait_log("(disconnect;")
        self.assertEqual(srv.files(), [])
        self.assertEqual(len(srv.files(srv.completed)), 1)
        self.stop()

    def test_sigterm_with_data_in_flight_loses_nothing(self):
        n = 4
        clients = [("c%d" % i, "127.0.2.%d" % (i + 1), "yes") for i in range(n)]
        srv = self.start(clients, completed=True)
        socks = []
        counts = []
        for i in range(n):
            s = peer.connect(srv.port, "127.0.2.%d" % (i + 1))
            self.addCleanup(s.close)
            socks.append(s)
        for i, s in enumerate(socks):
            count = 20000 + 1000 * i
            s.sendall(peer.pcap_stream(count, size=64))
            counts.append(count)
        # the connections stay open; data may still be in socket buffers
        srv.signal(signal.SIGTERM)
        self.assertEqual(srv.proc.wait(20), 0)
        self.assertEqual(srv.files(), [])
        for i in range(n):
            files = [p for p in srv.files(srv.completed) if "-c%d-" % i in p]
            got = [x for p in files for x in self.packets(p)]
            self.assertEqual(got, list(range(counts[i])))
        self.assertIn("stopped", srv.log())


class DiskFull(ServerTest):
    def test_disk_full_keeps_files_readable_and_resumes(self):
        support.require_root()
        small = self.path("small")
        os.makedirs(small)
        support.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", small])
        self.addCleanup(support.run, ["umount", "-l", small], 30, False)
        self.srv = peer.ServerProcess(self.tmp, [("c", GOOD, "yes")],
                                      "write_retry = 0.3s\nwrite_buffer = 16K", base=small)
        self.srv.start()
        self.addCleanup(self.srv.kill)
        self.addCleanup(self.check_log)
        srv = self.srv
        s = peer.connect(srv.port, GOOD)
        self.addCleanup(s.close)
        s.sendall(peer.pcap_hdr())
        seq = 0
        while "No space left" not in srv.log():
            s.sendall(b"".join(peer.pcap_data(i, 1000) for i in range(seq, seq + 100)))
            seq += 100
            time.sleep(0.01)
            self.assertLess(seq, 100000, "the disk never filled")
        # no crash, connection still up: keep sending while the disk stays full
        s.sendall(b"".join(peer.pcap_data(i, 1000) for i in range(seq, seq + 50)))
        seq += 50
        time.sleep(0.5)
        first = srv.files()
        self.assertGreaterEqual(len(first), 1)
        kept = {}
        for p in first:
            kept[os.path.basename(p)] = self.packets(p)
            os.unlink(p)  # space returns
        opened = srv.log().count("writing")
        s.sendall(b"".join(peer.pcap_data(i, 1000) for i in range(seq, seq + 20)))
        # after write_retry the next records open a new file
        deadline = time.monotonic() + 10
        while srv.log().count("writing") == opened and time.monotonic() < deadline:
            s.sendall(peer.pcap_data(seq + 20, 1000))
            seq += 1
            time.sleep(0.1)
        seq += 20
        st = self.srv.stats("c")
        s.close()
        srv.wait_log("(disconnect;")
        st = self.srv.stats("c")
        self.stop()
        later = [x for p in srv.files() for x in self.packets(p)]
        self.assertTrue(later, "no file after space returned")
        got = sorted(x for v in kept.values() for x in v) + later
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(len(got) + st["dropped"], seq)
        self.assertGreaterEqual(st["write_errors"], 1)
        self.assertEqual(later, sorted(later))
        self.assertEqual(later[-1], seq - 1)
        self.assertEqual(st["connect"], 1)


if __name__ == "__main__":
    unittest.main()
