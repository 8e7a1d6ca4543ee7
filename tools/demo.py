#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""`make demo`: a server and a client on loopback, a little traffic, the files.

Run as root on a Debian-like machine. Installs libpcap with apt-get if it is
missing, writes both configs into a fresh temporary directory, starts the
real programs (the generated top-level scripts), sends UDP datagrams over
`lo` to a socket bound for the purpose (so no ICMP is generated), stops both
programs with SIGTERM and prints every trace file with its packet count as
read back by osmo_pcap's own pcap/pcapng readers. Nothing is left running;
the directory with configs, logs and traces is kept for a look.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DATAGRAMS = 20
START_LIMIT = 15.0  # seconds to wait for each program to come up (a hang guard)

SERVER_INI = """\
; osmo-pcap demo server: listens on loopback, one client (the demo client).
[server]
listen = 127.0.0.1
port = {port}
base_path = {dir}/traces
rotate_localtime = hour

[client demo]
ip = 127.0.0.1
store = yes
"""

CLIENT_INI = """\
; osmo-pcap demo client: captures the demo's UDP traffic on lo.
[client]
devices = lo
filter = udp port {udp_port}
file_format = {file_format}

[server demo]
host = 127.0.0.1
port = {port}
"""


def say(text):
    print("demo: " + text)
    sys.stdout.flush()


def have_libpcap():
    import ctypes.util
    if ctypes.util.find_library("pcap"):
        return True
    for name in ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so"):
        try:
            import ctypes
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def ensure_libpcap():
    """Install libpcap0.8 with apt-get when no libpcap can be loaded."""
    if have_libpcap():
        return True
    if not shutil.which("apt-get"):
        say("libpcap is missing and there is no apt-get: install libpcap and retry")
        return False
    say("installing libpcap0.8 (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", "libpcap0.8"]):
        if subprocess.call(cmd, env=env) != 0:
            say("'%s' failed" % " ".join(cmd))
            return False
    return have_libpcap()


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def tcp_listening(port):
    """True if something listens on TCP port (read from /proc: no connection made,
    since a connection from 127.0.0.1 would count as the demo client)."""
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                    return True
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return False


def logged(path, text):
    try:
        with open(path) as f:
            return text in f.read()
    except OSError:
        return False


def wait_until(pred, proc, what):
    end = time.monotonic() + START_LIMIT
    while not pred():
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %d" % (what, proc.returncode))
        if time.monotonic() > end:
            raise RuntimeError("%s did not come up within %d s" % (what, START_LIMIT))
        time.sleep(0.05)


def start(program, config, logfile):
    script = os.path.join(REPO, "osmo_pcap_%s.py" % program)
    log = open(logfile, "w")
    try:
        return subprocess.Popen([sys.executable, script, "-c", config],
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def stop(proc, what):
    """SIGTERM, then wait; SIGKILL only if it does not stop (and say so)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        say("%s did not stop on SIGTERM: killed" % what)
        proc.kill()
        return proc.wait()


def send_traffic(udp_port, count):
    """Send count datagrams over lo to a bound socket; return how many arrived."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", udp_port))
        rx.settimeout(5)
        got = 0
        for i in range(count):
            tx.sendto(("osmo-pcap demo datagram %d" % i).encode(), ("127.0.0.1", udp_port))
            try:
                rx.recv(2048)
                got += 1
            except socket.timeout:
                pass
            time.sleep(0.01)
        return got
    finally:
        rx.close()
        tx.close()


def count_packets(path):
    """Return (format, packets) of a trace file, read with osmo_pcap's readers."""
    from osmo_pcap import pcapfile, pcapng
    with open(path, "rb") as f:
        buf = f.read()
    if path.endswith(".gz"):
        import gzip
        buf = gzip.decompress(buf)
    if pcapng.shb_byteorder(buf, 0) is not None:
        return "pcapng", sum(1 for _ in pcapng.iter_packets(buf))
    return "pcap", sum(1 for _ in pcapfile.iter_records(buf))


def show_files(traces):
    total = 0
    names = sorted(n for n in os.listdir(traces) if not n.startswith(".")) \
        if os.path.isdir(traces) else []
    if not names:
        say("no trace files in %s" % traces)
    for name in names:
        path = os.path.join(traces, name)
        fmt, n = count_packets(path)
        total += n
        say("  %-48s %7d bytes  %4d packets (%s)" % (name, os.path.getsize(path), n, fmt))
    return total


def run(args):
    if os.geteuid() != 0:
        say("run as root: capturing on lo needs CAP_NET_RAW")
        return 1
    if not ensure_libpcap():
        return 1
    for p in ("server", "client"):
        if not os.path.exists(os.path.join(REPO, "osmo_pcap_%s.py" % p)):
            say("osmo_pcap_%s.py is missing: run make first" % p)
            return 1
    tmp = tempfile.mkdtemp(prefix="osmo-pcap-demo.")
    os.mkdir(os.path.join(tmp, "traces"))
    port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    values = {"dir": tmp, "port": port, "udp_port": udp_port, "file_format": args.format}
    server_ini = os.path.join(tmp, "server.ini")
    client_ini = os.path.join(tmp, "client.ini")
    with open(server_ini, "w") as f:
        f.write(SERVER_INI.format(**values))
    with open(client_ini, "w") as f:
        f.write(CLIENT_INI.format(**values))
    say("configs, logs and traces in %s" % tmp)
    procs = []
    try:
        return demo(tmp, port, udp_port, server_ini, client_ini, procs)
    finally:
        for what, p in reversed(procs):  # Ctrl-C or a bug: still leave nothing running
            if p.poll() is None:
                stop(p, what)


def demo(tmp, port, udp_port, server_ini, client_ini, procs):
    """Start, feed, stop, show; procs collects (name, Popen) for the caller."""
    try:
        server = start("server", server_ini, os.path.join(tmp, "server.log"))
        procs.append(("server", server))
        wait_until(lambda: tcp_listening(port), server, "the server")
        say("server listening on 127.0.0.1:%d (pid %d)" % (port, server.pid))
        client = start("client", client_ini, os.path.join(tmp, "client.log"))
        procs.append(("client", client))
        wait_until(lambda: logged(os.path.join(tmp, "server.log"), ": connected"), client,
                   "the client's connection")
        say("client capturing on lo, connected (pid %d)" % client.pid)
        got = send_traffic(udp_port, DATAGRAMS)
        say("sent %d UDP datagrams to 127.0.0.1:%d (%d received)" % (DATAGRAMS, udp_port, got))
        time.sleep(1.5)  # capture timeout + server flush interval
    except RuntimeError as e:
        say(str(e))
        for what, p in reversed(procs):
            stop(p, what)
        for what, _ in procs:
            say("--- %s.log" % what)
            with open(os.path.join(tmp, what + ".log")) as f:
                sys.stdout.write(f.read())
        return 1
    status = 0
    for what, p in reversed(procs):  # client first, so the server sees everything
        rc = stop(p, what)
        say("%s stopped (exit status %d)" % (what, rc))
        if rc != 0:
            status = 1
    say("trace files (packets counted with osmo_pcap.pcapfile / osmo_pcap.pcapng):")
    total = show_files(os.path.join(tmp, "traces"))
    if total < DATAGRAMS:
        say("expected at least %d packets, found %d; see the logs in %s"
            % (DATAGRAMS, total, tmp))
        status = 1
    else:
        say("OK: %d packets captured, forwarded and stored; nothing left running" % total)
    say("remove the demo directory with: rm -r %s" % tmp)
    return status


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcapng",
                    help="the client's file_format (default: %(default)s)")
    try:
        return run(ap.parse_args(argv))
    except KeyboardInterrupt:
        say("interrupted; both programs stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
