# SPDX-License-Identifier: AGPL-3.0-or-later
"""Client configuration: defaults, errors naming file/section/key, --check-config."""

import os
import unittest

from tests import support
from osmo_pcap.client import config as clientconfig
from osmo_pcap.client.main import combine_filters, exclusion_filter
from osmo_pcap.ini import ConfigError

REPO = support.REPO


class ConfigTest(support.TempDirTestCase):
    def write(self, text, name="c.ini"):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def load(self, text):
        return clientconfig.load(self.write(text))

    def error(self, text):
        with self.assertRaises(ConfigError) as cm:
            self.load(text)
        return cm.exception

    def test_defaults(self):
        cfg = self.load("[client]\ndevices = eth0\n[server main]\nhost = 10.0.0.1\nport = 5000\n")
        self.assertEqual(cfg.devices, ["eth0"])
        self.assertEqual((cfg.snaplen, cfg.file_format, cfg.buffer_size), (9000, "pcap", 16 << 20))
        self.assertTrue(cfg.detect_loop)
        self.assertFalse(cfg.gprs_filter)
        self.assertFalse(cfg.promisc)
        s = cfg.servers[0]
        self.assertEqual((s.name, s.host, s.port, s.protocol), ("main", "10.0.0.1", 5000,
                                                                 "osmo-pcap"))
        self.assertEqual((s.queue_size, s.spool_dir, s.spool_max), (16 << 20, None, 1 << 30))
        self.assertEqual((s.reconnect_min, s.reconnect_max), (1.0, 30.0))

    def test_all_keys(self):
        cfg = self.load("""[client]
devices = eth0 eth1 ; two
filter = udp port 23000
detect_loop = no
gprs_filter = yes
gprs_ports = 23000, 23001
snaplen = 1500
file_format = pcapng
buffer_size = 32M
promisc = yes
capture_timeout = 50ms
immediate_mode = yes
ignore_outgoing = no
dispatch_max = 64
reopen_interval = 2s
stats_interval = 0
flush_timeout = 1s
log_level = debug
[server a]
host = 10.0.0.1
port = 5000
source_ip = 10.0.0.9
queue_size = 1M
spool_dir = spool
spool_max = 10M
reconnect_min = 0.5s
reconnect_max = 2s
enabled = no
[server b]
host = 10.0.0.2
protocol = ipip
""")
        self.assertEqual(cfg.devices, ["eth0", "eth1"])
        self.assertEqual(cfg.gprs_ports, [23000, 23001])
        self.assertEqual(cfg.capture_timeout, 0.05)
        self.assertEqual(cfg.servers[0].spool_dir, self.path("spool"))
        self.assertFalse(cfg.servers[0].enabled)
        self.assertEqual(cfg.servers[1].protocol, "ipip")
        self.assertIsNone(cfg.servers[1].port)
        self.assertIn("2 device(s) eth0 eth1", cfg.summary())
        self.assertIn("b 10.0.0.2 ipip", cfg.summary())

    def test_errors_name_section_and_key(self):
        cases = [
            ("[client]\ndevices = eth0\nsnaplen = 70000\n", "[client] snaplen"),
            ("[client]\ndevices = eth0\nfile_format = pcapng\nsnaplen = 65500\n",
             "[client] snaplen"),
            ("[client]\ndevices = eth0\nfile_format = erf\n", "[client] file_format"),
            ("[client]\ndevices = eth0\ndetect_loop = maybe\n", "[client] detect_loop"),
            ("[client]\ndevices = eth0\nbogus = 1\n", "[client] bogus"),
            ("[client]\n", "[client] devices"),
            ("[client]\ndevices = eth0 eth0\n", "[client] devices"),
            ("[client]\ndevices = eth0\nread_file = x.pcap\n", "[client] read_file"),
            ("[client]\ndevices = eth0\n[server a]\nport = 1\n", "[server a] host"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\n", "[server a] port"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nport = 0\n", "[server a] port"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nport = 1\nprotocol = udp\n",
             "[server a] protocol"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nport = 1\nsource_ip = x\n",
             "[server a] source_ip"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nport = 1\nqueue_size = 1K\n",
             "[server a] queue_size"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nprotocol = ipip\nspool_dir = /x\n",
             "[server a] spool_dir"),
            ("[client]\ndevices = eth0\n[server a]\nhost = h\nport = 1\nreconnect_min = 5s\n"
             "reconnect_max = 1s\n", "[server a] reconnect_max"),
            ("[client]\ndevices = eth0\n[server ../x]\nhost = h\nport = 1\n", "[server ../x]"),
            ("[client]\ndevices = eth0\n[clinet]\n", "[clinet]"),
            ("[client]\ndevices = eth0\nuser = no-such-user-xyz\n", "[client] user"),
        ]
        for text, where in cases:
            e = self.error(text)
            self.assertIn(self.path("c.ini"), str(e), text)
            self.assertIn(where, str(e), text)

    def test_missing_file(self):
        with self.assertRaises(ConfigError) as cm:
            clientconfig.load(self.path("absent.ini"))
        self.assertIn("absent.ini", str(cm.exception))

    def test_detect_loop_filter(self):
        # built from the addresses dialled, never from the host names configured
        peers = [("osmo-pcap", "10.0.0.1", 5000), ("ipip", "10.0.0.2", 0),
                 ("osmo-pcap", "10.0.0.1", 5000)]
        excl = exclusion_filter(peers)
        self.assertEqual(excl, "not (host 10.0.0.1 and tcp port 5000) "
                               "and not (host 10.0.0.2 and ip proto 4)")
        self.assertEqual(combine_filters("udp", excl), "(udp) and " + excl)
        self.assertEqual(combine_filters("", excl), excl)
        self.assertEqual(combine_filters("udp", ""), "udp")
        self.assertEqual(exclusion_filter([("osmo-pcap", "::1", 1)]),
                         "not (host ::1 and tcp port 1)")


class CommandLineTest(ConfigTest):
    def test_check_config_ok(self):
        support.require_capture("lo")   # --check-config opens the device
        path = self.write("[client]\ndevices = lo\nfilter = udp port 23000\n"
                          "[server main]\nhost = 127.0.0.1\nport = 5000\n")
        p = support.run(support.script_cmd("client", "-c", path, "--check-config"))
        self.assertIn("OK", p.stdout)
        self.assertIn("main 127.0.0.1:5000", p.stdout)
        # one summary line, then what cannot be checked beforehand
        lines = p.stdout.splitlines()
        self.assertIn("OK", lines[0])
        self.assertTrue(all(n.startswith("not checked: ") for n in lines[1:]), p.stdout)

    def test_check_config_errors_exit_2(self):
        path = self.write("[client]\ndevices = lo\nsnaplen = x\n")
        p = support.run(support.script_cmd("client", "-c", path, "--check-config"), check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("[client] snaplen", p.stderr)
        self.assertNotIn("Traceback", p.stderr)

    def test_check_config_invalid_filter(self):
        path = self.write("[client]\ndevices = lo\nfilter = udp prot 5\n"
                          "[server s]\nhost = 127.0.0.1\nport = 9\n")
        p = support.run(support.script_cmd("client", "-c", path, "--check-config"), check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("filter", p.stderr)
        self.assertIn("udp prot 5", p.stderr)
        self.assertNotIn("Traceback", p.stderr)

    def test_default_config_path_and_version(self):
        p = support.run(support.script_cmd("client", "--check-config"), check=False,
                        cwd=self.tmp)
        self.assertEqual(p.returncode, 2)
        self.assertIn("osmo-pcap-client.ini", p.stderr)
        for opt in ("-V", "--version"):
            p = support.run(support.script_cmd("client", opt))
            self.assertIn("osmo_pcap_client.py", p.stdout)
        p = support.run(support.script_cmd("client", "-h"))
        self.assertIn("--check-config", p.stdout)

    def test_contrib_example_is_valid(self):
        example = os.path.join(REPO, "contrib", "osmo-pcap-client.ini")
        cfg = clientconfig.load(example)
        self.assertTrue(cfg.devices)
        with open(example) as f:
            text = f.read()
        # every key the reader knows is documented in the example
        for key in ("devices", "filter", "detect_loop", "gprs_filter", "gprs_ports", "snaplen",
                    "file_format", "buffer_size", "promisc", "capture_timeout",
                    "immediate_mode", "ignore_outgoing", "dispatch_max", "libpcap", "read_file",
                    "user", "group", "reopen_interval", "stats_interval", "flush_timeout",
                    "log_level", "host", "port", "source_ip", "protocol", "queue_size",
                    "spool_dir", "spool_max", "reconnect_min", "reconnect_max", "enabled"):
            self.assertRegex(text, r"(?m)^;? ?%s =" % key, key)


if __name__ == "__main__":
    unittest.main()
