#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark (not a test): what acknowledged delivery costs, against the plain protocol.

In one run, alternating the modes and taking medians (CPU speed on these machines
drifts between runs; ratios inside one run are what to read):

1. Server ingest: one connection sends N pre-encoded 100-byte packets as fast as
   it can to our server (files on /dev/shm); packets/s until every record is in
   the files, and server CPU seconds per million packets. Plain: LINK_HDR and
   data. Acknowledged: LINK_HDR, the offer, STREAM, data, ACKs read as they come.
   Also acknowledged with ack_sync = yes (fdatasync before each ACK; on tmpfs
   that costs little, on a disk it costs a flush per ACK).
2. Client: our client captures 100-byte UDP packets on lo at 100k/s and forwards
   them to our server, with ack = auto (acknowledged) and ack = no (plain): client
   CPU seconds per million packets, and packets stored.

Prints the figures and the ratios acknowledged/plain. Run as root (capture on lo):
    python3 bench/ack_cost.py [--count 2000000] [--rate 100000] [--seconds 5] [--runs 3]
As root everything runs in a private network namespace with the guest's memory
kept (bench/isolate.py; --host-netns to stay).
"""

import argparse
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from osmo_pcap import pcapfile, wire  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import isolate  # noqa: E402
from client_capture import GENERATOR, proc_figures  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(py, tmp, port, extra=""):
    base = tempfile.mkdtemp(dir=tmp)
    ini = os.path.join(base, "s.ini")
    with open(ini, "w") as f:
        f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n%s"
                "[client me]\nip = 127.0.0.1\n" % (port, base, extra))
    log = open(os.path.join(base, "log"), "w")
    p = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_server.py"), "-c", ini],
                         stdout=log, stderr=log)
    for _ in range(200):
        with open(os.path.join(base, "log")) as f:
            if "listening on" in f.read():
                break
        time.sleep(0.02)
    return p, base


def stored_bytes(base):
    return sum(os.path.getsize(os.path.join(base, n)) for n in os.listdir(base)
               if n.startswith("trace-"))


# ---------------------------------------------------------------- server ingest
def ingest(py, tmp, count, mode):
    """Return (packets/s, server CPU s per Mpkt) for one run of count packets."""
    port = free_port()
    srv, base = start_server(py, tmp, port, "ack_sync = yes\n" if mode == "sync" else "")
    hdr = wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1))
    frame = wire.encode_link_data(pcapfile.encode_record(1700000000, 0, b"\x55" * 100))
    chunk = frame * 4000
    expect = 24 + count * (len(frame) - 4)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(hdr)
    if mode != "plain":
        offer = b""
        while len(offer) < 8:
            offer += s.recv(64)
        s.sendall(wire.encode_stream(os.urandom(16), 0))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    cpu0 = proc_figures(srv.pid)[0]
    t0 = time.monotonic()
    left = count
    pending = memoryview(b"")
    per = len(chunk) // len(frame)
    while left or pending:
        if not pending:
            n = min(per, left)
            pending = memoryview(chunk)[:n * len(frame)]
            left -= n
        for key, ev in sel.select():
            if ev & selectors.EVENT_READ:
                try:
                    s.recv(65536)        # ACKs (or nothing)
                except BlockingIOError:
                    pass
            if ev & selectors.EVENT_WRITE:
                try:
                    pending = pending[s.send(pending):]
                except BlockingIOError:
                    pass
    sel.modify(s, selectors.EVENT_READ)
    while stored_bytes(base) < expect:
        try:
            s.recv(65536)
        except BlockingIOError:
            pass
        time.sleep(0.002)
    took = time.monotonic() - t0
    cpu = proc_figures(srv.pid)[0] - cpu0
    s.close()
    srv.terminate()
    srv.wait()
    shutil.rmtree(base, True)
    return count / took, cpu / count * 1e6


# ---------------------------------------------------------------- client cost
def client_cost(py, tmp, rate, seconds, ack):
    """Return (client CPU s per Mpkt, packets stored/sent) for one capture run."""
    port, udp = free_port(), free_port()
    srv, base = start_server(py, tmp, port)
    cini = os.path.join(base, "c.ini")
    with open(cini, "w") as f:
        f.write("[client]\ndevices = lo\nfilter = udp dst port %d\nstats_interval = 0\n"
                "[server main]\nhost = 127.0.0.1\nport = %d\nack = %s\n" % (udp, port, ack))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", udp))
    log = open(os.path.join(base, "clog"), "w")
    cl = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_client.py"), "-c", cini],
                          stdout=log, stderr=log)
    time.sleep(2.5)                     # capturing, connected, mode settled
    cpu0 = proc_figures(cl.pid)[0]
    out = subprocess.run([sys.executable, "-c", GENERATOR, str(rate), str(seconds), "0",
                          str(udp)], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout.split()
    sent = int(out[0])
    time.sleep(1.0)                     # the last round, the last ACKs
    cpu = proc_figures(cl.pid)[0] - cpu0
    cl.terminate()
    cl.wait()
    srv.terminate()
    srv.wait()
    stored = (stored_bytes(base) - 24 * len([n for n in os.listdir(base)
                                              if n.startswith("trace-")])) // (16 + 100)
    sink.close()
    shutil.rmtree(base, True)
    return cpu / sent * 1e6, stored / float(sent)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000000, help="packets per ingest run")
    ap.add_argument("--rate", type=int, default=100000, help="client capture rate, pkt/s")
    ap.add_argument("--seconds", type=float, default=5.0, help="client run length")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--host-netns", action="store_true",
                    help="run in the current network namespace, not in a private one")
    args = ap.parse_args()
    if not args.host_netns:
        rc = isolate.rerun_in_netns()
        if rc is not None:
            return rc
    tmp = tempfile.mkdtemp(prefix="osmo-pcap-ack-", dir="/dev/shm")
    try:
        print("%s, %d-byte packets" % (args.python, 100))
        res = {"plain": [], "acked": [], "sync": []}
        for _ in range(args.runs):
            for mode in ("plain", "acked", "sync"):
                res[mode].append(ingest(args.python, tmp, args.count, mode))
        print("server ingest, one connection, %d packets, median of %d:" % (args.count,
                                                                         args.runs))
        med = {}
        for mode in ("plain", "acked", "sync"):
            pps = statistics.median(r[0] for r in res[mode])
            cpu = statistics.median(r[1] for r in res[mode])
            med[mode] = (pps, cpu)
            print("  %-22s %10.0f packets/s  %6.3f CPU s per Mpkt" % (
                {"plain": "plain", "acked": "acknowledged",
                 "sync": "acknowledged, ack_sync"}[mode], pps, cpu))
        print("  ratio acknowledged/plain: packets/s %.2f, CPU per packet %.2f" % (
            med["acked"][0] / med["plain"][0], med["acked"][1] / med["plain"][1]))
        print("  ratio ack_sync/plain:     packets/s %.2f, CPU per packet %.2f" % (
            med["sync"][0] / med["plain"][0], med["sync"][1] / med["plain"][1]))
        if os.geteuid() != 0:
            print("client: skipped (run as root to capture on lo)")
            return 0
        cres = {"no": [], "auto": []}
        for _ in range(args.runs):
            for ack in ("no", "auto"):
                cres[ack].append(client_cost(args.python, tmp, args.rate, args.seconds, ack))
        print("client at %d packets/s on lo, %g s, median of %d:" % (args.rate, args.seconds,
                                                                     args.runs))
        cm = {}
        for ack, label in (("no", "plain (ack = no)"), ("auto", "acknowledged (ack = auto)")):
            cpu = statistics.median(r[0] for r in cres[ack])
            kept = min(r[1] for r in cres[ack])
            cm[ack] = cpu
            print("  %-26s %6.3f CPU s per Mpkt, stored/sent at least %.4f" % (label, cpu, kept))
        print("  ratio acknowledged/plain: CPU per packet %.2f" % (cm["auto"] / cm["no"]))
    finally:
        shutil.rmtree(tmp, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
