# SPDX-License-Identifier: AGPL-3.0-or-later
"""The server's INI configuration: values, defaults and one clear error per mistake."""

import ipaddress
import os
import subprocess
import unittest

from tests import support
from osmo_pcap.server import config as serverconfig
from osmo_pcap.ini import ConfigError


class Base(support.TempDirTestCase):
    def write(self, text, name="server.ini"):
        os.makedirs(self.path("base"), exist_ok=True)
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def load(self, text):
        return serverconfig.load(self.write(text))

    def error(self, text):
        with self.assertRaises(ConfigError) as cm:
            cfg = serverconfig.load(self.write(text))
            serverconfig.check_dirs(cfg)
        return cm.exception


class Values(Base):
    def test_defaults(self):
        cfg = self.load("[server]\nbase_path = base\n")
        self.assertEqual(cfg.listen, "0.0.0.0")
        self.assertEqual(cfg.port, 54321)
        self.assertEqual(cfg.base_path, self.path("base"))
        self.assertIsNone(cfg.completed_path)
        self.assertEqual(cfg.file_permission_mask, 0o440)
        self.assertEqual(cfg.max_snaplen, 9000)
        self.assertEqual(cfg.max_file_size, 1 << 30)
        self.assertEqual(cfg.rotate_localtime, ("day", 1))
        self.assertEqual((cfg.header_timeout, cfg.idle_timeout), (60.0, 0.0))
        self.assertEqual(cfg.clients, [])

    def test_issue_example(self):
        cfg = self.load("""[server]
listen = ::1              ; IPv4 and IPv6 addresses accepted
port = 54321
base_path = base
completed_path =          ; optional
file_permission_mask = 0640
max_snaplen = 9000
max_file_size = 16M
rotate_localtime = minute mod 21

[client bts1]
ip = 192.168.100.1
store = yes

[client bts-2]
ip = 2001:db8::2
store = no
""")
        self.assertEqual(cfg.listen, "::1")
        self.assertIsNone(cfg.completed_path)
        self.assertEqual(cfg.file_permission_mask, 0o640)
        self.assertEqual(cfg.max_file_size, 16 << 20)
        self.assertEqual(cfg.rotate_localtime, ("minute", 21))
        self.assertEqual([(c.name, str(c.ip), c.store) for c in cfg.clients],
                         [("bts1", "192.168.100.1", True), ("bts-2", "2001:db8::2", False)])
        self.assertIn("2 client(s)", cfg.summary())

    def test_off_values(self):
        cfg = self.load("[server]\nbase_path = base\nmax_file_size = off\nrotate_localtime = off\n"
                        "stats_interval = off\n")
        self.assertEqual(cfg.max_file_size, 0)
        self.assertIsNone(cfg.rotate_localtime)
        self.assertEqual(cfg.stats_interval, 0)

    def test_mapped_ipv4_client_is_ipv4(self):
        cfg = self.load("[server]\nbase_path = base\n[client a]\nip = ::ffff:10.0.0.1\n")
        self.assertEqual(cfg.clients[0].ip, ipaddress.ip_address("10.0.0.1"))


class Errors(Base):
    def check(self, text, section, key, fragment):
        e = self.error(text)
        self.assertEqual((e.section, e.key), (section, key), str(e))
        self.assertIn(fragment, str(e))
        self.assertIn(self.path("server.ini"), str(e))

    def test_each_mistake_names_section_and_key(self):
        S = "[server]\nbase_path = base\n"
        self.check(S + "colour = blue\n", "server", "colour", "unknown key")
        self.check(S + "port = 0\n", "server", "port", "below the minimum")
        self.check(S + "listen = example.org\n", "server", "listen", "not an IPv4 or IPv6")
        self.check(S + "max_file_size = lots\n", "server", "max_file_size", "not a size")
        self.check(S + "max_snaplen = 300000\n", "server", "max_snaplen", "above the maximum")
        self.check(S + "file_permission_mask = rw\n", "server", "file_permission_mask", "octal")
        self.check(S + "rotate_localtime = hour mod 30\n", "server", "rotate_localtime", "1..24")
        self.check(S + "write_buffer = 1\n", "server", "write_buffer", "between")
        self.check(S + "log_level = loud\n", "server", "log_level", "expected one of")
        self.check(S + "idle_timeout = soon\n", "server", "idle_timeout", "not a duration")
        self.check(S + "[client a]\nip = 10.0.0.1\nstore = maybe\n", "client a", "store",
                   "yes or no")
        self.check(S + "[client a]\nip = 10.0.0.300\n", "client a", "ip", "not an IPv4")
        self.check(S + "[client a]\nstore = yes\n", "client a", "ip", "required")
        self.check(S + "[client a]\nip = 10.0.0.1\n[client b]\nip = 10.0.0.1\n", "client b", "ip",
                   "already used by [client a]")
        self.check(S + "[client a]\nip = 10.0.0.1\n[client  a]\nip = 10.0.0.2\n", "client  a",
                   None, "duplicate client name")
        self.check(S + "[client ../etc]\nip = 10.0.0.1\n", "client ../etc", None, "not a safe")
        self.check(S + "[clients]\n", "clients", None, "unknown section")
        self.check("[server]\nbase_path = nowhere\n", "server", "base_path",
                   "not an existing directory")

    def test_missing_server_section(self):
        e = self.error("[client a]\nip = 10.0.0.1\n")
        self.assertIn("missing [server]", str(e))

    def test_cross_filesystem_completed_path_refused(self):
        support.require_root()
        os.makedirs(self.path("other"))
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                               self.path("other")])
        self.addCleanup(subprocess.call, ["umount", "-l", self.path("other")])
        self.check("[server]\nbase_path = base\ncompleted_path = other\n", "server",
                   "completed_path", "different filesystems")
        self.assertEqual(os.listdir(self.path("base")), [])
        self.assertEqual(os.listdir(self.path("other")), [])

    def test_same_filesystem_completed_path_accepted(self):
        os.makedirs(self.path("done"))
        cfg = self.load("[server]\nbase_path = base\ncompleted_path = done\n")
        serverconfig.check_dirs(cfg)
        self.assertEqual(os.listdir(self.path("base")) + os.listdir(self.path("done")), [])


class Contrib(Base):
    def test_example_file_loads_with_and_without_its_comments(self):
        with open(os.path.join(support.REPO, "contrib", "osmo-pcap-server.ini")) as f:
            text = f.read().replace("/var/lib/osmo-pcap", "base")
        cfg = self.load(text)
        self.assertEqual([c.name for c in cfg.clients], ["bts1"])
        # every commented "; key = default" line of [server] is a known key
        # whose default is what the loader uses
        lines = []
        keys = []
        for line in text.splitlines():
            if line.startswith("; [") and line.endswith("]"):
                line = line[2:]
            elif line.startswith("; ") and " = " in line and not line.startswith("; Check"):
                line = line[2:]
                keys.append(line.split(" = ")[0])
            lines.append(line)
        self.assertGreaterEqual(len(keys), 12)
        full = self.load("\n".join(lines))
        for attr in ("listen", "port", "file_permission_mask", "max_snaplen", "max_file_size",
                     "rotate_localtime", "write_buffer", "flush_interval", "write_retry",
                     "stats_interval", "log_level", "header_timeout", "idle_timeout"):
            self.assertEqual(getattr(full, attr), getattr(cfg, attr), attr)
            self.assertIn(attr, keys)
        self.assertEqual(full.log.level, "info")
        self.assertEqual(full.metrics, ("127.0.0.1", 9101))


class CommandLine(Base):
    def test_check_config(self):
        p = self.write("[server]\nbase_path = base\nport = 1234\n[client a]\nip = 10.0.0.1\n")
        r = support.run(support.script_cmd("server", "--check-config", "-c", p))
        self.assertIn("config OK", r.stdout)
        self.assertIn("port 1234, 1 client(s)", r.stdout)
        bad = self.write("[server]\nbase_path = base\nprot = 1\n", "bad.ini")
        r = support.run(support.script_cmd("server", "--check-config", "-c", bad), check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("[server] prot: unknown key", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        r = support.run(support.script_cmd("server", "-c", bad), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("Traceback", r.stderr)

    def test_version_and_default_config_name(self):
        r = support.run(support.script_cmd("server", "-V"))
        self.assertIn("osmo_pcap_server.py", r.stdout)
        r = support.run(support.script_cmd("server", "--check-config"), check=False,
                        cwd=self.tmp)
        self.assertEqual(r.returncode, 2)
        self.assertIn("osmo-pcap-server.ini", r.stderr)


if __name__ == "__main__":
    unittest.main()
