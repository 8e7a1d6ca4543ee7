# SPDX-License-Identifier: AGPL-3.0-or-later
"""--import-vty on every example configuration upstream ever shipped (tests/data/upstream-vty).

Each file goes through the importer of the program it belongs to, and through the
other one, with the checks the programs pass it (vtyimport.main as main() calls it;
one file per program also through the real scripts). The outcome of each is asserted:
the translation, the exit status (0: starts as it is, 3: cannot start, with every
reason; 2: nothing converted) and the reasons, which are what --check-config says
of the printed INI (doc/migration.md#import-vty).
"""

import glob
import io
import os
import socket
import unittest

from tests import support
from osmo_pcap import vtyimport

DATA = os.path.join(support.DATA, "upstream-vty")
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, "*.cfg")))
PROGRAMS = {"server": "osmo_pcap_server.py", "client": "osmo_pcap_client.py"}

# what the TLS examples of the server cannot do here: two entries share one
# address (upstream only ever used the first), and TLS entries without a certificate
SERVER_TLS_REASONS = [
    "osmo_pcap_server.py: - [client zecke2] ip: address 127.0.0.1 is already used by "
    "[client zecke1]",
    "osmo_pcap_server.py: - [client zecke3] tls: the server has no TLS: set tls_cert and "
    "tls_key in [server]",
]
FILTER_REASON = ("osmo_pcap_client.py: - [client] filter: invalid filter 'host www.google.com'"
                 ": unknown host 'www.google.com'")


def resolves(name):
    try:
        socket.getaddrinfo(name, None)
        return True
    except OSError:
        return False


def checks(kind):
    """The load/after arguments the program's main() passes to vtyimport.main."""
    if kind == "server":
        from osmo_pcap.server import main as server
        return {"load": server.load_config}
    from osmo_pcap.client import config as clientconfig
    from osmo_pcap.client import main as client
    return {"load": clientconfig.load, "after": client._imported_problems}


def kind_of(name):
    return "client" if "-client-" in name else "server"


class Result(object):
    def __init__(self, status, stdout, stderr):
        self.returncode, self.stdout, self.stderr = status, stdout, stderr


class UpstreamExamplesTest(support.TempDirTestCase):

    def imported(self, program, name):
        out, err = io.StringIO(), io.StringIO()
        status = vtyimport.main(program, os.path.join(DATA, name), out, err, **checks(program))
        return Result(status, out.getvalue(), err.getvalue())

    def script(self, program, *args):
        return support.run(support.script_cmd(program, *args), check=False, cwd=self.tmp)

    def check_config(self, program, text):
        path = self.path("%s.ini" % program)
        with open(path, "w") as f:
            f.write(text)
        return self.script(program, "-c", path, "--check-config")

    def test_ten_distinct_files(self):
        self.assertEqual(len(FILES), 10)
        contents = set()
        for n in FILES:
            with open(os.path.join(DATA, n), "rb") as f:
                contents.add(f.read())
        self.assertEqual(len(contents), 10)

    def test_into_the_wrong_program_nothing_on_stdout(self):
        for name in FILES:
            kind = kind_of(name)
            other = "server" if kind == "client" else "client"
            with self.subTest(name=name):
                p = self.imported(other, name)
                self.assertEqual((p.returncode, p.stdout), (2, ""), p.stderr)
                self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
                self.assertIn("not an osmo-pcap-%s configuration (it configures osmo-pcap-%s)"
                              % (other, kind), p.stderr)
                self.assertIn("use %s --import-vty" % PROGRAMS[kind], p.stderr)
        # the programs themselves: `> server.ini` leaves an empty file and status 2
        for program, name in (("server", FILES[0]), ("client", FILES[-1])):
            p = self.script(program, "--import-vty", os.path.join(DATA, name))
            self.assertEqual((p.returncode, p.stdout), (2, ""), p.stderr)
            self.assertIn("nothing converted", p.stderr)

    def test_server_examples(self):
        for name in (n for n in FILES if kind_of(n) == "server"):
            with self.subTest(name=name):
                p = self.imported("server", name)
                self.assertIn("[server]\nlisten = 127.0.0.1\nport = 6001\nbase_path = /tmp\n",
                              p.stdout)
                self.assertIn("max_file_size = 262144000\n", p.stdout)
                if "-from-0.0." not in name:
                    self.assertIn("file_permission_mask = 0440\n", p.stdout)
                if "-tls-" in name:
                    self.assertEqual(p.returncode, 3, p.stderr)
                    tail = p.stderr.splitlines()[-3:]
                    self.assertIn("the result cannot start as it is", tail[0])
                    self.assertEqual(tail[1:], SERVER_TLS_REASONS)
                    # upstream's behaviour with the shared address is explained too
                    self.assertIn("upstream took every connection from 127.0.0.1 for the "
                                  "first of them", p.stderr)
                else:
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertIn("[client zecke]\nip = 127.0.0.1\nstore = yes\n", p.stdout)
        # the newest of each kind through the real program, and --check-config agrees
        for name, status in (("osmo-pcap-server-from-0.5.0.cfg", 0),
                             ("osmo-pcap-server-tls-from-0.5.0.cfg", 3)):
            p = self.script("server", "--import-vty", os.path.join(DATA, name))
            self.assertEqual((p.returncode, p.stdout), (status, self.imported("server",
                                                                              name).stdout))
            self.assertNotIn("Traceback", p.stderr)
            check = self.check_config("server", p.stdout)
            self.assertEqual(check.returncode, 2 if status else 0, check.stderr)
            if status:
                self.assertIn("[client zecke2] ip: address 127.0.0.1 is already used",
                              check.stderr)

    def test_client_examples(self):
        support.require_root()   # the result is checked as --check-config does: on the device
        dns = resolves("www.google.com")
        for name in (n for n in FILES if kind_of(n) == "client"):
            with self.subTest(name=name):
                p = self.imported("client", name)
                self.assertIn("[client]\ndevices = any\nfilter = host www.google.com\n"
                              "detect_loop = no\n", p.stdout)
                self.assertIn("[server default]\nhost = 127.0.0.1\nport = 6001\n", p.stdout)
                self.assertEqual("tls = yes\n" in p.stdout, "-tls-" in name)
                if dns:
                    # the filter compiles here: the translation starts as it is
                    self.assertEqual(p.returncode, 0, p.stderr)
                else:
                    # libpcap resolves the filter's host name when it compiles it
                    self.assertEqual(p.returncode, 3, p.stderr)
                    self.assertTrue(p.stderr.splitlines()[-1].startswith(FILTER_REASON),
                                    p.stderr)
        name = "osmo-pcap-client-tls-from-0.5.0.cfg"
        p = self.script("client", "--import-vty", os.path.join(DATA, name))
        self.assertEqual((p.returncode, p.stdout), (0 if dns else 3,
                                                    self.imported("client", name).stdout))
        self.assertNotIn("Traceback", p.stderr)
        check = self.check_config("client", p.stdout)
        if dns:
            self.assertEqual(check.returncode, 0, check.stderr)
        else:
            self.assertEqual(check.returncode, 2)
            self.assertIn("unknown host 'www.google.com'", check.stderr)


if __name__ == "__main__":
    unittest.main()
