#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark (not a test): the bulk path for runs of equal packets, in one process.

The client's framer (capture.make_framer, pcap format) and the server's
parser (ingest.Parser.consume) each take runs of RUN packets of one length by
a few calls into C. Here both are timed on the same in-memory records, with
runs on and with runs off (a run span longer than any round, which leaves the
per-packet loops), on traffic shapes from one length to random lengths. The two ways
must give the same bytes; the script checks that before timing. Prints
nanoseconds per packet and the ratio on/off.

Usage: bench/runs.py [--packets 1100] [--repeat 200]
"""

import argparse
import random
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from osmo_pcap import pcapfile, wire  # noqa: E402
from osmo_pcap.client import capture  # noqa: E402
from osmo_pcap.server import ingest  # noqa: E402

RECORD = struct.Struct("<IIII")
SNAPLEN = 65535
NEVER = 1 << 60     # a run span no round reaches


def shapes(n):
    """(name, [(caplen, len)] * n): the traffic shapes compared."""
    rnd = random.Random(1)
    mixed = (60, 100, 214, 1400, 90)
    return [
        ("all 100 bytes", [(100, 100)] * n),
        ("all 1400 bytes", [(1400, 1400)] * n),
        ("100 bytes, 1 in 7 cut", [(100, 140 if i % 7 == 0 else 100) for i in range(n)]),
        ("RTP-like: 30 x 214, 1 x 90", [(90, 90) if i % 31 == 30 else (214, 214)
                                        for i in range(n)]),
        ("five sizes in turn", [(mixed[i % 5],) * 2 for i in range(n)]),
        ("random of six sizes", [(rnd.choice(mixed + (512,)),) * 2 for _ in range(n)]),
    ]


def records(items):
    buf = bytearray()
    for i, (caplen, length) in enumerate(items):
        buf += RECORD.pack(1700000000, i, caplen, length) + bytes([i & 255]) * caplen
    return bytes(buf)


def best_ns(fn, n, repeat):
    best = None
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        d = (time.perf_counter() - t) / (repeat * n) * 1e9
        best = d if best is None or d < best else best
    return best


def client_case(items, repeat):
    recs = records(items)
    view = memoryview(recs)
    out = {}
    times = {}
    real = capture._run_parts
    for mode in ("on", "off"):
        capture._run_parts = real if mode == "on" else (lambda caplen: (None,) * 3 + (NEVER,))
        acc = [0] * 4
        framer = capture.make_framer("pcap", 0, acc, None, True)
        batch = bytearray()

        def once():
            del batch[:]
            framer(view, len(items), len(recs), batch)
        once()
        out[mode] = bytes(batch)
        times[mode] = best_ns(once, len(items), repeat)
    capture._run_parts = real
    if out["on"] != out["off"]:
        raise SystemExit("client framer: runs on and off differ")
    return times, out["on"]


def server_case(stream, count, repeat):
    link = wire.encode_link_hdr(pcapfile.encode_global_header(SNAPLEN, 1))
    data = link + stream
    mv = memoryview(data)
    times = {}
    got = {}
    real = ingest._run_parts
    for mode in ("on", "off"):
        ingest._run_parts = real if mode == "on" else (lambda bo, caplen: (None,) * 2 + (NEVER,))
        ingest._bulk["<"].clear()
        parser = ingest.Parser(SNAPLEN)
        pos, _, event = parser.consume(mv, 0, len(data), [])
        if event is None:
            raise SystemExit("server parser: the link header was not accepted")

        def once():
            out = []
            p, nbytes, ev = parser.consume(mv, pos, len(data), out)
            if ev is not None or p != len(data):
                raise SystemExit("server parser stopped at %d: %r" % (p, ev))
            return out
        got[mode] = b"".join(once())
        times[mode] = best_ns(once, count, repeat)
    ingest._run_parts = real
    ingest._bulk["<"].clear()
    if got["on"] != got["off"]:
        raise SystemExit("server parser: runs on and off differ")
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1100, help="packets per round")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    print("Python %s; %d packets per round; ns per packet, best of 5"
          % (sys.version.split()[0], args.packets))
    print("%-28s %9s %9s %7s   %9s %9s %7s" % ("traffic", "client", "per-pkt", "ratio",
                                               "server", "per-pkt", "ratio"))
    for name, items in shapes(args.packets):
        ct, frames = client_case(items, args.repeat)
        st = server_case(frames, len(items), args.repeat)
        print("%-28s %9.0f %9.0f %7.2f   %9.0f %9.0f %7.2f" % (
            name, ct["on"], ct["off"], ct["on"] / ct["off"],
            st["on"], st["off"], st["on"] / st["off"]))


if __name__ == "__main__":
    main()
