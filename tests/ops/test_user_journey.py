# SPDX-License-Identifier: AGPL-3.0-or-later
"""The README's first commands and its two-host quick start, run as written.

Two network namespaces stand for the two hosts, joined by a veth pair named
`eth0` on both sides (192.0.2.10 the collecting host, 192.0.2.21 the capturing
host, IPv6 off). The INI text and the commands are taken from README.md itself;
only /var/lib/osmo-pcap is replaced by a temporary directory, as the README
allows. Traffic is generated on the client side, the file must appear on the
server side, move to done/ and read back with tshark with exactly the packets
the filter selects.

Also what a new user meets first on the command line of the three programs:
--help lists the options the docs describe, --check-config accepts the contrib
examples with one line, and each typical mistake gives one line naming the file,
[section] and key, status 2, no traceback.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import unittest

from tests import netns, support

README = os.path.join(support.REPO, "README.md")
SECTION = "## Quick start: two hosts"
CI_RUN = os.path.join(support.REPO, ".ci", "run")
SERVER_IP, CLIENT_IP = "192.0.2.10", "192.0.2.21"
STATE = "/var/lib/osmo-pcap"

SEND_UDP = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 23002))   # a random source port may be one tshark decodes as a protocol
s.sendto(b"warm-up", (sys.argv[1], 23000))   # ARP first
time.sleep(0.2)
for i in range(10):
    s.sendto(b"journey %d" % i, (sys.argv[1], 23000))
    s.sendto(b"not selected %d" % i, (sys.argv[1], 23001))
"""


def walkthrough():
    """Return ([server ini, client ini], [command lines]) from the README section."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    part = text[start:end]
    inis = re.findall(r"```ini\n(.*?)```", part, re.S)
    commands = [line[4:] for line in part.splitlines()
                if line.startswith("    ") and not line.startswith("     ")]
    return inis, commands


def first_commands():
    """Return the indented command lines of the README before its first section."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    head = text[:text.index("\n## ")]
    return [line[4:] for line in head.splitlines() if line.startswith("    ")]


class WalkthroughText(unittest.TestCase):
    """Static checks that hold without root."""

    def test_first_two_commands_set_up_and_run(self):
        """The README opens with the demo and the test command, each doing its own
        set-up on a fresh Debian machine; the test command is the one CI runs."""
        demo, tests = first_commands()
        with open(CI_RUN, encoding="utf-8") as f:
            ci = [line.strip() for line in f if line.startswith("make ")]
        self.assertEqual(ci[-1], "make test-deps test")  # .ci/run: the README's command last
        guard, _, run_demo = demo.rpartition("; ")
        guard2, _, run_tests = tests.rpartition("; ")
        self.assertEqual(run_demo, "make demo")
        self.assertEqual(run_tests, ci[-1])
        self.assertEqual(guard, guard2)
        # the guard installs make and python3 only when a package is missing
        self.assertTrue(guard.startswith("dpkg -s make python3 >/dev/null 2>&1 || {"), guard)
        self.assertIn("apt-get update && apt-get install -y make python3;", guard)
        for line in (demo, tests):
            support.run(["sh", "-n", "-c", line])  # valid POSIX sh
        with open(os.path.join(support.REPO, "Makefile")) as f:
            makefile = f.read()
        with open(os.path.join(support.REPO, "mk", "ops.mk")) as f:
            makefile += f.read()
        for target in ("demo", "test-deps", "test"):
            self.assertRegex(makefile, r"(?m)^%s:" % re.escape(target))
        # tools/demo.py installs libpcap itself when it is missing
        with open(os.path.join(support.REPO, "tools", "demo.py")) as f:
            self.assertIn('"apt-get", "install"', f.read())

    def test_section_shape(self):
        inis, commands = walkthrough()
        self.assertEqual(len(inis), 2)
        self.assertIn("[server]", inis[0])
        self.assertIn("ip = %s" % CLIENT_IP, inis[0])
        self.assertIn("[client]", inis[1])
        self.assertIn("host = %s" % SERVER_IP, inis[1])
        self.assertIn("mkdir -p %s/done" % STATE, commands)
        for prog in ("server", "client"):
            self.assertIn("python3 osmo_pcap_%s.py -c %s.ini" % (prog, prog),
                          [c.split("#")[0].strip() for c in commands])


class TwoHosts(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        netns.require_netns()
        support.require_tool("tshark")
        self.srv_ns = netns.add_ns(self, "js")
        self.cli_ns = netns.add_ns(self, "jc")
        # One veth pair created directly inside the two namespaces, so both ends
        # can be called eth0 as in the README; deleting a namespace deletes it.
        support.run(["ip", "link", "add", "eth0", "netns", self.cli_ns, "type", "veth",
                     "peer", "name", "eth0", "netns", self.srv_ns])
        for ns, addr in ((self.srv_ns, SERVER_IP), (self.cli_ns, CLIENT_IP)):
            netns.exec_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"])
            netns.exec_in(ns, ["ip", "addr", "add", addr + "/24", "dev", "eth0"])
            netns.exec_in(ns, ["ip", "link", "set", "eth0", "up"])
        self.state = self.path("var-lib-osmo-pcap")
        self.procs = []

    def adjust(self, text):
        return text.replace(STATE, self.state)

    def start(self, ns, argv, name):
        log = open(self.path(name + ".log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen(netns.exec_cmd(ns, argv), stdout=log, stderr=subprocess.STDOUT,
                             cwd=self.tmp)
        self.addCleanup(self.reap, p)
        p.log_path = log.name
        return p

    def reap(self, p):
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def read_log(self, p):
        with open(p.log_path) as f:
            return f.read()

    def wait_for(self, what, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def command(self, line, ns):
        """Run or start one README command line in ns; return the Popen or None."""
        argv = shlex.split(self.adjust(line), comments=True)
        if argv[0] == "python3":
            prog = argv[1]
            self.assertIn(prog, ("osmo_pcap_server.py", "osmo_pcap_client.py"))
            argv = [sys.executable, os.path.join(support.REPO, prog)] + argv[2:]
            if "--check-config" in argv:
                p = support.run(netns.exec_cmd(ns, argv), cwd=self.tmp, check=False)
                self.assertEqual((p.returncode, p.stderr), (0, ""), line)
                # one summary line, then what cannot be checked beforehand
                lines = p.stdout.splitlines()
                self.assertTrue(lines[0].startswith("config OK: "), p.stdout)
                self.assertTrue(all(n.startswith("not checked: ") for n in lines[1:]),
                                p.stdout)
                return None
            return self.start(ns, argv, prog.split("_")[2])
        self.assertEqual(argv[:2], ["mkdir", "-p"], line)
        support.run(netns.exec_cmd(ns, argv), cwd=self.tmp)
        return None

    def test_readme_walkthrough(self):
        inis, commands = walkthrough()
        for name, text in zip(("server.ini", "client.ini"), inis):
            with open(self.path(name), "w") as f:
                f.write(self.adjust(text))
        server = client = None
        for line in commands:
            if "osmo_pcap_client.py" in line:
                ns = self.cli_ns
            elif "osmo_pcap_server.py" in line or line.startswith("mkdir"):
                ns = self.srv_ns
            else:
                continue  # tshark: run below on the file that appeared
            p = self.command(line, ns)
            if p is not None and "server" in line:
                server = p
                self.wait_for("the server to listen",
                              lambda: "listening on" in self.read_log(server))
            elif p is not None:
                client = p
        self.assertIsNotNone(server)
        self.assertIsNotNone(client)
        self.wait_for("the client to connect",
                      lambda: "client bts1 (%s:" % CLIENT_IP in self.read_log(server)
                      and "connected" in self.read_log(server))
        self.wait_for("the client to capture", lambda: "capturing" in self.read_log(client))

        netns.python_in(self.cli_ns, SEND_UDP, SERVER_IP)
        self.wait_for("the trace file", lambda: any(
            n.startswith("trace-bts1-") for n in os.listdir(self.state)))
        self.wait_for("11 records in the file", lambda: self.count(self.state) >= 11)

        client.send_signal(signal.SIGTERM)
        self.assertEqual(client.wait(15), 0, self.read_log(client))
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(15), 0, self.read_log(server))
        self.assertNotIn("Traceback", self.read_log(client) + self.read_log(server))

        done = os.path.join(self.state, "done")
        files = sorted(os.listdir(done))
        self.assertEqual(len(files), 1, files)
        self.assertRegex(files[0], r"^trace-bts1-\d{8}_\d{6}\.pcapng$")
        # closed files were moved to done/; beside it only the acknowledged streams'
        # state (doc/protocol.md#server-state)
        self.assertEqual([n for n in os.listdir(self.state) if n != "done"],
                         [".osmo-pcap-state"])
        rows = support.tshark_packets(os.path.join(done, files[0]),
                                      ("frame.interface_name", "ip.src", "ip.dst",
                                       "udp.dstport", "data.data"))
        payloads = [bytes.fromhex(r[4].replace(":", "")) for r in rows]
        self.assertEqual(payloads, [b"warm-up"] + [b"journey %d" % i for i in range(10)])
        for name, src, dst, port, _ in rows:
            self.assertEqual((name, src, dst, port), ("eth0", CLIENT_IP, SERVER_IP, "23000"))

    def count(self, directory):
        from osmo_pcap import pcapng
        n = 0
        for name in os.listdir(directory):
            if name.startswith("trace-"):
                with open(os.path.join(directory, name), "rb") as f:
                    data = f.read()
                try:
                    n += sum(1 for _ in pcapng.iter_packets(data))
                except Exception:
                    pass  # a block still being written
        return n


# ------------------------------------------------- command line, as a new user meets it

PROGRAMS = ("server", "client", "clean")
MINIMAL = {
    "server": "[server]\nbase_path = base\n[client bts1]\nip = 192.0.2.21\n",
    "client": "[client]\ndevices = lo\n[server main]\nhost = 127.0.0.1\nport = 54321\n",
    "clean": "[clean]\npaths = base\n[client bts1]\nmax_files = 3\n",
}
MAIN = {"server": "server", "client": "client", "clean": "clean"}
# (name, text appended to MINIMAL, words the one error line must contain)
MISTAKES = [
    ("unknown-key", None, ["[{main}]", "bogus_key", "unknown key"]),
    ("bad-value", None, None),  # per program, below
    ("duplicate-section", "\n[{main}]\n", ["duplicate section", "[{main}]"]),
    ("unknown-section", "\n[bogus]\nx = 1\n", ["[bogus]", "unknown section"]),
    ("unsafe-name", "\n[{named} ../x]\n", ["[{named} ../x]", "'../x'", "not a safe name"]),
]
BAD_VALUE = {"server": ("port = many", "[server] port"),
             "client": ("snaplen = lots", "[client] snaplen"),
             "clean": ("max_age = forever", "[clean] max_age")}
NAMED = {"server": "client", "client": "server", "clean": "client"}


def with_line(prog, line):
    """MINIMAL[prog] with line added to its main section."""
    head = "[%s]\n" % MAIN[prog]
    return MINIMAL[prog].replace(head, head + line + "\n", 1)


class CommandLineTest(support.TempDirTestCase):
    """--help, --check-config and bad input of the three programs."""

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        os.mkdir(self.path("base"))

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def check_config(self, prog, path):
        return support.run(support.script_cmd(prog, "-c", path, "--check-config"),
                           check=False, cwd=self.tmp)

    def assert_one_error(self, p, words):
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        for w in words:
            self.assertIn(w, p.stderr)

    def test_help_lists_the_documented_options(self):
        for prog in PROGRAMS:
            with open(os.path.join(support.REPO, "doc", prog + ".md")) as f:
                doc = f.read()
            opts = set()
            for line in doc.splitlines():
                if line.startswith("| `-"):
                    opts.update(re.findall(r"`(--?[a-zA-Z][-a-z]*)", line.split("|")[1]))
            self.assertIn("--check-config", opts)
            out = support.run(support.script_cmd(prog, "--help")).stdout
            for opt in sorted(opts):
                self.assertRegex(out, r"(^|[\s,\[])%s\b" % re.escape(opt), (prog, opt))

    def test_contrib_examples_check_ok(self):
        capture = os.geteuid() == 0 and support.can_capture("lo") is None
        for prog in PROGRAMS:
            if prog == "client" and not capture:
                continue  # --check-config opens the device: checked below
            with open(os.path.join(support.REPO, "contrib", "osmo-pcap-%s.ini" % prog)) as f:
                text = f.read().replace("/var/lib/osmo-pcap", self.path("base"))
            # --check-config opens the client's devices: use one this host has
            text = text.replace("devices = eth0", "devices = lo")
            p = self.check_config(prog, self.write(prog + ".ini", text))
            self.assertEqual((p.returncode, p.stderr), (0, ""), prog)
            self.assertTrue(p.stdout.startswith("config OK: %s: " % self.path(prog + ".ini")),
                            p.stdout)
        support.require_capture("lo")

    def test_mistakes_give_one_line_and_status_2(self):
        for prog in PROGRAMS:
            for name, extra, words in MISTAKES:
                fmt = {"main": MAIN[prog], "named": NAMED[prog]}
                if name == "bad-value":
                    line, where = BAD_VALUE[prog]
                    text = with_line(prog, line)
                    words = [where, line.split(" = ")[1]]
                elif name == "unknown-key":
                    text = with_line(prog, "bogus_key = 1")
                    words = [w.format(**fmt) for w in words]
                else:
                    text = MINIMAL[prog] + extra.format(**fmt)
                    words = [w.format(**fmt) for w in words]
                ini = self.write("%s-%s.ini" % (prog, name), text)
                with self.subTest(prog=prog, mistake=name):
                    self.assert_one_error(self.check_config(prog, ini), [ini] + words)
            missing = self.path("%s-missing.ini" % prog)
            self.assert_one_error(self.check_config(prog, missing),
                                  [missing, "No such file or directory"])
            self.assert_one_error(self.check_config(prog, self.tmp),
                                  [self.tmp, "cannot read config file"])
            if os.geteuid() != 0:  # root reads any file
                ini = self.write("%s-unreadable.ini" % prog, MINIMAL[prog])
                os.chmod(ini, 0)
                self.assert_one_error(self.check_config(prog, ini),
                                      [ini, "Permission denied"])

    def test_misspelt_key_gets_the_likely_one(self):
        """One line in the same form from all three programs, naming the key the user
        wrote and the one meant (not the whole list of keys)."""
        typos = {"server": ("max_filesize = 1G", "max_file_size"),
                 "client": ("snaplne = 100", "snaplen"),
                 "clean": ("max-age = 10d", "max_age")}
        from osmo_pcap.clean import config as cleanconfig
        from osmo_pcap.client import config as clientconfig
        from osmo_pcap.ini import ConfigError
        from osmo_pcap.server import config as serverconfig
        loaders = {"server": serverconfig.load, "client": clientconfig.load,
                   "clean": cleanconfig.read}
        for prog, (line, meant) in sorted(typos.items()):
            ini = self.write("%s-typo.ini" % prog, with_line(prog, line))
            # the server also without --check-config (it used to add "config error:")
            for args in (["--check-config"], []) if prog == "server" else (["--check-config"],):
                p = support.run(support.script_cmd(prog, "-c", ini, *args), check=False,
                                cwd=self.tmp, timeout=30)
                self.assertEqual(p.stderr, "osmo_pcap_%s.py: %s [%s] %s: unknown key; did you "
                                 "mean %s?\n" % (prog, ini, MAIN[prog], line.split(" =")[0],
                                                  meant), args)
            # nothing close: no list of thirty keys either
            ini = self.write("%s-far.ini" % prog, with_line(prog, "zzz_qqq = 1"))
            with self.assertRaises(ConfigError) as cm:
                loaders[prog](ini)
            self.assertLess(len(str(cm.exception)), 200, str(cm.exception))
            self.assertIn("zzz_qqq: unknown key (", str(cm.exception))

    def test_daemons_refuse_to_start_with_a_mistake(self):
        # Without --check-config the daemons stop with status 1 (documented), the
        # cleanup tool with 2; one line either way.
        for prog, status in (("server", 1), ("client", 1), ("clean", 2)):
            ini = self.write(prog + "-typo.ini", with_line(prog, "bogus_key = 1"))
            p = support.run(support.script_cmd(prog, "-c", ini), check=False, cwd=self.tmp,
                            timeout=30)
            self.assertEqual(p.returncode, status, p.stderr)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn("bogus_key", p.stderr)


if __name__ == "__main__":
    unittest.main()
