# SPDX-License-Identifier: AGPL-3.0-or-later
"""The .deb in a fresh Debian chroot: install, run, upgrade, purge.

`make test-packaging` (tools/test-packaging.sh) builds the package once and a
pristine bookworm chroot in the chroot cache, then runs this with
OSMO_PCAP_PKG_DIST (the dist/ directory) and OSMO_PCAP_PKG_CHROOT set. Every test
works on its own copy of the chroot, in a private mount and network namespace
(unshare), so nothing is left mounted and the programs see only their own
loopback. The upgrade test builds a second package from a copy of this tree:
a higher version whose example server configuration changed.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import unittest

from tests import support

DIST = os.environ.get("OSMO_PCAP_PKG_DIST")
CHROOT = os.environ.get("OSMO_PCAP_PKG_CHROOT")
HERE = os.path.dirname(os.path.abspath(__file__))
UPGRADE_VERSION_SUFFIX = "+upgradetest1"
# What dpkg and useradd leave behind by design: bookkeeping, and the user (kept on
# purge: Osmocom's packages share it, doc/install.md#deb).
ALLOWED_LEFTOVERS = re.compile(r"^(var/lib/dpkg/|var/log/dpkg\.log$|var/log/alternatives\.log$|"
                               r"var/cache/debconf/|etc/(passwd|group|shadow|gshadow)-$|"
                               r"var/lib/systemd/deb-systemd-helper-(enabled|masked)/?$)")


def the_deb():
    debs = sorted(glob.glob(os.path.join(DIST or "", "osmo-pcap-python_*_all.deb")))
    return debs[-1] if debs else None


def snapshot(root):
    """Return the set of paths below root (relative), without the volatile places."""
    out = set()
    for base, dirs, files in os.walk(root):
        rel = os.path.relpath(base, root)
        if rel in ("proc", "sys", "dev", "tmp", "run", "root/pt"):
            dirs[:] = []
            continue
        for name in dirs + files:
            out.add(os.path.normpath(os.path.join(rel, name)))
    return out


@unittest.skipUnless(DIST and CHROOT, "packaging test: run by `make test-packaging`")
class DebChrootTest(support.TempDirTestCase):

    def setUp(self):
        support.TempDirTestCase.setUp(self)
        support.require_root()
        support.require_tool("unshare")
        support.require_tool("ip")
        self.deb = the_deb()
        self.assertIsNotNone(self.deb, "no .deb in %s: make deb" % DIST)
        self.assertTrue(os.path.isfile(os.path.join(CHROOT, ".ready")), CHROOT)
        # a copy of the pristine chroot next to it (same filesystem), removed afterwards
        self.root = os.path.join(os.path.dirname(CHROOT), "work-%d" % os.getpid())
        self.addCleanup(shutil.rmtree, self.root, True)
        shutil.rmtree(self.root, True)
        support.run(["cp", "-a", CHROOT, self.root], timeout=300)
        os.makedirs(os.path.join(self.root, "tmp", "pkgs"), exist_ok=True)

    def sh(self, script, check=True, net=True, timeout=300):
        """Run a shell script in the chroot (private mounts, own network namespace)."""
        inner = ('mount -t proc proc "$0/proc" && mount --bind /dev "$0/dev" && %s'
                 'exec chroot "$0" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root '
                 'LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/sh -c "$1"'
                 % ("ip link set lo up && " if net else ""))
        cmd = ["unshare", "--mount", "--propagation", "private"] + (["--net"] if net else [])
        return support.run(cmd + ["sh", "-c", inner, self.root, script], check=check,
                           timeout=timeout)

    def add(self, path):
        shutil.copy(path, os.path.join(self.root, "tmp", "pkgs"))
        return "/tmp/pkgs/" + os.path.basename(path)

    def file(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def read(self, rel):
        with open(self.file(rel), encoding="utf-8") as f:
            return f.read()

    def build_upgrade(self):
        """A copy of this tree as version VERSION+upgradetest1, its server example changed."""
        src = self.path("upgrade-src")
        support.run(["sh", "-c", 'mkdir -p "$1" && tar --exclude=./.git --exclude=./build '
                     '--exclude=./dist --exclude=__pycache__ -cf - . | tar -xf - -C "$1"',
                     "sh", src], cwd=support.REPO)
        with open(os.path.join(src, "contrib", "osmo-pcap-server.ini"), "a") as f:
            f.write("; changed in the upgrade package\n")
        version = support.run(["dpkg-parsechangelog", "-S", "Version"], cwd=src).stdout.strip()
        new = version + UPGRADE_VERSION_SUFFIX
        with open(os.path.join(src, "debian", "changelog")) as f:
            old = f.read()
        with open(os.path.join(src, "debian", "changelog"), "w") as f:
            f.write("osmo-pcap-python (%s) unstable; urgency=medium\n\n  * Upgrade test.\n\n"
                    " -- Test <test@example.org>  Tue, 02 Dec 2025 12:00:00 +0000\n\n%s"
                    % (new, old))
        env = dict(os.environ, LINTIAN="0")
        support.run([os.path.join(src, "tools", "build-deb.sh")], env=env, timeout=600)
        deb = os.path.join(src, "dist", "osmo-pcap-python_%s_all.deb" % new)
        self.assertTrue(os.path.isfile(deb))
        return deb, new

    def test_install_run_upgrade_purge(self):
        before = snapshot(self.root)
        passwd_before = self.read("etc/passwd")
        deb = self.add(self.deb)
        version = support.run(["dpkg-deb", "-f", self.deb, "Version"]).stdout.strip()

        # --- install
        self.sh("dpkg -i %s" % deb)
        out = self.sh("dpkg-query -W -f='${Version} ${Status}' osmo-pcap-python").stdout
        self.assertEqual(out, "%s install ok installed" % version)
        for prog in ("client", "server", "clean", "extcap"):
            self.assertTrue(os.access(self.file("usr/bin/osmo-pcap-" + prog), os.X_OK), prog)
            out = self.sh("osmo-pcap-%s --version" % prog).stdout
            self.assertIn("osmo_pcap_%s.py %s" % (prog, version.split("+")[0]), out)
        conffiles = self.sh("dpkg-query -W -f='${Conffiles}' osmo-pcap-python").stdout
        self.assertEqual(sorted(l.split()[0] for l in conffiles.splitlines() if l.strip()),
                         ["/etc/init.d/osmo-pcap-client", "/etc/init.d/osmo-pcap-server",
                          "/etc/osmo-pcap/osmo-pcap-clean.ini",
                          "/etc/osmo-pcap/osmo-pcap-client.ini",
                          "/etc/osmo-pcap/osmo-pcap-extcap.ini",
                          "/etc/osmo-pcap/osmo-pcap-server.ini"])
        for rel in ("lib/systemd/system/osmo-pcap-server.service",
                    "lib/systemd/system/osmo-pcap-client.service",
                    "lib/systemd/system/osmo-pcap-clean.service",
                    "lib/systemd/system/osmo-pcap-clean.timer",
                    "usr/lib/sysusers.d/osmo-pcap.conf",
                    "usr/share/man/man8/osmo-pcap-server.8.gz",
                    "usr/share/man/man8/osmo-pcap-client.8.gz",
                    "usr/share/man/man8/osmo-pcap-clean.8.gz",
                    "usr/share/man/man1/osmo-pcap-extcap.1.gz",
                    "usr/share/man/man5/osmo-pcap.ini.5.gz",
                    "usr/share/doc/osmo-pcap-python/copyright",
                    "usr/share/doc/osmo-pcap-python/wireshark.md",
                    "usr/share/doc/osmo-pcap-python/examples/osmo-pcap-clean.cron"):
            self.assertTrue(os.path.isfile(self.file(rel)), rel)
        unit = self.read("lib/systemd/system/osmo-pcap-server.service")
        self.assertIn("\nExecStart=/usr/bin/osmo-pcap-server -c "
                      "/etc/osmo-pcap/osmo-pcap-server.ini\n", unit)
        for uri in re.findall(r"file:(\S+)", unit):
            self.assertTrue(os.path.isfile(self.file(uri)), uri)
        self.assertIn("\nDAEMON=/usr/bin/osmo-pcap-server\n",
                      self.read("etc/init.d/osmo-pcap-server"))
        # registered for SysV init but not enabled: no start link in any runlevel
        self.assertEqual(glob.glob(self.file("etc/rc[2345].d/S*osmo-pcap*")), [])
        extcap = glob.glob(self.file("usr/lib/*/wireshark/extcap/osmo-pcap-extcap"))
        self.assertEqual(len(extcap), 1)
        self.assertEqual(os.readlink(extcap[0]), "/usr/bin/osmo-pcap-extcap")
        self.assertRegex(self.sh("getent passwd osmocom").stdout,
                         r"^osmocom:x:\d+:\d+:[^:]*:/var/lib/osmo-pcap:/usr/sbin/nologin$")
        self.assertEqual(self.sh("stat -c '%U %a' /var/lib/osmo-pcap").stdout.strip(),
                         "osmocom 750")

        # --- the shipped configurations, and a server and a client on loopback
        for prog in ("server", "clean", "extcap"):
            p = self.sh("osmo-pcap-%s -c /etc/osmo-pcap/osmo-pcap-%s.ini --check-config"
                        % (prog, prog))
            self.assertTrue(p.stdout.startswith("config OK: /etc/osmo-pcap/"), p.stdout)
        shutil.copy(os.path.join(HERE, "pair.py"), self.file("tmp/pair.py"))
        out = self.sh("python3 /tmp/pair.py --bin /usr/bin --dir /root/pt", timeout=120).stdout
        result = json.loads(out)
        self.assertEqual((result.get("error"), result["packets"], result["status"]),
                         (None, result["sent"], [0, 0]), result)
        self.assertEqual(result["sent"], 20)
        self.sh("rm -rf /root/pt")

        # --- upgrade: the administrator's edits survive
        upgrade, new = self.build_upgrade()
        with open(self.file("etc/osmo-pcap/osmo-pcap-server.ini"), "a") as f:
            f.write("; edited by the administrator\n")
        with open(self.file("etc/osmo-pcap/osmo-pcap-client.ini"), "a") as f:
            f.write("; edited by the administrator\n")
        self.sh("dpkg --force-confold -i %s" % self.add(upgrade))
        out = self.sh("dpkg-query -W -f='${Version} ${Status}' osmo-pcap-python").stdout
        self.assertEqual(out, "%s install ok installed" % new)
        server_ini = self.read("etc/osmo-pcap/osmo-pcap-server.ini")
        self.assertTrue(server_ini.endswith("; edited by the administrator\n"))
        self.assertNotIn("changed in the upgrade package", server_ini)
        self.assertTrue(self.read("etc/osmo-pcap/osmo-pcap-server.ini.dpkg-dist")
                        .endswith("; changed in the upgrade package\n"))
        # unchanged in the package: kept without a question or a .dpkg-dist
        self.assertTrue(self.read("etc/osmo-pcap/osmo-pcap-client.ini")
                        .endswith("; edited by the administrator\n"))
        self.assertFalse(os.path.exists(self.file("etc/osmo-pcap/osmo-pcap-client.ini.dpkg-dist")))
        self.sh("osmo-pcap-server -c /etc/osmo-pcap/osmo-pcap-server.ini --check-config")
        self.assertEqual(len(glob.glob(self.file("usr/lib/*/wireshark/extcap/osmo-pcap-extcap"))),
                         1)

        # --- purge: nothing left but dpkg's bookkeeping and the user
        self.sh("dpkg --purge osmo-pcap-python")
        self.sh("rm -rf /tmp/pkgs /tmp/pair.py", net=False)
        after = snapshot(self.root)
        left = sorted(p for p in after - before if not ALLOWED_LEFTOVERS.match(p))
        self.assertEqual(left, [])
        self.assertEqual(sorted(p for p in after if "osmo-pcap" in p or "osmo_pcap" in p), [])
        self.assertEqual(self.read("etc/passwd").replace(
            [l for l in self.read("etc/passwd").splitlines(True)
             if l.startswith("osmocom:")][0], ""), passwd_before)
