#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark the cleanup tool's compression methods on a real capture.

For each capture: size, ratio, CPU seconds and MB/s of gzip-6 (the default),
bz2-9, xz-6, and with CPython 3.14+ zstd-3 (zstd's own default) and zstd-6 (the
tool's default compress_level), each through
osmo_pcap.clean.compress.compress_file (streaming, atomic, what the tool runs),
each checked by decompressing it again. CPU seconds are this process's
(time.process_time()), ratios are against gzip-6 in the same run.

Usage: bench/clean_compress.py [--packets N] [--keep DIR] [CAPTURE ...]
Without CAPTURE (root, tcpdump): records one, `tcpdump -i lo -c N` (default
300000 packets) while part of this project's test suite runs (client and server
over loopback, TLS, the osmo-pcap protocol, metrics), so the figures are for
this project's own traffic. --keep DIR keeps the recorded capture there.
Ratios depend on the traffic: a capture of real mobile-network signalling will
compress differently; run the bench on one of yours (CAPTURE) to know.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from osmo_pcap.clean import compress  # noqa: E402

METHODS = [("gzip", 6), ("bz2", 9), ("xz", 6), ("zstd", 3), ("zstd", 6)]
# the tests whose loopback traffic makes the default capture (about a minute)
CAPTURE_TESTS = ["ops.test_user_journey", "shared.test_tls_e2e", "server.test_server_behaviour",
                 "client.test_client_lo", "server.test_storage"]
PACKETS = 300000


def have_zstd():
    if sys.version_info < (3, 14):
        return False
    try:
        from compression import zstd  # noqa: F401
    except ImportError:
        return False
    return True


def record_capture(directory, packets):
    """Record lo (at most packets packets) while CAPTURE_TESTS run; return its path."""
    tcpdump = shutil.which("tcpdump")
    if os.geteuid() != 0 or not tcpdump:
        sys.exit("recording a capture needs root and tcpdump; or name a capture file")
    path = os.path.join(directory, "project-traffic-lo.pcap")
    cap = subprocess.Popen([tcpdump, "-i", "lo", "-s", "0", "-U", "-c", str(packets), "-w", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # tcpdump is listening
        print("recording lo while these tests run: %s" % " ".join(CAPTURE_TESTS))
        sys.stdout.flush()
        env = dict(os.environ)
        env.pop("CI", None)  # missing peers skip here: this is a traffic source
        subprocess.call([sys.executable, os.path.join(REPO, "tests", "run.py")] + CAPTURE_TESTS,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    finally:
        if cap.poll() is None:
            cap.terminate()
        err = cap.communicate()[1]
        cap.stderr.close()
    print("tcpdump: " + " ".join(err.decode("utf-8", "replace").split("\n")[-3:]).strip())
    return path


def pcap_summary(path):
    """Return the number of packets, read with osmo_pcap's pcap reader."""
    from osmo_pcap import pcapfile
    with open(path, "rb") as f:
        data = f.read()
    n = sum(1 for _ in pcapfile.iter_records(data))
    return n


def bench_one(src, workdir, method, level):
    """Compress a copy of src; return (out_bytes, cpu_s, wall_s)."""
    copy = os.path.join(workdir, "trace-bench-20250101_000000.pcap")
    shutil.copyfile(src, copy)
    c0, w0 = time.process_time(), time.time()
    final, n_in, n_out = compress.compress_file(copy, method, level)
    cpu, wall = time.process_time() - c0, time.time() - w0
    with compress.open_reader(final, method) as z, open(src, "rb") as orig:
        while True:
            a = orig.read(compress.CHUNK)
            if z.read(len(a) or 1) != a:
                raise SystemExit("%s-%d: the round trip differs" % (method, level))
            if not a:
                break
    os.unlink(final)
    return n_out, cpu, wall


def main(argv):
    args = list(argv)
    packets, keep = PACKETS, None
    while args and args[0] in ("--packets", "--keep"):
        opt, val = args.pop(0), args.pop(0)
        if opt == "--packets":
            packets = int(val)
        else:
            keep = val
    work = tempfile.mkdtemp(prefix="osmo-pcap-bench-")
    try:
        captures = args
        if not captures:
            captures = [record_capture(work, packets)]
            if keep:
                shutil.copy(captures[0], keep)
        print("Python %s; compress_file, %d KiB chunks" % (sys.version.split()[0],
                                                           compress.CHUNK >> 10))
        for cap in captures:
            size = os.path.getsize(cap)
            try:
                extra = ", %d packets" % pcap_summary(cap)
            except Exception:
                extra = ""
            print("== %s: %.1f MB%s" % (os.path.basename(cap), size / 1e6, extra))
            print("%-9s %10s %7s %8s %8s %9s %9s" % ("method", "bytes", "ratio", "vs gzip",
                                                     "CPU s", "CPU/gzip", "MB/s CPU"))
            ref = None
            for method, level in METHODS:
                name = "%s-%d" % (method, level)
                if method == "zstd" and not have_zstd():
                    print("%-9s needs CPython 3.14+ (compression.zstd): skipped" % name)
                    continue
                out, cpu, wall = bench_one(cap, work, method, level)
                if ref is None:
                    ref = (out, cpu)
                print("%-9s %10d %6.1f%% %7.2fx %8.2f %8.2fx %9.1f" % (
                    name, out, 100.0 * out / size, out / float(ref[0]), cpu,
                    cpu / max(ref[1], 1e-9), size / 1e6 / max(cpu, 1e-9)))
                sys.stdout.flush()
    finally:
        shutil.rmtree(work, True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
