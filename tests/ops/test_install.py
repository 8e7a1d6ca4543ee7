# SPDX-License-Identifier: AGPL-3.0-or-later
"""make install into a temporary DESTDIR: files, modes, paths, configs kept, the manual."""

import filecmp
import glob
import os
import re
import shutil
import sys
import unittest

from tests import support

sys.path.insert(0, os.path.join(support.REPO, "tools"))
import docs  # noqa: E402  (tools/docs.py: the link and anchor rules)

SCRIPTS = ("osmo_pcap_client.py", "osmo_pcap_server.py", "osmo_pcap_clean.py",
           "osmo_pcap_extcap.py")


class InstallTest(support.TempDirTestCase):

    def make_install(self, *extra):
        make = support.require_tool("make")
        # -o: never rebuild the scripts from here; `make` is the suite's job.
        cmd = [make, "-s", "-C", support.REPO, "install", "DESTDIR=" + self.tmp,
               "PYTHON=" + sys.executable] + ["-o%s" % s for s in SCRIPTS] + list(extra)
        return support.run(cmd, timeout=60)

    def test_install_and_reinstall(self):
        self.make_install("PREFIX=/usr")
        root = self.tmp
        for name in ("client", "server", "clean", "extcap"):
            path = os.path.join(root, "usr/bin/osmo-pcap-" + name)
            self.assertTrue(os.access(path, os.X_OK), path)
            self.assertTrue(filecmp.cmp(path, os.path.join(support.REPO,
                                                           "osmo_pcap_%s.py" % name), False))
        out = support.run([sys.executable, os.path.join(root, "usr/bin/osmo-pcap-server"),
                           "--version"]).stdout
        self.assertIn("osmo_pcap_server.py", out)

        units = os.path.join(root, "usr/lib/systemd/system")
        for unit in ("osmo-pcap-client.service", "osmo-pcap-server.service"):
            with open(os.path.join(units, unit)) as f:
                text = f.read()
            prog = unit.split(".")[0]
            self.assertIn("\nExecStart=/usr/bin/%s -c /etc/osmo-pcap/%s.ini\n" % (prog, prog),
                          text)
            self.assertNotIn("/usr/local", text)
            self.assertEqual(os.stat(os.path.join(units, unit)).st_mode & 0o777, 0o644)
        for script in ("osmo-pcap-client", "osmo-pcap-server"):
            path = os.path.join(root, "etc/init.d", script)
            self.assertTrue(os.access(path, os.X_OK))
            with open(path) as f:
                self.assertIn("\nDAEMON=/usr/bin/%s\n" % script, f.read())
        self.assertTrue(os.path.exists(os.path.join(root, "usr/share/doc/osmo-pcap/LICENSE")))
        # the man pages, their paths rewritten like the units'
        pages = sorted(os.path.relpath(p, root) for p in
                       glob.glob(os.path.join(root, "usr/share/man/man*/*")))
        self.assertEqual(pages, ["usr/share/man/man1/osmo-pcap-extcap.1",
                                 "usr/share/man/man5/osmo-pcap.ini.5",
                                 "usr/share/man/man8/osmo-pcap-clean.8",
                                 "usr/share/man/man8/osmo-pcap-client.8",
                                 "usr/share/man/man8/osmo-pcap-server.8"])
        with open(os.path.join(root, "usr/share/man/man8/osmo-pcap-server.8")) as f:
            text = f.read()
        self.assertIn("\\fI/usr/share/doc/osmo-pcap/server.md\\fR", text)
        self.assertNotIn("/usr/local", text)
        # no extcap link unless EXTCAPDIR names Wireshark's folder
        self.assertEqual(glob.glob(os.path.join(root, "usr/lib/*/wireshark")), [])
        sysusers = os.path.join(root, "usr/lib/sysusers.d/osmo-pcap.conf")
        self.assertTrue(os.path.exists(sysusers))
        tool = shutil.which("systemd-sysusers")
        if tool:  # creates the unit's user in the DESTDIR's /etc/passwd
            support.run([tool, "--root=" + root, sysusers])
            with open(os.path.join(root, "etc/passwd")) as f:
                self.assertRegex(f.read(), r"(?m)^osmocom:x:\d+:\d+:osmo-pcap capture daemons:"
                                           r"/var/lib/osmo-pcap:/usr/sbin/nologin$")

        confs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "etc/osmo-pcap/*")))
        shipped = sorted(os.path.basename(p)
                         for p in glob.glob(os.path.join(support.REPO, "contrib", "*.ini")))
        self.assertEqual(confs, shipped)
        if not shipped:
            return
        # A second install keeps the administrator's edits.
        mine = os.path.join(root, "etc/osmo-pcap", shipped[0])
        with open(mine, "w") as f:
            f.write("; edited\n")
        out = self.make_install("PREFIX=/usr").stdout
        self.assertIn("keep %s" % mine, out)
        with open(mine) as f:
            self.assertEqual(f.read(), "; edited\n")
        self.assertTrue(filecmp.cmp(mine + ".dist",
                                    os.path.join(support.REPO, "contrib", shipped[0]), False))

    def test_manual_installed_side_by_side(self):
        self.make_install("PREFIX=/usr")
        docdir = os.path.join(self.tmp, "usr/share/doc/osmo-pcap")
        chapters = sorted(os.path.basename(p) for p in
                          glob.glob(os.path.join(support.REPO, "doc", "*.md")))
        self.assertIn("index.md", chapters)
        self.assertIn("protocol.md", chapters)
        # the manual and nothing else: no generator input, no developer notes
        self.assertEqual(sorted(os.listdir(docdir)),
                         sorted(["README.md", "LICENSE", "examples"] + chapters))
        self.assertEqual(sorted(os.listdir(os.path.join(docdir, "examples"))),
                         ["osmo-pcap-clean.cron", "osmo-pcap-extcap.bat",
                          "osmo-pcap-grafana.json"])
        for name in chapters + ["README.md", "LICENSE"]:
            path = os.path.join(docdir, name)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o644, name)
            src = os.path.join(support.REPO, "doc" if name in chapters else "", name)
            with open(src, encoding="utf-8") as f:
                want = re.sub(r"\]\((?:doc/|\.\./)", "](", f.read())
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), want, "%s: only the links may change" % name)
        # every chapter is in the table of contents, and every link works in place
        with open(os.path.join(docdir, "index.md"), encoding="utf-8") as f:
            listed = set(t.partition("#")[0] for t in docs._LINK.findall(docs.prose(f.read())))
        self.assertEqual(sorted(set(chapters) - listed), ["index.md"])
        for name in chapters + ["README.md"]:
            path = os.path.join(docdir, name)
            with open(path, encoding="utf-8") as f:
                text = docs.prose(f.read())
            for target in docs._LINK.findall(text):
                if re.match(r"^[a-z]+:", target):
                    continue
                file_, _, frag = target.partition("#")
                dest = os.path.join(docdir, file_) if file_ else path
                self.assertTrue(os.path.exists(dest), "%s: %s" % (name, target))
                if frag:
                    self.assertIn(frag, docs.anchors(dest), "%s: %s" % (name, target))
        # the units' Documentation= points at installed chapters
        for unit in glob.glob(os.path.join(self.tmp, "usr/lib/systemd/system/*.service")):
            with open(unit) as f:
                uris = re.findall(r"(?m)^Documentation=(.*)$", f.read())
            self.assertTrue(uris, unit)
            for uri in " ".join(uris).split():
                self.assertTrue(uri.startswith("file:/usr/share/doc/osmo-pcap/"), uri)
                self.assertTrue(os.path.exists(self.tmp + uri[len("file:"):]), uri)

    def test_extcap_link(self):
        self.make_install("PREFIX=/usr", "EXTCAPDIR=/usr/lib/x86_64-linux-gnu/wireshark/extcap")
        link = os.path.join(self.tmp, "usr/lib/x86_64-linux-gnu/wireshark/extcap/osmo-pcap-extcap")
        self.assertEqual(os.readlink(link), "/usr/bin/osmo-pcap-extcap")

    def test_default_prefix(self):
        self.make_install()
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "usr/local/bin/osmo-pcap-client")))
        unit = os.path.join(self.tmp, "usr/local/lib/systemd/system/osmo-pcap-server.service")
        with open(unit) as f:
            self.assertIn("ExecStart=/usr/local/bin/osmo-pcap-server ", f.read())


if __name__ == "__main__":
    unittest.main()
