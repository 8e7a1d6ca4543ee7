# SPDX-License-Identifier: AGPL-3.0-or-later
"""The client end to end on `lo`: real client and server processes, files read
back with tshark. Also holds the process harness the namespace tests reuse."""

import glob
import os
import re
import signal
import socket
import struct
import subprocess
import time
import unittest

from tests import support
from tests import netns
from osmo_pcap import pcapfile, pcapng, tracename

WAIT = 20.0          # generous upper bound for waits; never an assertion on speed
MARK = b"OPC-TEST"


def payload(seq, size=60):
    """The UDP payload of test packet seq: marker, number, padding."""
    head = MARK + b"%08d" % seq
    return head + bytes((seq + i) & 0xFF for i in range(max(0, size - len(head))))


def seq_of(data):
    """Return the sequence number inside a captured frame, or None."""
    i = bytes(data).find(MARK)
    if i < 0:
        return None
    return int(bytes(data)[i + len(MARK):i + len(MARK) + 8])


class Proc(object):
    """A started program with its log file."""

    def __init__(self, argv, logpath, cwd):
        self.logpath = logpath
        self.log = open(logpath, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=WAIT):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


class Harness(support.TempDirTestCase):
    """Start servers and clients, send UDP, read what the servers stored."""

    def setUp(self):
        support.require_root()
        support.require_tool("tshark")
        support.TempDirTestCase.setUp(self)
        self.n = 0

    def _proc(self, program, ini_text, ns=None, extra=()):
        self.n += 1
        ini = self.path("%s-%d.ini" % (program, self.n))
        with open(ini, "w") as f:
            f.write(ini_text)
        argv = netns.exec_cmd(ns, support.script_cmd(program, "-c", ini, *extra))
        proc = Proc(argv, self.path("%s-%d.log" % (program, self.n)), self.tmp)
        self.addCleanup(proc.stop, signal.SIGKILL)
        return proc

    def start_server(self, port, client_ip="127.0.0.1", listen="127.0.0.1", ns=None,
                     base=None):
        base = base or self.path("srv-%d" % port)
        os.makedirs(base, exist_ok=True)
        proc = self._proc("server", "[server]\nlisten = %s\nport = %d\nbase_path = %s\n"
                          "flush_interval = 0.1s\n[client me]\nip = %s\n"
                          % (listen, port, base, client_ip), ns)
        proc.base = base
        proc.port = port
        self.wait_log(proc, "listening on")
        return proc

    def start_client(self, ini_text, ns=None, wait="connected"):
        proc = self._proc("client", ini_text, ns)
        if wait:
            self.wait_log(proc, wait)
        return proc

    def wait_until(self, check, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def wait_queue_empty(self, proc, server):
        """Ask for the status (SIGUSR1) until the client reports server's queue empty."""
        def empty():
            proc.p.send_signal(signal.SIGUSR1)
            time.sleep(0.1)
            lines = [l for l in proc.text().splitlines() if "stats: server %s " % server in l]
            return bool(lines) and " queued 0 bytes" in lines[-1]
        self.wait_until(empty, "an empty queue for %s" % server)

    def wait_log(self, proc, text, count=1):
        def seen():
            if proc.p.poll() is not None and text not in proc.text():
                self.fail("process exited (%s) before logging %r:\n%s"
                          % (proc.p.returncode, text, proc.text()[-3000:]))
            return proc.text().count(text) >= count
        self.wait_until(seen, "%r in %s:\n" % (text, proc.logpath))

    # ------------------------------------------------------------ traffic
    def sink(self, port, host="127.0.0.1"):
        """Bind the target port so no ICMP port-unreachable is generated."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, port))
        self.addCleanup(s.close)
        return s

    def send_udp(self, port, seqs, host="127.0.0.1", size=60):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in seqs:
                s.sendto(payload(i, size), (host, port))
        finally:
            s.close()

    # ------------------------------------------------------------ reading back
    def trace_files(self, base):
        names = [os.path.basename(p) for p in glob.glob(os.path.join(base, "trace-*"))]
        return [os.path.join(base, n) for n in
                sorted(names, key=lambda n: tracename.parse_name(n).sort_key())]

    def quick_seqs(self, base):
        """Sequence numbers stored so far, with our own readers (for waiting)."""
        out = []
        for path in self.trace_files(base):
            with open(path, "rb") as f:
                data = f.read()
            try:
                if pcapng.shb_byteorder(data) is not None:
                    recs = list(_complete_pcapng(data))
                else:
                    hdr = pcapfile.parse_global_header(data)
                    end = pcapfile.complete_prefix(data, hdr.byteorder)
                    recs = list(pcapfile.iter_records(data[:end], hdr))
            except Exception:
                continue
            out.extend(s for s in (seq_of(r.data) for r in recs) if s is not None)
        return out

    def wait_seqs(self, base, expected, exact=True):
        want = set(expected)
        self.wait_until(lambda: want <= set(self.quick_seqs(base)),
                        "%d packets in %s" % (len(want), base))

    def tshark_rows(self, base, fields=("frame.time_epoch", "frame.len", "udp.payload")):
        rows = []
        for path in self.trace_files(base):
            rows.extend(support.tshark_packets(path, fields))
        return rows

    def tshark_seqs(self, base):
        out = []
        for row in self.tshark_rows(base, ("udp.payload",)):
            if row and row[0]:
                s = seq_of(bytes.fromhex(row[0].replace(":", "")))
                if s is not None:
                    out.append(s)
        return out


def _complete_pcapng(data):
    """Yield the records of a pcapng image that may end with a partial block."""
    pos = 0
    for bo, btype, off, total in _safe_blocks(data):
        pos = off + total
    for rec in pcapng.iter_packets(data[:pos]):
        yield rec


def _safe_blocks(data):
    try:
        for b in pcapng.iter_blocks(data):
            yield b
    except Exception:
        return


def client_ini(devices="lo", filt="", servers=(), extra=""):
    text = "[client]\ndevices = %s\nfilter = %s\ncapture_timeout = 20ms\nstats_interval = 0\n%s" % (
        devices, filt, extra)
    for name, port, more in servers:
        text += ("\n[server %s]\nhost = 127.0.0.1\nport = %d\nreconnect_min = 0.2s\n"
                 "reconnect_max = 0.5s\n%s" % (name, port, more))
    return text


def stat_value(text, name):
    """Return the last 'dropped N' figure the client logged for server name."""
    val = None
    for line in text.splitlines():
        if "stats: server %s " % name in line:
            val = int(line.rsplit("dropped", 1)[1].split()[0])
    return val


class LoopbackTest(Harness):
    def test_two_servers_receive_exactly_the_packets(self):
        p1, p2, udp = support.free_port(), support.free_port(), support.free_port()
        s1 = self.start_server(p1)
        s2 = self.start_server(p2)
        self.sink(udp)
        c = self.start_client(client_ini(filt="udp port %d" % udp,
                                         servers=(("one", p1, ""), ("two", p2, ""))))
        self.wait_log(c, "connected", 2)
        t0 = time.time()
        sizes = {}
        for i in range(100):
            sizes[i] = 20 + (i * 37) % 900
            self.send_udp(udp, [i], size=sizes[i])
        t1 = time.time()
        for s in (s1, s2):
            self.wait_seqs(s.base, range(100))
        self.assertEqual(c.stop(), 0)
        for s in (s1, s2):
            rows = self.tshark_rows(s.base)
            self.assertEqual(len(rows), 100)
            for i, (ts, flen, pl) in enumerate(rows):
                data = bytes.fromhex(pl.replace(":", ""))
                self.assertEqual(data, payload(i, sizes[i]))
                self.assertEqual(int(flen), 14 + 20 + 8 + sizes[i])
                self.assertTrue(t0 - 1 <= float(ts) <= t1 + 1, ts)
        self.assertIn("captured 100 pkts", c.text())
        # PACKET_IGNORE_OUTGOING on lo: each packet enters the ring once, not twice.
        # The kernel counts whatever reached the socket before pcap_setfilter()
        # attached the filter too: another process's loopback traffic in those few
        # milliseconds adds to the figure (seen: 102, 164). Twice is 200.
        recv = [int(m) for m in re.findall(r"pcap recv (\d+) ", c.text())]
        self.assertTrue(recv and 100 <= recv[-1] < 200, c.text())

    def test_ipv6_server(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        port, udp = support.free_port(socket.AF_INET6, "::1"), support.free_port()
        self.sink(udp)
        srv = self.start_server(port, client_ip="::1", listen="::1")
        c = self.start_client(client_ini(filt="udp port %d" % udp, servers=(
            ("v6", port, ""),)).replace("host = 127.0.0.1", "host = ::1"))
        self.send_udp(udp, range(10))
        self.wait_seqs(srv.base, range(10))
        self.assertEqual(c.stop(), 0)
        self.assertEqual(self.tshark_seqs(srv.base), list(range(10)))

    def test_invalid_filter_stops_startup(self):
        c = self.start_client(client_ini(filt="udp port twelve", servers=(("s", 9, ""),)),
                              wait=None)
        c.p.wait(WAIT)
        self.assertEqual(c.stop(), 1)
        self.assertIn("udp port twelve", c.text())
        self.assertIn("filter", c.text())
        self.assertNotIn("Traceback", c.text())

    def test_mixed_link_types_need_pcapng(self):
        # lo is Ethernet, "any" is Linux cooked: one pcap header cannot carry both
        c = self.start_client(client_ini(devices="lo any", servers=(("s", 9, ""),)),
                              wait=None)
        c.p.wait(WAIT)
        self.assertEqual(c.stop(), 1)
        self.assertIn("file_format = pcapng", c.text())
        self.assertNotIn("Traceback", c.text())

    def test_privileges_dropped_and_sigusr1(self):
        import pwd
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        port = support.free_port()
        self.start_server(port)
        c = self.start_client(client_ini(filt="udp port 9", servers=(("main", port, ""),),
                                         extra="user = nobody\n"))
        with open("/proc/%d/status" % c.p.pid) as f:
            status = dict(l.split(":", 1) for l in f if ":" in l)
        self.assertEqual(int(status["Uid"].split()[0]), nobody.pw_uid)
        self.assertEqual(int(status["Gid"].split()[0]), nobody.pw_gid)
        self.assertNotIn("stats:", c.text())
        c.p.send_signal(signal.SIGUSR1)
        self.wait_log(c, "stats: server main up")
        self.wait_log(c, "status: device lo: capturing")
        # the server's rotation signal changes nothing here; SIGHUP neither
        c.p.send_signal(signal.SIGUSR2)
        self.wait_log(c, "SIGUSR2: the client writes no trace files; nothing to rotate")
        c.p.send_signal(signal.SIGHUP)
        self.wait_log(c, "SIGHUP: no log file to reopen")
        self.assertEqual(c.stop(), 0)

    def test_detect_loop(self):
        port = support.free_port()
        udp = support.free_port()
        self.sink(udp)
        srv = self.start_server(port)
        # no filter at all: everything on lo, including our stream to the server
        c = self.start_client(client_ini(servers=(("main", port, ""),)))
        self.send_udp(udp, range(20))
        self.wait_seqs(srv.base, range(20))
        time.sleep(0.3)
        c.stop()
        ports = [r[0] for r in self.tshark_rows(srv.base, ("tcp.port",)) if r and r[0]]
        self.assertFalse([p for p in ports if str(port) in p.split(",")], ports[:5])
        # without it the client captures its own stream: the loop detect_loop prevents
        srv2 = self.start_server(support.free_port())
        c2 = self.start_client(client_ini(servers=(("main", srv2.port, ""),),
                                          extra="detect_loop = no\n"))
        self.send_udp(udp, range(100, 120))
        self.wait_seqs(srv2.base, range(100, 120))
        self.wait_until(lambda: any(
            r and r[0] for r in self.tshark_rows(srv2.base, ("tcp.port",))), "looped frames")
        c2.stop()

    def test_server_down_at_start_then_restart_overflows_counted(self):
        port, udp = support.free_port(), support.free_port()
        self.sink(udp)
        c = self.start_client(client_ini(filt="udp port %d" % udp, servers=(
            ("main", port, "queue_size = 64K\n"),)), wait="capturing")
        self.wait_log(c, "connect failed")
        # when the next attempt comes is part of the message
        self.assertRegex(c.text(), r"connect failed: Connection refused; next attempt in "
                                   r"\d+\.\ds")
        self.send_udp(udp, range(0, 50))          # queued in memory while the server is away
        srv = self.start_server(port)
        self.wait_log(c, "connected")
        self.wait_seqs(srv.base, range(0, 50))
        srv.stop()
        self.wait_log(c, "connection lost")
        self.send_udp(udp, range(1000, 2500))     # ~140 KB of frames: the queue holds 64K
        time.sleep(0.3)
        srv = self.start_server(port, base=srv.base)
        self.wait_log(c, "connected", 2)
        # Acknowledged delivery keeps the queue until the server confirms it: wait
        # until it is empty before the last packets come.
        self.wait_queue_empty(c, "main")
        self.send_udp(udp, range(5000, 5050))
        self.wait_seqs(srv.base, range(5000, 5050))
        self.assertEqual(c.stop(), 0)
        got = self.tshark_seqs(srv.base)
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(set(range(50)) <= set(got))
        self.assertTrue(set(range(5000, 5050)) <= set(got))
        middle = [s for s in got if 1000 <= s < 2500]
        dropped = stat_value(c.text(), "main")
        self.assertGreater(dropped, 0)
        self.assertEqual(len(middle) + dropped, 1500, (len(middle), dropped))
        self.assertEqual(middle, list(range(1000, 1000 + len(middle))))  # the newest dropped
        self.assertIn("packets given up: ", c.text())
        self.assertLessEqual(c.text().count("packets given up"), 3)  # not one per packet

    def test_spool_restart_loses_nothing(self):
        port, udp = support.free_port(), support.free_port()
        self.sink(udp)
        spool = self.path("spool")
        ini = client_ini(filt="udp port %d" % udp, servers=(
            ("main", port, "queue_size = 64K\nspool_dir = %s\n" % spool),))
        srv = self.start_server(port)
        c = self.start_client(ini)
        self.send_udp(udp, range(0, 100))
        self.wait_seqs(srv.base, range(0, 100))
        srv.stop()
        self.wait_log(c, "connection lost")
        self.send_udp(udp, range(1000, 3000))     # far more than queue_size: spooled
        time.sleep(0.3)
        srv = self.start_server(port, base=srv.base)
        self.wait_seqs(srv.base, range(1000, 3000))
        # server away again, then the client stops: the spool survives it
        srv.stop()
        self.wait_log(c, "connection lost", 2)
        self.send_udp(udp, range(5000, 5500))
        time.sleep(0.3)
        self.assertEqual(c.stop(), 0)
        self.assertTrue(os.listdir(os.path.join(spool, "main")))
        srv = self.start_server(port, base=srv.base)
        c2 = self.start_client(ini)
        self.wait_seqs(srv.base, range(5000, 5500))
        c2.stop()
        got = self.tshark_seqs(srv.base)
        expect = list(range(100)) + list(range(1000, 3000)) + list(range(5000, 5500))
        self.assertEqual(got, expect)
        self.assertEqual(stat_value(c.text(), "main"), 0)

    def test_read_file_replay(self):
        port = support.free_port()
        srv = self.start_server(port)
        src = self.path("in.pcap")
        recs = []
        with open(src, "wb") as f:
            f.write(pcapfile.encode_global_header(65535, 1))
            for i in range(300):
                ip = _udp_frame(payload(i, 10 + i * 3))
                recs.append((1600000000 + i, (i * 7919) % 1000000, ip))
                f.write(pcapfile.encode_record(recs[-1][0], recs[-1][1], ip))
        c = self.start_client("[client]\nread_file = %s\nstats_interval = 0\n"
                              "[server main]\nhost = 127.0.0.1\nport = %d\n" % (src, port),
                              wait=None)
        try:
            c.p.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.fail("the client did not exit at the end of read_file:\n" + c.text())
        self.assertEqual(c.stop(), 0, c.text())
        self.assertIn("300 packet(s) replayed", c.text())
        rows = self.tshark_rows(srv.base, ("frame.time_epoch", "udp.payload"))
        self.assertEqual(len(rows), 300)
        for (ts, pl), (sec, usec, frame) in zip(rows, recs):
            self.assertEqual(ts, "%d.%06d000" % (sec, usec))
            self.assertEqual(bytes.fromhex(pl.replace(":", "")), frame[42:])


class UpstreamCompatibilityTest(Harness):
    def _raw_receiver(self):
        import threading
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        self.addCleanup(ls.close)
        got = bytearray()

        def run():
            conn, _ = ls.accept()
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                got.extend(b)
            conn.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return ls.getsockname()[1], got, t

    def test_pcap_stream_equals_the_c_client_stream(self):
        # Replaying the C 0.8 server's file must produce the C client's exact bytes.
        src = self.path("in.pcap")
        with open(src, "wb") as f:
            f.write(support.data_file("c-0.8-pcap-server-file.pcap"))
        port, got, t = self._raw_receiver()
        c = self.start_client("[client]\nread_file = %s\ndetect_loop = no\nstats_interval = 0\n"
                              "[server main]\nhost = 127.0.0.1\nport = %d\n" % (src, port),
                              wait=None)
        c.p.wait(WAIT)
        self.assertEqual(c.stop(), 0, c.text())
        t.join(WAIT)
        self.assertEqual(bytes(got), support.data_file("c-0.8-pcap-client-stream.bin"))

    def test_pcapng_records_equal_the_c_client(self):
        from osmo_pcap import wire
        src = self.path("in.pcapng")
        with open(src, "wb") as f:
            f.write(support.data_file("c-0.8-pcapng-nofilter-server-file.pcapng"))
        port, got, t = self._raw_receiver()
        c = self.start_client("[client]\nread_file = %s\nfile_format = pcapng\n"
                              "stats_interval = 0\n[server main]\nhost = 127.0.0.1\nport = %d\n"
                              % (src, port), wait=None)
        c.p.wait(WAIT)
        self.assertEqual(c.stop(), 0, c.text())
        t.join(WAIT)
        ours = [bytes(p) for ty, p in wire.Decoder().feed(bytes(got)) if ty == wire.LINK_DATA]
        theirs = [bytes(p) for ty, p in wire.Decoder().feed(
            support.data_file("c-0.8-pcapng-nofilter-client-stream.bin")) if ty == wire.LINK_DATA]
        self.assertEqual(len(theirs), 2)
        self.assertEqual(ours, theirs)

    def test_pcapng_link_hdr_equals_the_c_client(self):
        from osmo_pcap import wire
        from osmo_pcap.client import main as client
        from osmo_pcap.client import config as clientconfig
        cfg = clientconfig.ClientConfig()
        cfg.devices = ["lo", "p8veth0"]
        cfg.filter = "udp port 9998"
        cfg.detect_loop = False
        cfg.file_format = "pcapng"
        cl = client.Client(cfg)
        self.addCleanup(cl.loop.close)
        hdr = cl._encode_header(9000, [("lo", 1), ("p8veth0", 1)])
        stream = support.data_file("c-0.8-pcapng-client-stream.bin")
        first = wire.Decoder().feed(stream)[0]
        self.assertEqual((first[0], bytes(first[1])), (wire.LINK_HDR, hdr))


def _udp_frame(data, src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=2000):
    """Return an Ethernet/IPv4/UDP frame carrying data (checksums left 0)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(data), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp + data


class MetricsTest(support.TempDirTestCase):
    def test_metric_samples(self):
        from osmo_pcap.client import main as client
        from osmo_pcap.client import config as clientconfig
        path = self.path("c.ini")
        with open(path, "w") as f:
            f.write("[client]\ndevices = lo eth9\n[server a]\nhost = 127.0.0.1\nport = 9\n"
                    "spool_dir = sp\n[server b]\nhost = 127.0.0.2\nport = 10\n")
        cfg = clientconfig.load(path)
        c = client.Client(cfg)
        self.addCleanup(c.loop.close)
        c.create_connections()
        c.sources = []
        c.counters["captured:pkts"] = 7
        c.forwarders[1].counters["lost:queue_full"] = 3
        samples = c.metric_samples()
        for name, kind, text, labels, value in samples:
            self.assertTrue(name.startswith("osmo_pcap_client_"), name)
            self.assertIn(kind, ("counter", "gauge"))
            self.assertTrue(text)
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)
        by = dict(((n, tuple(sorted(l.items()))), v) for n, _, _, l, v in samples)
        self.assertEqual(by[("osmo_pcap_client_captured_packets_total", ())], 7)
        self.assertEqual(by[("osmo_pcap_client_server_lost_packets_total",
                             (("reason", "queue_full"), ("server", "b")))], 3)
        self.assertEqual(by[("osmo_pcap_client_server_spool_bytes", (("server", "a"),))], 0)
        self.assertNotIn(("osmo_pcap_client_server_spool_bytes", (("server", "b"),)), by)


if __name__ == "__main__":
    unittest.main()
