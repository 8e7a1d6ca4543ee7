#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark (not a test): the client's CPU per captured packet next to `tcpdump -w`.

A generator sends 100-byte frames (UDP, sequence number in the payload) on lo
to a bound, never read port. Our client (capturing and forwarding to our
server) and `tcpdump -w` (capturing and writing a file: the cost floor of a
libpcap capture) run at the same time on the same traffic, so each
repetition gives a ratio measured under the same CPU conditions. CPU time
comes from /proc/PID/schedstat (nanoseconds). Losses are counted by sequence
number in what reached our server's file and tcpdump's file.

Then the zero-loss ramp: rising rates through our client and server alone,
up to what the generator reaches on this machine. Everything runs in a private
network namespace (bench/isolate.py; --host-netns to stay), away from
captures others run on the host's lo.

--proto NAME runs a prototype of bench/prototypes.py as one more client (with
its own server) on the same traffic, next to the baseline started the same
way from the source tree: ratios prototype/baseline come from the same run.
--compare-script PATH does the same with another client script (an earlier
version, say).

Run as root: python3 bench/client_vs_tcpdump.py [--python PY] [--rate 100000]
[--reps 5] [--ramp 100000,200000,300000,400000] [--perf] [--proto NAME]
"""

import argparse
import glob
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import isolate  # noqa: E402

from client_capture import GENERATOR, free_port, seqs_in_files  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU time of a process: schedstat (ns) where available, else clock ticks."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def generate(rate, dur, first, port, generators=1):
    """Send rate*dur datagrams (split over generator processes); return (sent, seconds)."""
    per = rate / generators
    n = int(per * dur)
    procs = [subprocess.Popen([sys.executable, "-c", GENERATOR, str(per), str(dur),
                               str(first + i * n), str(port)],
                              stdout=subprocess.PIPE, universal_newlines=True)
             for i in range(generators)]
    sent, took = 0, 0.0
    for p in procs:
        out = p.communicate()[0].split()
        if p.returncode:
            raise SystemExit("generator failed")
        sent += int(out[0])
        took = max(took, float(out[1]))
    return sent, took


def wait_for(path, text, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, "rb") as f:
                if text in f.read():
                    return
        if proc.poll() is not None:
            raise SystemExit("%s exited:\n%s" % (proc.args, open(path).read()[-2000:]))
        time.sleep(0.02)
    raise SystemExit("timed out waiting for %r in %s" % (text, path))


class Ours(object):
    """Our server (files on tmpfs) and our client capturing on lo.

    proto: None for the generated script, else a bench/prototypes.py name;
    script: another client script to run instead (e.g. an older version's).
    """

    def __init__(self, tmp, py, udp, extra="", proto=None, script=None):
        self.tmp = tmp
        os.makedirs(tmp)
        sport = free_port()
        self.base = os.path.join(tmp, "srv")
        os.makedirs(self.base)
        s_ini, c_ini = os.path.join(tmp, "s.ini"), os.path.join(tmp, "c.ini")
        with open(s_ini, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n"
                    "max_file_size = off\n[client me]\nip = 127.0.0.1\n" % (sport, self.base))
        with open(c_ini, "w") as f:
            f.write("[client]\ndevices = lo\nfilter = udp port %d\nstats_interval = 0\n%s\n"
                    "[server main]\nhost = 127.0.0.1\nport = %d\n" % (udp, extra, sport))
        self.slog, self.clog = os.path.join(tmp, "server.log"), os.path.join(tmp, "client.log")
        self.srv = subprocess.Popen([py, os.path.join(REPO, "osmo_pcap_server.py"), "-c", s_ini],
                                    stdout=open(self.slog, "wb"), stderr=subprocess.STDOUT)
        wait_for(self.slog, b"listening on", self.srv)
        program = ([script or os.path.join(REPO, "osmo_pcap_client.py")] if proto is None else
                   [os.path.join(HERE, "prototypes.py"), proto])
        self.cl = subprocess.Popen([py] + program + ["-c", c_ini],
                                   stdout=open(self.clog, "wb"), stderr=subprocess.STDOUT)
        wait_for(self.clog, b"connected", self.cl)

    def captured(self):
        """The client's captured:pkts counter (SIGUSR1 makes it log the counters)."""
        with open(self.clog, "rb") as f:
            before = f.read().count(b"stats: captured ")
        self.cl.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.clog, "rb") as f:
                text = f.read()
            if text.count(b"stats: captured ") > before:
                line = text[text.rindex(b"stats: captured "):]
                return int(line.split()[2])
            time.sleep(0.02)
        return -1

    def stored(self, first, count):
        for p, log in ((self.cl, self.clog), (self.srv, self.slog)):
            if p.poll() is not None:
                raise SystemExit("%s exited:\n%s" % (p.args[1], open(log).read()[-3000:]))
        return seqs_in_files(glob.glob(os.path.join(self.base, "trace-*")), first, count)

    def stop(self):
        for p in (self.cl, self.srv):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class Tcpdump(object):
    def __init__(self, tmp, udp):
        self.path = os.path.join(tmp, "tcpdump.pcap")
        self.log = os.path.join(tmp, "tcpdump.log")
        self.p = subprocess.Popen(["tcpdump", "-i", "lo", "-B", "16384", "-s", "9000",
                                   "-w", self.path, "udp port %d" % udp],
                                  stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        wait_for(self.log, b"listening on", self.p)

    def stored(self, first, count):
        return seqs_in_files([self.path], first, count)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            self.p.wait(10)


def side_by_side(args, tmp):
    """Our client(s) and tcpdump -w on the same traffic, at the same time."""
    udp = free_port()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", udp))
    names = ["ours"] if not args.proto else ["client", args.proto]
    ours = [Ours(os.path.join(tmp, "side-%d" % i), args.python, udp, args.client_extra,
                 None if name == "ours" else name) for i, name in enumerate(names)]
    if args.compare_script:
        names.append(os.path.basename(args.compare_script))
        ours.append(Ours(os.path.join(tmp, "side-%d" % len(ours)), args.python, udp,
                         args.client_extra, script=args.compare_script))
    td = Tcpdump(tmp, udp)
    perf = None
    print("%d-byte frames on lo at %d packets/s, %g s per repetition; client %s"
          % (100, args.rate, args.duration, args.python))
    print("  CPU s per million packets (schedstat); ratio = first column / tcpdump -w")
    print("  %3s %9s %6s %s %12s %7s %s %9s" % (
        "rep", "sent", "lost", " ".join("%12s" % n[:12] for n in names), "tcpdump -w",
        "ratio", " ".join("%7s" % ("%s/1" % (i + 1)) for i in range(1, len(names))), "RSS kB"))
    costs = [[] for _ in names]
    td_cost, ratios, rel, spans = [], [], [[] for _ in names], []
    first = 0
    try:
        time.sleep(0.5)
        for rep in range(args.reps):
            if args.perf and rep == args.reps - 1:
                perf = start_perf(ours[-1].cl.pid, os.path.join(tmp, "perf.data"))
            c0 = [cpu_seconds(o.cl.pid) for o in ours]
            t0 = cpu_seconds(td.p.pid)
            sent, took = generate(args.rate, args.duration, first, udp)
            time.sleep(0.5)   # the last capture round (100 ms time-out) and its send
            c1 = [cpu_seconds(o.cl.pid) for o in ours]
            t1 = cpu_seconds(td.p.pid)
            if perf is not None:
                stop_perf(perf)
            time.sleep(0.5)
            lost = sum(sent - o.stored(first, sent) for o in ours)
            spans.append((first, sent))
            row = [(b - a) / sent * 1e6 for a, b in zip(c0, c1)]
            tdc = (t1 - t0) / sent * 1e6
            for i, v in enumerate(row):
                costs[i].append(v)
                rel[i].append(v / row[0])
            td_cost.append(tdc)
            ratios.append(row[0] / tdc if tdc else float("inf"))
            print("  %3d %9d %6d %s %12.3f %7.2f %s %9d" % (
                rep + 1, sent, lost, " ".join("%12.3f" % v for v in row), tdc, ratios[-1],
                " ".join("%7.3f" % r for r in [x[-1] for x in rel[1:]]), rss_kb(ours[0].cl.pid)))
            sys.stdout.flush()
            first += sent + 1000
    finally:
        td.stop()     # tcpdump's file is complete once it exits
        for o in ours:
            o.stop()
        sink.close()
    print("  tcpdump lost %d packet(s) in all" % sum(n - td.stored(f, n) for f, n in spans))
    med = statistics.median
    print("  median: %s; tcpdump -w %.3f; ratio to tcpdump %.2f%s" % (
        ", ".join("%s %.3f" % (n, med(c)) for n, c in zip(names, costs)), med(td_cost),
        med(ratios), "".join("; %s/%s %.3f" % (names[i], names[0], med(rel[i]))
                             for i in range(1, len(names)))))
    if perf is not None:
        report_perf(os.path.join(tmp, "perf.data"))


def ramp(args, tmp):
    """Rising rates through our client and server alone; print losses."""
    udp = free_port()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", udp))
    ours = Ours(os.path.join(tmp, "ramp"), args.python, udp, args.client_extra, args.proto)
    print("zero-loss ramp (client + server + %d generator process(es)):" % args.generators)
    print("  %9s %9s %9s %9s %9s %8s %12s %9s" % (
        "asked", "achieved", "sent", "captured", "stored", "loss %", "CPU s/Mpkt", "RSS kB"))
    best = 0.0
    first = 0
    try:
        time.sleep(0.5)
        for rate in args.ramp:
            k0 = ours.captured()
            c0 = cpu_seconds(ours.cl.pid)
            sent, took = generate(rate, args.duration, first, udp, args.generators)
            time.sleep(1.0)
            c1 = cpu_seconds(ours.cl.pid)
            k1 = ours.captured()
            got = ours.stored(first, sent)
            achieved = sent / took
            if got == sent:
                best = max(best, achieved)
            print("  %9d %9.0f %9d %9d %9d %8.3f %12.3f %9d" % (
                rate, achieved, sent, k1 - k0, got, 100.0 * (sent - got) / sent,
                (c1 - c0) / sent * 1e6, rss_kb(ours.cl.pid)))
            sys.stdout.flush()
            first += sent + 1000
    finally:
        ours.stop()
        sink.close()
    print("  highest zero-loss rate reached: %.0f packets/s (captured < sent: the kernel "
          "ring overflowed; stored < captured: lost after capture)" % best)


def start_perf(pid, out):
    if shutil.which("perf") is None:
        print("  (perf not installed: no profile)")
        return None
    return subprocess.Popen(["perf", "record", "-F", "1999", "-o", out, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(p):
    p.send_signal(signal.SIGINT)
    p.wait(30)


def report_perf(path):
    """Print the client's profile by shared object and the top symbols."""
    for sort, top in (("dso", 8), ("dso,sym", 25)):
        out = subprocess.run(["perf", "report", "-i", path, "--stdio", "--sort", sort],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        rows = [l for l in out.splitlines() if l.strip() and not l.startswith("#")]
        print("  perf profile of the client by %s:" % sort)
        for line in rows[:top]:
            print("    " + line.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter for client and server")
    ap.add_argument("--rate", type=int, default=100000)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ramp", default="100000,200000,300000,400000",
                    help="rates for the zero-loss ramp ('' to skip)")
    ap.add_argument("--generators", type=int, default=1, help="generator processes in the ramp")
    ap.add_argument("--perf", action="store_true", help="profile the client's last repetition")
    ap.add_argument("--proto", help="also run this bench/prototypes.py client (see there)")
    ap.add_argument("--compare-script", metavar="PATH",
                    help="also run this client script (e.g. an earlier osmo_pcap_client.py)")
    ap.add_argument("--client-extra", default="", metavar="LINES",
                    help="more [client] lines, e.g. 'dispatch_max = 10000' ('\\n' separates)")
    ap.add_argument("--host-netns", action="store_true",
                    help="run in the current network namespace, not in a private one")
    args = ap.parse_args()
    args.ramp = [int(r) for r in args.ramp.split(",") if r]
    args.client_extra = args.client_extra.replace("\\n", "\n")
    if os.geteuid() != 0:
        print("bench/client_vs_tcpdump.py: needs root (capture on lo); skipped")
        return 0
    if shutil.which("tcpdump") is None:
        print("bench/client_vs_tcpdump.py: tcpdump is not installed; skipped")
        return 0
    if not args.host_netns:
        rc = isolate.rerun_in_netns()
        if rc is not None:
            return rc
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = tempfile.mkdtemp(prefix="osmo-pcap-bench-", dir=parent)
    try:
        side_by_side(args, tmp)
        if args.ramp:
            ramp(args, tmp)
    finally:
        shutil.rmtree(tmp, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
