#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark: server ingest rate (not a test).

Starts the generated osmo_pcap_server.py, opens K concurrent clients (each
from its own 127.x address) that send pre-encoded streams of M packets as
fast as they can, and prints packets/s (wall, until every file is closed),
MB/s, server CPU seconds per million packets, and the server's peak RSS.
Checks that every packet reached the files (exact file sizes).

Usage: bench/server_ingest.py [--quick] [--dir DIR] [--python PY] [--no-tls]
The C server 0.4.1 ingests ~80k messages/s on this kind of machine; the
target here is >= 400k packets/s of 100-byte packets on one core.

The TLS cases repeat some plain cases with every client speaking TLS (a test
PKI made with the openssl command, tests/pki.py) and print the TLS/plain
ratios of packets/s and of packets per server CPU second.
"""

import argparse
import multiprocessing
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from osmo_pcap import pcapfile, wire

CLK = os.sysconf("SC_CLK_TCK")


def client_ip(i):
    return "127.10.%d.%d" % (i // 250, i % 250 + 1)


def write_stream(path, count, size):
    """Write LINK_HDR + count LINK_DATA frames of size-byte packets to path."""
    hdr = wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1))
    rec = wire.encode_link_data(pcapfile.encode_record(1700000000, 0, b"\x55" * size))
    per = max(1, (1 << 20) // len(rec))
    with open(path, "wb") as f:
        f.write(hdr)
        left = count
        while left:
            n = min(per, left)
            f.write(rec * n)
            left -= n
    return os.path.getsize(path)


def sender(port, k, path, ready, go):
    """Child process: K non-blocking connections each sending the file at path.

    sendfile() keeps the sender's CPU cost low, so the server is what is measured.
    """
    total = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    sel = selectors.DefaultSelector()
    for i in range(k):
        s = socket.socket()
        s.bind((client_ip(i), 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE, [0])
    ready.set()
    go.wait()
    open_ = k
    while open_:
        for key, events in sel.select():
            s = key.fileobj
            st = key.data
            if events & selectors.EVENT_READ:
                # A server with acks = yes sends an offer: closing with it unread
                # would reset the connection and cut off what the server has not
                # read yet. Read until the server's end of file instead.
                try:
                    if s.recv(65536):
                        continue
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                sel.unregister(s)
                s.close()
                open_ -= 1
                continue
            try:
                st[0] += os.sendfile(s.fileno(), fd, st[0], total - st[0])
            except BlockingIOError:
                continue
            if st[0] >= total:
                s.shutdown(socket.SHUT_WR)
                sel.modify(s, selectors.EVENT_READ, st)
    os.close(fd)


def tls_sender(port, k, path, ready, go, ca):
    """Child process: K TLS connections each sending the file at path.

    The handshakes are done before `ready`; the data is encrypted here, in the
    sender, so the server's cost is what the CPU figures show.
    """
    import ssl
    with open(path, "rb") as f:
        data = memoryview(f.read())
    total = len(data)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    sel = selectors.DefaultSelector()
    for i in range(k):
        raw = socket.socket()
        raw.bind((client_ip(i), 0))
        raw.connect(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE, [0])
    ready.set()
    go.wait()
    open_ = k
    while open_:
        for key, _ in sel.select():
            s = key.fileobj
            st = key.data
            try:
                st[0] += s.send(data[st[0]:st[0] + (256 << 10)])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                continue
            if st[0] >= total:
                sel.unregister(s)
                s.setblocking(True)
                s.settimeout(60)
                try:
                    s.unwrap()  # close_notify both ways: nothing is cut off by a reset
                except (OSError, ValueError):
                    pass
                s.close()
                open_ -= 1


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0


def run_case(py, workdir, k, count, size, pki=None):
    """Run one case; pki (tests.pki.make_pki's dict) makes every client use TLS."""
    base = os.path.join(workdir, "base")
    shutil.rmtree(base, True)
    os.makedirs(base)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ini = os.path.join(workdir, "server.ini")
    with open(ini, "w") as f:
        f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n"
                "max_file_size = off\nrotate_localtime = off\n" % (port, base))
        if pki:
            f.write("tls_cert = %s\ntls_key = %s\n" % pki["server"])
        for i in range(k):
            f.write("[client c%d]\nip = %s\n%s" % (i, client_ip(i),
                                                    "tls = required\n" if pki else ""))
    logp = os.path.join(workdir, "server.log")
    logf = open(logp, "wb")
    proc = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_server.py"), "-c", ini],
                            stdout=logf, stderr=subprocess.STDOUT)
    try:
        while b"listening on" not in open(logp, "rb").read():
            if proc.poll() is not None:
                raise SystemExit(open(logp).read())
            time.sleep(0.02)
        src = os.path.join(workdir, "stream.bin")
        write_stream(src, count, size)
        ready, go = multiprocessing.Event(), multiprocessing.Event()
        if pki:
            child = multiprocessing.Process(target=tls_sender,
                                            args=(port, k, src, ready, go, pki["ca"]))
        else:
            child = multiprocessing.Process(target=sender, args=(port, k, src, ready, go))
        child.start()
        ready.wait()
        time.sleep(0.2)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        go.set()
        while open(logp, "rb").read().count(b"(disconnect;") < k:
            if proc.poll() is not None:
                raise SystemExit(open(logp).read())
            time.sleep(0.005)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mb(proc.pid)
        child.join()
        os.unlink(src)
    finally:
        proc.terminate()
        proc.wait()
        logf.close()
    files = [os.path.join(base, n) for n in os.listdir(base)]
    expect = 24 + count * (16 + size)
    sizes = [os.path.getsize(p) for p in files]
    ok = len(files) == k and all(x == expect for x in sizes)
    shutil.rmtree(base, True)
    total = k * count
    return {"k": k, "size": size, "pkts": total, "wall": wall, "cpu": cpu,
            "pps": total / wall, "cpu_pps": total / cpu if cpu else float("inf"),
            "mbs": total * (size + 16) / wall / 1e6, "cpu_per_m": cpu / total * 1e6,
            "rss": rss, "ok": ok}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer packets")
    ap.add_argument("--dir", help="work directory (default: a temp dir on /dev/shm if present)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the server")
    ap.add_argument("--no-tls", action="store_true", help="skip the TLS cases")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    parent = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    workdir = tempfile.mkdtemp(prefix="osmo-pcap-bench-", dir=parent)
    cases = [(1, 100, 2000000), (8, 100, 250000), (64, 100, 32000),
             (1, 1400, 400000), (8, 1400, 50000), (64, 1400, 6000), (500, 100, 4000)]
    print("server: %s osmo_pcap_server.py; files in %s" % (args.python, workdir))
    print("%4s %5s %9s %8s %11s %9s %12s %8s %6s %s" % (
        "K", "bytes", "packets", "wall s", "pkt/s", "MB/s", "CPU s/Mpkt", "pkt/CPUs",
        "RSS MB", "all packets in files"))
    failed = False
    plain = {}
    try:
        for k, size, count in cases:
            r = run_case(args.python, workdir, k, max(1, int(count * scale)), size)
            plain[(k, size)] = r
            failed |= not r["ok"]
            print_row(r)
        if not args.no_tls:
            failed |= run_tls_cases(args, workdir, plain, scale)
    finally:
        shutil.rmtree(workdir, True)
    return 1 if failed else 0


def print_row(r, extra=""):
    print("%4d %5d %9d %8.2f %11.0f %9.1f %12.2f %8.0f %6.1f %s%s" % (
        r["k"], r["size"], r["pkts"], r["wall"], r["pps"], r["mbs"], r["cpu_per_m"],
        r["cpu_pps"], r["rss"], "yes" if r["ok"] else "NO", extra))
    sys.stdout.flush()


TLS_CASES = ((1, 100), (8, 100), (64, 100), (1, 1400), (8, 1400))


def run_tls_cases(args, workdir, plain, scale):
    """Repeat some plain cases over TLS; print the TLS/plain ratios; return failure."""
    if shutil.which("openssl") is None:
        print("TLS cases skipped: the openssl command (for the test PKI) is not installed")
        return False
    from tests import pki as pkimod
    pki = pkimod.make_pki(os.path.join(workdir, "pki"))
    print("TLS (TLS 1.3 where available, no client certificates); ratio = TLS / plain "
          "of pkt/s and of pkt/CPUs")
    failed = False
    for k, size in TLS_CASES:
        base = plain.get((k, size))
        if base is None:
            continue
        r = run_case(args.python, workdir, k, base["pkts"] // k, size, pki)
        failed |= not r["ok"]
        print_row(r, "  ratio %.2f wall, %.2f CPU" % (r["pps"] / base["pps"],
                                                    r["cpu_pps"] / base["cpu_pps"]))
    return failed


if __name__ == "__main__":
    sys.exit(main())
