#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark the cleanup planner: 100,000 synthetic trace files, every rule on.

Prints the median time of the plan over several runs and files/s, plus the
cost of parsing the same number of names (what the directory scan adds).
Target: the plan well under 2 s. Usage: bench/clean_plan.py [N_FILES]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from osmo_pcap import tracename
from osmo_pcap.clean.plan import Policy, FoundTrace, plan

DAY = 86400


def synthetic(n, clients=1000, start=time.mktime((2024, 1, 1, 0, 0, 0, 0, 0, -1))):
    """Return (names, FoundTrace list): n files over clients, two directories, one per hour."""
    names, files = [], []
    per = max(1, n // clients)
    for i in range(n):
        c, k = i % clients, i // clients
        client = "bts-%d" % c if c % 3 else "bts-%d-x" % (c // 3)  # dashed names too
        t = start + k * 3600 + c
        comp = "gz" if k < per // 2 else None
        name = tracename.format_name(client, time.localtime(t), "pcapng" if c % 2 else "pcap")
        if comp:
            name += "." + comp
        d = "/srv/done" if k < per - 2 else "/srv/base"
        names.append(name)
        files.append(FoundTrace(d + "/" + name, d, client, t, 0, 1 << 20, 1 << 20,
                               1 if d == "/srv/done" else 2, comp, False))
    return names, files


def median_time(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    names, files = synthetic(n)
    now = files[-1].time + DAY
    default = Policy(max_age=90 * DAY, max_files=80, compress_after=3)
    clients = {"bts-1": Policy(max_files=20, max_bytes=10 << 20)}
    result = []
    t_plan = median_time(lambda: result.append(
        plan(files, now, default, clients, max_bytes=60000 << 20, need_free={1: 1 << 30})))
    p = result[-1]

    def parse_all():
        for name in names:
            tracename.parse_name(name).timestamp()
    t_parse = median_time(parse_all, 3)
    print("python %s, %d files, %d clients" % (sys.version.split()[0], n, 1000))
    print("plan:  %.3f s (%.0f files/s), %d deletions, %d compressions"
          % (t_plan, n / t_plan, len(p.delete), len(p.compress)))
    print("names: %.3f s (%.0f files/s) to parse the names and their times"
          % (t_parse, n / t_parse))
    return 0 if t_plan < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
