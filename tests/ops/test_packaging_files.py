# SPDX-License-Identifier: AGPL-3.0-or-later
"""The packaging sources agree with the code, without building anything.

The packages themselves are built and installed by `make test-packaging`
(tests/packaging/); this catches a version bump or a new program that the
packaging files missed, in the ordinary suite.
"""

import importlib
import os
import re
import sys
import tempfile
import unittest
import zipfile

from tests import support
from osmo_pcap import __version__

sys.path.insert(0, os.path.join(support.REPO, "tools"))
import bundle  # noqa: E402  (tools/bundle.py)
import osmo_pcap_build  # noqa: E402  (tools/osmo_pcap_build.py, the PEP 517 backend)


def read(*parts):
    with open(os.path.join(support.REPO, *parts), encoding="utf-8") as f:
        return f.read()


class PackagingFilesTest(unittest.TestCase):

    def test_versions_agree(self):
        m = re.match(r"^osmo-pcap-python \(([^)]+)\) ", read("debian", "changelog"))
        self.assertIsNotNone(m)
        self.assertEqual(m.group(1), __version__, "debian/changelog: add an entry")
        m = re.search(r"(?m)^Version:\s*(\S+)$", read("rpm", "osmo-pcap-python.spec"))
        self.assertEqual(m.group(1), __version__, "rpm/osmo-pcap-python.spec: Version")
        self.assertEqual(osmo_pcap_build.version(), __version__)

    def test_pyproject_names_the_in_tree_backend(self):
        text = read("pyproject.toml")
        self.assertRegex(text, r'(?m)^requires = \[\]$')
        self.assertRegex(text, r'(?m)^build-backend = "osmo_pcap_build"$')
        self.assertRegex(text, r'(?m)^backend-path = \["tools"\]$')
        if sys.version_info >= (3, 11):
            import tomllib
            data = tomllib.loads(text)["build-system"]
            self.assertEqual(data, {"requires": [], "build-backend": "osmo_pcap_build",
                                    "backend-path": ["tools"]})
        for hook in ("build_wheel", "build_sdist", "build_editable",
                     "get_requires_for_build_wheel", "prepare_metadata_for_build_wheel"):
            self.assertTrue(callable(getattr(osmo_pcap_build, hook)), hook)

    def test_every_program_is_a_console_command_and_in_the_packages(self):
        commands = dict(osmo_pcap_build.ENTRY_POINTS)
        self.assertEqual(sorted(commands), sorted("osmo-pcap-" + p for p in bundle.PROGRAMS))
        for prog, (script, module) in bundle.PROGRAMS.items():
            target = commands["osmo-pcap-" + prog]
            self.assertEqual(target, module + ":main")
            mod, _, func = target.partition(":")
            self.assertTrue(callable(getattr(importlib.import_module(mod), func)), target)
            self.assertIn("%%{_bindir}/osmo-pcap-%s\n" % prog, read("rpm", "osmo-pcap-python.spec"))

    def test_wheel_has_every_module_and_page(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, tmp, True)
        name = osmo_pcap_build.build_wheel(tmp)
        self.assertEqual(name, "osmo_pcap_python-%s-py3-none-any.whl" % __version__)
        with zipfile.ZipFile(os.path.join(tmp, name)) as z:
            names = set(z.namelist())
            self.assertIsNone(z.testzip())
        modules = set()
        for base, dirs, files in os.walk(os.path.join(support.REPO, "osmo_pcap")):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            modules.update(os.path.relpath(os.path.join(base, f), support.REPO)
                           for f in files if f.endswith(".py"))
        self.assertEqual(sorted(n for n in names if n.startswith("osmo_pcap/")), sorted(modules))
        pages = sorted(os.listdir(os.path.join(support.REPO, "man")))
        data = "osmo_pcap_python-%s.data/data/share/man/" % __version__
        self.assertEqual(sorted(n.rsplit("/", 1)[1] for n in names if n.startswith(data)), pages)

    def test_debian_control(self):
        control = read("debian", "control")
        self.assertRegex(control, r"(?m)^Architecture: all$")
        self.assertRegex(control, r"(?m)^Depends: \$\{misc:Depends\}, python3 \(>= 3\.6\), "
                                  r"libpcap0\.8t64 \| libpcap0\.8$")
        self.assertRegex(control, r"(?m)^Conflicts: osmo-pcap-client, osmo-pcap-server$")
        for script in ("postinst", "prerm", "postrm"):
            text = read("debian", "osmo-pcap-python." + script)
            self.assertIn("#DEBHELPER#", text)
            support.run(["sh", "-n", os.path.join(support.REPO, "debian",
                                                  "osmo-pcap-python." + script)])
