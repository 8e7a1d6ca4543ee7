# SPDX-License-Identifier: AGPL-3.0-or-later
"""pip and pipx: `pip install .` into a fresh virtualenv gives the four commands.

The in-tree backend (tools/osmo_pcap_build.py) needs nothing from an index, so
pip runs with --no-index: an install that tried to download would fail here.
pipx sets up its own shared tools once (that needs the network, as in CI). The
pair run (server and client on lo) needs root and runs in a network namespace.
Run by `make test-packaging` (OSMO_PCAP_PKG_DIST set).
"""

import json
import os
import re
import sys
import tarfile
import unittest

from tests import support

DIST = os.environ.get("OSMO_PCAP_PKG_DIST")
HERE = os.path.dirname(os.path.abspath(__file__))
COMMANDS = ("osmo-pcap-client", "osmo-pcap-server", "osmo-pcap-clean", "osmo-pcap-extcap")


def run_backend(source, hook, out_dir):
    """Call a hook of the in-tree backend of source in a fresh interpreter."""
    code = ("import sys; sys.path.insert(0, 'tools'); import osmo_pcap_build as b; "
            "print(b.%s(%r))" % (hook, out_dir))
    return support.run([sys.executable, "-c", code], cwd=source).stdout.strip()


@unittest.skipUnless(DIST, "packaging test: run by `make test-packaging`")
class PipTest(support.TempDirTestCase):

    def venv(self):
        venv = self.path("venv")
        support.run([sys.executable, "-m", "venv", venv], timeout=300)
        return venv

    def pair(self, bindir):
        """Run the installed server and client against each other on lo (root)."""
        support.require_root()
        inner = 'ip link set lo up && exec "$0" "$@"'
        out = support.run(["unshare", "--net", "sh", "-c", inner, sys.executable,
                           os.path.join(HERE, "pair.py"), "--bin", bindir,
                           "--dir", self.path("pair")], timeout=120).stdout
        result = json.loads(out)
        self.assertEqual((result.get("error"), result["packets"], result["status"]),
                         (None, result["sent"], [0, 0]), result)

    def test_pip_install_gives_the_commands(self):
        from osmo_pcap import __version__
        venv = self.venv()
        bindir = os.path.join(venv, "bin")
        support.run([os.path.join(bindir, "python"), "-m", "pip", "install", "--no-index",
                     "--no-cache-dir", "--disable-pip-version-check", support.REPO], timeout=300)
        for cmd in COMMANDS:
            out = support.run([os.path.join(bindir, cmd), "--version"]).stdout
            self.assertRegex(out, r"^osmo_pcap_%s\.py %s\b" % (cmd[len("osmo-pcap-"):],
                                                               re.escape(__version__)))
            self.assertIn("AGPL-3.0-or-later", out)
        # the entry points are the programs' main() functions, and nothing is required
        code = ("import importlib.metadata as m, json\n"
                "d = m.distribution('osmo-pcap-python')\n"
                "print(json.dumps([sorted((e.name, e.value) for e in d.entry_points), "
                "d.requires, d.version]))")
        eps, requires, version = json.loads(support.run(
            [os.path.join(bindir, "python"), "-c", code]).stdout)
        self.assertEqual(eps, [["osmo-pcap-clean", "osmo_pcap.clean.main:main"],
                               ["osmo-pcap-client", "osmo_pcap.client.main:main"],
                               ["osmo-pcap-extcap", "osmo_pcap.extcap.main:main"],
                               ["osmo-pcap-server", "osmo_pcap.server.main:main"]])
        self.assertIn(requires, (None, []))
        self.assertEqual(version, __version__)
        self.assertTrue(os.path.isfile(os.path.join(venv, "share/man/man8/osmo-pcap-server.8")))
        self.assertTrue(os.path.isfile(os.path.join(venv, "share/man/man5/osmo-pcap.ini.5")))
        self.pair(bindir)
        support.run([os.path.join(bindir, "python"), "-m", "pip", "uninstall", "-y",
                     "osmo-pcap-python"])
        self.assertFalse(os.path.exists(os.path.join(bindir, "osmo-pcap-server")))

    def test_pipx_install(self):
        pipx = support.require_tool("pipx")
        home = self.path("pipx")
        env = dict(os.environ, PIPX_HOME=home, PIPX_BIN_DIR=os.path.join(home, "bin"),
                   PIPX_MAN_DIR=os.path.join(home, "man"))
        support.run([pipx, "install", support.REPO], env=env, timeout=600)
        for cmd in COMMANDS:
            out = support.run([os.path.join(home, "bin", cmd), "--version"]).stdout
            self.assertIn("AGPL-3.0-or-later", out)
        self.pair(os.path.join(home, "bin"))
        support.run([pipx, "uninstall", "osmo-pcap-python"], env=env)
        self.assertFalse(os.path.exists(os.path.join(home, "bin", "osmo-pcap-server")))

    def test_sdist_and_wheel_are_reproducible(self):
        a, b = self.path("a"), self.path("b")
        os.mkdir(a)
        os.mkdir(b)
        sdist = run_backend(support.REPO, "build_sdist", a)
        self.assertEqual(run_backend(support.REPO, "build_sdist", b), sdist)
        with open(os.path.join(a, sdist), "rb") as f1, open(os.path.join(b, sdist), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())
        wheel = run_backend(support.REPO, "build_wheel", a)
        # the wheel built from the unpacked sdist is the wheel built from the tree
        with tarfile.open(os.path.join(a, sdist)) as t:
            t.extractall(self.path("unpacked"))
        src = os.path.join(self.path("unpacked"), sdist[:-len(".tar.gz")])
        self.assertTrue(os.path.isfile(os.path.join(src, "PKG-INFO")))
        self.assertEqual(run_backend(src, "build_wheel", b), wheel)
        with open(os.path.join(a, wheel), "rb") as f1, open(os.path.join(b, wheel), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())
