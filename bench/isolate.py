#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Benchmark helper: re-run a benchmark inside a fresh network namespace.

Traffic on the host's `lo` is seen (and copied) by every packet socket
capturing there, e.g. other people's tests on a shared machine, and that
copying is charged to whichever process happens to run the softirq: a private
namespace has a `lo` of its own. Root and the `ip` command are needed;
otherwise the benchmark runs where it is.
"""

import os
import shutil
import subprocess
import sys

ENV = "OSMO_PCAP_BENCH_NETNS"


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
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        env = dict(os.environ, **{ENV: name})
        return subprocess.call(["ip", "netns", "exec", name, sys.executable] + sys.argv,
                               env=env)
    finally:
        subprocess.run(["ip", "netns", "del", name])


if __name__ == "__main__":
    print(__doc__.split("\n")[0])
