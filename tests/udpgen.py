# SPDX-License-Identifier: AGPL-3.0-or-later
"""A paced UDP generator for the delivery tests, run as its own process.

Usage: udpgen.py PORT RATE COUNT [FIRST]
Sends COUNT datagrams numbered FIRST, FIRST+1, ... to 127.0.0.1:PORT at RATE per
second (in bursts every 10 ms, so the pace holds at high rates), each payload
being tests.client.test_client_lo.payload(n). Prints "sent N" when done; stops
early (printing what it sent) on SIGTERM.
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.client.test_client_lo import payload  # noqa: E402

TICK = 0.01


def main(argv):
    port, rate, count = int(argv[0]), float(argv[1]), int(argv[2])
    first = int(argv[3]) if len(argv) > 3 else 0
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = ("127.0.0.1", port)
    start = time.monotonic()
    n = 0
    while n < count and not stop:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while n < due:
            try:
                s.sendto(payload(first + n), addr)
            except BlockingIOError:
                break
            n += 1
        time.sleep(TICK)
    s.close()
    print("sent %d" % n)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
