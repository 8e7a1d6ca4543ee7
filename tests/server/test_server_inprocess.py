# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Server object in this process: metric samples, hooks calls, IPv6 clients.

Real sockets on loopback; the loop is stepped by the test.
"""

import ipaddress
import logging
import os
import socket
import time
import unittest

from tests import peer, support
from osmo_pcap.server import config as serverconfig
from osmo_pcap.loop import Loop
from osmo_pcap.server.main import Server

logging.getLogger("osmo-pcap").addHandler(logging.NullHandler())
logging.getLogger("osmo-pcap").propagate = False


class RecordingHook(object):
    def __init__(self):
        self.calls = []

    def client_connected(self, name, peer_):
        self.calls.append(("connected", name))

    def client_disconnected(self, name):
        self.calls.append(("disconnected", name))

    def link_header(self, name, link):
        self.calls.append(("link", name, link.format))

    def data(self, name, link, payload):
        self.calls.append(("data", name, bytes(payload[16:20])))

    def file_closed(self, name, path):
        self.calls.append(("closed", name, os.path.basename(os.path.dirname(path))))

    def close(self):
        self.calls.append(("close",))


class InProcess(support.TempDirTestCase):
    def make(self, clients, listen="127.0.0.1", **kw):
        cfg = serverconfig.ServerConfig()
        cfg.listen = listen
        cfg.port = 0
        cfg.base_path = self.path("base")
        cfg.completed_path = self.path("done")
        os.makedirs(cfg.base_path)
        os.makedirs(cfg.completed_path)
        for k, v in kw.items():
            setattr(cfg, k, v)
        cfg.clients = [serverconfig.ClientEntry(n, ipaddress.ip_address(ip), st)
                       for n, ip, st in clients]
        srv = Server(cfg, Loop())
        srv.listen()
        self.port = srv.listener.getsockname()[1]
        return srv

    def pump(self, srv, until, rounds=200):
        for _ in range(rounds):
            if until():
                return
            srv.loop.run_once(0.05)
        self.fail("condition not reached")

    def samples(self, srv):
        return dict(((n, tuple(sorted(l.items()))), (t, v))
                    for n, t, h, l, v in srv.metric_samples())

    def test_metrics_and_hooks(self):
        srv = self.make([("a", "127.0.0.2", True), ("b", "127.0.0.3", False)])
        hook = RecordingHook()
        srv.hooks.append(hook)
        a = peer.connect(self.port, "127.0.0.2")
        b = peer.connect(self.port, "127.0.0.3")
        u = peer.connect(self.port, "127.0.0.99")
        a.sendall(peer.pcap_stream(3))
        b.sendall(peer.pcap_stream(2) + peer.raw_frame(9, b""))
        self.pump(srv, lambda: srv.admission.counters["no_client"] == 1 and "b" not in srv.conns
                  and sum(1 for c in hook.calls if c[0] == "data") == 5)
        s = self.samples(srv)
        self.assertEqual(s[("osmo_pcap_server_connections_total", ())], ("counter", 3))
        self.assertEqual(s[("osmo_pcap_server_refused_connections_total",
                            (("reason", "no_client"),))], ("counter", 1))
        A, B = (("client", "a"),), (("client", "b"),)
        self.assertEqual(s[("osmo_pcap_server_client_packets_total", A)], ("counter", 3))
        self.assertEqual(s[("osmo_pcap_server_client_packets_total", B)], ("counter", 2))
        self.assertEqual(s[("osmo_pcap_server_client_received_bytes_total", A)],
                         ("counter", 3 * 116))
        self.assertEqual(s[("osmo_pcap_server_client_rejected_connections_total",
                            (("client", "b"), ("reason", "unknown-type")))], ("counter", 1))
        self.assertEqual(s[("osmo_pcap_server_clients_connected", ())], ("gauge", 1))
        self.assertEqual(s[("osmo_pcap_server_open_files", ())], ("gauge", 1))
        self.assertEqual(s[("osmo_pcap_server_client_connected", A)], ("gauge", 1))
        # when each client last sent a packet, and the room left for the files
        last = s[("osmo_pcap_server_client_last_packet_timestamp_seconds", A)]
        self.assertEqual(last[0], "gauge")
        self.assertLessEqual(abs(last[1] - time.time()), 60)
        avail = s[("osmo_pcap_server_filesystem_avail_bytes", (("directory", "base_path"),))]
        st = os.statvfs(srv.cfg.base_path)
        self.assertLessEqual(abs(avail[1] - st.f_bavail * st.f_frsize), 1 << 30)
        keys = [(n, tuple(sorted(l.items()))) for n, t, h, l, v in srv.metric_samples()]
        self.assertEqual(len(keys), len(set(keys)))
        for name, typ, help_, labels, value in srv.metric_samples():
            self.assertRegex(name, r"^osmo_pcap_[a-z_]+$")
            self.assertTrue(help_)
            self.assertEqual(name.endswith("_total"), typ == "counter")
        a.close()
        self.pump(srv, lambda: not srv.conns)
        srv.shutdown()
        for s_ in (b, u):
            s_.close()
        seq = [c for c in hook.calls if c[1:2] == ("a",)]
        self.assertEqual(seq, [("connected", "a"), ("link", "a", "pcap"),
                               ("data", "a", peer.payload(0, 4)),
                               ("data", "a", peer.payload(1, 4)),
                               ("data", "a", peer.payload(2, 4)),
                               ("closed", "a", "done"), ("disconnected", "a")])
        self.assertEqual(hook.calls[-1], ("close",))
        self.assertNotIn(("closed", "b", "done"), hook.calls)
        self.assertEqual(os.listdir(self.path("base")), [])

    def test_failing_hook_is_disabled_and_capture_goes_on(self):
        class Broken(RecordingHook):
            def data(self, name, link, payload):
                RecordingHook.data(self, name, link, payload)
                raise RuntimeError("bug in a hook")

        srv = self.make([("a", "127.0.0.2", True)])
        broken, good = Broken(), RecordingHook()
        srv.hooks.extend([broken, good])
        a = peer.connect(self.port, "127.0.0.2")
        a.sendall(peer.pcap_stream(4))
        self.pump(srv, lambda: sum(1 for c in good.calls if c[0] == "data") == 4)
        self.assertEqual(srv.hooks, [good])
        self.assertEqual(srv.counters["hook_errors"], 1)
        self.assertEqual(sum(1 for c in broken.calls if c[0] == "data"), 1)
        self.assertEqual(broken.calls[-1], ("close",))
        a.close()
        self.pump(srv, lambda: not srv.conns)
        srv.shutdown()
        (f,) = os.listdir(self.path("done"))
        self.assertEqual(len(peer.file_records(self.path("done", f))), 4)

    def test_exception_in_a_callback_still_shuts_down_in_order(self):
        from osmo_pcap.server import main as server_main
        srv = self.make([("a", "127.0.0.2", True)])
        srv.cfg.flush_interval = 60.0   # records stay in the write buffer until shutdown
        a = peer.connect(self.port, "127.0.0.2")
        self.addCleanup(a.close)
        a.sendall(peer.pcap_stream(5))
        self.pump(srv, lambda: srv.recorders[0].counters["pkts"] == 5)
        self.assertEqual(os.listdir(self.path("done")), [])

        def bug():
            raise RuntimeError("a bug in a callback")
        srv.loop.call_later(0, bug)
        with self.assertRaises(RuntimeError):
            server_main.run(srv)
        (f,) = os.listdir(self.path("done"))
        self.assertEqual(len(peer.file_records(self.path("done", f))), 5)
        self.assertIsNone(srv.listener)

    def test_ipv6_listener_and_client(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            support.need(False, "no IPv6 loopback")
        srv = self.make([("v6", "::1", True), ("v4", "127.0.0.2", True)], listen="::")
        a = peer.connect(self.port, "::1", host="::1")
        b = peer.connect(self.port, "127.0.0.2", host="127.0.0.1")
        a.sendall(peer.pcap_stream(2))
        b.sendall(peer.pcap_stream(3))
        a.close()
        b.close()
        self.pump(srv, lambda: all(r.counters["files_closed"] for r in srv.recorders))
        srv.shutdown()
        files = sorted(os.listdir(self.path("done")))
        self.assertEqual([f.split("-")[1] for f in files], ["v4", "v6"])
        self.assertEqual([len(peer.file_records(self.path("done", f))) for f in files], [3, 2])


if __name__ == "__main__":
    unittest.main()
