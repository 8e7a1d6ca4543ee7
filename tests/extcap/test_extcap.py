# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_extcap.py: Wireshark's extcap interface against a real server's tap.

The extcap runs as Wireshark runs it (the generated script, this interpreter);
the tshark tests put it in tshark's extcap folder: as root in a private mount
namespace where a temporary folder is bind-mounted over tshark's own (Wireshark
ignores WIRESHARK_EXTCAP_DIR for root), otherwise through WIRESHARK_EXTCAP_DIR.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from tests import peer, support
from osmo_pcap import pcapng


def seq_of(data):
    """The packet number peer.payload() put in the first 4 bytes."""
    return struct.unpack_from("<I", data, 0)[0]


class ExtcapBase(support.TempDirTestCase):
    CLIENTS = [("bts1", "127.0.0.2", "yes"), ("bts2", "127.0.0.3", "yes"),
               ("idle", "127.0.0.9", "no")]

    def start_server(self, extra=""):
        self.tap_port = support.free_port()
        srv = peer.ServerProcess(self.tmp, self.CLIENTS,
                                 extra="tap_listen = %d\n%s" % (self.tap_port, extra))
        self.addCleanup(srv.kill)
        self.srv = srv.start()
        return srv

    def connect_clients(self):
        """bts1 sends pcap (Ethernet), bts2 pcapng with two interfaces."""
        a = peer.connect(self.srv.port, source="127.0.0.2")
        self.addCleanup(a.close)
        a.sendall(peer.pcap_hdr())
        b = peer.connect(self.srv.port, source="127.0.0.3")
        self.addCleanup(b.close)
        b.sendall(peer.pcapng_hdr(("eth0", "eth1")))
        self.srv.wait_log("client bts1 (127.0.0.2:")
        self.srv.wait_log("client bts2 (127.0.0.3:")
        return a, b

    def write_config(self, text=None):
        path = self.path("extcap.ini")
        with open(path, "w") as f:
            f.write(text if text is not None else "[extcap]\ntap = 127.0.0.1:%d\n"
                    % self.tap_port)
        return path

    def extcap(self, *args, check=True, config=None, timeout=60):
        env = dict(os.environ, OSMO_PCAP_EXTCAP_CONFIG=config or self.write_config())
        return support.run(support.script_cmd("extcap", *args), env=env, check=check,
                           timeout=timeout)

    def pump(self, socks, until, limit=30.0):
        """Send numbered packets from every client until until() holds; return the count."""
        a, b = socks
        i = 0
        deadline = time.monotonic() + limit
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("not done after %d packets per client" % i)
            a.sendall(peer.pcap_data(i))
            b.sendall(peer.pcapng_data(i, interface=i % 2))
            i += 1
            time.sleep(0.005)
        return i


class ExtcapInterfaceTest(ExtcapBase):
    """The answers Wireshark parses: interfaces, link types, the capture dialog."""

    def test_interfaces_list_every_configured_client(self):
        self.start_server()
        self.connect_clients()
        out = self.extcap("--extcap-interfaces", "--extcap-version=4.0").stdout
        where = "127.0.0.1:%d" % self.tap_port
        self.assertEqual(out.splitlines(), [
            "extcap {version=%s}{display=osmo-pcap live tap}" % __import__("osmo_pcap").__version__,
            "interface {value=osmo-pcap}{display=osmo-pcap: all clients of %s}" % where,
            "interface {value=osmo-pcap-bts1}{display=osmo-pcap: client bts1 of %s "
            "(connected from 127.0.0.2)}" % where,
            "interface {value=osmo-pcap-bts2}{display=osmo-pcap: client bts2 of %s "
            "(connected from 127.0.0.3)}" % where,
            "interface {value=osmo-pcap-idle}{display=osmo-pcap: client idle of %s "
            "(not connected)}" % where])
        listing = self.extcap("--list").stdout
        self.assertIn("osmo-pcap-idle", listing)
        self.assertIn("(not connected)", listing)

    def test_unreachable_tap_or_bad_config_still_offers_one_interface(self):
        self.tap_port = support.free_port()     # nobody listens there
        out = self.extcap("--extcap-interfaces").stdout.splitlines()
        self.assertEqual(len(out), 2)
        self.assertRegex(out[1], r"^interface \{value=osmo-pcap\}\{display=osmo-pcap: all "
                         r"clients of 127\.0\.0\.1:\d+ \(cannot connect to the tap at "
                         r"127\.0\.0\.1:\d+: Connection refused\)\}$")
        self.assertEqual(self.extcap("--list", check=False).returncode, 1)
        bad = self.write_config("[extcap]\ntap = nowhere\n")
        out = self.extcap("--extcap-interfaces", config=bad).stdout.splitlines()
        self.assertIn("config error: %s [extcap] tap: expected HOST:PORT" % bad, out[1])
        p = self.extcap("--check-config", config=bad, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("[extcap] tap: expected HOST:PORT", p.stderr)

    def test_dlts_config_and_refusals(self):
        self.tap_port = 57999
        out = self.extcap("--extcap-interface", "osmo-pcap-bts1", "--extcap-dlts").stdout
        self.assertEqual(out, "dlt {number=147}{name=osmo-pcap-bts1}"
                              "{display=link type of the client (from its stream)}\n")
        cfg = self.write_config("[extcap]\ntap = [::1]:57999\ntls = yes\ntls_hostname = srv\n")
        out = self.extcap("--extcap-interface", "osmo-pcap", "--extcap-config",
                          config=cfg).stdout.splitlines()
        self.assertEqual([re.match(r"arg \{number=(\d+)\}\{call=([^}]+)\}", l).groups()
                          for l in out],
                         [("0", "--tap"), ("1", "--tls"), ("2", "--tls-ca"), ("3", "--tls-cert"),
                          ("4", "--tls-key"), ("5", "--tls-hostname")])
        self.assertIn("{default=[::1]:57999}", out[0])
        self.assertIn("{type=boolflag}{default=true}", out[1])
        self.assertIn("{default=srv}", out[5])
        for args, why in [(("--extcap-interface", "eth0", "--extcap-dlts"), "unknown interface"),
                          (("--extcap-interface", "osmo-pcap-a/b", "--extcap-dlts"),
                           "not a safe name"),
                          (("--extcap-interface", "osmo-pcap", "--capture"), "needs --fifo"),
                          (("--extcap-interface", "osmo-pcap", "--capture", "--fifo",
                            self.path("f"), "--extcap-capture-filter", "udp"),
                           "capture filters are not supported"),
                          ((), "nothing to do")]:
            p = self.extcap(*args, check=False)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(why, p.stderr)


class ExtcapCaptureTest(ExtcapBase):
    """--capture --fifo as Wireshark runs it, the FIFO read here."""

    def capture(self, iface, *extra, config=None):
        fifo = self.path("fifo-%s" % iface)
        os.mkfifo(fifo)
        env = dict(os.environ, OSMO_PCAP_EXTCAP_CONFIG=config or self.write_config())
        proc = subprocess.Popen(support.script_cmd("extcap", "--extcap-interface", iface,
                                                   "--capture", "--fifo", fifo) + list(extra),
                                env=env, stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        got = bytearray()

        def reader():
            with open(fifo, "rb") as f:
                while True:
                    d = f.read1(65536) if hasattr(f, "read1") else f.read(65536)
                    if not d:
                        return
                    got.extend(d)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        return proc, got, t

    def packets(self, data):
        """[(interface name, packet number)] of a pcapng stream read by our reader."""
        idbs = []
        for bo, btype, off, total in pcapng.iter_blocks(bytes(data)):
            if btype == pcapng.BT_IDB:
                idbs.append(pcapng.parse_idb(data, off, bo, total).name)
        return [(idbs[r.interface], seq_of(r.data)) for r in pcapng.iter_packets(bytes(data))]

    def test_one_client_then_sigterm(self):
        self.start_server()
        socks = self.connect_clients()
        proc, got, reader = self.capture("osmo-pcap-bts2")
        self.srv.wait_log("streams client bts2")
        n = self.pump(socks, lambda: len(self.packets(got)) >= 50)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        self.assertEqual((proc.returncode, err), (0, b""))
        reader.join(30)
        pkts = self.packets(got)
        self.assertEqual(set(name for name, _ in pkts), {"bts2:eth0", "bts2:eth1"})
        first = pkts[0][1]
        self.assertEqual([s for _, s in pkts], list(range(first, first + len(pkts))))
        self.assertEqual([name for name, s in pkts], ["bts2:eth%d" % (s % 2) for _, s in pkts])
        self.assertLessEqual(first + len(pkts), n)
        shb = pcapng.parse_shb(bytes(got))[2]
        self.assertIn((pcapng.OPT_COMMENT, ("osmo-pcap live tap 127.0.0.1:%d: client bts2"
                                            % self.tap_port).encode()), shb)

    def test_client_that_connects_later_and_server_stop(self):
        self.start_server()
        proc, got, reader = self.capture("osmo-pcap-idle")
        self.srv.wait_log("streams client idle")
        c = peer.connect(self.srv.port, source="127.0.0.9")
        self.addCleanup(c.close)
        c.sendall(peer.pcap_hdr(linktype=101) + b"".join(peer.pcap_data(i) for i in range(7)))
        deadline = time.monotonic() + 30
        while len(self.packets(got)) < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.packets(got), [("idle", i) for i in range(7)])
        self.srv.stop()
        _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"the server closed the live tap stream of client idle", err)

    def test_unknown_client_is_refused_by_the_server(self):
        self.start_server()
        proc, got, reader = self.capture("osmo-pcap-nosuch")
        _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"refused: no client nosuch in the server's configuration "
                      b"(clients: bts1, bts2, idle)", err)


class ExtcapTLSTest(ExtcapBase):
    """tap_tls with viewer certificates (tap_tls_ca): listing and streaming."""

    def test_tls_tap(self):
        from tests import pki
        support.require_tool("openssl")   # tests/pki.py makes the certificates
        certs = pki.shared_pki()
        self.start_server("tap_tls = yes\ntap_tls_ca = %s\ntls_cert = %s\ntls_key = %s\n"
                          % ((certs["ca"],) + certs["server"]))
        socks = self.connect_clients()
        good = self.write_config("[extcap]\ntap = 127.0.0.1:%d\ntls = yes\ntls_ca = %s\n"
                                 "tls_cert = %s\ntls_key = %s\ntls_hostname = localhost\n"
                                 % ((self.tap_port, certs["ca"]) + certs["client1"]))
        out = self.extcap("--list", config=good).stdout
        self.assertIn("(TLS) (connected from 127.0.0.2)", out)
        self.assertIn("osmo-pcap-bts2", out)
        cap = ExtcapCaptureTest.capture(self, "osmo-pcap-bts1", config=good)
        proc, got, reader = cap
        self.srv.wait_log("streams client bts1")
        self.pump(socks, lambda: len(ExtcapCaptureTest.packets(self, got)) >= 10)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0)
        self.assertEqual(set(n for n, _ in ExtcapCaptureTest.packets(self, got)), {"bts1"})
        # the server asks for a viewer certificate: without one, nothing
        nocert = self.write_config("[extcap]\ntap = 127.0.0.1:%d\ntls = yes\ntls_ca = %s\n"
                                   "tls_hostname = localhost\n" % (self.tap_port, certs["ca"]))
        p = self.extcap("--list", config=nocert, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("osmo-pcap-bts1", p.stdout)
        # plain TCP towards a TLS tap, TLS towards a plain one: one clear line each
        plain = self.write_config("[extcap]\ntap = 127.0.0.1:%d\ntimeout = 1s\n" % self.tap_port)
        p = self.extcap("--list", config=plain, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("closed the connection before answering (a TLS tap, tap_tls = yes, "
                      "closes plain connections: then set tls = yes here)", p.stdout)


@unittest.skipIf(sys.platform != "linux", "tshark's extcap folder is bind-mounted (Linux)")
class TsharkTest(ExtcapBase):
    """The real tshark finds the extcap in its extcap folder and captures through it."""

    def setUp(self):
        ExtcapBase.setUp(self)
        self.tshark = support.require_tool("tshark")
        os.chmod(self.tmp, 0o755)
        self.extdir = self.path("extcap")
        os.mkdir(self.extdir)
        self.home = self.path("home")
        os.mkdir(self.home)

    def install(self):
        """Put the extcap in the folder as a wrapper that runs this interpreter."""
        wrapper = os.path.join(self.extdir, "osmo-pcap-extcap")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nOSMO_PCAP_EXTCAP_CONFIG='%s' exec '%s' '%s' \"$@\"\n"
                    % (self.write_config(), sys.executable, support.SCRIPTS["extcap"]))
        os.chmod(wrapper, 0o755)

    def tshark_cmd(self, *args):
        env = dict(os.environ, HOME=self.home)
        if os.geteuid() != 0:
            env["WIRESHARK_EXTCAP_DIR"] = self.extdir
            return [self.tshark] + list(args), env
        folders = support.run([self.tshark, "-G", "folders"], env=env).stdout
        # "Extcap path" up to tshark 4.4, "Global Extcap path" from 4.6 on
        m = re.search(r"^(?:Global )?Extcap path:\s*(\S.*)$", folders, re.M)
        self.assertIsNotNone(m, folders)
        unshare = support.require_tool("unshare")
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        return ([unshare, "--mount", "--propagation", "private", "sh", "-c", script,
                 self.extdir, m.group(1).strip(), self.tshark] + list(args), env)

    def test_interface_list(self):
        self.start_server()
        self.connect_clients()
        self.install()
        cmd, env = self.tshark_cmd("-D")
        out = support.run(cmd, env=env).stdout
        names = re.findall(r"^\d+\. (\S+) \((.*)\)$", out, re.M)
        ours = [(n, d) for n, d in names if n.startswith("osmo-pcap")]
        where = "127.0.0.1:%d" % self.tap_port
        self.assertEqual(ours, [
            ("osmo-pcap", "osmo-pcap: all clients of %s" % where),
            ("osmo-pcap-bts1", "osmo-pcap: client bts1 of %s (connected from 127.0.0.2)" % where),
            ("osmo-pcap-bts2", "osmo-pcap: client bts2 of %s (connected from 127.0.0.3)" % where),
            ("osmo-pcap-idle", "osmo-pcap: client idle of %s (not connected)" % where)])

    def capture(self, iface, count):
        socks = self.connect_clients()
        self.install()
        out = self.path("out-%s.pcapng" % iface)
        cmd, env = self.tshark_cmd("-i", iface, "-a", "packets:%d" % count, "-w", out)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.srv.wait_log("streams %s" % ("all clients" if iface == "osmo-pcap" else
                                          "client " + iface[len("osmo-pcap-"):]), timeout=60)
        self.pump(socks, lambda: proc.poll() is not None, limit=60)
        _, err = proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        return out

    def test_capture_one_client_while_two_send(self):
        self.start_server()
        out = self.capture("osmo-pcap-bts1", 40)
        rows = support.tshark_packets(out, ("frame.interface_name", "frame.len"))
        self.assertEqual(rows, [["bts1", "100"]] * 40)
        seqs = [seq_of(p[3]) for p in support.tshark_read(out)]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 40)))
        info = support.run([support.require_tool("capinfos"), out]).stdout
        self.assertRegex(info, r"Number of packets:\s+40\b")
        self.assertRegex(info, r"Number of interfaces in file:\s+1\b")

    def test_capture_all_clients(self):
        self.start_server()
        out = self.capture("osmo-pcap", 60)
        rows = support.tshark_packets(out, ("frame.interface_name",))
        self.assertEqual(len(rows), 60)
        self.assertEqual(set(r[0] for r in rows), {"bts1", "bts2:eth0", "bts2:eth1"})


if __name__ == "__main__":
    unittest.main()
