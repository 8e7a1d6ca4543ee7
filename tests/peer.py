# SPDX-License-Identifier: AGPL-3.0-or-later
"""A test client library: crafted osmo-pcap streams and a real server process.

Streams are built from the package's own encoders (wire, pcapfile, pcapng) or
from raw bytes when a test needs to break a rule. ServerProcess starts the
generated osmo_pcap_server.py with an INI file in a temp dir.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import time

from tests import support
from osmo_pcap import pcapfile, pcapng, tracename, wire


# ---------------------------------------------------------------- streams
def pcap_hdr(snaplen=9000, linktype=1, byteorder="<"):
    """Return a LINK_HDR frame with a pcap global header."""
    return wire.encode_link_hdr(pcapfile.encode_global_header(snaplen, linktype,
                                                              byteorder=byteorder))


def payload(i, size):
    """Return size bytes for packet i: a recognisable sequence number, then filler."""
    head = struct.pack("<I", i)
    return (head + bytes((i * 31 + k) & 0xFF for k in range(max(0, size - 4))))[:size]


def pcap_record(i, size=100, ts=1700000000, byteorder="<"):
    """Return the pcap record (header + data) of packet i."""
    return pcapfile.encode_record(ts + i // 1000, (i % 1000) * 1000, payload(i, size),
                                  byteorder=byteorder)


def pcap_data(i, size=100, ts=1700000000, byteorder="<"):
    """Return a LINK_DATA frame with packet i."""
    return wire.encode_link_data(pcap_record(i, size, ts, byteorder))


def pcap_stream(count, size=100, first=0, header=True, snaplen=9000, linktype=1):
    """Return LINK_HDR (optional) + count LINK_DATA frames as one bytes object."""
    parts = [pcap_hdr(snaplen, linktype)] if header else []
    parts += [pcap_data(i, size) for i in range(first, first + count)]
    return b"".join(parts)


def pcapng_hdr(names=("eth0",), snaplen=9000):
    """Return a LINK_HDR frame with SHB + one IDB per name."""
    blocks = [pcapng.encode_shb()]
    blocks += [pcapng.encode_idb(1, snaplen, if_name=n, if_filter="") for n in names]
    return wire.encode_link_hdr(b"".join(blocks))


def pcapng_data(i, size=100, interface=0, ts=1700000000):
    """Return a LINK_DATA frame with one EPB."""
    return wire.encode_link_data(pcapng.encode_epb(interface, ts * 1000000 + i, payload(i, size)))


def raw_frame(msg_type, body):
    """Return a frame with any type byte and the real length of body."""
    return struct.pack("!BBH", msg_type, 0, len(body)) + bytes(body)


def split_frames(stream):
    """Return the (type, payload bytes) frames of a well-formed stream."""
    out = []
    pos = 0
    while pos < len(stream):
        t, _, n = wire.FRAME_HDR.unpack_from(stream, pos)
        out.append((t, stream[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


# ---------------------------------------------------------------- client side
class ClientSocket(socket.socket):
    """A client's TCP socket that reads what the server says, as real clients do.

    The server of this project offers acknowledged delivery on every connection
    (ACK_OFFER); upstream clients read and drop it. A socket closed with unread
    bytes makes the kernel send a reset and throw away what it had not sent
    yet, so close() reads first: the last frames reach the server.
    """

    def close(self):
        if self.fileno() >= 0:
            try:
                self.setblocking(False)
                while self.recv(65536):
                    pass
            except OSError:
                pass
        socket.socket.close(self)


def connect(port, source="127.0.0.1", host="127.0.0.1", timeout=10):
    """Return a TCP socket to the server, bound to the source address (the identity)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = ClientSocket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


def wait_closed(sock, timeout=10):
    """Return True when the server closed sock (reads EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def send_all_then_wait_closed(port, data, source="127.0.0.1", half_close=False):
    """Send data on a new connection; return True when the server then closed it.

    half_close ends the sending side after data, so the server sees the end
    of the stream also when data broke no rule.
    """
    s = connect(port, source)
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return True
        return wait_closed(s)
    finally:
        s.close()


# ---------------------------------------------------------------- server process
class ServerProcess(object):
    """The real osmo_pcap_server.py in a temp dir, with its log in a file."""

    def __init__(self, tmp, clients, extra="", completed=False, base=None):
        self.tmp = tmp
        self.base = base or os.path.join(tmp, "base")
        os.makedirs(self.base, exist_ok=True)
        self.completed = os.path.join(tmp, "done") if completed else None
        if self.completed:
            os.makedirs(self.completed, exist_ok=True)
        self.port = support.free_port()
        lines = ["[server]", "listen = 127.0.0.1", "port = %d" % self.port,
                 "base_path = %s" % self.base, "log_level = debug"]
        if self.completed:
            lines.append("completed_path = %s" % self.completed)
        lines.append(extra)
        for name, ip, store in clients:
            lines += ["", "[client %s]" % name, "ip = %s" % ip, "store = %s" % store]
        self.ini = os.path.join(tmp, "server.ini")
        with open(self.ini, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(tmp, "server.log")
        self.proc = None

    def start(self, preexec_fn=None):
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(support.script_cmd("server", "-c", self.ini),
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec_fn)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("server exited %d at start:\n%s"
                                     % (self.proc.returncode, self.log()))
            if "listening on" in self.log():
                return self
            if time.monotonic() > deadline:
                raise AssertionError("server did not start:\n" + self.log())
            time.sleep(0.02)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, count=1, timeout=15):
        """Wait until text occurs count times in the log; return the log."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.log()
            if out.count(text) >= count:
                return out
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("%r not seen %d time(s) in the server log:\n%s"
                                     % (text, count, out[-4000:]))
            time.sleep(0.02)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stats(self, name="server", timeout=15):
        """Ask for the status (SIGUSR1) and return the counters of the next
        "stats NAME:" line (the server-wide line by default) as {counter: int},
        without their "server:" or "peer:" prefix."""
        marker = "stats %s:" % name
        n = self.log().count(marker)
        self.signal(signal.SIGUSR1)
        log = self.wait_log(marker, n + 1, timeout)
        line = [l for l in log.splitlines() if marker in l][-1]
        return dict((k.split(":")[-1], int(v)) for k, v in re.findall(r"(\S+)=(\d+)", line))

    def stop(self, timeout=15):
        """SIGTERM; return the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._logf.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._logf.close()

    def files(self, where=None):
        """Return the sorted trace file paths in base_path (or the given dir)."""
        d = where or self.base
        names = [n for n in os.listdir(d) if tracename.parse_name(n)]
        names.sort(key=lambda n: (tracename.parse_name(n).client,
                                  tracename.parse_name(n).sort_key()))
        return [os.path.join(d, n) for n in names]

    def all_files(self):
        return self.files(self.base) + (self.files(self.completed) if self.completed else [])


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def file_records(path):
    """Return the packets of a pcap or pcapng file with the project's own readers."""
    data = read_file(path)
    if path.endswith(".pcapng"):
        return list(pcapng.iter_packets(data))
    return list(pcapfile.iter_records(data))
