# SPDX-License-Identifier: AGPL-3.0-or-later
"""The metrics as a set, scraped live from both daemons with every feature on (TLS,
the three hooks, completed_path, a spool, an IPIP destination) and traffic flowing:

- promtool check metrics has nothing to say about either scrape;
- the table of doc/operations.md#metric-names and the scrapes agree both ways, with
  the type and the labels of every name;
- the client's libpcap figures are current when scraped (not up to 10 s late);
- every metric the Grafana dashboard in contrib/ queries exists, and every query
  is valid PromQL (promtool check rules).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import unittest
import urllib.request

from tests import peer, support

DOC = os.path.join(support.REPO, "doc", "operations.md")
DASHBOARD = os.path.join(support.REPO, "contrib", "osmo-pcap-grafana.json")
SENT = 30


def documented():
    """Return {name: (type, set of labels)} from the metric table of operations.md."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    part = text[text.index('<a id="metric-names"></a>'):]
    out = {}
    for line in part.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \| (counter|gauge) \|([^|]*)\|", line)
        if m:
            labels = set(re.findall(r"`([a-z_]+)`", m.group(3)))
            out[m.group(1)] = (m.group(2), labels)
    return out


def parse(text):
    """Return {name: (type, set of label names seen)} of an exposition text."""
    types, labels = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
            labels.setdefault(m.group(1), set())
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        labels[m.group(1)] |= set(re.findall(r'([a-z_]+)="', m.group(3) or ""))
    return dict((n, (types[n], labels[n])) for n in types)


def value(text, sample):
    m = re.search(r"^%s (\S+)$" % re.escape(sample), text, re.M)
    return float(m.group(1)) if m else None


def dashboard_queries():
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


class LiveMetricsTest(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        support.require_root()
        support.require_tool("openssl")
        self.promtool = support.require_promtool()
        sys.path.insert(0, os.path.join(support.REPO, "tools"))
        import demo
        support.need(demo.have_libpcap(), "libpcap is not installed")
        self.procs = {}

    def start(self, prog, text, notify=False):
        path = self.path(prog + ".ini")
        with open(path, "w") as f:
            f.write(text)
        log = open(self.path(prog + ".log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen(support.script_cmd(prog, "-c", path), stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.tmp)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        self.procs[prog] = p
        return p

    def log(self, prog):
        with open(self.path(prog + ".log"), errors="replace") as f:
            return f.read()

    def scrape(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=20) as r:
            return r.read().decode()

    def test_names_types_labels_promtool_dashboard(self):
        from tests import pki
        keys = pki.shared_pki()
        for d in ("traces", "done", "spool"):
            os.mkdir(self.path(d))
        port, sm, cm, zport, tport, tport2 = (support.free_port() for _ in range(6))
        udp = support.free_port(kind=socket.SOCK_DGRAM)
        self.start("server", (
            "[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = traces\n"
            "completed_path = done\nflush_interval = 0.1s\n"
            "tls_cert = %s\ntls_key = %s\n"
            "zmq_publish = tcp://127.0.0.1:%d\ntap_listen = 127.0.0.1:%d\n"
            "tap_listen_lo = 127.0.0.1:%d\non_complete = /bin/true {path}\n"
            "[client lo]\nip = 127.0.0.1\n[client odd]\nip = 127.0.0.2\n"
            "[metrics]\nlisten = 127.0.0.1:%d\n"
            % ((port,) + keys["server"] + (zport, tport, tport2, sm))))
        support.wait_for(lambda: "listening on" in self.log("server"), "the server to listen")
        self.start("client", (
            "[client]\ndevices = lo\nfilter = udp port %d\nstats_interval = 0\n"
            "[server s]\nhost = 127.0.0.1\nport = %d\nspool_dir = spool\n"
            "[server tunnel]\nhost = 127.0.0.1\nprotocol = ipip\n"
            "[metrics]\nlisten = 127.0.0.1:%d\n" % (udp, port, cm)))
        support.wait_for(lambda: value(self.scrape(sm), 'osmo_pcap_server_client_connected'
                                       '{client="lo"}') == 1, "the client")
        # a tap consumer and a protocol violation, so that those series exist too
        tap = socket.create_connection(("127.0.0.1", tport), timeout=20)
        self.addCleanup(tap.close)
        bad = peer.connect(port, "127.0.0.2")
        self.addCleanup(bad.close)
        bad.sendall(peer.raw_frame(9, b""))
        self.assertTrue(peer.wait_closed(bad))
        import demo
        recv = 'osmo_pcap_client_device_received_packets_total{device="lo"}'
        before = value(self.scrape(cm), recv)
        self.assertEqual(demo.send_traffic(udp, SENT), SENT)
        # read at once: libpcap's figures are fetched for the scrape, not 10 s later
        # (ps_recv also counts what passed before the first filter was installed)
        self.assertEqual(value(self.scrape(cm), recv) - before, SENT)
        support.wait_for(lambda: value(self.scrape(cm), "osmo_pcap_client_captured_packets_total")
                         == SENT, "%d packets captured" % SENT)
        server = support.wait_for(lambda: (lambda t: t if value(
            t, 'osmo_pcap_server_client_packets_total{client="lo"}') == SENT else None)(
                self.scrape(sm)), "%d packets at the server" % SENT)
        self.procs["server"].send_signal(signal.SIGUSR2)   # a rotation: on_complete runs
        server = support.wait_for(lambda: (lambda t: t if value(
            t, "osmo_pcap_server_on_complete_runs_total") == 1 else None)(self.scrape(sm)),
            "the on_complete command")
        client = support.wait_for(lambda: (lambda t: t if value(
            t, 'osmo_pcap_client_server_forwarded_packets_total{server="s"}') == SENT
            else None)(self.scrape(cm)), "acknowledgements")
        self.assertEqual(value(server, 'osmo_pcap_server_tap_consumers{key="tap_listen"}'), 1)
        self.assertEqual(value(client, 'osmo_pcap_client_server_forwarded_packets_total'
                                       '{server="tunnel"}'), SENT)

        for text in (server, client):
            p = support.run([self.promtool, "check", "metrics"], input=text, check=False)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))
        seen = parse(server)
        seen.update(parse(client))
        doc = documented()
        self.assertGreater(len(doc), 60)
        for name, (kind, labels) in sorted(seen.items()):
            self.assertIn(name, doc, "%s is not in the table of %s" % (name, DOC))
            self.assertEqual((kind, labels), doc[name], name)
        self.assertEqual(sorted(set(doc) - set(seen)), [],
                         "documented but not exported")

        # the dashboard: known names only, and valid PromQL
        rules = ["groups:", "  - name: dashboard", "    rules:"]
        used = set()
        for i, expr in enumerate(dashboard_queries()):
            used |= set(re.findall(r"\b((?:osmo_pcap|process)_[a-z_]+)", expr))
            if expr.startswith("label_values("):
                continue
            q = expr.replace("$__rate_interval", "5m").replace("$job", ".*") \
                .replace("$client", ".*")
            rules += ["      - record: dashboard:query%d" % i, "        expr: %s" % json.dumps(q)]
        self.assertEqual(sorted(used - set(seen)), [], "the dashboard queries unknown metrics")
        for must in ("osmo_pcap_server_client_packets_total",
                     "osmo_pcap_server_client_received_bytes_total",
                     "osmo_pcap_server_client_last_packet_timestamp_seconds",
                     "osmo_pcap_server_client_file_rotations_total",
                     "osmo_pcap_server_filesystem_avail_bytes",
                     "osmo_pcap_server_client_write_errors_total",
                     "osmo_pcap_server_connections_total",
                     "osmo_pcap_server_tap_dropped_packets_total",
                     "osmo_pcap_server_zmq_dropped_messages_total",
                     "osmo_pcap_server_on_complete_failures_total"):
            self.assertIn(must, used)
        path = self.path("dashboard-rules.yml")
        with open(path, "w") as f:
            f.write("\n".join(rules) + "\n")
        p = support.run([self.promtool, "check", "rules", path], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class ManualNamesTest(unittest.TestCase):
    """Every metric the manual names anywhere is a row of the one table."""

    def test_names_in_the_manual_are_in_the_table(self):
        import glob
        table = documented()
        for path in sorted(glob.glob(os.path.join(support.REPO, "doc", "*.md")) +
                           [os.path.join(support.REPO, "README.md")]):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for name in sorted(set(re.findall(r"\b((?:osmo_pcap|process)_[a-z_]*[a-z])\b",
                                              text))):
                if name.startswith(("osmo_pcap_client_py", "osmo_pcap_server_py",
                                    "osmo_pcap_clean", "osmo_pcap_extcap")) or \
                        name in ("osmo_pcap_server", "osmo_pcap_client"):
                    continue   # program and script names
                self.assertTrue(name in table or any(n.startswith(name + "_") for n in table),
                                "%s names %s, which is not in the metric table"
                                % (os.path.basename(path), name))
