# SPDX-License-Identifier: AGPL-3.0-or-later
"""Shared helpers for the test suite (stdlib unittest only).

Peers (tshark, tcpdump, root, network namespaces) are optional locally: a
missing one skips the test. Under CI=true a missing peer is a failure.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SCRIPTS = {
    "client": os.path.join(REPO, "osmo_pcap_client.py"),
    "server": os.path.join(REPO, "osmo_pcap_server.py"),
    "clean": os.path.join(REPO, "osmo_pcap_clean.py"),
    "extcap": os.path.join(REPO, "osmo_pcap_extcap.py"),
}


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def need(condition, why):
    """Skip the calling test unless condition holds; under CI=true fail instead."""
    if condition:
        return
    if in_ci():
        raise AssertionError("required test peer missing under CI=true: " + why)
    raise unittest.SkipTest(why)


def require_tool(name):
    """Return the path of a peer tool, or skip (fail under CI)."""
    path = shutil.which(name)
    need(path is not None, "%s is not installed" % name)
    return path


# make test-deps unpacks Debian's prometheus package here (promtool only, no service)
PROMTOOL_DIR = os.environ.get("OSMO_PCAP_PROMTOOL_DIR", "/var/tmp/osmo-pcap-promtool")


def require_promtool():
    """Return the path of Prometheus' promtool, or skip (fail under CI)."""
    path = shutil.which("promtool") or os.path.join(PROMTOOL_DIR, "usr", "bin", "promtool")
    need(os.access(path, os.X_OK), "promtool is not installed (make test-deps)")
    return path


def can_capture(device="lo"):
    """Return None if libpcap opens device here, else why not (e.g. under qemu-user,
    where the ethtool ioctl libpcap needs is not implemented)."""
    from osmo_pcap.client import libpcap
    try:
        h, _ = libpcap.Handle.open_live(libpcap.load(), device, 100)
    except libpcap.LibpcapError as e:
        return str(e)
    h.close()
    return None


def require_capture(device="lo"):
    """Skip (fail under CI) unless root can open device with libpcap here."""
    require_root()
    why = can_capture(device)
    need(why is None, "cannot capture on %s here: %s" % (device, why))


def require_root():
    need(os.geteuid() == 0, "needs root (network namespaces, raw sockets)")


def data_file(name):
    return read_bytes(os.path.join(DATA, name))


def read_bytes(path):
    """Return a file's content (closing it: no ResourceWarning)."""
    with open(path, "rb") as f:
        return f.read()


def run(cmd, timeout=60, check=True, input=None, env=None, cwd=None):
    """Run cmd; return CompletedProcess with text stdout/stderr."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, input=input,
                       timeout=timeout, env=env, cwd=cwd, universal_newlines=True)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                             % (" ".join(cmd), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def wait_for(pred, what, limit=20.0):
    """Poll pred until it returns a true value and return it; a hang guard (fails
    after limit seconds), not a timing assertion."""
    end = time.monotonic() + limit
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.02)


def script_cmd(program, *args):
    """Return argv that runs a generated single-file program with this interpreter."""
    return [sys.executable, SCRIPTS[program]] + list(args)


_PORTS = os.environ.get("OSMO_PCAP_PORT_RANGE")   # "FIRST-LAST", set by tools/runtests.sh
_next_port = [None]


def free_port(family=socket.AF_INET, host="127.0.0.1", kind=socket.SOCK_STREAM):
    """Return a port that was free a moment ago on host.

    With OSMO_PCAP_PORT_RANGE, from that range only, in turn: suites of several
    interpreters that run at the same time never pick the same port (the range
    lies below the kernel's ephemeral ports, which it hands out itself).
    """
    if _PORTS:
        first, last = (int(x) for x in _PORTS.split("-"))
        for _ in range(last - first + 1):
            port = _next_port[0] or first
            _next_port[0] = port + 1 if port < last else first
            s = socket.socket(family, kind)
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
            finally:
                s.close()
        raise RuntimeError("no free port in %s" % _PORTS)
    s = socket.socket(family, kind)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


class TempDirTestCase(unittest.TestCase):
    """A TestCase with self.tmp, a fresh directory removed afterwards."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="osmo-pcap-test-")
        if os.environ.get("OSMO_PCAP_KEEP_TMP"):   # debugging: keep logs and files
            print("\nkeeping %s" % self.tmp)
        else:
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


def tshark_packets(path, fields=("frame.time_epoch", "frame.len", "frame.cap_len")):
    """Return tshark's per-packet field rows for a capture file."""
    tshark = require_tool("tshark")
    cmd = [tshark, "-n", "-r", path, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = run(cmd, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def epoch_text(value):
    """Return tshark's frame.time_epoch as "SECONDS.NNNNNNNNN".

    tshark up to 4.4 prints the number itself; 4.6's JSON output gives an ISO 8601
    UTC date ("2023-11-14T22:13:20.000001000Z") for the same field.
    """
    import calendar
    import re
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$", value)
    if not m:
        return value
    sec = calendar.timegm(tuple(int(g) for g in m.groups()[:6]))
    return "%d.%s" % (sec, (m.group(7) or "").ljust(9, "0"))


def tshark_read(path):
    """Return [(epoch string, len, caplen, bytes, interface id)] per packet, read by tshark."""
    import json
    tshark = require_tool("tshark")
    out = run([tshark, "-n", "-r", path, "-T", "json", "-x"], timeout=120).stdout
    pkts = []
    for entry in json.loads(out or "[]"):
        layers = entry["_source"]["layers"]
        frame = layers["frame"]
        raw = layers.get("frame_raw", [""])[0]
        pkts.append((epoch_text(frame["frame.time_epoch"]), int(frame["frame.len"]),
                     int(frame["frame.cap_len"]), bytes.fromhex(raw),
                     int(frame.get("frame.interface_id", 0))))
    return pkts


def tcpdump_packets(path):
    """Return (timestamp string, hex bytes) per packet as read by tcpdump -xx."""
    tcpdump = require_tool("tcpdump")
    out = run([tcpdump, "-nn", "-tt", "--nano", "-xx", "-r", path], timeout=120).stdout
    pkts = []
    for line in out.splitlines():
        if line.startswith("\t0x"):
            hexpart = line.split(":", 1)[1].strip().split("  ")[0]
            pkts[-1][1].append(hexpart.replace(" ", ""))
        elif line.strip():
            pkts.append((line.split(" ", 1)[0], []))
    return [(ts, bytes.fromhex("".join(h))) for ts, h in pkts]
