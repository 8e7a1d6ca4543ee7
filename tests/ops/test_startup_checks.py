# SPDX-License-Identifier: AGPL-3.0-or-later
"""Configurations that are valid key by key but cannot work are refused up front.

doc/operations.md#check-config: --check-config runs the checks start-up runs,
so each case below is one line naming file, section and key, exit 2 with
--check-config and 1 at start, never a traceback: trace file modes with more
than read and write bits, an unwritable [log] file, stream state or spool
directory, listeners of the server, the hooks and /metrics on one port
(wildcards included), a client that has no server to send to. The helpers of
osmo_pcap.preflight are checked on their own too.
"""

import os
import socket
import unittest

from tests import support
from osmo_pcap import preflight
from osmo_pcap.ini import ConfigError


def run(program, ini, *args):
    return support.run(support.script_cmd(program, "-c", ini, *args), check=False, timeout=60)


class Refused(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        os.makedirs(self.path("base"))
        with open(self.path("plain-file"), "w") as f:
            f.write("not a directory\n")

    def server_ini(self, extra="", sections="", listen="127.0.0.1"):
        self.port = support.free_port()
        p = self.path("server.ini")
        with open(p, "w") as f:
            f.write("[server]\nlisten = %s\nport = %d\nbase_path = base\n%s\n"
                    "[client a]\nip = 127.0.0.2\n%s" % (listen, self.port,
                                                      extra.replace("{port}", str(self.port)),
                                                      sections.replace("{port}",
                                                                       str(self.port))))
        return p

    def client_ini(self, servers="[server s]\nhost = 127.0.0.1\nport = 9\n", extra=""):
        p = self.path("client.ini")
        with open(p, "w") as f:
            f.write("[client]\nread_file = %s\n%s\n%s" % (
                os.path.join(support.DATA, "c-0.8-pcap-server-file.pcap"), extra, servers))
        return p

    def refused(self, program, ini, where, fragment):
        """Both --check-config (2) and a start (1) stop with one line naming where."""
        for args, status in ((("--check-config",), 2), ((), 1)):
            p = run(program, ini, *args)
            msg = "%s %s:\n%s%s" % (program, " ".join(args), p.stdout, p.stderr)
            self.assertEqual(p.returncode, status, msg)
            lines = p.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, msg)
            self.assertIn(ini, lines[0])
            self.assertIn(where, lines[0])
            self.assertIn(fragment, lines[0])
            self.assertNotIn("Traceback", msg)
        return lines[0]

    # ------------------------------------------------------------ server
    def test_file_mode_with_more_than_read_and_write_bits(self):
        for mode, what in (("7777", "set-user-ID, set-group-ID, sticky, execute"),
                           ("0750", "execute"), ("2640", "set-group-ID")):
            self.refused("server", self.server_ini("file_permission_mask = %s" % mode),
                         "[server] file_permission_mask", what)
        p = run("server", self.server_ini("file_permission_mask = 0666"), "--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_unwritable_log_file(self):
        for path, why in ((self.path("plain-file", "server.log"), "Not a directory"),
                          (self.path("no-such-dir", "server.log"), "No such file"),
                          (self.path("base"), "is a directory")):
            self.refused("server", self.server_ini(
                sections="[log]\ntarget = file\nfile = %s\n" % path), "[log] file", why)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["base", "plain-file", "server.ini"])

    def test_unwritable_stream_state_directory(self):
        with open(self.path("base", ".osmo-pcap-state"), "w") as f:
            f.write("in the way\n")
        self.refused("server", self.server_ini(), "[server] base_path",
                     "stream state directory")

    def test_listeners_on_one_port(self):
        o = support.free_port()
        for listen, extra, sections, where in (
                ("127.0.0.1", "tap_listen = 127.0.0.1:{port}", "", "[server] tap_listen"),
                ("0.0.0.0", "tap_listen_a = 127.0.0.3:{port}", "", "[server] tap_listen_a"),
                ("::", "zmq_publish = tcp://127.0.0.1:{port}", "", "[server] zmq_publish"),
                ("127.0.0.1", "zmq_publish = tcp://*:%d" % o,
                 "[metrics]\nlisten = 127.0.0.1:%d\n" % o, "[metrics] listen"),
                ("127.0.0.1", "tap_listen = [::]:%d" % o,
                 "[metrics]\nlisten = 0.0.0.0:%d\n" % o, "[metrics] listen"),
                ("127.0.0.1", "", "[metrics]\nlisten = {port}\n", "[metrics] listen")):
            ini = self.server_ini(extra, sections, listen)
            line = self.refused("server", ini, where, "the two cannot listen at once")
            self.assertIn("collides with", line)
        # Different addresses on one port do not collide.
        ini = self.server_ini("tap_listen = 127.0.0.5:{port}",
                              "[metrics]\nlisten = 127.0.0.6:{port}\n")
        p = run("server", ini, "--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("not checked: whether the ports are free now", p.stdout)

    # ------------------------------------------------------------ client
    def test_client_without_a_server(self):
        line = self.refused("client", self.client_ini(servers=""), "no [server NAME] section",
                            "capture for nobody")
        self.assertNotIn("[client]", line)
        self.refused("client", self.client_ini(
            servers="[server s]\nhost = 127.0.0.1\nport = 9\nenabled = no\n"),
            "[server s] enabled", "every [server NAME] has enabled = no")

    def test_client_unwritable_log_file_and_spool_dir(self):
        self.refused("client", self.client_ini(extra="[log]\ntarget = file\nfile = %s\n"
                                               % self.path("plain-file", "c.log")),
                     "[log] file", "Not a directory")
        self.refused("client", self.client_ini(
            servers="[server s]\nhost = 127.0.0.1\nport = 9\nspool_dir = %s\n"
            % self.path("plain-file", "spool")), "[server s] spool_dir", "is not a directory")
        with open(self.path("spool-file"), "w"):
            pass
        self.refused("client", self.client_ini(
            servers="[server s]\nhost = 127.0.0.1\nport = 9\nspool_dir = %s\n"
            % self.tmp + "\n[server t]\nhost = 127.0.0.1\nport = 10\nspool_dir = %s\n"
            % self.path("spool-file")), "[server t] spool_dir", "is not a directory")
        self.assertFalse(os.path.exists(self.path("s")))   # nothing made by the check


class Helpers(support.TempDirTestCase):

    def test_file_problem(self):
        self.assertIsNone(preflight.file_problem(self.path("new.log")))
        self.assertFalse(os.path.exists(self.path("new.log")))   # removed again
        with open(self.path("old.log"), "w") as f:
            f.write("kept\n")
        self.assertIsNone(preflight.file_problem(self.path("old.log")))
        with open(self.path("old.log")) as f:
            self.assertEqual(f.read(), "kept\n")
        self.assertIn("is a directory", preflight.file_problem(self.tmp))
        self.assertIn("No such file", preflight.file_problem(self.path("x", "y.log")))
        os.mkfifo(self.path("fifo"))
        self.assertIsNotNone(preflight.file_problem(self.path("fifo")))  # and no hang

    def test_dir_problem(self):
        self.assertIsNone(preflight.dir_problem(self.tmp))
        self.assertEqual(os.listdir(self.tmp), [])
        self.assertIn("does not exist", preflight.dir_problem(self.path("a")))
        self.assertIsNone(preflight.dir_problem(self.path("a", "b", "c"), create=True))
        self.assertFalse(os.path.exists(self.path("a")))
        with open(self.path("f"), "w"):
            pass
        self.assertIn("is not a directory", preflight.dir_problem(self.path("f")))
        self.assertIn("f is not a directory",
                      preflight.dir_problem(self.path("f", "b"), create=True))

    def test_listener_overlaps(self):
        L = preflight.Listener

        def collide(a, b):
            try:
                preflight.check_listeners([L("s", "a", a, 1000), L("s", "b", b, 1000)], "x")
            except ConfigError as e:
                self.assertEqual((e.section, e.key), ("s", "b"))
                return True
            return False
        pairs = [("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("::", "10.0.0.1"),
                 ("0.0.0.0", "::"), ("::", "::1"), ("::1", "::1"),
                 ("::ffff:127.0.0.1", "127.0.0.1")]
        try:
            # a name is compared by its address (a bare chroot may not resolve it)
            if socket.gethostbyname("localhost") == "127.0.0.1":
                pairs.append(("localhost", "127.0.0.1"))
        except OSError:
            pass
        for a, b in pairs:
            self.assertTrue(collide(a, b), (a, b))
        for a, b in (("127.0.0.1", "127.0.0.2"), ("0.0.0.0", "::1"), ("::1", "127.0.0.1")):
            self.assertFalse(collide(a, b), (a, b))
        self.assertIsNone(preflight.check_listeners(
            [L("s", "a", "0.0.0.0", 1), L("s", "b", "0.0.0.0", 2)], "x"))
        notes = []
        preflight.check_listeners([L("s", "a", "no-such-host.invalid", 1)], "x", notes)
        self.assertIn("cannot resolve", notes[0])


if __name__ == "__main__":
    unittest.main()
