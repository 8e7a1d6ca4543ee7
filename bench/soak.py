#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Soak benchmark: good clients stream while hostile load hits the server for N minutes.

Good clients (our client processes, half of them over TLS with a client
certificate, each with a spool) capture UDP datagrams on lo sent at a steady
rate with a sequence number in every payload, and forward them to one server
whose base_path is a small tmpfs. Meanwhile, in waves:

- hostile connections, plain and TLS, from the good clients' own addresses and
  from unknown ones: certificates of another CA, no certificate, handshakes and
  frames left half-way, garbage, LINK_DATA or STREAM first, slowloris peers
  that dribble a byte at a time, and floods of connect-and-close;
- SIGHUP (log reopened), SIGUSR1 (status report) and SIGUSR2 (every file closed,
  new ones started);
- the tmpfs filled up to the last byte, held full, freed again;
- server restarts, orderly (SIGTERM) and crashes (SIGKILL), in the first 60 %
  of the run only, so the last server process carries the closing figures over
  a long stretch.

Every interval (default 60 s) the hostile load pauses briefly and one line is
printed: the server's RSS and descriptors, its established connections, the
records stored (read back from the files with a reader of its own, not
osmo_pcap's) and the records expected (datagrams sent). At the end the senders
stop, the clients deliver what they hold, everything is read back, and the
verdict is PASS when every good client's records are stored exactly once and
the server's RSS grew by at most --rss-mb (5 MB) and its descriptors by at most
10 % since the first interval. The exit status is 0 for PASS, 1 otherwise.

Needs root (live capture on lo, a tmpfs in a private mount namespace) and
openssl (the test certificates). Usage:

    python3 bench/soak.py [--minutes 10] [--interval 60] [--clients 4] [--rate 100]
"""

import argparse
import errno
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MAGIC = b"SOAK"
PAYLOAD = struct.Struct("!4sHI")     # magic, client index, sequence number
PAD = b"." * 50
UDP_OFFSET = 14 + 20 + 8             # Ethernet, IPv4, UDP headers on lo
GOOD_NET = "127.0.0.%d"              # good client i has 127.0.0.(11 + i)
STRANGERS = ["127.0.2.%d" % i for i in range(1, 41)]
CALM = 2.0                           # hostile load pauses this long before a sample
RESTART_SHARE = 0.6                  # restarts only in this first share of the run


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ independent reading
def pcap_seqs(path):
    """Yield (client index, sequence number) of every complete record of a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        rec = struct.Struct("<IIII")
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        rec = struct.Struct(">IIII")
    else:
        raise ValueError("%s: not a pcap file" % path)
    pos = 24
    while pos + 16 <= len(data):
        caplen = rec.unpack_from(data, pos)[2]
        end = pos + 16 + caplen
        if end > len(data):
            break
        off = pos + 16 + UDP_OFFSET
        if caplen >= UDP_OFFSET + PAYLOAD.size and data[off:off + 4] == MAGIC:
            _, client, seq = PAYLOAD.unpack_from(data, off)
            yield client, seq
        pos = end


class Ledger(object):
    """What reached the files: one bit per (client, sequence number), duplicates counted."""

    def __init__(self, clients):
        self.bits = [bytearray() for _ in range(clients)]
        self.count = [0] * clients
        self.twice = [0] * clients

    def add(self, client, seq):
        bits = self.bits[client]
        byte, bit = divmod(seq, 8)
        if byte >= len(bits):
            bits.extend(bytes(byte + 4096 - len(bits)))
        if bits[byte] & (1 << bit):
            self.twice[client] += 1
        else:
            bits[byte] |= 1 << bit
            self.count[client] += 1

    def has(self, client, seq):
        byte, bit = divmod(seq, 8)
        bits = self.bits[client]
        return byte < len(bits) and bits[byte] & (1 << bit)

    def missing(self, client, expected):
        return [s for s in range(expected) if not self.has(client, s)]


# ------------------------------------------------------------------ processes
def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def established(port):
    """Return the number of established TCP connections whose local port is port."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server(object):
    """The server process, restarted at will; its log goes on in one file."""

    def __init__(self, py, ini, log_path, out_path):
        self.py, self.ini, self.log_path, self.out_path = py, ini, log_path, out_path
        self.proc = None
        self.starts = 0
        self.unexpected = []

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self):
        before = self.log_text().count("INFO listening on")
        out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([self.py, os.path.join(REPO, "osmo_pcap_server.py"),
                                      "-c", self.ini], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.starts += 1
        deadline = time.monotonic() + 30
        while self.log_text().count("INFO listening on") <= before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.out_path, "rb") as f:
                    out = f.read().decode("utf-8", "replace")
                raise RuntimeError("the server did not start:\n%s%s"
                                   % (self.log_text()[-3000:], out[-3000:]))
            time.sleep(0.05)

    def check(self):
        """Note a server that exited by itself."""
        if self.proc.poll() is not None:
            self.unexpected.append(self.proc.returncode)
            log("!! the server exited by itself (status %s); starting it again"
                % self.proc.returncode)
            self.start()

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            self.unexpected.append("no exit within 30 s of signal %d" % sig)
        if sig == signal.SIGTERM and rc != 0:
            self.unexpected.append(rc)
        return rc


# ------------------------------------------------------------------ hostile load
class Hostile(object):
    """Threads making hostile connections in bursts while `active` is set."""

    KINDS = ("tls-wrong-ca", "tls-no-cert", "half-open", "garbage", "slowloris", "flood")

    def __init__(self, port, pki, good_ips, intensity):
        self.port = port
        self.good_ips = good_ips
        self.intensity = intensity
        self.active = threading.Event()
        self.stop = threading.Event()
        self.busy = dict((k, False) for k in self.KINDS)
        self.counts = dict((k, 0) for k in self.KINDS)
        self.lock = threading.Lock()
        self.rng = random.Random(7)
        self.ctx = {}
        for name, cert in (("tls-wrong-ca", pki["other-client1"]), ("tls-no-cert", None)):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if cert:
                ctx.load_cert_chain(*cert)
            self.ctx[name] = ctx
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in self.KINDS]

    def start(self):
        for t in self.threads:
            t.start()

    def pause(self, timeout=30.0):
        """Stop new bursts; wait until every thread finished its current one."""
        self.active.clear()
        deadline = time.monotonic() + timeout
        while any(self.busy.values()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def source(self):
        return self.rng.choice(self.good_ips if self.rng.random() < 0.6 else STRANGERS)

    def connect(self, src=None, timeout=5.0):
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.bind((src or self.source(), 0))
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        return s

    def _count(self, kind, n=1):
        with self.lock:
            self.counts[kind] += n

    def _run(self, kind):
        burst = getattr(self, "_" + kind.replace("-", "_"))
        while not self.stop.is_set():
            if not self.active.wait(0.2):
                continue
            self.busy[kind] = True
            try:
                burst(kind)
            except Exception as e:     # a hostile helper's bug must not end the soak
                log("!! hostile %s: %r" % (kind, e))
            finally:
                self.busy[kind] = False
            self.stop.wait(self.rng.uniform(0.5, 2.0))

    def _n(self, base):
        return max(1, int(base * self.intensity))

    def _tls(self, kind):
        for _ in range(self._n(40)):
            if not self.active.is_set():
                return
            s = self.connect()
            if s is None:
                continue
            try:
                t = self.ctx[kind].wrap_socket(s)
                t.sendall(b"\x00\x00\x00\x18" + b"\x00" * 24)
                t.recv(100)
                t.close()
            except (OSError, ssl.SSLError):
                pass
            finally:
                s.close()
            self._count(kind)

    _tls_wrong_ca = _tls
    _tls_no_cert = _tls

    def _half_open(self, kind):
        socks = []
        starts = (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01", b"\x00\x00\x00\x18\xd4\xc3",
                  b"\x01\x00\x00\x50" + b"\x00" * 20)
        for i in range(self._n(120)):
            s = self.connect()
            if s is None:
                continue
            try:
                s.sendall(starts[i % len(starts)])
            except OSError:
                pass
            socks.append(s)
        self._count(kind, len(socks))
        self.stop.wait(3.0)
        for s in socks:
            s.close()

    def _garbage(self, kind):
        frames = (b"\x07\x00\x00\x04abcd", b"\x01\x00\x00\x10" + b"\x00" * 16,
                  b"\x03\x00\x00\x1c\x01" + b"\x00" * 27, b"GET / HTTP/1.0\r\n\r\n",
                  b"\x00\x00\x00\x05hello", bytes(bytearray(range(256))) * 4)
        for i in range(self._n(150)):
            if not self.active.is_set():
                return
            s = self.connect()
            if s is None:
                continue
            try:
                s.sendall(frames[i % len(frames)])
                s.settimeout(2.0)
                while s.recv(4096):
                    pass
            except OSError:
                pass
            finally:
                s.close()
            self._count(kind)

    def _slowloris(self, kind):
        # A LINK_HDR frame dribbled a byte at a time: header_timeout ends each
        # connection long before the frame could be complete.
        frame = b"\x00\x00\x00\x18\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\x00" * 8
        socks = [s for s in (self.connect() for _ in range(self._n(60))) if s is not None]
        self._count(kind, len(socks))
        for b in frame[:6]:
            if not self.active.is_set():
                break
            for s in socks:
                try:
                    s.send(bytes([b]))
                except OSError:
                    pass
            self.stop.wait(1.0)
        for s in socks:
            s.close()

    def _flood(self, kind):
        n = 0
        src = self.source()
        for _ in range(self._n(500)):
            if not self.active.is_set():
                break
            s = self.connect(src)
            if s is not None:
                s.close()
                n += 1
        self._count(kind, n)


# ------------------------------------------------------------------ events
class Events(object):
    """Signals, a full disk and restarts, one every `every` seconds while active."""

    CYCLE = ("hup", "disk", "restart-kill", "usr2", "disk", "usr1", "restart-term", "usr2")

    def __init__(self, server, fill_dir, every, restart_until, hold):
        self.server = server
        self.fill_dir = fill_dir
        self.every = every
        self.restart_until = restart_until
        self.hold = hold
        self.active = threading.Event()
        self.stop = threading.Event()
        self.busy = False
        self.counts = dict((k, 0) for k in set(self.CYCLE))
        self.next = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.lock = threading.Lock()   # the server is not restarted while sampled

    def start(self):
        self.thread.start()

    def pause(self, timeout=60.0):
        self.active.clear()
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self):
        while not self.stop.wait(self.every):
            if not self.active.is_set():
                continue
            what = self.CYCLE[self.next % len(self.CYCLE)]
            self.next += 1
            if what.startswith("restart") and time.monotonic() > self.restart_until:
                what = "hup"
            self.busy = True
            try:
                with self.lock:
                    getattr(self, "_" + what.replace("-", "_"))()
                self.counts[what] += 1
            except Exception as e:
                log("!! event %s: %r" % (what, e))
            finally:
                self.busy = False

    def _hup(self):
        self.server.proc.send_signal(signal.SIGHUP)

    def _usr1(self):
        self.server.proc.send_signal(signal.SIGUSR1)

    def _usr2(self):
        self.server.proc.send_signal(signal.SIGUSR2)

    def _disk(self):
        path = os.path.join(self.fill_dir, "fill")
        chunk = b"\xff" * (1 << 20)
        with open(path, "wb", buffering=0) as f:
            while True:
                try:
                    f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
            while True:           # to the last byte
                try:
                    f.write(b"\xff" * 4096)
                except OSError:
                    break
        self.stop.wait(self.hold)
        os.unlink(path)

    def _restart_term(self):
        self.server.stop(signal.SIGTERM)
        self.server.start()

    def _restart_kill(self):
        self.server.stop(signal.SIGKILL)
        self.server.start()


# ------------------------------------------------------------------ good clients
class Senders(object):
    """UDP datagrams to each good client's port at a steady rate (sequence numbers)."""

    def __init__(self, ports, rate):
        self.ports = ports
        self.rate = rate
        self.sent = [0] * len(ports)
        self.stop = threading.Event()
        self.sinks = []
        for p in ports:      # bound, so the kernel sends no ICMP port unreachable
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", p))
            self.sinks.append(s)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            for i, port in enumerate(self.ports):
                while self.sent[i] < due:
                    out.sendto(PAYLOAD.pack(MAGIC, i, self.sent[i]) + PAD, ("127.0.0.1", port))
                    self.sent[i] += 1
            self.stop.wait(0.01)
        out.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.sinks:
            s.close()


# ------------------------------------------------------------------ the soak
class Soak(object):

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.py = args.python
        self.port = free_port()
        self.base = os.path.join(work, "base")       # the tmpfs
        self.done = os.path.join(self.base, "done")
        self.archive = os.path.join(work, "archive")
        self.ledger = Ledger(args.clients)
        self.archived = 0
        self.clients = []
        self.samples = []

    def setup(self):
        from tests import pki as pkimod
        for d in (self.base, self.archive):
            os.makedirs(d)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.args.tmpfs_mb,
                               "soak", self.base])
        os.makedirs(self.done)
        self.pki = pkimod.make_pki(os.path.join(self.work, "pki"))
        pki = self.pki
        good = [GOOD_NET % (11 + i) for i in range(self.args.clients)]
        self.good_ips = good
        lines = ["[server]", "listen = 127.0.0.1", "port = %d" % self.port,
                 "base_path = %s" % self.base, "completed_path = %s" % self.done,
                 "max_file_size = 256K", "rotate_localtime = minute", "flush_interval = 0.2s",
                 "write_retry = 1s", "header_timeout = 5s", "stats_interval = off",
                 "tls_cert = %s" % pki["server"][0], "tls_key = %s" % pki["server"][1],
                 "tls_client_auth = required", "tls_ca = %s" % pki["ca"],
                 "tls_handshake_timeout = 5s", "", "[log]",
                 "file = %s" % os.path.join(self.work, "server.log"), "target = file", ""]
        for i, ip in enumerate(good):
            lines += ["[client good%d]" % i, "ip = %s" % ip,
                      "tls = %s" % ("required" if i % 2 else "no")]
            if i % 2:
                lines.append("tls_identity = client1")
            lines.append("")
        ini = os.path.join(self.work, "server.ini")
        with open(ini, "w") as f:
            f.write("\n".join(lines))
        self.server = Server(self.py, ini, os.path.join(self.work, "server.log"),
                             os.path.join(self.work, "server.out"))
        self.server.start()
        self.udp_ports = [free_port() for _ in good]
        for i, ip in enumerate(good):
            text = ["[client]", "devices = lo", "filter = udp dst port %d" % self.udp_ports[i],
                    "snaplen = 256", "stats_interval = 0", "",
                    "[server main]", "host = 127.0.0.1", "port = %d" % self.port,
                    "source_ip = %s" % ip,
                    "spool_dir = %s" % os.path.join(self.work, "spool%d" % i),
                    "reconnect_min = 0.2s", "reconnect_max = 2s"]
            if i % 2:
                text += ["tls = yes", "tls_ca = %s" % pki["ca"],
                         "tls_cert = %s" % pki["client1"][0], "tls_key = %s" % pki["client1"][1]]
            text += ["", "[log]", "target = file",
                     "file = %s" % os.path.join(self.work, "client%d.log" % i)]
            path = os.path.join(self.work, "client%d.ini" % i)
            with open(path, "w") as f:
                f.write("\n".join(text) + "\n")
            self.clients.append(subprocess.Popen(
                [self.py, os.path.join(REPO, "osmo_pcap_client.py"), "-c", path],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "client%d.err"
                                                                     % i), "wb")))
        deadline = time.monotonic() + 30
        while established(self.port) < len(good):
            if time.monotonic() > deadline:
                raise RuntimeError("the good clients did not connect; see %s" % self.work)
            time.sleep(0.1)
        self.senders = Senders(self.udp_ports, self.args.rate)

    # -------------------------------------------------------------- reading back
    def collect(self, final=False):
        """Archive closed files into the ledger; return records in files still open."""
        for name in sorted(os.listdir(self.done)):
            if not name.startswith("trace-"):
                continue
            path = os.path.join(self.done, name)
            for client, seq in pcap_seqs(path):
                self.ledger.add(client, seq)
            self.archived += 1
            shutil.move(path, os.path.join(self.archive, "%06d-%s" % (self.archived, name)))
        pending = set()
        for name in os.listdir(self.base):
            if name.startswith("trace-"):
                path = os.path.join(self.base, name)
                if final:
                    raise RuntimeError("%s was left in base_path" % path)
                for client, seq in pcap_seqs(path):
                    if not self.ledger.has(client, seq):
                        pending.add((client, seq))
        return len(pending)

    def stored(self):
        pending = self.collect()       # first: it moves closed files into the ledger
        return sum(self.ledger.count) + pending

    # -------------------------------------------------------------- running
    def sample(self, elapsed):
        srv = self.server
        pid = srv.proc.pid
        rss = proc_rss_kb(pid) / 1024.0
        fds = proc_fds(pid)
        conns = established(self.port)
        stored = self.stored()
        expected = sum(self.senders.sent)
        self.samples.append((rss, fds))
        log("[%3d:%02d] rss %6.1f MB  fds %4d  connections %4d  stored %9d  expected %9d"
            "  (server pid %d)" % (elapsed // 60, elapsed % 60, rss, fds, conns, stored,
                                   expected, pid))

    def run(self):
        a = self.args
        duration = a.minutes * 60.0
        hostile = Hostile(self.port, self.pki, self.good_ips, a.intensity)
        t0 = time.monotonic()
        events = Events(self.server, self.base, a.events_every, t0 + duration * RESTART_SHARE,
                        a.full_for)
        log("soak: %g min, %d good clients (%d over TLS) at %d packets/s each, server %s "
            "on port %d, base_path a %d MB tmpfs, work dir %s" % (
                a.minutes, a.clients, a.clients // 2, a.rate, self.py, self.port, a.tmpfs_mb,
                self.work))
        self.senders.start()
        hostile.start()
        events.start()
        hostile.active.set()
        events.active.set()
        n = max(1, int(round(duration / a.interval)))
        for k in range(1, n + 1):
            end = t0 + k * a.interval
            while time.monotonic() < end - CALM:
                time.sleep(min(0.5, max(0.0, end - CALM - time.monotonic())))
                if events.lock.acquire(False):   # not while a restart is under way
                    try:
                        self.check_processes()
                    finally:
                        events.lock.release()
            hostile.pause()
            events.pause()
            with events.lock:
                self.check_processes()
                self.wait_good_connected(15.0)
                time.sleep(max(0.0, end - time.monotonic()))
                self.sample(int(time.monotonic() - t0))
            if k < n:
                hostile.active.set()
                events.active.set()
        hostile.stop.set()
        events.stop.set()
        self.hostile_counts = hostile.counts
        self.event_counts = events.counts
        return self.finish()

    def wait_good_connected(self, timeout):
        deadline = time.monotonic() + timeout
        while established(self.port) < len(self.clients) and time.monotonic() < deadline:
            time.sleep(0.1)

    def check_processes(self):
        self.server.check()
        for i, c in enumerate(self.clients):
            if c.poll() is not None:
                raise RuntimeError("good client %d exited (status %s); see %s"
                                   % (i, c.returncode, self.work))

    def finish(self):
        self.senders.close()
        expected = list(self.senders.sent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.collect()
            if self.stored() >= sum(expected):
                break
            time.sleep(0.5)
        for c in self.clients:
            c.send_signal(signal.SIGTERM)
        for c in self.clients:
            c.wait(60)
        self.server.stop(signal.SIGTERM)
        self.collect(final=True)
        return self.verdict(expected)

    def verdict(self, expected):
        a = self.args
        led = self.ledger
        lost = [expected[i] - led.count[i] for i in range(a.clients)]
        twice = list(led.twice)
        extra = [sum(1 for s in range(expected[i], expected[i] + 1000) if led.has(i, s))
                 for i in range(a.clients)]
        rss0, fds0 = self.samples[0]
        rss1, fds1 = self.samples[-1]
        fd_limit = max(1, int(fds0 * 0.10))
        ok_data = not any(lost) and not any(twice) and not any(extra)
        ok_rss = rss1 - rss0 <= a.rss_mb
        ok_fds = fds1 - fds0 <= fd_limit
        ok_server = not self.server.unexpected
        ok = ok_data and ok_rss and ok_fds and ok_server
        log("good clients: %d records expected, %d stored once, %d lost, %d stored twice"
            % (sum(expected), sum(led.count), sum(lost), sum(twice)))
        for i in range(a.clients):
            if lost[i] or twice[i] or extra[i]:
                miss = led.missing(i, expected[i])
                log("  client %d: %d lost (first %s), %d twice, %d unexpected"
                    % (i, lost[i], miss[:10], twice[i], extra[i]))
        log("rss: %.1f MB after the first interval, %.1f MB at the end (%+.1f MB, limit "
            "+%g MB)" % (rss0, rss1, rss1 - rss0, a.rss_mb))
        log("fds: %d after the first interval, %d at the end (%+d, limit +%d)"
            % (fds0, fds1, fds1 - fds0, fd_limit))
        log("hostile connections: %s" % ", ".join(
            "%s %d" % (k, v) for k, v in sorted(self.hostile_counts.items())))
        log("events: %s; server starts %d; exits not asked for: %s" % (
            ", ".join("%s %d" % (k, v) for k, v in sorted(self.event_counts.items())),
            self.server.starts, self.server.unexpected or "none"))
        log("verdict: %s" % ("PASS" if ok else "FAIL (%s)" % ", ".join(
            w for w, bad in (("data", not ok_data), ("rss", not ok_rss), ("fds", not ok_fds),
                             ("server", not ok_server)) if bad)))
        return 0 if ok else 1

    def teardown(self):
        for c in self.clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        srv = getattr(self, "server", None)
        if srv is not None and srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        subprocess.call(["umount", self.base], stderr=subprocess.DEVNULL)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (10)")
    ap.add_argument("--interval", type=float, default=60.0,
                    help="seconds between figure lines; the first is the baseline (60)")
    ap.add_argument("--clients", type=int, default=4, help="good clients, half over TLS (4)")
    ap.add_argument("--rate", type=int, default=100, help="packets/s per good client (100)")
    ap.add_argument("--events-every", type=float, default=20.0,
                    help="seconds between signals, disk-full phases and restarts (20)")
    ap.add_argument("--full-for", type=float, default=4.0,
                    help="seconds the tmpfs stays full (4)")
    ap.add_argument("--tmpfs-mb", type=int, default=24, help="size of base_path (24)")
    ap.add_argument("--intensity", type=float, default=1.0,
                    help="scale of the hostile bursts (1.0)")
    ap.add_argument("--rss-mb", type=float, default=5.0,
                    help="allowed RSS growth after the first interval (5)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for server and clients (this one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/soak.py: needs root (live capture on lo, a tmpfs); not run")
        return 2
    if not shutil.which("openssl"):
        print("bench/soak.py: needs openssl (test certificates); not run")
        return 2
    if os.environ.get("OSMO_PCAP_SOAK_NS") != "1":
        # A private mount namespace: the tmpfs goes away with the run, whatever happens.
        env = dict(os.environ, OSMO_PCAP_SOAK_NS="1")
        return subprocess.call(["unshare", "--mount", "--propagation", "private",
                                sys.executable, os.path.abspath(__file__)]
                               + list(sys.argv[1:] if argv is None else argv), env=env)
    work = tempfile.mkdtemp(prefix="osmo-pcap-soak-")
    soak = Soak(args, work)
    status = 1
    try:
        soak.setup()
        status = soak.run()
    except RuntimeError as e:
        log("soak: %s" % e)
        log("verdict: FAIL (setup or process)")
    finally:
        soak.teardown()
        if args.keep or status:
            log("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, True)
    return status


if __name__ == "__main__":
    sys.exit(main())
