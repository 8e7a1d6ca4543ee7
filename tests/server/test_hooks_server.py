# SPDX-License-Identifier: AGPL-3.0-or-later
"""Server hooks end to end: the real server process, crafted clients, real peers
(pyzmq SUB, tshark reading the tap, an on_complete recorder script)."""

import os
import socket
import ssl
import stat
import subprocess
import sys
import unittest

from tests import peer, support
from tests.zmtp_peers import ZmqSub, need_pyzmq
from osmo_pcap import pcapfile, pcapng, wire
from osmo_pcap import ini
from osmo_pcap.server import hooks
from osmo_pcap.loop import Loop

A_IP, B_IP = "127.0.0.2", "127.0.0.3"


def pcap_client(count, first=0, size=100):
    """Return (link header payload, [record payloads]) of a pcap Ethernet client."""
    hdr = pcapfile.encode_global_header(9000, 1)
    return hdr, [peer.pcap_record(i, size) for i in range(first, first + count)]


def pcapng_raw_client(count):
    """Return (link header payload, [EPB payloads]) of a pcapng client on a raw-IP link."""
    hdr = (pcapng.encode_shb()
           + pcapng.encode_idb(101, 9000, if_name="tun0", if_filter="", if_tsresol=9))
    data = []
    for i in range(count):
        pkt = b"\x45\x00" + (20 + 8 + i).to_bytes(2, "big") + peer.payload(i, 24 + i)
        data.append(pcapng.encode_epb(0, 1700000500 * 10**9 + i * 1001, pkt))
    return hdr, data


def stream(hdr, records):
    return wire.encode_link_hdr(hdr) + b"".join(wire.encode_link_data(r) for r in records)


class ConfigTest(support.TempDirTestCase):

    def section(self, text):
        path = self.path("s.ini")
        with open(path, "w") as f:
            f.write("[server]\n" + text + "\n")
        return ini.Section(ini.read_ini(path), "server", path)

    def read(self, text):
        s = self.section(text)
        c = hooks.read_config(s)
        s.finish()
        return c

    def test_defaults_give_no_hooks(self):
        c = self.read("")
        self.assertFalse(c.enabled())
        self.assertEqual(hooks.create(c, Loop()), [])
        self.assertEqual(hooks.create(None, Loop()), [])

    def test_keys(self):
        c = self.read("zmq_publish = tcp://*:6666\nzmq_queue_max = 1M\ntap_listen = 57012\n"
                      "tap_listen_bts1 = 127.0.0.1:57013\ntap_queue_max = 128K\n"
                      "on_complete = /bin/echo '{path}' {client}\non_complete_max_running = 4\n"
                      "on_complete_timeout = 2m\non_complete_shutdown_wait = 5s")
        self.assertEqual(c.zmq_publish, ("0.0.0.0", 6666))
        self.assertEqual(c.zmq_queue_max, 1 << 20)
        self.assertEqual(c.tap_listen, ("127.0.0.1", 57012))
        self.assertEqual(c.tap_clients, {"bts1": ("127.0.0.1", 57013)})
        self.assertEqual(c.tap_queue_max, 128 << 10)
        self.assertEqual(c.on_complete, ["/bin/echo", "{path}", "{client}"])
        self.assertEqual((c.on_complete_max_running, c.on_complete_timeout,
                          c.on_complete_shutdown_wait), (4, 120.0, 5.0))
        self.assertEqual(self.read("zmq_publish = 6666").zmq_publish, ("127.0.0.1", 6666))

    def test_errors_name_the_key(self):
        for text, key in [("zmq_publish = ipc:///x", "zmq_publish"),
                          ("zmq_queue_max = 1K", "zmq_queue_max"),
                          ("tap_listen = nowhere", "tap_listen"),
                          ("tap_listen_a/b = 5000", "tap_listen_a/b"),
                          ("tap_listen = 5000\ntap_listen_x = 127.0.0.1:5000", "tap_listen_x"),
                          ("on_complete = /no/such/program {path}", "on_complete"),
                          ("on_complete = 'open", "on_complete"),
                          ("on_complete_max_running = 0", "on_complete_max_running"),
                          ("on_complete_timeout = 0", "on_complete_timeout")]:
            with self.assertRaises(ini.ConfigError) as e:
                self.read(text)
            self.assertEqual(e.exception.key, key, text)

    def test_tap_tls_keys(self):
        from osmo_pcap.server import config as serverconfig
        from tests import pki
        support.require_tool("openssl")   # tests/pki.py makes the certificates
        certs = pki.shared_pki()
        os.makedirs(self.path("base"), exist_ok=True)

        def load(text):
            path = self.path("server.ini")
            with open(path, "w") as f:
                f.write("[server]\nbase_path = base\n" + text + "\n")
            return serverconfig.load(path)

        tls = "tls_cert = %s\ntls_key = %s\n" % certs["server"]
        for text, key, why in [
                ("tap_listen = 5000\ntap_tls = yes", "tap_tls", "needs tls_cert"),
                ("tap_tls = yes\n" + tls, "tap_tls", "no tap to protect"),
                ("tap_listen = 5000\ntap_tls_ca = %s\n%s" % (certs["ca"], tls), "tap_tls_ca",
                 "only used with tap_tls = yes"),
                ("tap_listen = 5000\ntap_tls = yes\ntap_tls_ca = %s\n%s"
                 % (certs["empty"], tls), "tap_tls_ca", "no PEM certificate"),
                ("tap_listen = 5000\ntap_tls = maybe\n" + tls, "tap_tls", "yes or no")]:
            with self.assertRaises(ini.ConfigError) as e:
                load(text)
            self.assertEqual(e.exception.key, key, text)
            self.assertIn(why, str(e.exception))
        cfg = load("tap_listen_bts1 = 5000\ntap_tls = yes\ntap_tls_ca = %s\n%s"
                   % (certs["ca"], tls))
        self.assertTrue(cfg.hooks.tap_tls)
        self.assertEqual(cfg.hooks.tap_tls_context.verify_mode, ssl.CERT_REQUIRED)
        cfg = load("tap_listen = 5000\ntap_tls = yes\n" + tls)
        self.assertEqual(cfg.hooks.tap_tls_context.verify_mode, ssl.CERT_NONE)
        self.assertIsNone(load("tap_listen = 5000\n").hooks.tap_tls_context)

    def test_busy_port_raises_oserror_naming_the_key(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        loop = Loop()
        self.addCleanup(loop.close)
        c = self.read("zmq_publish = %d\ntap_listen = %d" % (support.free_port(), port))
        with self.assertRaises(OSError) as e:
            hooks.create(c, loop)
        self.assertIn("tap_listen 127.0.0.1:%d" % port, str(e.exception))


class HooksServerTest(support.TempDirTestCase):

    def server(self, clients, extra, completed=False):
        s = peer.ServerProcess(self.tmp, clients, extra=extra, completed=completed)
        self.addCleanup(s.kill)
        return s.start()

    def client(self, srv, ip, data, close=True):
        s = peer.connect(srv.port, source=ip)
        self.addCleanup(s.close)
        s.sendall(data)
        if close:
            s.close()
        return s


class ZmqServerTest(HooksServerTest):

    def setUp(self):
        need_pyzmq()
        HooksServerTest.setUp(self)

    def test_subscribers_get_events_and_data_as_upstream(self):
        zport = support.free_port()
        srv = self.server([("a", A_IP, "yes"), ("b", B_IP, "no")],
                          "zmq_publish = tcp://127.0.0.1:%d" % zport)
        ep = "tcp://127.0.0.1:%d" % zport
        everything = ZmqSub(ep, [b""], count=10)
        events = ZmqSub(ep, [b"event."], count=5)
        only_b = ZmqSub(ep, [b"data.v1.b"], count=2)
        for s in (everything, events, only_b):
            self.addCleanup(s.kill)
            s.wait_subscribed()
        srv.wait_log("subscribes to b'zz.end'", 3)
        # b: store = no, published all the same
        b_hdr, b_data = pcapng_raw_client(2)
        self.client(srv, B_IP, stream(b_hdr, b_data))
        srv.wait_log("client b (%s:" % B_IP)
        srv.wait_log("): disconnected")
        # a: still connected at SIGTERM, so its last file is closed at shutdown
        a_hdr, a_data = pcap_client(3)
        self.client(srv, A_IP, stream(a_hdr, a_data), close=False)
        srv.wait_log("client a (%s" % A_IP)
        self.assertEqual(srv.stop(), 0)
        path = os.fsencode(srv.files()[0])
        self.assertEqual(len(peer.file_records(srv.files()[0])), 3)
        want = ([[b"event.v1.connect.b"]]
                + [[b"data.v1.b", b_hdr, d] for d in b_data]
                + [[b"event.v1.disconnect.b"], [b"event.v1.connect.a"]]
                + [[b"data.v1.a", a_hdr, d] for d in a_data]
                + [[b"event.v1.closingtracefile.a", path], [b"event.v1.disconnect.a"]])
        self.assertEqual(everything.result(), want)
        self.assertEqual(events.result(), [m for m in want if m[0].startswith(b"event.")])
        self.assertEqual(only_b.result(), [m for m in want if m[0] == b"data.v1.b"])

    def test_stuck_subscriber_does_not_stall_the_files(self):
        zport = support.free_port()
        srv = self.server([("a", A_IP, "yes")],
                          "zmq_publish = tcp://127.0.0.1:%d\nzmq_queue_max = 64K" % zport)
        stuck = ZmqSub("tcp://127.0.0.1:%d" % zport, [b""], stall=True)
        self.addCleanup(stuck.kill)
        stuck.wait_subscribed()
        srv.wait_log("subscribes to b''")
        n = 20000
        hdr, recs = pcap_client(n, size=1000)
        self.client(srv, A_IP, stream(hdr, recs))
        srv.wait_log("): disconnected")
        self.assertEqual(len(peer.file_records(srv.files()[0])), n)
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        line = [l for l in log.splitlines() if "dropped for it" in l][0]
        dropped = int(line.split("; ")[1].split()[0])
        self.assertGreater(dropped, 0, line)


class TapServerTest(HooksServerTest):

    def test_tap_shows_the_same_packets_as_the_files(self):
        tshark = support.require_tool("tshark")
        tport = support.free_port()
        srv = self.server([("a", A_IP, "yes"), ("b", B_IP, "yes")],
                          "tap_listen = %d" % tport)
        tap = socket.create_connection(("127.0.0.1", tport), timeout=20)
        self.addCleanup(tap.close)
        srv.wait_log("tap: consumer")
        a_hdr, a_data = pcap_client(20, size=300)
        b_hdr, b_data = pcapng_raw_client(10)
        self.client(srv, A_IP, stream(a_hdr, a_data))
        self.client(srv, B_IP, stream(b_hdr, b_data))
        srv.wait_log("): disconnected", 2)
        self.assertEqual(srv.stop(), 0)
        got = bytearray()
        while True:
            d = tap.recv(65536)
            if not d:
                break
            got += d
        path = self.path("tap.pcapng")
        with open(path, "wb") as f:
            f.write(got)
        p = subprocess.run([tshark, "-n", "-r", "-", "-T", "fields", "-e", "frame.interface_name"],
                           input=bytes(got), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        names = p.stdout.decode().split()
        tapped = support.tshark_read(path)
        files = dict((os.path.basename(f).split("-")[1], support.tshark_read(f))
                     for f in srv.files())
        for name in ("a", "b"):
            mine = [pkt[:4] for pkt, n in zip(tapped, names) if n == name or
                    n.startswith(name + ":")]
            self.assertEqual(mine, [pkt[:4] for pkt in files[name]], name)
        self.assertEqual(sorted(set(names)), ["a", "b:tun0"])


RECORDER = """#!%s
import os, sys, time
with open(%r, "a") as f:
    f.write("\\t".join(sys.argv[1:]) + " exists=%%s\\n" %% os.path.exists(sys.argv[1]))
if sys.argv[2] == "b":
    time.sleep(600)
"""


class OnCompleteServerTest(HooksServerTest):

    def test_runs_for_rotated_and_last_files_and_kills_hangers(self):
        out = self.path("calls.txt")
        script = self.path("record.py")
        with open(script, "w") as f:
            f.write(RECORDER % (sys.executable, out))
        os.chmod(script, stat.S_IRWXU)
        srv = self.server([("a", A_IP, "yes"), ("b", B_IP, "yes")],
                          "max_file_size = 4K\non_complete = %s {path} {client}\n"
                          "on_complete_timeout = 1s" % script, completed=True)
        # a: 10 records of ~1 KB, 4 per file: rotations, still connected at SIGTERM
        hdr, recs = pcap_client(10, size=1000)
        a = self.client(srv, A_IP, stream(hdr, recs), close=False)
        # b: one file closed at its disconnect; its command hangs and is killed
        hdr, recs = pcap_client(2)
        self.client(srv, B_IP, stream(hdr, recs))
        srv.wait_log("killed by signal 15")
        self.assertEqual(srv.stop(), 0)
        done = srv.files(srv.completed)
        a_files = [f for f in done if "-a-" in os.path.basename(f)]
        self.assertGreaterEqual(len(a_files), 3)
        with open(out) as f:
            calls = sorted(line.split() for line in f)
        self.assertEqual(calls, sorted([f, n, "exists=True"] for f, n in
                                       [(p, "a") for p in a_files]
                                       + [(p, "b") for p in done if p not in a_files]))
        log = srv.log()
        self.assertIn("for %s done in" % a_files[-1], log)
        self.assertNotIn("not run", log)


if __name__ == "__main__":
    unittest.main()
