# SPDX-License-Identifier: AGPL-3.0-or-later
"""The noarch RPM built by `make rpm`: its files, requirements and scriptlets.

Read with rpm itself (rpm -qlp, -qRp, --scripts); run by `make test-packaging`,
which builds it, with OSMO_PCAP_PKG_DIST naming dist/. The file list is compared
with the .deb's: the same content, less what is Debian's own (the SysV scripts,
copyright and changelog) and with uncompressed man pages.
"""

import glob
import os
import re
import unittest

from tests import support

DIST = os.environ.get("OSMO_PCAP_PKG_DIST")


def the(pattern):
    found = sorted(glob.glob(os.path.join(DIST or "", pattern)))
    return found[-1] if found else None


@unittest.skipUnless(DIST, "packaging test: run by `make test-packaging`")
class RpmTest(unittest.TestCase):

    def setUp(self):
        self.rpm_tool = support.require_tool("rpm")
        self.rpm = the("osmo-pcap-python-*.noarch.rpm")
        self.assertIsNotNone(self.rpm, "no .rpm in %s: make rpm" % DIST)

    def q(self, *args):
        return support.run([self.rpm_tool, "-qp"] + list(args) + [self.rpm]).stdout

    def test_name_version_arch(self):
        from osmo_pcap import __version__
        self.assertEqual(self.q("--qf", "%{NAME} %{VERSION} %{ARCH} %{LICENSE}"),
                         "osmo-pcap-python %s noarch AGPL-3.0-or-later" % __version__)
        self.assertEqual(self.q("--conflicts").split(), ["osmo-pcap-client", "osmo-pcap-server"])

    def test_files(self):
        files = self.q("-l").split()
        for prog in ("client", "server", "clean", "extcap"):
            self.assertIn("/usr/bin/osmo-pcap-" + prog, files)
        for want in ("/etc/osmo-pcap/osmo-pcap-server.ini", "/etc/osmo-pcap/osmo-pcap-client.ini",
                     "/etc/osmo-pcap/osmo-pcap-clean.ini", "/etc/osmo-pcap/osmo-pcap-extcap.ini",
                     "/usr/lib/systemd/system/osmo-pcap-server.service",
                     "/usr/lib/systemd/system/osmo-pcap-client.service",
                     "/usr/lib/systemd/system/osmo-pcap-clean.service",
                     "/usr/lib/systemd/system/osmo-pcap-clean.timer",
                     "/usr/lib/sysusers.d/osmo-pcap.conf",
                     "/usr/share/doc/osmo-pcap-python/wireshark.md", "/var/lib/osmo-pcap"):
            self.assertIn(want, files)
        self.assertEqual(sorted(f for f in files if f.startswith("/usr/share/man/")),
                         ["/usr/share/man/man1/osmo-pcap-extcap.1",
                          "/usr/share/man/man5/osmo-pcap.ini.5",
                          "/usr/share/man/man8/osmo-pcap-clean.8",
                          "/usr/share/man/man8/osmo-pcap-client.8",
                          "/usr/share/man/man8/osmo-pcap-server.8"])
        self.assertFalse([f for f in files if "init.d" in f])
        # the configuration files are %config(noreplace): an upgrade keeps edits
        flags = dict(reversed(line.split(" ", 1)) for line in
                     self.q("--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]").splitlines())
        for ini in glob.glob(os.path.join(support.REPO, "contrib", "*.ini")):
            self.assertEqual(flags["/etc/osmo-pcap/" + os.path.basename(ini)], "cn")
        modes = self.q("--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]")
        self.assertIn("drwxr-x--- osmocom /var/lib/osmo-pcap\n", modes)
        self.assertIn("-rwxr-xr-x root /usr/bin/osmo-pcap-server\n", modes)

    def test_same_content_as_the_deb(self):
        deb = the("osmo-pcap-python_*_all.deb")
        if deb is None:
            self.skipTest("no .deb in dist/")
        listing = support.run([support.require_tool("dpkg-deb"), "-c", deb]).stdout
        deb_files = set()
        for line in listing.splitlines():
            path = line.split()[5].lstrip(".")
            if path.endswith("/"):
                continue
            path = re.sub(r"^/lib/systemd/", "/usr/lib/systemd/", path)
            path = re.sub(r"(/usr/share/man/.*)\.gz$", r"\1", path)
            if path.startswith(("/etc/init.d/", "/usr/share/lintian/")) or path in (
                    "/usr/share/doc/osmo-pcap-python/copyright",
                    "/usr/share/doc/osmo-pcap-python/changelog.gz"):
                continue
            deb_files.add(path)
        rpm_files = set(f for f in self.q("-l").split()
                        if f not in ("/etc/osmo-pcap", "/var/lib/osmo-pcap",
                                     "/usr/share/doc/osmo-pcap-python",
                                     "/usr/share/doc/osmo-pcap-python/examples"))
        self.assertEqual(sorted(rpm_files ^ deb_files), [])

    def test_requirements(self):
        reqs = [r.strip() for r in self.q("-R").splitlines()]
        self.assertIn("python3 >= 3.6", reqs)
        self.assertIn("libpcap", reqs)
        self.assertIn("shadow-utils", reqs)
        # nothing from Python's package index, nothing compiled
        self.assertFalse([r for r in reqs if r.startswith(("python3dist(", "python3.", "lib"))
                          and r != "libpcap"], reqs)

    def test_systemd_scriptlets(self):
        scripts = self.q("--scripts")
        self.assertRegex(scripts, r"(?s)preinstall scriptlet.*useradd -r -g osmocom")
        self.assertRegex(scripts, r"(?s)postinstall scriptlet.*systemctl --no-reload preset "
                         r"osmo-pcap-server.service osmo-pcap-client.service "
                         r"osmo-pcap-clean.timer")
        self.assertRegex(scripts, r"(?s)preuninstall scriptlet.*systemctl --no-reload disable "
                         r"--now osmo-pcap-server")
        self.assertRegex(scripts, r"(?s)postuninstall scriptlet.*systemctl try-restart")
        self.assertIn("rpm --eval '%{_libdir}'", scripts)      # the extcap link, at install
        for name in ("PREIN", "POSTIN", "PREUN", "POSTUN"):
            body = support.run([self.rpm_tool, "-qp", "--qf", "%%{%s}" % name,
                                self.rpm]).stdout
            support.run(["sh", "-n", "-c", body])             # shell syntax
