#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark (not a test): the client's zero-loss forwarding rate on `lo`.

A generator process sends 100-byte frames (UDP, sequence number in the payload)
to a bound port at rising rates; our client captures them on lo and forwards
them to our server, which writes them to a file. For each rate the script
counts by sequence number what reached the file, and samples the client's CPU
time and RSS. The same traffic is then captured with `tcpdump -w` for
comparison. Run as root: python3 bench/client_capture.py [--rates 50000,100000]
"""

import argparse
import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from osmo_pcap import pcapfile

FRAME = 100                      # bytes on the wire: 14 + 20 + 8 + 58
GENERATOR = r"""
import socket, struct, sys, time
rate, dur, first, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
pad = b"x" * 50
addr = ("127.0.0.1", port)
pack = struct.Struct("!Q").pack
n = int(rate * dur)
sent = 0
t0 = time.monotonic()
while sent < n:
    target = min(n, int((time.monotonic() - t0) * rate) + 1)
    while sent < target:
        try:
            s.sendto(pack(first + sent) + pad, addr)
        except BlockingIOError:
            continue
        sent += 1
print(sent, time.monotonic() - t0)
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_figures(pid):
    """Return (cpu seconds, VmRSS kB, VmHWM kB, RssAnon kB) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / tick
    mem = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon"):
                mem[k] = int(v.split()[0])
    return cpu, mem.get("VmRSS", 0), mem.get("VmHWM", 0), mem.get("RssAnon", 0)


def seqs_in_files(paths, first, count):
    """Count distinct sequence numbers in [first, first+count) in pcap files."""
    seen = set()
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 24:
            continue
        hdr = pcapfile.parse_global_header(data)
        end = pcapfile.complete_prefix(data, hdr.byteorder)
        for rec in pcapfile.iter_records(data[:end], hdr):
            if len(rec.data) >= 50:
                s = struct.unpack_from("!Q", rec.data, 42)[0]
                if first <= s < first + count:
                    seen.add(s)
    return len(seen)


def generate(rate, dur, first, port):
    out = subprocess.run([sys.executable, "-c", GENERATOR, str(rate), str(dur), str(first),
                          str(port)], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout.split()
    return int(out[0]), float(out[1])


def run_ours(tmp, rates, dur, py):
    sport, udp = free_port(), free_port()
    base = os.path.join(tmp, "srv")
    os.makedirs(base)
    with open(os.path.join(tmp, "s.ini"), "w") as f:
        f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n"
                "[client me]\nip = 127.0.0.1\n" % (sport, base))
    with open(os.path.join(tmp, "c.ini"), "w") as f:
        f.write("[client]\ndevices = lo\nfilter = udp port %d\nstats_interval = 0\n"
                "[server main]\nhost = 127.0.0.1\nport = %d\n" % (udp, sport))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", udp))
    log = open(os.path.join(tmp, "log"), "w")
    srv = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_server.py"), "-c",
                            os.path.join(tmp, "s.ini")], stderr=log)
    time.sleep(1.0)
    cl = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_client.py"), "-c",
                           os.path.join(tmp, "c.ini")], stderr=log)
    time.sleep(1.5)
    results = []
    first = 0
    try:
        for rate in rates:
            cpu0 = proc_figures(cl.pid)[0]
            sent, took = generate(rate, dur, first, udp)
            time.sleep(1.5)
            cpu1, rss, hwm, anon = proc_figures(cl.pid)
            got = seqs_in_files(glob.glob(os.path.join(base, "trace-*")), first, sent)
            results.append((rate, sent / took, sent, got, (cpu1 - cpu0) / took, rss, hwm, anon))
            first += sent + 1000
            if got < sent * 0.5:
                break
    finally:
        cl.send_signal(signal.SIGTERM)
        cl.wait(10)
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)
        sink.close()
        log.close()
    return results


def run_tcpdump(tmp, rates, dur):
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        return []
    udp = free_port()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", udp))
    results = []
    first = 0
    try:
        for rate in rates:
            path = os.path.join(tmp, "td-%d.pcap" % rate)
            td = subprocess.Popen([tcpdump, "-i", "lo", "-B", "16384", "-s", "9000", "-w", path,
                                   "udp port %d" % udp], stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            cpu0 = proc_figures(td.pid)[0]
            sent, took = generate(rate, dur, first, udp)
            time.sleep(1.0)
            cpu1, rss, hwm, anon = proc_figures(td.pid)
            td.send_signal(signal.SIGINT)
            td.wait(10)
            got = seqs_in_files([path], first, sent)
            results.append((rate, sent / took, sent, got, (cpu1 - cpu0) / took, rss, hwm, anon))
            first += sent + 1000
    finally:
        sink.close()
    return results


def report(title, results):
    print(title)
    print("  %9s %9s %9s %9s %7s %6s %9s %9s %9s" % ("rate", "achieved", "sent", "stored",
                                                     "loss%", "cpu", "rss_kB", "hwm_kB",
                                                     "anon_kB"))
    best = 0
    for rate, achieved, sent, got, cpu, rss, hwm, anon in results:
        loss = 100.0 * (sent - got) / sent if sent else 0.0
        if got == sent:
            best = max(best, achieved)
        print("  %9d %9.0f %9d %9d %7.2f %5.0f%% %9d %9d %9d" % (
            rate, achieved, sent, got, loss, cpu * 100, rss, hwm, anon))
    print("  highest zero-loss rate: %.0f packets/s" % best)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="25000,50000,75000,100000,125000,150000,200000")
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/client_capture.py: needs root (capture on lo); skipped")
        return 0
    rates = [int(r) for r in args.rates.split(",")]
    tmp = tempfile.mkdtemp(prefix="osmo-pcap-bench-")
    try:
        print("%d-byte frames on lo, %g s per rate, %s" % (FRAME, args.duration, args.python))
        report("osmo_pcap_client.py -> osmo_pcap_server.py:", run_ours(tmp, rates, args.duration,
                                                                      args.python))
        report("tcpdump -w (same traffic):", run_tcpdump(tmp, rates, args.duration))
    finally:
        shutil.rmtree(tmp, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
