# SPDX-License-Identifier: AGPL-3.0-or-later
"""Stress (make test-stress): 10,000 TLS connections in mixed waves, flat memory.

One server process with TLS on its port takes ten waves of 1,000 connections:
a quarter good (client certificate, LINK_HDR and records, then closed), a
quarter with a certificate of another CA, a quarter without a certificate, a
quarter half-open (a ClientHello cut short, left waiting, then closed). The
server's RSS after the last wave must be within 5 MB of its RSS after the
first, and its descriptors back where they were (doc/server.md#memory); both
are read once the server has been quiet long enough to give freed memory back
to the system.
Before, closed TLS connections stayed alive until their time-outs ran out or
the cyclic garbage collector ran, and RSS grew by about 18 MB per 450
handshakes.
"""

import os
import shutil
import ssl
import tempfile
import threading
import time

from tests import peer, support
from tests import pki as pkimod
from osmo_pcap import memory

WAVES = int(os.environ.get("OSMO_PCAP_STRESS_WAVES", "10"))
PER_KIND = 250
THREADS = 4
WAIT = 120.0       # hang guard per wave, never a speed assertion
RSS_SLACK_KB = 5 * 1024


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class TLSWaves(support.TempDirTestCase):

    def setUp(self):
        # A prefix of its own: cleaners of other runs on a shared machine leave it alone.
        self.tmp = tempfile.mkdtemp(prefix="osmo-pcap-stress-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_ten_thousand_tls_connections_in_mixed_waves(self):
        support.require_tool("openssl")
        pki = pkimod.shared_pki()
        extra = ("tls_cert = %s\ntls_key = %s\ntls_client_auth = required\ntls_ca = %s\n"
                 "tls_handshake_timeout = 10s\nheader_timeout = 10s\n"
                 % (pki["server"][0], pki["server"][1], pki["ca"]))
        # ip = any: connections from every address are sniffed and go through a
        # handshake (the spread of source addresses stays within the per-address
        # limits of waiting connections).
        srv = peer.ServerProcess(self.tmp, [("good", "any", "no\ntls = required\n"
                                                            "tls_identity = client1")], extra)
        srv.start()
        self.addCleanup(srv.kill)
        pid = srv.proc.pid
        contexts = {}
        for kind, cert in (("good", "client1"), ("wrong-ca", "other-client1"),
                           ("no-cert", None)):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if cert:
                ctx.load_cert_chain(*pki[cert])
            contexts[kind] = ctx
        stream = peer.pcap_stream(3)

        def source(i):
            return "127.0.%d.%d" % (10 + (i // 200) % 50, 1 + i % 200)

        def tls_one(kind, i):
            s = peer.connect(srv.port, source(i), timeout=30)
            try:
                t = contexts[kind].wrap_socket(s)
                if kind == "good":
                    t.sendall(stream)
                    t.recv(8)            # the ACK_OFFER
                else:
                    t.recv(8)            # TLS 1.3: the refusal comes as an alert
                t.close()
            except (OSError, ssl.SSLError):
                pass
            finally:
                s.close()

        def half_open(i0):
            socks = []
            for i in range(i0, i0 + 50):
                s = peer.connect(srv.port, source(i), timeout=30)
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                socks.append(s)
            time.sleep(0.2)
            for s in socks:
                s.close()

        def wave(w):
            jobs = []
            for i in range(PER_KIND):
                for kind in ("good", "wrong-ca", "no-cert"):
                    jobs.append((tls_one, (kind, w * 10000 + i)))
            for i0 in range(0, PER_KIND, 50):
                jobs.append((half_open, (w * 10000 + 5000 + i0,)))
            lock = threading.Lock()
            errors = []

            def worker():
                while True:
                    with lock:
                        if not jobs:
                            return
                        fn, args = jobs.pop()
                    try:
                        fn(*args)
                    except Exception as e:       # reported below, after the wave
                        errors.append(repr(e))
            threads = [threading.Thread(target=worker) for _ in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(WAIT)
            self.assertEqual(errors, [])

        def settled(limit):
            """Wait until the server holds no more descriptors than limit, and for the
            time it may take to give freed memory back (osmo_pcap/memory.py); return
            (RSS, descriptors)."""
            deadline = time.monotonic() + WAIT
            while fds(pid) > limit and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(memory.QUIET + 1.0)
            return rss_kb(pid), fds(pid)

        quiet = fds(pid)
        wave(0)
        rss0, fds0 = settled(quiet)
        if os.environ.get("OSMO_PCAP_STRESS_VERBOSE"):
            print("  wave 1: RSS %d kB, descriptors %d" % (rss0, fds0))
        for w in range(1, WAVES):
            wave(w)
            if os.environ.get("OSMO_PCAP_STRESS_VERBOSE"):
                print("  wave %d: RSS %d kB, descriptors %d" % ((w + 1,) + settled(quiet)))
        rss1, fds1 = settled(quiet)
        counts = srv.stats()
        print("\n  RSS after wave 1: %d kB, after wave %d: %d kB (%+d kB); descriptors %d, %d"
              % (rss0, WAVES, rss1, rss1 - rss0, fds0, fds1))
        self.assertLessEqual(fds1, quiet)
        self.assertLessEqual(rss1 - rss0, RSS_SLACK_KB)
        self.assertEqual(counts["connect"], 4 * PER_KIND * WAVES)
        self.assertEqual(counts["tls_connect"], PER_KIND * WAVES)
        self.assertEqual(srv.stop(), 0)
        self.assertNotIn("Traceback", srv.log())
