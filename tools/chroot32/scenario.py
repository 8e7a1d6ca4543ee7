# SPDX-License-Identifier: AGPL-3.0-or-later
"""Host side of the 32-bit checks (tools/test-32bit.sh runs this with the host python3).

The client runs inside a 32-bit chroot (its own python3 and libpcap), the server on
the host (64-bit), talking over loopback. Checks, each printing "ok: ..." or
"FAIL: ..." and counted in the closing line "N passed, N failed":

  libpcap-info  `osmo_pcap_client.py --libpcap-info` in the chroot reports
                "pcap_pkthdr: N bytes" with N as expected for the chroot.
  replay        a pcap file made here (timestamps up to 2106, caplen < len, sizes
                14..9000) is fed through a FIFO into the client's capture path
                ([client] read_file, pcap_open_offline); the server's file must
                hold exactly those records: ts_sec, ts_usec, caplen, len, bytes.
  replay-pcapng the same with file_format = pcapng (see PCAPNG_PAST_2038).
  live          the client captures on lo (needs a native chroot, not qemu-user);
                UDP datagrams sent here are compared byte for byte with an
                independent tcpdump capture of the same traffic on the host.
  fifo-live     tcpdump on the host captures on lo into a FIFO (-U -w -, copied
                here as the reference); the client reads the FIFO as it grows: all
                records, timestamps included, reach the server unchanged.

Usage: scenario.py --chroot DIR [--wrap "setarch linux32"] --hdr-size N CHECK ...
Pcap files are parsed here with a few lines of struct, independently of osmo_pcap.
"""

import argparse
import os
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IN_CHROOT = "/opt/osmo-pcap"          # where test-32bit.sh copies the scripts
SNAPLEN = 9000                        # the server's default max_snaplen
CLIENT_NAME = "c32"

# ------------------------------------------------------------------ pcap, by hand


def pcap_write(path, records, snaplen=SNAPLEN, linktype=1):
    """records: (ts_sec, ts_usec, orig_len, data)."""
    with open(path, "wb") as f:
        f.write(pcap_bytes(records, snaplen, linktype))


def pcap_bytes(records, snaplen=SNAPLEN, linktype=1):
    out = [struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, snaplen, linktype)]
    for ts_sec, ts_usec, orig_len, data in records:
        out.append(struct.pack("<IIII", ts_sec, ts_usec, len(data), orig_len))
        out.append(data)
    return b"".join(out)


def pcap_read(path):
    """Return (linktype, [(ts_sec, ts_usec, caplen, orig_len, data)]) of a classic
    microsecond pcap file; a truncated last record (file still being written) is
    left out."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 24:
        return None, []
    magic = struct.unpack_from("<I", buf, 0)[0]
    if magic == 0xa1b2c3d4:
        bo = "<"
    elif magic == 0xd4c3b2a1:
        bo = ">"
    else:
        raise ValueError("%s: not a microsecond pcap file (magic %#x)" % (path, magic))
    linktype = struct.unpack_from(bo + "I", buf, 20)[0]
    recs = []
    off = 24
    while off + 16 <= len(buf):
        ts_sec, ts_usec, caplen, orig_len = struct.unpack_from(bo + "IIII", buf, off)
        if off + 16 + caplen > len(buf):
            break
        recs.append((ts_sec, ts_usec, caplen, orig_len, buf[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return linktype, recs


def pcapng_read(path):
    """Return (linktype of the first interface, records as pcap_read gives them) of a
    pcapng file's Enhanced Packet Blocks (microsecond or nanosecond resolution)."""
    with open(path, "rb") as f:
        buf = f.read()
    recs = []
    linktype = None
    resol = []
    off = 0
    bo = "<"
    while off + 12 <= len(buf):
        btype = struct.unpack_from("<I", buf, off)[0]
        if btype == 0x0A0D0D0A:
            bo = "<" if struct.unpack_from("<I", buf, off + 8)[0] == 0x1A2B3C4D else ">"
            resol = []
        btype, total = struct.unpack_from(bo + "II", buf, off)
        if total < 12 or off + total > len(buf):
            break
        body = buf[off + 8:off + total - 4]
        if btype == 1:                                   # IDB
            lt = struct.unpack_from(bo + "H", body, 0)[0]
            linktype = lt if linktype is None else linktype
            div = 10 ** 6
            o = 8
            while o + 4 <= len(body):
                code, n = struct.unpack_from(bo + "HH", body, o)
                if code == 0:
                    break
                if code == 9:                            # if_tsresol
                    v = body[o + 4]
                    div = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
                o += 4 + ((n + 3) & ~3)
            resol.append(div)
        elif btype == 6:                                 # EPB
            ifid, hi, lo, caplen, orig = struct.unpack_from(bo + "IIIII", body, 0)
            div = resol[ifid] if ifid < len(resol) else 10 ** 6
            ts = (hi << 32) | lo
            sec, frac = divmod(ts, div)
            recs.append((sec, frac * 10 ** 6 // div, caplen, orig, body[20:20 + caplen]))
        off += total
    return linktype, recs


def fmt_rec(r):
    return "ts=%d.%06d caplen=%d len=%d data=%s..." % (r[0], r[1], r[2], r[3], r[4][:24].hex())


# ------------------------------------------------------------------ frames


def udp_frame(payload, sport, dport):
    """An Ethernet/IPv4/UDP frame from 10.0.0.1 to 10.0.0.2 (only ever written to a
    file, never sent)."""
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xffff) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    return eth + ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload


def replay_records():
    """Records that exercise every field of struct pcap_pkthdr: seconds past 2038
    (2^31) and near 2106 (2^32), microseconds 0 and 999999, caplen < len, sizes
    from a bare Ethernet header to the snaplen."""
    rng = random.Random(32)
    stamps = [(1, 0), (1000000000, 999999), (1700000000, 123456), (2 ** 31 - 1, 999999),
              (2 ** 31, 0), (2 ** 31 + 5, 500000), (4000000000, 1), (2 ** 32 - 2, 999999)]
    recs = []
    for i in range(64):
        ts_sec, ts_usec = stamps[i] if i < len(stamps) else (1700000100 + i, rng.randrange(10 ** 6))
        size = [60, 1514, 14, SNAPLEN, 200][i % 5] if i < 10 else rng.randrange(42, 2000)
        payload = bytes(rng.randrange(256) for _ in range(max(0, size - 42)))
        data = udp_frame(payload, 40000 + i, 9)[:max(size, 14)]
        orig_len = len(data)
        if i in (3, 17, 40):          # truncated by a capture snaplen: caplen < len
            orig_len = len(data) + 1000 + i
        recs.append((ts_sec, ts_usec, orig_len, data))
    return recs


# ------------------------------------------------------------------ processes


class Checks(object):
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print("ok: " + what)
        sys.stdout.flush()

    def fail(self, what):
        self.failed += 1
        print("FAIL: " + what)
        sys.stdout.flush()

    def check(self, cond, what):
        (self.ok if cond else self.fail)(what)
        return cond


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Env(object):
    """The chroot, a scratch dir inside it (visible there as /tmp/NAME) and the
    processes started, which stop() ends."""

    def __init__(self, args):
        self.args = args
        self.root = args.chroot
        self.wrap = shlex.split(args.wrap) if args.wrap else []
        self.procs = []
        self.scratch = tempfile.mkdtemp(prefix="osmo32-", dir=os.path.join(self.root, "tmp"))
        os.chmod(self.scratch, 0o755)
        self.inside = "/tmp/" + os.path.basename(self.scratch)
        self.host_tmp = tempfile.mkdtemp(prefix="osmo32-host-")

    def chroot_cmd(self, *argv):
        return self.wrap + ["chroot", self.root, "/usr/bin/env", "-i",
                            "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
                            "PYTHONDONTWRITEBYTECODE=1"] + list(argv)

    def start(self, name, argv):
        log = open(os.path.join(self.host_tmp, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        p.name = name
        p.logfile = log.name
        log.close()
        self.procs.append(p)
        return p

    def log_tail(self, p, n=30):
        try:
            with open(p.logfile, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    %s| %s" % (p.name, l) for l in lines[-n:])

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def close(self):
        for p in list(self.procs):
            self.stop(p)
        shutil.rmtree(self.scratch, True)
        if not self.args.keep:
            shutil.rmtree(self.host_tmp, True)
        else:
            print("kept host files in " + self.host_tmp)

    def server(self, port):
        base = os.path.join(self.host_tmp, "server-%d" % port)
        os.mkdir(base)
        ini = os.path.join(self.host_tmp, "server-%d.ini" % port)
        with open(ini, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n\n"
                    "[client %s]\nip = 127.0.0.1\n" % (port, base, CLIENT_NAME))
        p = self.start("server", [self.args.python, os.path.join(REPO, "osmo_pcap_server.py"),
                                  "-c", ini])
        # Ready when it logs "listening on" (a probe connection would count as a
        # client connection from the configured address).
        wait_for(lambda: b"listening on" in open(p.logfile, "rb").read(), 20, (p,))
        p.base = base
        return p

    def client(self, name, port, **client_keys):
        ini = os.path.join(self.scratch, name + ".ini")
        with open(ini, "w") as f:
            f.write("[client]\n")
            for k, v in sorted(client_keys.items()):
                f.write("%s = %s\n" % (k, v))
            f.write("\n[server host]\nhost = 127.0.0.1\nport = %d\n" % port)
        return self.start(name, self.chroot_cmd("python3", IN_CHROOT + "/osmo_pcap_client.py",
                                                "-c", self.inside + "/" + name + ".ini"))


def server_records(base):
    """Records of the trace file(s) the server wrote for CLIENT_NAME, in order."""
    recs = []
    names = sorted(n for n in os.listdir(base) if n.startswith("trace-%s-" % CLIENT_NAME))
    for n in names:
        if n.endswith(".pcap"):
            recs.extend(pcap_read(os.path.join(base, n))[1])
        elif n.endswith(".pcapng"):
            recs.extend(pcapng_read(os.path.join(base, n))[1])
    return names, recs


def wait_for(cond, timeout, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if any(p.poll() is not None for p in procs):
            return cond()
        time.sleep(0.2)
    return cond()


# ------------------------------------------------------------------ checks


def check_libpcap_info(env, checks):
    p = subprocess.run(env.chroot_cmd("python3", IN_CHROOT + "/osmo_pcap_client.py",
                                      "--libpcap-info"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    for line in out.splitlines():
        print("    libpcap-info| " + line)
    m = re.search(r"pcap_pkthdr: (\d+) bytes", out)
    got = int(m.group(1)) if m else None
    checks.check(p.returncode == 0 and got == env.args.hdr_size,
                 "--libpcap-info reports pcap_pkthdr of %s bytes (expected %d, exit %d)"
                 % (got, env.args.hdr_size, p.returncode))


def compare(checks, what, got, want):
    if len(got) != len(want):
        checks.fail("%s: %d records, expected %d" % (what, len(got), len(want)))
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    for i, g, w in bad[:5]:
        print("    record %d differs:\n      got  %s\n      want %s" % (i, fmt_rec(g), fmt_rec(w)))
    if len(got) == len(want):
        checks.check(not bad, "%s: %d records identical (ts_sec, ts_usec, caplen, len, bytes)%s"
                     % (what, len(want), "" if not bad else "; %d differ" % len(bad)))


# Replayed records with ts_sec >= 2^31 come out of libpcap's savefile reader
# negative (it reads ts_sec as bpf_int32, whatever the size of time_t). The pcap
# path restores the 32 bits; the pcapng path (osmo_pcap/client/capture.py, make_sink,
# ts = sec * 1000000 + usec) did not when this was written: set True once fixed.
PCAPNG_PAST_2038 = True


def check_replay(env, checks, fmt="pcap"):
    recs = replay_records()
    if fmt == "pcapng" and not PCAPNG_PAST_2038:
        recs = [r for r in recs if r[0] < 2 ** 31]
    want = [(s, u, len(d), l, d) for s, u, l, d in recs]
    fifo = os.path.join(env.scratch, "feed-%s.fifo" % fmt)
    os.mkfifo(fifo)
    port = free_port()
    srv = env.server(port)
    # detect_loop off: its "not (host ...)" filter would drop the bare 14-byte
    # Ethernet frames (BPF rejects a read past the end of the packet).
    cli = env.client("replay-" + fmt, port, read_file=env.inside + "/" + os.path.basename(fifo),
                     file_format=fmt,
                     detect_loop="false",
                     snaplen=SNAPLEN)
    data = pcap_bytes(recs)

    def feed():
        # Opening a FIFO for writing blocks until the client opens it for reading.
        try:
            fd = os.open(fifo, os.O_WRONLY)
        except OSError:
            return
        try:
            for i in range(0, len(data), 4096):
                os.write(fd, data[i:i + 4096])
                time.sleep(0.001)
        except OSError:
            pass
        finally:
            os.close(fd)

    feeder = threading.Thread(target=feed)
    feeder.daemon = True
    feeder.start()
    wait_for(lambda: len(server_records(srv.base)[1]) >= len(want), env.args.timeout,
             (srv,))
    time.sleep(0.5)          # anything beyond the expected records would show now
    names, got = server_records(srv.base)
    if len(got) != len(want):
        print(env.log_tail(cli))
        print(env.log_tail(srv))
        if not os.path.exists(fifo) or feeder.is_alive():
            # unblock the feeder thread if the client never opened the FIFO
            try:
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
    print("    server wrote %s" % (", ".join(names) or "nothing"))
    compare(checks, "FIFO replay through pcap_open_offline, %s to the server" % fmt, got, want)
    env.stop(cli)
    env.stop(srv)


def check_live(env, checks):
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        checks.fail("live: tcpdump is not installed on the host")
        return
    dport = free_port(socket.SOCK_DGRAM)
    flt = "udp and dst port %d" % dport
    ref = os.path.join(env.host_tmp, "tcpdump.pcap")
    port = free_port()
    srv = env.server(port)
    td = env.start("tcpdump", [tcpdump, "-i", "lo", "-U", "-n", "-s", str(SNAPLEN),
                               "-w", ref, flt])
    cli = env.client("live", port, devices="lo", filter=flt, file_format="pcap",
                     snaplen=SNAPLEN)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # no ICMP unreachables
    sink.bind(("127.0.0.1", dport))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        # Warm up until both the client (via the server's file) and tcpdump see traffic.
        def seen_both():
            tx.sendto(b"warmup", ("127.0.0.1", dport))
            return (len(server_records(srv.base)[1]) > 0 and os.path.exists(ref)
                    and len(pcap_read(ref)[1]) > 0)
        ready = wait_for(seen_both, env.args.timeout, (srv, cli, td))
        if not checks.check(ready, "live: client capturing on lo, server receiving"):
            print(env.log_tail(cli))
            print(env.log_tail(srv))
            print(env.log_tail(td))
            return
        rng = random.Random(7)
        sizes = [0, 1, 100, 1472, 4000, SNAPLEN - 42, SNAPLEN, 12000] + \
            [rng.randrange(2000) for _ in range(92)]
        sent = []
        for i, n in enumerate(sizes):
            body = b"osmo32 %04d " % i
            body += bytes(rng.randrange(256) for _ in range(max(0, n - len(body))))
            tx.sendto(body, ("127.0.0.1", dport))
            sent.append(body)
            if i % 10 == 9:
                time.sleep(0.01)
        tx.sendto(b"osmo32 end", ("127.0.0.1", dport))
        marker = lambda r: r[4][42:48] == b"osmo32"
        end = lambda r: r[4][42:] == b"osmo32 end"
        wait_for(lambda: any(end(r) for r in server_records(srv.base)[1])
                 and any(end(r) for r in pcap_read(ref)[1]), env.args.timeout, (srv, cli, td))
        time.sleep(0.3)
    finally:
        tx.close()
        sink.close()
    env.stop(cli)
    env.stop(td)
    names, got = server_records(srv.base)
    env.stop(srv)
    print("    server wrote %s" % (", ".join(names) or "nothing"))
    got = [r for r in got if marker(r) and not end(r)]
    want = [r for r in pcap_read(ref)[1] if marker(r) and not end(r)]
    # Independent of tcpdump: the UDP payloads are the datagrams sent, truncated to
    # the snaplen, and the original length is the full frame.
    payload_ok = (len(got) == len(sent) and all(
        r[4][42:] == s[:SNAPLEN - 42] and r[3] == 42 + len(s) and r[2] == min(SNAPLEN, 42 + len(s))
        for r, s in zip(got, sent)))
    checks.check(payload_ok, "live: %d of %d datagrams captured, payloads, caplen and len as sent"
                 % (len(got), len(sent)))
    now = time.time()
    ts_ok = all(abs(r[0] + r[1] / 1e6 - now) < 600 and r[1] < 10 ** 6 for r in got)
    checks.check(bool(got) and ts_ok, "live: timestamps are current (within 10 min) with usec < 1e6")
    # Same frames as tcpdump saw on the host (bytes, caplen, len); timestamps are
    # compared too but only reported, as they come from two separate packet sockets.
    strip = lambda rs: [r[2:] for r in rs]
    compare(checks, "live vs host tcpdump", strip(got), strip(want))
    if got and len(got) == len(want):
        d = max(abs((g[0] - w[0]) * 10 ** 6 + g[1] - w[1]) for g, w in zip(got, want))
        print("    largest timestamp difference to tcpdump: %d us" % d)


def check_fifo_live(env, checks):
    """tcpdump captures on the host (where live capture works, unlike under
    qemu-user) and streams pcap into a FIFO; the client in the chroot reads the FIFO
    with pcap_open_offline as the data arrives. A copy of the stream taken here is
    the reference: every record must reach the server unchanged, timestamps too."""
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        checks.fail("fifo-live: tcpdump is not installed on the host")
        return
    dport = free_port(socket.SOCK_DGRAM)
    fifo = os.path.join(env.scratch, "live.fifo")
    os.mkfifo(fifo)
    port = free_port()
    srv = env.server(port)
    cli = env.client("fifo-live", port, read_file=env.inside + "/live.fifo", file_format="pcap",
                     detect_loop="false", snaplen=SNAPLEN)
    td = subprocess.Popen([tcpdump, "-i", "lo", "-U", "-n", "-s", str(SNAPLEN), "-w", "-",
                           "udp and dst port %d" % dport], stdout=subprocess.PIPE,
                          stderr=open(os.path.join(env.host_tmp, "tcpdump-fifo.log"), "wb"))
    td.name = "tcpdump"
    td.logfile = os.path.join(env.host_tmp, "tcpdump-fifo.log")
    env.procs.append(td)
    ref = bytearray()

    def pump():
        fd = None
        try:
            fd = os.open(fifo, os.O_WRONLY)        # until the client opens it
            while True:
                chunk = os.read(td.stdout.fileno(), 65536)
                if not chunk:
                    break
                ref.extend(chunk)
                os.write(fd, chunk)
        except OSError:
            pass
        finally:
            if fd is not None:
                os.close(fd)

    pumper = threading.Thread(target=pump)
    pumper.daemon = True
    pumper.start()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", dport))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ok = wait_for(lambda: b"listening on" in open(td.logfile, "rb").read(), 20, (td,))
        if not checks.check(ok, "fifo-live: tcpdump capturing on lo into the FIFO"):
            return
        rng = random.Random(9)
        sent = 0
        for i, n in enumerate([0, 1, 100, 1472, 4000, 12000] + [rng.randrange(2000)
                                                             for _ in range(44)]):
            body = b"osmo32 %04d " % i
            tx.sendto(body + bytes(rng.randrange(256) for _ in range(max(0, n - len(body)))),
                      ("127.0.0.1", dport))
            sent += 1
        # all of them in tcpdump's stream, then end the stream: the client sees EOF
        wait_for(lambda: len(pcap_recs(bytes(ref))) >= sent, env.args.timeout, (td,))
    finally:
        tx.close()
        sink.close()
    env.stop(td)
    pumper.join(30)
    wait_for(lambda: len(server_records(srv.base)[1]) >= sent, env.args.timeout, (srv, cli))
    wait_for(lambda: cli.poll() is not None, 20)
    time.sleep(0.3)
    names, got = server_records(srv.base)
    want = pcap_recs(bytes(ref))
    print("    server wrote %s; tcpdump streamed %d bytes, client exit %s"
          % (", ".join(names) or "nothing", len(ref), cli.poll()))
    if len(got) != len(want):
        print(env.log_tail(cli))
        print(env.log_tail(srv))
    checks.check(len(want) == sent, "fifo-live: tcpdump streamed all %d datagrams (%d)"
                 % (sent, len(want)))
    compare(checks, "fifo-live: host tcpdump -> FIFO -> client -> server", got, want)
    env.stop(cli)
    env.stop(srv)


def pcap_recs(buf):
    """pcap_read for bytes in memory."""
    fd, path = tempfile.mkstemp()
    try:
        os.write(fd, buf)
        os.close(fd)
        return pcap_read(path)[1]
    finally:
        os.unlink(path)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--chroot", required=True)
    ap.add_argument("--wrap", default="", help="command prefix for chroot, e.g. 'setarch linux32'")
    ap.add_argument("--hdr-size", type=int, required=True)
    ap.add_argument("--python", default=sys.executable, help="host python for the server")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("checks", nargs="+", choices=["libpcap-info", "replay", "replay-pcapng",
                                                  "live", "fifo-live"])
    args = ap.parse_args(argv)
    # SIGTERM (tools/test-32bit.sh's timeout) ends like Ctrl-C: the finally below
    # stops the server and the client.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    checks = Checks()
    env = Env(args)
    try:
        for c in args.checks:
            print("-- %s" % c)
            sys.stdout.flush()
            try:
                {"libpcap-info": check_libpcap_info, "replay": check_replay,
                 "replay-pcapng": lambda e, c: check_replay(e, c, "pcapng"),
                 "live": check_live, "fifo-live": check_fifo_live}[c](env, checks)
            except Exception as e:        # a crash is one failed check, the rest still run
                checks.fail("%s: %s: %s" % (c, type(e).__name__, e))
    finally:
        env.close()
    print("%d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed or not checks.passed else 0


if __name__ == "__main__":
    sys.exit(main())
