# SPDX-License-Identifier: AGPL-3.0-or-later
"""TLS end to end: real client and server processes (doc/tls.md, issue 5).

The clients replay a generated pcap file through the real capture path
(`[client] read_file`), so no capture device or root is needed. Every client
gets its own source address on 127.0.0.0/8, which is how the server tells the
client entries apart. The test PKI comes from tests/pki.py (openssl).

- TLS stream: the file the server writes is byte-identical to the one of a
  plain-TCP client replaying the same packets (and to the replayed file).
- openssl s_client (an independent TLS peer) feeding an `ip = any` entry.
- The negative matrix against one server, all at the same time, while a good
  TLS client (in-process, one connection throughout) keeps being served: no
  client certificate, wrong CA, revoked, expired, wrong identity, plaintext to
  a TLS-only entry, TLS to a plaintext entry, a peer that stalls in the
  handshake, a silent peer, plaintext and a foreign certificate from addresses
  of no entry, a server certificate that does not carry tls_hostname (the
  client refuses and says why), and an `ip = any` entry chosen by the
  certificate identity. Each refusal is counted (SIGUSR1 stats line and
  /metrics) and logged with its reason.
- A TLS ClientHello to a server without TLS; start-up errors (--check-config).
"""

import os
import re
import signal
import ssl
import subprocess
import sys
import time
import unittest
from urllib.request import urlopen

from tests import peer, support
from tests import pki as pkimod
from osmo_pcap import pcapfile, wire
from osmo_pcap.client import libpcap

PKI = {}
WAIT = 30.0          # upper bound for waits (a hang guard, never a speed assertion)
HANDSHAKE_TIMEOUT = 2  # the server's tls_handshake_timeout in the matrix, seconds


def setUpModule():
    support.require_tool("openssl")
    try:
        libpcap.load(None)
    except libpcap.LibpcapError as e:
        support.need(False, "libpcap is needed for read_file: %s" % e)
    PKI.update(pkimod.shared_pki())


def write_pcap(path, count, first=0):
    """Write a pcap file of count Ethernet/IPv4/UDP-like frames of varied sizes."""
    recs = []
    with open(path, "wb") as f:
        f.write(pcapfile.encode_global_header(9000, 1))
        for i in range(first, first + count):
            size = 60 + (i * 397) % 1400
            body = (b"OPC-TLS%08d" % i) + bytes((i + k) & 0xFF for k in range(size - 15))
            rec = pcapfile.encode_record(1700000000 + i // 100, (i % 100) * 10000, body)
            f.write(rec)
            recs.append(rec)
    return recs


class Proc(object):
    """A started client with its log file."""

    def __init__(self, argv, logpath, cwd):
        self.logpath = logpath
        self._log = open(logpath, "wb")
        self.p = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd)

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


class E2ETestCase(support.TempDirTestCase):

    def server_tls_keys(self, client_auth="required", timeout=None):
        lines = ["tls_cert = %s" % PKI["server"][0], "tls_key = %s" % PKI["server"][1],
                 "tls_client_auth = %s" % client_auth]
        if client_auth != "none":
            lines += ["tls_ca = %s" % PKI["ca"], "tls_crl = %s" % PKI["crl"]]
        if timeout:
            lines.append("tls_handshake_timeout = %ds" % timeout)
        return "\n".join(lines) + "\n"

    def start_server(self, extra):
        srv = peer.ServerProcess(self.tmp, [], "flush_interval = 0.1s\n" + extra)
        srv.start()
        self.addCleanup(srv.kill)
        self.addCleanup(self.check_no_traceback, srv.log)
        return srv

    def check_no_traceback(self, text_fn):
        self.assertNotIn("Traceback", text_fn())

    def start_client(self, name, port, source, server_keys="", read_file=None):
        ini = self.path("client-%s.ini" % name)
        with open(ini, "w") as f:
            f.write("[client]\nread_file = %s\nsnaplen = 9000\nstats_interval = 0\n"
                    "flush_timeout = 1s\n"
                    "[server main]\nhost = 127.0.0.1\nport = %d\nsource_ip = %s\n"
                    "reconnect_min = 0.2s\nreconnect_max = 0.5s\n%s"
                    % (read_file or self.input, port, source, server_keys))
        proc = Proc(support.script_cmd("client", "-c", ini),
                    self.path("client-%s.log" % name), self.tmp)
        self.addCleanup(proc.stop, signal.SIGKILL)
        self.addCleanup(self.check_no_traceback, proc.text)
        return proc

    def client_tls_keys(self, cert="client1", ca="ca", **extra):
        keys = {"tls": "yes", "tls_ca": PKI[ca]}
        if cert:
            keys["tls_cert"], keys["tls_key"] = PKI[cert]
        keys.update(extra)
        return "".join("%s = %s\n" % kv for kv in sorted(keys.items()))

    def wait_until(self, check, what):
        deadline = time.monotonic() + WAIT
        while not check():
            if time.monotonic() > deadline:
                self.fail("timed out waiting for " + what)
            time.sleep(0.05)

    def wait_exit(self, proc):
        try:
            proc.p.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.fail("the client did not exit at the end of read_file:\n" + proc.text())
        self.assertEqual(proc.stop(), 0, proc.text())

    def files_of(self, srv, name):
        return [p for p in srv.all_files()
                if os.path.basename(p).startswith("trace-%s-" % name)]


def lines_with(text, *words):
    return [l for l in text.splitlines() if all(w in l for w in words)]


# ------------------------------------------------------------------ good path
class TLSStreamTest(E2ETestCase):

    def test_tls_file_identical_to_plain(self):
        self.input = self.path("in.pcap")
        write_pcap(self.input, 2500)   # about 2 MB: many TLS records per read
        srv = self.start_server(
            self.server_tls_keys("required") +
            "\n[client plain]\nip = 127.0.0.2\n"
            "\n[client secure]\nip = 127.0.0.3\ntls = required\ntls_identity = client1\n"
            "\n[client unverified]\nip = 127.0.0.4\ntls = yes\ntls_identity = client1\n")
        plain = self.start_client("plain", srv.port, "127.0.0.2")
        secure = self.start_client("secure", srv.port, "127.0.0.3", self.client_tls_keys())
        # Encryption without checking the server (upstream's no tls verify-cert), TLS 1.3 only.
        unverified = self.start_client("unverified", srv.port, "127.0.0.4",
                                       self.client_tls_keys(ca="other-ca", tls_verify="no",
                                                            tls_min_version="1.3"))
        self.wait_exit(plain)
        self.wait_exit(secure)
        self.wait_exit(unverified)
        self.assertIn("tls_verify = no: the server certificate is not checked",
                      unverified.text())
        self.assertIn("connected with TLSv1.3, server certificate NOT verified",
                      unverified.text())
        self.assertIn("2500 packet(s) replayed", secure.text())
        self.assertRegex(secure.text(), r"connected with TLSv1\.[23], server certificate "
                                        r"verified for 127\.0\.0\.1")
        srv.wait_log("disconnected: connection closed by the client", 3)
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        self.assertTrue(lines_with(log, "client secure (127.0.0.3:", "TLSv1.", "client1"), log)
        pf, sf = self.files_of(srv, "plain"), self.files_of(srv, "secure")
        self.assertEqual(len(pf), 1, srv.all_files())
        self.assertEqual(len(sf), 1, srv.all_files())
        secure_bytes = peer.read_file(sf[0])
        self.assertEqual(secure_bytes, peer.read_file(pf[0]))
        self.assertEqual(secure_bytes, peer.read_file(self.input))
        self.assertEqual(len(peer.file_records(sf[0])), 2500)
        uf = self.files_of(srv, "unverified")
        self.assertEqual(len(uf), 1, srv.all_files())
        self.assertEqual(peer.read_file(uf[0]), secure_bytes)

    def test_openssl_s_client_to_server(self):
        # An independent TLS peer: openssl s_client with client1's certificate feeds an
        # `ip = any` entry, chosen by the DNS SAN of that certificate.
        openssl = support.require_tool("openssl")
        srv = self.start_server(self.server_tls_keys("required") +
                                "\n[client roaming]\nip = any\ntls = required\n"
                                "tls_identity = client1.example\n")
        stream = peer.pcap_stream(300, size=700)
        src = self.path("stream.bin")
        with open(src, "wb") as f:
            f.write(stream)
        with open(src, "rb") as stdin:
            p = subprocess.run([openssl, "s_client", "-connect", "127.0.0.1:%d" % srv.port,
                                "-cert", PKI["client1"][0], "-key", PKI["client1"][1],
                                "-CAfile", PKI["ca"], "-verify_return_error", "-quiet",
                                "-no_ign_eof"],
                               stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stderr)
        srv.wait_log("client roaming (127.0.0.1:")
        srv.wait_log("): disconnected")
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(lines_with(srv.log(), "client roaming (127.0.0.1:", ": connected (TLS",
                                   "certificate client1"), srv.log())
        files = self.files_of(srv, "roaming")
        self.assertEqual(len(files), 1)
        self.assertEqual(peer.read_file(files[0]),
                         b"".join(body for _, body in peer.split_frames(stream)))

    def test_tls_hello_to_server_without_tls(self):
        # doc/protocol.md#diff-unknown-type: upstream aborted on the TLS record type; here:
        # logged, closed, counted.
        srv = peer.ServerProcess(self.tmp, [("plain", "127.0.0.2", "yes")]).start()
        self.addCleanup(srv.kill)
        out = ssl.MemoryBIO()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="server.test")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.assertTrue(peer.send_all_then_wait_closed(srv.port, out.read(), "127.0.0.2"))
        srv.wait_log("a TLS ClientHello, but the server has no tls_cert")
        self.assertTrue(peer.send_all_then_wait_closed(srv.port, peer.pcap_stream(5),
                                                       "127.0.0.2", half_close=True))
        srv.wait_log("(disconnect; 5 records")
        self.assertEqual(srv.stop(), 0)
        self.assertNotIn("Traceback", srv.log())

    def test_check_config_errors(self):
        base = self.path("base")
        os.makedirs(base)
        head = "[server]\nbase_path = %s\n" % base
        cases = [
            (head + "[client x]\nip = any\n",
             "[client x] ip: ip = any needs a certificate identity"),
            (head + self.server_tls_keys("none") + "[client x]\nip = any\ntls = required\n",
             "[client x] ip: ip = any needs a certificate identity"),
            (head + "[client x]\nip = 10.0.0.1\ntls = required\n",
             "[client x] tls: the server has no TLS"),
            (head + "tls_cert = %s\ntls_key = %s\n" % (PKI["server"][0], PKI["client1"][1]),
             "[server] tls_key: the private key in %s does not match" % PKI["client1"][1]),
            (head + "tls_cert = %s\n" % self.path("missing.pem"),
             "[server] tls_cert: cannot read %s" % self.path("missing.pem")),
        ]
        for text, message in cases:
            ini = self.path("bad.ini")
            with open(ini, "w") as f:
                f.write(text)
            r = support.run(support.script_cmd("server", "--check-config", "-c", ini),
                            check=False)
            self.assertEqual(r.returncode, 2, (text, r.stdout, r.stderr))
            self.assertIn(message, r.stderr, text)
            self.assertNotIn("Traceback", r.stderr)
        ok = self.path("ok.ini")
        with open(ok, "w") as f:
            f.write(head + self.server_tls_keys("optional") +
                    "[client a]\nip = any\ntls = required\n"
                    "[client b]\nip = any\ntls = required\n"
                    "[client c]\nip = 10.0.0.3\ntls = yes\n")
        r = support.run(support.script_cmd("server", "--check-config", "-c", ok))
        self.assertIn("3 client(s)", r.stdout)
        self.assertIn("TLS (tls_client_auth optional)", r.stdout)
        # The client names the key and the file too.
        cini = self.path("client.ini")
        with open(cini, "w") as f:
            f.write("[client]\nread_file = %s\n[server main]\nhost = 127.0.0.1\n"
                    "port = 1\ntls = yes\ntls_ca = %s\n" % (self.path("x.pcap"),
                                                             PKI["empty"]))
        r = support.run(support.script_cmd("client", "--check-config", "-c", cini),
                        check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("[server main] tls_ca: no PEM certificate in %s" % PKI["empty"],
                      r.stderr)


# ------------------------------------------------------------------ negative matrix
GOOD, NOCERT, WRONGCA, REVOKED, EXPIRED, WRONGID, PLAINREQ, PLAINENTRY, STALL, \
    BADNAME, ROAMING, QUIET, STRANGER_PLAIN, STRANGER_TLS = (
        "127.0.0.%d" % i for i in range(2, 16))   # ROAMING and STRANGER_*: no ip entry

MATRIX_ENTRIES = """
[client good]
ip = %(GOOD)s
tls = required
tls_identity = client1

[client nocert]
ip = %(NOCERT)s
tls = required
tls_identity = client2

[client wrongca]
ip = %(WRONGCA)s
tls = required
tls_identity = client1

[client revoked]
ip = %(REVOKED)s
tls = required

[client expired]
ip = %(EXPIRED)s
tls = yes

[client wrongid]
ip = %(WRONGID)s
tls = required
tls_identity = client1

[client plainreq]
ip = %(PLAINREQ)s
tls = required
tls_identity = client1

[client plainentry]
ip = %(PLAINENTRY)s

[client stall]
ip = %(STALL)s
tls = required
tls_identity = client1

[client badname]
ip = %(BADNAME)s
tls = required
tls_identity = client1

[client quiet]
ip = %(QUIET)s
tls = yes
tls_identity = client1

[client roaming]
ip = any
tls = required
tls_identity = client1.example
""" % dict(GOOD=GOOD, NOCERT=NOCERT, WRONGCA=WRONGCA, REVOKED=REVOKED, EXPIRED=EXPIRED,
           WRONGID=WRONGID, PLAINREQ=PLAINREQ, PLAINENTRY=PLAINENTRY, STALL=STALL,
           BADNAME=BADNAME, QUIET=QUIET)


class GoodPeer(object):
    """An in-process TLS client (blocking ssl socket) for the [client good] entry."""

    def __init__(self, port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(PKI["ca"])
        ctx.load_cert_chain(*PKI["client1"])
        raw = peer.connect(port, GOOD)
        self.local_port = raw.getsockname()[1]
        self.sock = ctx.wrap_socket(raw, server_hostname="server.test")
        self.sock.sendall(wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1)))
        self.sent = 0

    def send(self, count):
        frames = [wire.encode_link_data(peer.pcap_record(i, 200))
                  for i in range(self.sent, self.sent + count)]
        self.sock.sendall(b"".join(frames))
        self.sent += count

    def close(self):
        try:
            self.sock.unwrap()
        except (OSError, ValueError):
            pass
        self.sock.close()


class NegativeMatrixTest(E2ETestCase):

    def test_matrix(self):
        self.input = self.path("in.pcap")
        write_pcap(self.input, 50)
        metrics_port = support.free_port()
        srv = self.start_server(self.server_tls_keys("required", HANDSHAKE_TIMEOUT)
                                + MATRIX_ENTRIES
                                + "\n[metrics]\nlisten = 127.0.0.1:%d\n" % metrics_port)
        port = srv.port

        good = GoodPeer(port)
        self.addCleanup(good.close)
        good.send(100)
        srv.wait_log("client good (%s:" % GOOD)

        # A peer that sends its ClientHello and then nothing; and one that sends nothing.
        stall = peer.connect(port, STALL)
        self.addCleanup(stall.close)
        hello_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        hello_ctx.check_hostname = False
        hello_ctx.verify_mode = ssl.CERT_NONE
        out = ssl.MemoryBIO()
        hello = hello_ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="server.test")
        try:
            hello.do_handshake()
        except ssl.SSLWantReadError:
            pass
        stall.sendall(out.read())
        quiet = peer.connect(port, QUIET)
        self.addCleanup(quiet.close)
        # Addresses of no entry: plaintext cannot use `ip = any`; TLS needs a fitting name.
        self.assertTrue(peer.send_all_then_wait_closed(port, peer.pcap_stream(3),
                                                       STRANGER_PLAIN))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(PKI["ca"])
        ctx.load_cert_chain(*PKI["client2"])
        try:
            with ctx.wrap_socket(peer.connect(port, STRANGER_TLS),
                                 server_hostname="server.test") as s:
                s.sendall(wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1)))
                s.recv(100)  # b"" or a reset once the server has refused
        except OSError:
            pass

        keys = self.client_tls_keys
        clients = {
            "nocert": self.start_client("nocert", port, NOCERT, keys(cert=None)),
            "wrongca": self.start_client("wrongca", port, WRONGCA, keys(cert="other-client1")),
            "revoked": self.start_client("revoked", port, REVOKED, keys(cert="revoked")),
            "expired": self.start_client("expired", port, EXPIRED, keys(cert="expired")),
            "wrongid": self.start_client("wrongid", port, WRONGID, keys(cert="client2")),
            "plainreq": self.start_client("plainreq", port, PLAINREQ),
            "plainentry": self.start_client("plainentry", port, PLAINENTRY,
                                            keys(cert="client2")),
            "badname": self.start_client("badname", port, BADNAME,
                                         keys(tls_hostname="wrong.test")),
            "roaming": self.start_client("roaming", port, ROAMING, keys()),
        }

        # Each refusal is logged with the peer's address and the reason.
        v37 = sys.version_info >= (3, 7)
        expect = [
            (NOCERT, "no certificate"),
            (WRONGCA, "certificate verification failed" + (": unable to get local issuer"
                                                           if v37 else "")),
            (REVOKED, "certificate verification failed" + (": certificate revoked"
                                                           if v37 else "")),
            (EXPIRED, "certificate verification failed" + (": certificate has expired"
                                                           if v37 else "")),
            (WRONGID, "client 'wrongid': the client certificate names 'client2', "
                      "expected 'client1'"),
            (PLAINREQ, "plaintext connection, but client 'plainreq' requires TLS "
                       "(tls = required)"),
            (PLAINENTRY, "TLS connection, but client 'plainentry' is configured for "
                         "plaintext (tls = no)"),
            (STALL, "TLS handshake not completed within %d s" % HANDSHAKE_TIMEOUT),
            (QUIET, "no data within %d s" % HANDSHAKE_TIMEOUT),
            (STRANGER_PLAIN, "plaintext, and no [client] has this ip"),
            (STRANGER_TLS, "no [client] has this ip, and the client certificate names "
                           "'client2', which no ip = any entry expects"),
        ]
        if v37:
            # The client aborts the handshake with an alert. Python 3.6 checks the
            # name only after the handshake: the client hangs up without sending.
            expect.append((BADNAME, "TLS handshake failed: the peer rejected the TLS session"))
        for ip, reason in expect:
            self.wait_until(lambda: lines_with(srv.log(), "%s:" % ip, "refused", reason),
                            "the refusal of %s (%s) in the server log:\n%s"
                            % (ip, reason, srv.log()[-4000:]))
        # The roaming client is identified by its certificate, from any address.
        self.wait_exit(clients.pop("roaming"))
        # The good client was served all along, on its first connection.
        good.send(100)
        good.close()
        srv.wait_log("client good (%s:%d): disconnected" % (GOOD, good.local_port))
        stats = srv.stats()
        for key, least in (("tls_verify", 4), ("tls_identity", 2), ("tls_mode", 2),
                           ("tls_timeout", 1), ("no_data", 1), ("tls_connect", 2),
                           ("no_client", 1)):
            self.assertGreaterEqual(stats.get(key, 0), least, (key, stats))
        with urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=10) as r:
            text = r.read()
        text = text.decode()
        m = re.search(r'(?m)^osmo_pcap_server_refused_connections_total'
                      r'\{reason="tls_timeout"\} (\d+)', text)
        self.assertTrue(m, text)
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertRegex(text, r"(?m)^osmo_pcap_server_tls_connections_total [2-9]")

        # The client that cannot verify the server name says so and never sends.
        bad = clients["badname"]
        self.wait_until(lambda: "TLS handshake failed: certificate verification failed"
                        in bad.text(), "the badname client's reason:\n" + bad.text())
        self.assertNotIn("connected with", bad.text())
        if v37:
            self.assertIn("wrong.test", bad.text())
        for name, proc in clients.items():
            proc.stop()
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        self.assertEqual(len(lines_with(log, "client good (%s:" % GOOD, ": connected")), 1, log)
        good_files = self.files_of(srv, "good")
        self.assertEqual(len(good_files), 1)
        recs = peer.file_records(good_files[0])
        self.assertEqual(len(recs), 200)
        roaming = self.files_of(srv, "roaming")
        self.assertEqual(len(roaming), 1)
        self.assertEqual(peer.read_file(roaming[0]), peer.read_file(self.input))
        self.assertTrue(lines_with(log, "client roaming (%s:" % ROAMING, ": connected"), log)
        for name in ("nocert", "wrongca", "revoked", "expired", "wrongid", "plainreq",
                     "plainentry", "stall", "badname", "quiet"):
            self.assertEqual(self.files_of(srv, name), [], name)


if __name__ == "__main__":
    unittest.main()
