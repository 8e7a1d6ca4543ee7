#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark helper: keep the machine out of the figures.

rerun_in_netns() re-runs a benchmark inside a fresh network namespace. Traffic
on the host's `lo` is seen (and copied) by every packet socket capturing there,
e.g. other people's tests on a shared machine, and that copying is charged to
whichever process happens to run the softirq: a private namespace has a `lo` of
its own. Root and the `ip` command are needed; otherwise the benchmark runs
where it is.

Inside it, guest memory is kept (keep_guest_memory()): on a virtual machine
with free page reporting (virtio-balloon), free 2 MiB blocks are handed back to
the host, and the next write to such a page faults into the host. The kernel
copying into tmpfs pages then costs up to 5x more, at random: the same 568 MB
written through the same process took 0.17 to 0.87 s between runs, and one TLS
server run 5.5 instead of 2.0 CPU s per million 1400-byte packets. Reporting is
off for the benchmark's duration (page_reporting_order above the largest
order) and restored after.
"""

import os
import shutil
import subprocess
import sys

ENV = "OSMO_PCAP_BENCH_NETNS"
REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"


def rerun_in_netns():
    """Run sys.argv again in a new namespace and return its exit status, or
    None to go on here (already inside, not root, or no `ip`)."""
    if os.environ.get(ENV):
        print("(in network namespace %s: a lo of its own)" % os.environ[ENV])
        sys.stdout.flush()
        return None
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("(not root or no ip command: running in the current network namespace)")
        return None
    name = "opbench%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    saved = keep_guest_memory()
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        env = dict(os.environ, **{ENV: name})
        return subprocess.call(["ip", "netns", "exec", name, sys.executable] + sys.argv,
                               env=env)
    finally:
        restore_guest_memory(saved)
        subprocess.run(["ip", "netns", "del", name])


def keep_guest_memory():
    """Turn free page reporting off; return the value to restore (None: nothing done)."""
    try:
        with open(REPORTING) as f:
            saved = f.read().strip()
    except OSError:
        return None
    # The kernel takes at most its number of page orders, which differs by build:
    # the first value it accepts from the top is above every order it has.
    for order in range(16, int(saved), -1):
        try:
            with open(REPORTING, "w") as f:
                f.write("%d\n" % order)
        except OSError:
            continue
        print("(free page reporting off for the run: page_reporting_order %s -> %d)"
              % (saved, order))
        sys.stdout.flush()
        return saved
    return None


def restore_guest_memory(saved):
    if saved is not None:
        with open(REPORTING, "w") as f:
            f.write(saved + "\n")


if __name__ == "__main__":
    print(__doc__.split("\n")[0])
