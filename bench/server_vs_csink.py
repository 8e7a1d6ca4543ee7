#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark (not a test): server ingest next to a C sink, the floor for any server.

bench/csink.c is compiled here (cc, into the work directory; skipped with a
message when there is no C compiler). It walks the 4-byte frame headers and
writes the payloads to one file per connection with 1 MiB buffered writes,
nothing else. Our server (osmo_pcap_server.py, default settings, no rotation)
and the sink take the same pre-encoded streams from K concurrent senders
(sendfile, one 127.x address each; TLS senders encrypt in the sending
process). Files go to tmpfs. A case ends when every file has its expected
size; packets/s is counted from the start signal to that moment, CPU from
/proc/PID/schedstat. Cases alternate between the two programs and repeat;
medians are printed with the ratio ours / sink, and TLS / plain for ours.
Everything runs in a private network namespace when root (bench/isolate.py;
--host-netns to stay): captures others run on the host's lo would otherwise
copy every segment, at the cost of whoever handles it.

Usage: bench/server_vs_csink.py [--python PY] [--reps 3] [--quick] [--no-tls]
  [--cases 1x100,64x100,1x1400,64x1400] [--proto NAME] [--server-extra LINES]
--proto NAME also runs that bench/prototypes.py server (see there) on the
same cases, with its ratio to the baseline started the same way (over TLS
with --proto-tls). --compare-script PATH runs another server script too (an
earlier version, say) with its ratio to ours (to ours over TLS, and itself over
TLS, with --proto-tls).
"""

import argparse
import multiprocessing
import os
import shutil
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

from server_ingest import client_ip, sender, tls_sender, write_stream  # noqa: E402

PACKETS = {100: 2000000, 1400: 400000}    # per case, split over the K senders


def cpu_seconds(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0]) / 1e9


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def build_csink(workdir):
    """Compile bench/csink.c; return the binary's path, or None (with a message)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        print("C sink skipped: no C compiler (cc, gcc or clang)")
        return None
    out = os.path.join(workdir, "csink")
    p = subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "csink.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if p.returncode:
        print("C sink skipped: %s failed:\n%s" % (cc, p.stdout))
        return None
    return out


def wait_text(path, text, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            raise SystemExit("%s exited:\n%s" % (proc.args, open(path).read()[-3000:]))
        time.sleep(0.01)
    raise SystemExit("timed out waiting for %r in %s" % (text, path))


def files_total(d):
    total = 0
    for e in os.scandir(d):
        try:
            total += e.stat().st_size
        except OSError:
            pass
    return total


class Program(object):
    """One receiving program for one case: our server or the C sink."""

    def __init__(self, kind, workdir, k, pki=None, py=None, proto=None, extra="", csink=None,
                 script=None):
        self.kind, self.k = kind, k
        self.out = os.path.join(workdir, "out-" + kind)
        shutil.rmtree(self.out, True)
        os.makedirs(self.out)
        self.port = free_port()
        self.logp = os.path.join(workdir, kind + ".log")
        log = open(self.logp, "wb")
        if kind == "csink":
            argv = [csink, str(self.port), str(k), self.out]
            ready = b"listening"
        else:
            ini = os.path.join(workdir, kind + ".ini")
            with open(ini, "w") as f:
                f.write("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = %s\n"
                        "max_file_size = off\nrotate_localtime = off\n%s\n"
                        % (self.port, self.out, extra))
                if pki:
                    f.write("tls_cert = %s\ntls_key = %s\n" % pki["server"])
                for i in range(k):
                    f.write("[client c%d]\nip = %s\n%s" % (i, client_ip(i),
                                                            "tls = required\n" if pki else ""))
            program = ([script or os.path.join(REPO, "osmo_pcap_server.py")] if proto is None
                       else [os.path.join(HERE, "prototypes.py"), proto])
            argv = [py] + program + ["-c", ini]
            ready = b"listening on"
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_text(self.logp, ready, self.proc)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_one(prog, stream, k, expect_each, pki):
    """Send the stream from K connections to prog; return (wall s, CPU s, complete)."""
    ready, go = multiprocessing.Event(), multiprocessing.Event()
    if pki:
        child = multiprocessing.Process(target=tls_sender,
                                        args=(prog.port, k, stream, ready, go, pki["ca"]))
    else:
        child = multiprocessing.Process(target=sender, args=(prog.port, k, stream, ready, go))
    child.start()
    ready.wait()
    time.sleep(0.3)
    want = k * expect_each
    cpu0 = cpu_seconds(prog.proc.pid)
    t0 = time.monotonic()
    go.set()
    deadline = t0 + 300
    while files_total(prog.out) < want:
        if prog.proc.poll() is not None:
            raise SystemExit("%s exited:\n%s" % (prog.kind, open(prog.logp).read()[-3000:]))
        if time.monotonic() > deadline:
            break
        time.sleep(0.002)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(prog.proc.pid) - cpu0
    child.join()
    sizes = [e.stat().st_size for e in os.scandir(prog.out)]
    complete = len(sizes) == k and all(s == expect_each for s in sizes)
    return wall, cpu, complete


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter for our server")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a fifth of the packets")
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--cases", default="1x100,64x100,1x1400,64x1400", help="KxBYTES,...")
    ap.add_argument("--proto", help="also run this bench/prototypes.py server")
    ap.add_argument("--proto-tls", action="store_true",
                    help="the prototype and the compared script get the TLS streams (their "
                    "ratios are to ours over TLS)")
    ap.add_argument("--compare-script", metavar="PATH",
                    help="also run this server script (e.g. an earlier osmo_pcap_server.py)")
    ap.add_argument("--server-extra", default="", metavar="LINES",
                    help="more [server] lines for our server ('\\\\n' separates)")
    ap.add_argument("--host-netns", action="store_true",
                    help="run in the current network namespace, not in a private one")
    args = ap.parse_args()
    extra = args.server_extra.replace("\\n", "\n")
    cases = [tuple(int(x) for x in c.split("x")) for c in args.cases.split(",")]
    if not args.host_netns:
        rc = isolate.rerun_in_netns()
        if rc is not None:
            return rc
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = tempfile.mkdtemp(prefix="osmo-pcap-bench-", dir=parent)
    try:
        csink = build_csink(workdir)
        pki = None
        if not args.no_tls:
            if shutil.which("openssl") is None:
                print("TLS cases skipped: the openssl command (for the test PKI) is missing")
            else:
                from tests import pki as pkimod
                pki = pkimod.make_pki(os.path.join(workdir, "pki"))
        print("our server: %s; files on %s; %d repetitions, medians"
              % (args.python, workdir, args.reps))
        kinds = (["ours"] + (["csink"] if csink else []) + (["proto"] if args.proto else [])
                 + (["other"] if args.compare_script else []))
        tls_tag = "-TLS" if args.proto_tls else ""
        print("%4s %5s %9s %s %s" % (
            "K", "bytes", "packets", " ".join("%12s %8s" % (n + " pkt/s", "CPU/Mpk")
                                              for n in kinds + (["ours-TLS"] if pki else [])),
            "ours/sink" + ("  other/ours" + tls_tag if args.compare_script else "")
            + ("  proto/ours" + tls_tag if args.proto else "")
            + ("  TLS/plain (CPU)" if pki else "")))
        for k, size in cases:
            count = max(1, int(PACKETS.get(size, 400000) / k / (5 if args.quick else 1)))
            stream = os.path.join(workdir, "stream.bin")
            write_stream(stream, count, size)
            expect = 24 + count * (16 + size)
            runs = dict((n, []) for n in kinds + (["tls"] if pki else []))
            incomplete = []
            for rep in range(args.reps):
                order = kinds if rep % 2 == 0 else kinds[::-1]
                for n in order + (["tls"] if pki else []):
                    if n == "csink":
                        prog = Program("csink", workdir, k, csink=csink)
                    elif n == "other":
                        prog = Program("other", workdir, k, py=args.python, extra=extra,
                                       script=args.compare_script,
                                       pki=pki if args.proto_tls else None)
                    elif n == "tls":
                        prog = Program("ours-tls", workdir, k, pki=pki, py=args.python,
                                       extra=extra, proto="server" if args.proto else None)
                    else:
                        # With a prototype, the baseline starts from the source tree too.
                        tls_proto = n == "proto" and args.proto_tls
                        prog = Program(n, workdir, k, py=args.python, extra=extra,
                                       pki=pki if tls_proto else None,
                                       proto=(args.proto if n == "proto" else
                                              ("server" if args.proto else None)))
                    tls_run = n == "tls" or (n in ("proto", "other") and args.proto_tls)
                    try:
                        wall, cpu, ok = run_one(prog, stream, k, expect, pki if tls_run else None)
                    finally:
                        prog.stop()
                    if not ok:
                        incomplete.append(n)
                    runs[n].append((k * count / wall, cpu / (k * count) * 1e6))
            os.unlink(stream)
            med = dict((n, (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)))
                       for n, v in runs.items())
            cols = " ".join("%12.0f %8.3f" % med[n] for n in kinds + (["tls"] if pki else []))
            ratios = []
            if csink:
                ratios.append("%9.2f" % (med["ours"][0] / med["csink"][0]))
            base = med["tls"] if args.proto_tls and "tls" in med else med["ours"]
            if args.compare_script:
                ratios.append("%10.3f" % (med["other"][0] / base[0]))
            if args.proto:
                ratios.append("%11.3f" % (med["proto"][0] / base[0]))
            if pki:
                ratios.append("%6.2f (%.2f)" % (med["tls"][0] / med["ours"][0],
                                                med["ours"][1] / med["tls"][1]))
            print("%4d %5d %9d %s %s%s" % (k, size, k * count, cols, "  ".join(ratios),
                                          "  INCOMPLETE: %s" % ",".join(sorted(set(incomplete)))
                                          if incomplete else ""))
            sys.stdout.flush()
    finally:
        shutil.rmtree(workdir, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
