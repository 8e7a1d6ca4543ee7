# SPDX-License-Identifier: AGPL-3.0-or-later
"""metrics: Prometheus text exposition 0.0.4 served from the event loop."""

import socket
import threading
import time
import unittest
import urllib.error
import urllib.request

from tests import support
from osmo_pcap import loop, metrics
from osmo_pcap import ini

SAMPLES = [
    ("osmo_pcap_peer_pkts_total", "counter", "LINK_DATA records accepted",
     {"client": "bts1"}, 10),
    ("osmo_pcap_server_open_files", "gauge", "Trace files being written", {}, 2),
    ("osmo_pcap_peer_pkts_total", "counter", "LINK_DATA records accepted",
     {"client": 'we\\ird "name"\nx'}, 3),
]


class RenderTest(unittest.TestCase):

    def test_exposition(self):
        self.assertEqual(metrics.render(SAMPLES), (
            "# HELP osmo_pcap_peer_pkts_total LINK_DATA records accepted\n"
            "# TYPE osmo_pcap_peer_pkts_total counter\n"
            'osmo_pcap_peer_pkts_total{client="bts1"} 10\n'
            'osmo_pcap_peer_pkts_total{client="we\\\\ird \\"name\\"\\nx"} 3\n'
            "# HELP osmo_pcap_server_open_files Trace files being written\n"
            "# TYPE osmo_pcap_server_open_files gauge\n"
            "osmo_pcap_server_open_files 2\n"))

    def test_values_labels_help(self):
        text = metrics.render([("a", "gauge", "back\\slash\nnewline", {"z": 1, "b": "x"}, 1.5),
                               ("b", "gauge", "", None, float("inf")),
                               ("c", "gauge", "", None, float("nan")),
                               ("d", "gauge", "", None, True),
                               ("e", "gauge", "", None, 3.0),
                               ("f", "untyped", "", None, -float("inf"))])
        self.assertIn("# HELP a back\\\\slash\\nnewline\n", text)
        self.assertIn('a{b="x",z="1"} 1.5\n', text)  # label names sorted
        self.assertIn("b +Inf\n", text)
        self.assertIn("c NaN\n", text)
        self.assertIn("d 1\n", text)
        self.assertIn("e 3\n", text)
        self.assertIn("f -Inf\n", text)
        self.assertIn("# HELP b b\n", text)  # empty help: the name

    def test_invalid_names(self):
        for sample in (("1abc", "gauge", "", None, 1), ("a-b", "gauge", "", None, 1),
                       ("a", "counterish", "", None, 1), ("a", "gauge", "", {"0x": 1}, 1),
                       ("a", "gauge", "", {"__name__": 1}, 1)):
            with self.assertRaises(ValueError):
                metrics.render([sample])
        with self.assertRaises(ValueError) as cm:
            metrics.render([("a", "gauge", "", {"x": 1}, 1), ("a", "gauge", "", {"x": "1"}, 2)])
        self.assertIn("duplicate sample a", str(cm.exception))

    def test_process_samples(self):
        names = [s[0] for s in metrics.process_samples("server")]
        # the process collector's names, so stock dashboards find them
        for name in ("process_start_time_seconds", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_virtual_memory_bytes",
                     "process_open_fds", "process_max_fds", "osmo_pcap_build_info"):
            self.assertIn(name, names)
        values = dict((s[0], s[4]) for s in metrics.process_samples())
        self.assertGreater(values["process_virtual_memory_bytes"],
                           values["process_resident_memory_bytes"])
        import resource
        self.assertEqual(values["process_max_fds"],
                         resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        start = dict((s[0], s[4]) for s in metrics.process_samples())[
            "process_start_time_seconds"]
        self.assertLessEqual(start, time.time())
        self.assertGreater(start, time.time() - 86400 * 365)


class ReadConfigTest(support.TempDirTestCase):

    def read(self, body):
        path = self.path("x.ini")
        with open(path, "w") as f:
            f.write("[metrics]\n" + body)
        return metrics.read_config(ini.Section(ini.read_ini(path), "metrics", path))

    def test_values(self):
        self.assertIsNone(self.read(""))
        self.assertIsNone(self.read("listen = off\n"))
        self.assertEqual(self.read("listen = 127.0.0.1:9101\n"), ("127.0.0.1", 9101))
        self.assertEqual(self.read("listen = [::1]:9101\n"), ("::1", 9101))
        self.assertEqual(self.read("listen = 9101\n"), ("127.0.0.1", 9101))
        for body, key in (("listen = 127.0.0.1\n", "listen"), ("listen = x:99999\n", "listen"),
                          ("port = 1\n", "port")):
            with self.assertRaises(ini.ConfigError) as cm:
                self.read(body)
            self.assertIn("[metrics] %s" % key, str(cm.exception))


class ServeTest(unittest.TestCase):
    """A real listening socket; the loop runs in a thread, clients are independent."""

    def setUp(self):
        self.lp = loop.Loop()
        self.samples = list(SAMPLES)
        self.fail_render = False
        self.srv = metrics.MetricsServer(self.lp, ("127.0.0.1", 0), self.get_samples,
                                         program="server").start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run_loop)
        self.thread.start()
        self.addCleanup(self.lp.close)
        self.addCleanup(self.srv.close)
        self.addCleanup(self.thread.join)
        self.addCleanup(self.stop.set)
        self.base = "http://127.0.0.1:%d" % self.srv.address[1]

    def run_loop(self):
        while not self.stop.is_set():
            self.lp.run_once(0.05)

    def get_samples(self):
        if self.fail_render:
            raise RuntimeError("provider bug")
        return self.samples

    def fetch(self, path, method="GET"):
        req = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            try:
                body = e.read().decode()
            finally:
                e.close()  # else a ResourceWarning when it is collected
            return e.code, dict(e.headers), body

    def raw(self, data, shutdown=False):
        s = socket.create_connection(("127.0.0.1", self.srv.address[1]), timeout=20)
        try:
            s.sendall(data)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode("latin-1")
                out += chunk
        finally:
            s.close()

    def test_get_metrics(self):
        status, headers, body = self.fetch("/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        self.assertIn('osmo_pcap_peer_pkts_total{client="bts1"} 10\n', body)
        self.assertIn("# TYPE process_start_time_seconds gauge\n", body)
        self.assertIn('osmo_pcap_build_info{program="server",version=', body)
        self.assertEqual(int(headers["Content-Length"]), len(body.encode()))
        self.samples[0] = SAMPLES[0][:4] + (11,)  # values are read at each scrape
        self.assertIn('{client="bts1"} 11\n', self.fetch("/metrics?x=1")[2])

    def test_head_404_405_400(self):
        status, headers, body = self.fetch("/metrics", "HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 0)
        self.assertEqual(self.fetch("/")[0], 404)
        self.assertEqual(self.fetch("/metricsx")[0], 404)
        status, headers, _ = self.fetch("/metrics", "POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, HEAD")
        self.assertTrue(self.raw(b"GARBAGE\r\n\r\n").startswith("HTTP/1.1 400 "))
        self.assertTrue(self.raw(b"GET /metrics HTTP/2.0\r\n\r\n").startswith("HTTP/1.1 400 "))

    def test_http10_and_bare_newlines(self):
        out = self.raw(b"GET /metrics HTTP/1.0\n\n")
        self.assertTrue(out.startswith("HTTP/1.1 200 OK\r\n"))
        self.assertIn("\r\nConnection: close\r\n", out)
        self.assertIn("osmo_pcap_server_open_files 2\n", out)

    def test_oversized_request(self):
        out = self.raw(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (metrics.MAX_REQUEST + 10))
        self.assertTrue(out.startswith("HTTP/1.1 431 "))

    def test_slow_scraper_does_not_block_others(self):
        s = socket.create_connection(("127.0.0.1", self.srv.address[1]), timeout=20)
        self.addCleanup(s.close)
        s.sendall(b"GET /metr")  # and nothing more for now
        self.assertEqual(self.fetch("/metrics")[0], 200)
        s.sendall(b"ics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 OK"))

    def test_silent_connections_do_not_lock_scrapers_out(self):
        silent = []
        for _ in range(metrics.MAX_CLIENTS):
            silent.append(socket.create_connection(("127.0.0.1", self.srv.address[1]),
                                                   timeout=20))
            self.addCleanup(silent[-1].close)
        status, _, body = self.fetch("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("osmo_pcap_build_info", body)
        self.assertEqual(silent[0].recv(100), b"")  # the oldest made room

    def test_client_going_away_early(self):
        self.raw(b"GET /met", shutdown=True)
        self.assertEqual(self.fetch("/metrics")[0], 200)
        self.assertLessEqual(len(self.srv.clients), 1)

    def test_provider_error_is_500_and_server_lives(self):
        self.fail_render = True
        self.assertEqual(self.fetch("/metrics")[0], 500)
        self.fail_render = False
        self.assertEqual(self.fetch("/metrics")[0], 200)

    def test_address_in_use(self):
        other = metrics.MetricsServer(self.lp, ("127.0.0.1", self.srv.address[1]), list)
        with self.assertRaises(metrics.MetricsError) as cm:
            other.start()
        self.assertIn("[metrics] listen = 127.0.0.1:%d: cannot listen" % self.srv.address[1],
                      str(cm.exception))


if __name__ == "__main__":
    unittest.main()
