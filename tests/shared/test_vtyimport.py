# SPDX-License-Identifier: AGPL-3.0-or-later
"""--import-vty: upstream VTY configs (doc/migration.md#import-vty) translated into our INI."""

import configparser
import io
import os
import unittest

from tests import support
from osmo_pcap import log, vtyimport
from osmo_pcap.client import config as clientconfig
from osmo_pcap import ini
from osmo_pcap.server import config as serverconfig

VTY = os.path.join(support.DATA, "vty")


def read(name):
    with open(os.path.join(VTY, name), "r", encoding="utf-8") as f:
        return f.read()


def convert(kind, text, name="t.cfg"):
    return vtyimport.convert(kind, text, name)


class GoldenTest(unittest.TestCase):
    """The four example configs give exactly the INI and messages on file."""

    def check(self, kind, base):
        text, messages, _ = convert(kind, read(base + ".cfg"), base + ".cfg")
        self.assertEqual(text, read(base + ".ini"))
        self.assertEqual("".join(m + "\n" for m in messages), read(base + ".err"))

    def test_server_plain(self):
        self.check("server", "server")

    def test_server_tls(self):
        self.check("server", "server-tls")

    def test_client_plain(self):
        self.check("client", "client")

    def test_client_tls(self):
        self.check("client", "client-tls")

    def test_every_reported_line_exists(self):
        for kind, base in (("server", "server"), ("server", "server-tls"),
                           ("client", "client"), ("client", "client-tls")):
            lines = read(base + ".cfg").splitlines()
            for m in read(base + ".err").splitlines():
                _, lineno, what, rest = m.split(":", 3)
                quoted = rest.split("'")[1]
                self.assertEqual(lines[int(lineno) - 1].strip(), quoted, m)


class RoundTripTest(support.TempDirTestCase):
    """The produced INI is accepted by the programs' own config readers."""

    def load(self, kind, base):
        text, _, _ = convert(kind, read(base + ".cfg"), base + ".cfg")
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read_string(text)
        # [log] is read by log.read_config (the lead wires it into the loaders).
        logcfg = None
        if cp.has_section("log"):
            logcfg = log.read_config(ini.Section(cp, "log", "x.ini"))
            cp.remove_section("log")
        # The examples name certificate files under /etc/osmo-pcap; point them at a
        # test PKI so the TLS keys are really loaded and checked.
        files = {"tls_cert": 0, "tls_key": 1}
        for sect in cp.sections():
            for key in ("tls_cert", "tls_key", "tls_ca"):
                if cp.has_option(sect, key):
                    support.require_tool("openssl")
                    from tests import pki
                    p = pki.shared_pki()
                    if key == "tls_ca":
                        value = p["ca"]
                    else:
                        value = (p["server"] if kind == "server" else p["client1"])[files[key]]
                    cp.set(sect, key, value)
        path = self.path(base + ".ini")
        with open(path, "w") as f:
            cp.write(f)
        if kind == "client":
            from osmo_pcap.client import main as client
        loader = serverconfig.load if kind == "server" else clientconfig.load
        return loader(path), logcfg

    def test_server(self):
        cfg, logcfg = self.load("server", "server")
        self.assertEqual(cfg.port, 54321)
        self.assertEqual(cfg.rotate_localtime, ("hour", 2))
        self.assertEqual(cfg.max_snaplen, 10000)
        self.assertEqual([(c.name, str(c.ip), c.store) for c in cfg.clients],
                         [("bts1", "192.168.100.1", True), ("bts2", "192.168.100.2", False),
                          ("bts3", "192.168.100.3", True)])
        self.assertEqual((logcfg.level, logcfg.target, logcfg.timestamps),
                         ("debug", "stderr", "no"))

    def test_server_tls(self):
        cfg, logcfg = self.load("server", "server-tls")
        self.assertIsNone(cfg.max_file_size or None)
        self.assertEqual(logcfg.file, "/var/log/osmo-pcap/server.log")

    def test_client(self):
        cfg, _ = self.load("client", "client")
        self.assertEqual(cfg.devices, ["eth0", "eth1"])
        self.assertEqual(cfg.snaplen, 1500)
        self.assertEqual([(s.name, s.host, s.port, s.queue_size) for s in cfg.servers],
                         [("default", "192.168.11.20", 54321, 2000 * 1520),
                          ("backup", "192.168.11.21", 54321, 16 << 20)])

    def test_client_tls(self):
        self.load("client", "client-tls")


class CommandTest(unittest.TestCase):
    """Abbreviations, node scoping and the error paths."""

    def test_unique_prefixes(self):
        text, msgs, _ = convert("server", "serv\n base /data\n serv p 5000\n rot h mod 6\n"
                                         " max-f 1000\n max-s 1500\n")
        self.assertEqual(msgs, [])
        self.assertEqual(text.split("\n\n")[1],
                         "[server]\nport = 5000\nbase_path = /data\nmax_snaplen = 1500\n"
                         "max_file_size = 1000\nrotate_localtime = hour mod 6\n")

    def test_ambiguous_prefix(self):
        # "f" is file-format or filter, and "pcap" fits both
        _, msgs, n = convert("client", "client\n pcap f pcap\n pcap device eth0\n")
        self.assertEqual(n, 1)
        self.assertIn("t.cfg:2: error: 'pcap f pcap': ambiguous abbreviation", msgs[0])
        # "udp" is no file format, so the VTY (and we) take it as the filter
        text, msgs, _ = convert("client", "client\n pcap f udp\n pcap device eth0\n")
        self.assertEqual(msgs, [])
        self.assertIn("filter = udp\n", text)

    def test_exact_keyword_beats_longer_one(self):
        _, msgs, _ = convert("server", "server\n base-path /x\n tls dh pkcs /dh.pem\n")
        self.assertEqual(len(msgs), 1)
        self.assertIn("tls dh pkcs /dh.pem': not needed", msgs[0])

    def test_unknown_and_other_kind(self):
        _, msgs, _ = convert("server", "client\n pcap device eth0\nbogus 1\n")
        self.assertIn("osmo_pcap_client.py --import-vty", msgs[0])
        self.assertIn("t.cfg:3: unknown: 'bogus 1'", msgs[1])
        self.assertEqual(len(msgs), 2)  # the other program's node is reported once

    def test_no_forms_and_last_wins(self):
        ini, msgs, _ = convert("server", "server\n base-path /a\n completed-path /b\n"
                                         " no completed-path\n rotate-localtime day\n"
                                         " no rotate-localtime\n client x 10.0.0.1\n"
                                         " no client x\n max-file-size 5\n no max-file-size\n")
        self.assertEqual(msgs, [])
        self.assertNotIn("completed_path", ini)
        self.assertNotIn("[client x]", ini)
        self.assertIn("rotate_localtime = off\n", ini)
        self.assertIn("max_file_size = off\n", ini)

    def test_client_tls_without_store_is_accepted(self):
        ini, msgs, _ = convert("server", "server\n base-path /a\n enable tls\n"
                                         " client b 10.0.0.9 tls\n")
        self.assertIn("[client b]\nip = 10.0.0.9\nstore = yes\ntls = required\n", ini)
        self.assertIn("upstream rejects this form", msgs[0])

    def test_tls_client_without_global_tls(self):
        ini, msgs, _ = convert("server", "server\n base-path /a\n client b 10.0.0.9 store tls\n")
        self.assertIn("tls = no\n", ini)
        self.assertIn("t.cfg:3: note:", msgs[0])

    def test_bad_values_are_errors(self):
        _, msgs, n = convert("server", "server\n base-path /a\n max-file-size 10M\n"
                                       " file-permission-mask 0999\n server port 70000\n"
                                       " zeromq-publisher somehost 1234\n")
        self.assertEqual(n, 4)
        self.assertIn("t.cfg:3: error:", msgs[0])
        self.assertIn("t.cfg:4: error:", msgs[1])
        self.assertIn("t.cfg:5: unknown:", msgs[2])
        self.assertIn("t.cfg:6: error:", msgs[3])

    def test_file_mask_keeps_read_and_write_bits_only(self):
        ini, msgs, n = convert("server", "server\n base-path /a\n file-permission-mask 4750\n")
        self.assertIn("file_permission_mask = 0640\n", ini)
        self.assertEqual(n, 0)
        self.assertIn("t.cfg:3: note:", msgs[0])
        self.assertIn("without its execute, set-user-ID", msgs[0])

    def test_comment_characters_in_values(self):
        ini, msgs, _ = convert("client", "client\n pcap device lo\n pcap filter port 1 ;x\n")
        self.assertNotIn("filter", ini)
        self.assertIn("INI reads as a comment", msgs[0])

    def test_store_connection_scoping(self):
        text = ("client\n pcap device lo\n server ip 10.0.0.1\n server port 1000\n"
                " pcap-store-connection two\n  server ip 10.0.0.2\n  server port 2000\n"
                "  connect\n pcap snaplen 100\n wqueue max-length 10\n")
        ini, msgs, _ = convert("client", text)
        self.assertIn("[server default]\nhost = 10.0.0.1\nport = 1000\n", ini)
        self.assertIn("[server two]\nhost = 10.0.0.2\nport = 2000\n", ini)
        self.assertIn("snaplen = 100\n", ini)
        # 10 x (100 + 20) is below the minimum queue
        self.assertIn("queue_size = 65536\n", ini)
        self.assertEqual(len(msgs), 2)

    def test_disconnect_and_connect(self):
        text = ("client\n pcap device lo\n pcap-store-connection a\n  server ip 10.0.0.2\n"
                "  server port 2000\n  disconnect\n pcap-store-connection b\n"
                "  server ip 10.0.0.3\n  server port 2000\n  disconnect\n  connect\n")
        ini, msgs, _ = convert("client", text)
        self.assertEqual(msgs, [])
        self.assertIn("[server a]\nhost = 10.0.0.2\nport = 2000\nenabled = no\n", ini)
        self.assertTrue(ini.endswith("[server b]\nhost = 10.0.0.3\nport = 2000\n"))

    def test_device_removal_and_dedup(self):
        ini, _, _ = convert("client", "client\n pcap device a\n pcap device b\n pcap device a\n"
                                      " no pcap device a\n")
        self.assertIn("devices = b\n", ini)

    def test_log_targets_and_levels(self):
        text = ("log syslog local0\n logging level all error\n logging level tls info\n"
                " logging level lglobal debug\n logging timestamp 1\n"
                "log stderr\n logging level all debug\n")
        ini, msgs, _ = convert("server", text)
        self.assertIn("[log]\nlevel = info\ntarget = syslog\ntimestamps = yes\n", ini)
        kinds = [m.split(": ")[1] for m in msgs]
        self.assertEqual(kinds, ["note", "note", "unsupported", "unsupported", "unsupported"])

    def test_fatal_and_everything(self):
        ini, _, _ = convert("client", "log stderr\n logging level all fatal\n")
        self.assertIn("level = critical\n", ini)
        ini, _, _ = convert("client", "log stderr\n logging level all everything\n")
        self.assertIn("level = debug\n", ini)

    def test_main_exit_status_and_streams(self):
        out, err = io.StringIO(), io.StringIO()
        path = os.path.join(VTY, "server.cfg")
        self.assertEqual(vtyimport.main("server", path, out, err), 0)
        self.assertTrue(out.getvalue().startswith("; Converted from server.cfg"))
        self.assertIn("8 line(s) of %s not converted one to one" % path, err.getvalue())
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(vtyimport.main("server", path + ".missing", out, err), 2)
        self.assertEqual(out.getvalue(), "")
        self.assertIn("No such file", err.getvalue())


if __name__ == "__main__":
    unittest.main()
