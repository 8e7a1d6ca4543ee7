# SPDX-License-Identifier: AGPL-3.0-or-later
"""Test peers for the ZeroMQ publisher: a pyzmq SUB in a separate process, and a
hand-made ZMTP subscriber on a raw socket for cases libzmq will not produce.

pyzmq is a test-only peer living in its own virtualenv (tools/test-deps.sh):
OSMO_PCAP_ZMQ_VENV names that virtualenv, default /var/tmp/osmo-pcap-venv.
"""

import json
import os
import socket
import struct
import subprocess
import time

from tests import support

ZMQ_PYTHON = os.path.join(os.environ.get("OSMO_PCAP_ZMQ_VENV", "/var/tmp/osmo-pcap-venv"),
                          "bin", "python")
END_TOPIC = b"zz.end"

# Runs under the venv's python: SUB socket(s), prints received messages as JSON
# once END_TOPIC arrives (or --count N messages did). argv: endpoint, then topics
# (hex; "-" = subscribe to all). With --stall it subscribes, says so, then never
# reads (a stuck subscriber) until its stdin closes.
SUB_SCRIPT = r"""
import json, sys, zmq
args = sys.argv[1:]
stall = args and args[0] == "--stall"
if stall:
    args = args[1:]
count = None
if args and args[0] == "--count":
    count = int(args[1])
    args = args[2:]
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.LINGER, 0)
if stall:
    s.setsockopt(zmq.RCVHWM, 1)
    s.setsockopt(zmq.RCVBUF, 4096)
s.connect(args[0])
for t in args[1:]:
    s.setsockopt(zmq.SUBSCRIBE, b"" if t == "-" else bytes.fromhex(t))
s.setsockopt(zmq.SUBSCRIBE, b"zz.end")
print("subscribed", flush=True)
if stall:
    sys.stdin.read()
    sys.exit(0)
s.setsockopt(zmq.RCVTIMEO, 20000)
msgs = []
while True:
    try:
        parts = s.recv_multipart()
    except zmq.Again:
        print(json.dumps({"timeout": True, "msgs": msgs}), flush=True)
        sys.exit(3)
    if parts[0] == b"zz.end":
        break
    msgs.append([p.hex() for p in parts])
    if count is not None and len(msgs) >= count:
        break
print(json.dumps({"msgs": msgs}), flush=True)
"""


def have_pyzmq():
    if not os.path.exists(ZMQ_PYTHON):
        return False
    return subprocess.call([ZMQ_PYTHON, "-c", "import zmq"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


def need_pyzmq():
    support.need(have_pyzmq(), "pyzmq in %s (tools/test-deps.sh installs it)" % ZMQ_PYTHON)


class ZmqSub(object):
    """A pyzmq SUB socket in its own process."""

    def __init__(self, endpoint, topics, stall=False, count=None):
        args = [ZMQ_PYTHON, "-c", SUB_SCRIPT] + (["--stall"] if stall else [])
        args += ["--count", str(count)] if count is not None else []
        args += [endpoint]
        args += ["-" if t == b"" else t.hex() for t in topics]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.topics = topics
        self.done = False

    def wait_subscribed(self):
        line = self.proc.stdout.readline()
        if line.strip() != b"subscribed":
            raise AssertionError("SUB peer failed: %r %r" % (line, self.proc.stderr.read()))

    def result(self, timeout=30):
        """Return the list of messages (lists of bytes parts) the SUB received."""
        out, err = self.proc.communicate(timeout=timeout)
        self.done = True
        if self.proc.returncode != 0:
            raise AssertionError("SUB peer exited %d: %r %r" % (self.proc.returncode, out, err))
        data = json.loads(out.decode().strip().splitlines()[-1])
        return [[bytes.fromhex(p) for p in m] for m in data["msgs"]]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        if not self.done:
            self.done = True
            self.proc.communicate()


def wait_for(loop, condition, limit=20.0, step=0.02, also=None):
    """Run the loop until condition() holds; fail after limit seconds (a safety net)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.0f s" % limit)
        loop.run_once(step)
        if also is not None:
            also()


# ------------------------------------------------------------ raw ZMTP peer

def frame(body, more=False, command=False):
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes((flags | 2,)) + struct.pack("!Q", len(body)) + body
    return bytes((flags, len(body))) + body


def command(name, data=b""):
    return frame(bytes((len(name),)) + name + data, command=True)


def greeting(major=3, minor=1, mechanism=b"NULL"):
    return (b"\xff" + b"\0" * 8 + b"\x7f" + bytes((major, minor)) + mechanism.ljust(20, b"\0")
            + b"\0" * 32)


def ready(socket_type=b"SUB"):
    return command(b"READY", b"\x0bSocket-Type" + struct.pack("!I", len(socket_type))
                   + socket_type)


class RawPeer(object):
    """A ZMTP peer on a non-blocking socket, parsed by hand."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.eof = False
        self.greeting = None
        self.frames = []   # (flags, body)

    def send(self, data):
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def pump(self):
        """Read what is there and parse the greeting and frames."""
        while True:
            try:
                d = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.eof = True
                break
            if not d:
                self.eof = True
                break
            self.buf += d
        if self.greeting is None and len(self.buf) >= 64:
            self.greeting = bytes(self.buf[:64])
            del self.buf[:64]
        while self.greeting is not None and len(self.buf) >= 2:
            flags = self.buf[0]
            if flags & 2:
                if len(self.buf) < 9:
                    break
                n, start = struct.unpack_from("!Q", self.buf, 1)[0], 9
            else:
                n, start = self.buf[1], 2
            if len(self.buf) < start + n:
                break
            self.frames.append((flags, bytes(self.buf[start:start + n])))
            del self.buf[:start + n]

    def messages(self):
        """Return complete data messages (lists of parts) received so far."""
        msgs, cur = [], []
        for flags, body in self.frames:
            if flags & 4:
                continue
            cur.append(body)
            if not flags & 1:
                msgs.append(cur)
                cur = []
        return msgs

    def commands(self):
        return [body for flags, body in self.frames if flags & 4]

    def close(self):
        self.sock.close()
