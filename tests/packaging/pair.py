#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Run an installed server and client against each other on lo; print the result.

Used by the packaging tests inside a Debian chroot (the .deb's /usr/bin) and on a
virtualenv (pip's console commands); standard library only, no osmo_pcap import:
the trace files are read with struct here. Needs root (capture on lo), ideally in
a network namespace of its own. Prints one JSON object: the packets in the trace
files, the datagrams sent, the trace file names, and the logs when a step failed.

Usage: pair.py --bin DIR --dir WORKDIR [--count N] [--format pcap|pcapng]
"""

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

SERVER_INI = """[server]
listen = 127.0.0.1
port = {port}
base_path = {dir}/traces

[client lo]
ip = 127.0.0.1
"""
CLIENT_INI = """[client]
devices = lo
filter = udp port {udp_port}
file_format = {fmt}

[server main]
host = 127.0.0.1
port = {port}
"""


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def count_packets(path):
    """Packets of a pcap or pcapng file, read with struct alone."""
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] == b"\x0a\x0d\x0d\x0a":
        n, pos = 0, 0
        bo = "<" if struct.unpack_from("<I", buf, 8)[0] == 0x1A2B3C4D else ">"
        while pos + 8 <= len(buf):
            btype, total = struct.unpack_from(bo + "II", buf, pos)
            if btype == 0x0A0D0D0A:
                bo = "<" if struct.unpack_from("<I", buf, pos + 8)[0] == 0x1A2B3C4D else ">"
                total = struct.unpack_from(bo + "I", buf, pos + 4)[0]
            elif btype in (3, 6):
                n += 1
            if total < 12:
                break
            pos += total
        return n
    bo = "<" if struct.unpack_from("<I", buf, 0)[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    n, pos = 0, 24
    while pos + 16 <= len(buf):
        caplen = struct.unpack_from(bo + "I", buf, pos + 8)[0]
        pos += 16 + caplen
        n += 1
    return n


def wait_for(pred, proc, what, limit=20.0):
    end = time.monotonic() + limit
    while not pred():
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %d" % (what, proc.returncode))
        if time.monotonic() > end:
            raise RuntimeError("%s: nothing within %d s" % (what, limit))
        time.sleep(0.05)


def logged(path, text):
    with open(path, errors="replace") as f:
        return text in f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--format", default="pcapng")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.dir, "traces"), exist_ok=True)
    values = {"dir": args.dir, "port": free_port(socket.SOCK_STREAM),
              "udp_port": free_port(socket.SOCK_DGRAM), "fmt": args.format}
    for name, text in (("server.ini", SERVER_INI), ("client.ini", CLIENT_INI)):
        with open(os.path.join(args.dir, name), "w") as f:
            f.write(text.format(**values))
    procs, result, sent = [], {}, 0
    try:
        for prog in ("server", "client"):
            log = open(os.path.join(args.dir, prog + ".log"), "w")
            procs.append(subprocess.Popen(
                [os.path.join(args.bin, "osmo-pcap-" + prog), "-c",
                 os.path.join(args.dir, prog + ".ini")], stdout=log, stderr=subprocess.STDOUT))
            log.close()
            if prog == "server":
                wait_for(lambda: logged(os.path.join(args.dir, "server.log"), "listening on"),
                         procs[0], "the server")
        wait_for(lambda: logged(os.path.join(args.dir, "server.log"), ": connected"),
                 procs[1], "the client's connection")
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", values["udp_port"]))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(args.count):
            tx.sendto(b"osmo-pcap packaging test %d" % i, ("127.0.0.1", values["udp_port"]))
            sent += 1
            time.sleep(0.01)
        time.sleep(1.5)         # the client's capture time-out and the server's flush
        rx.close()
        tx.close()
    except RuntimeError as e:
        result["error"] = str(e)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        result["status"] = [p.returncode for p in procs]
    traces = os.path.join(args.dir, "traces")
    result["files"] = sorted(n for n in os.listdir(traces) if n.startswith("trace-"))
    result["packets"] = sum(count_packets(os.path.join(traces, n)) for n in result["files"])
    result["sent"] = sent
    if "error" in result or result["packets"] != sent:
        for prog in ("server", "client"):
            path = os.path.join(args.dir, prog + ".log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    result[prog + "_log"] = f.read()[-3000:]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
