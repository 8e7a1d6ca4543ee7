# SPDX-License-Identifier: AGPL-3.0-or-later
"""The generated single-file programs: standalone, deterministic, traceable."""

import os
import re
import shutil
import subprocess
import sys
import unittest

from tests import support

sys.path.insert(0, os.path.join(support.REPO, "tools"))
import bundle  # noqa: E402  (tools/bundle.py)

PROGRAMS = sorted(bundle.PROGRAMS)


def embedded(text):
    """Return {path: source} for the modules embedded in a generated script."""
    out = {}
    for m in re.finditer(r"^# =+ Begin file (\S+) =+\n_SOURCES\[[^\]]+\] = r'''\n(.*?)'''\n"
                         r"# =+ End file (\S+) =+$", text, re.S | re.M):
        assert m.group(1) == m.group(3)
        out[m.group(1)] = m.group(2)
    return out


class BundleTest(support.TempDirTestCase):
    def test_build_is_deterministic_and_committed_scripts_are_fresh(self):
        for prog in PROGRAMS:
            a = bundle.build(prog)
            self.assertEqual(a, bundle.build(prog))
            with open(os.path.join(support.REPO, bundle.PROGRAMS[prog][0]), encoding="utf-8") as f:
                self.assertEqual(f.read(), a, "%s is stale: run make" % prog)

    def test_each_module_is_embedded_verbatim_between_markers(self):
        for prog in PROGRAMS:
            text = bundle.build(prog)
            mods = embedded(text)
            self.assertIn("osmo_pcap/__init__.py", mods)
            self.assertIn("osmo_pcap/%s/main.py" % prog, mods)
            self.assertIn("osmo_pcap/%s/__init__.py" % prog, mods)
            for rel, src in mods.items():
                with open(os.path.join(support.REPO, rel), encoding="utf-8") as f:
                    self.assertEqual(src, f.read(), rel)
            self.assertEqual(sorted(mods), sorted(bundle.module_path(m)
                                                  for m in bundle.closure(bundle.PROGRAMS[prog][1])))

    def test_only_needed_modules_are_embedded(self):
        client = embedded(bundle.build("client"))
        server = embedded(bundle.build("server"))
        clean = embedded(bundle.build("clean"))
        extcap = embedded(bundle.build("extcap"))
        # each script carries its own program's subpackage and none of the others'
        for name, mods in (("client", client), ("server", server), ("clean", clean),
                           ("extcap", extcap)):
            for other in ("client", "server", "clean", "extcap"):
                owned = [m for m in mods if m.startswith("osmo_pcap/%s/" % other)]
                if other == name:
                    self.assertIn("osmo_pcap/%s/main.py" % other, owned)
                else:
                    self.assertEqual(owned, [], "%s script embeds %s" % (name, owned))
        self.assertNotIn("osmo_pcap/client/libpcap.py", server)
        self.assertNotIn("osmo_pcap/tls.py", clean)
        # the extcap speaks to the tap with the ssl module directly: no event loop
        self.assertNotIn("osmo_pcap/loop.py", extcap)
        self.assertNotIn("osmo_pcap/tls.py", extcap)

    def test_runs_alone_in_an_empty_directory(self):
        from osmo_pcap import __version__
        for prog in PROGRAMS:
            d = os.path.join(self.tmp, prog)
            os.mkdir(d)
            name = bundle.PROGRAMS[prog][0]
            shutil.copy(os.path.join(support.REPO, name), d)
            # a decoy package beside the script must not be picked up
            os.mkdir(os.path.join(d, "osmo_pcap"))
            with open(os.path.join(d, "osmo_pcap", "__init__.py"), "w") as f:
                f.write("raise SystemExit('decoy package imported')\n")
            env = dict(os.environ, PYTHONPATH="")
            p = support.run([sys.executable, name, "--version"], cwd=d, env=env)
            self.assertIn(__version__, p.stdout + p.stderr)
            self.assertIn("AGPL-3.0-or-later", p.stdout + p.stderr)
            p = support.run([sys.executable, name, "--help"], cwd=d, env=env)
            self.assertIn("usage", (p.stdout + p.stderr).lower())

    def test_traceback_names_the_original_module_and_line(self):
        with open(os.path.join(support.REPO, "osmo_pcap", "wire.py"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        want = [i + 1 for i, l in enumerate(lines) if 'raise ValueError("unknown message type' in l]
        self.assertEqual(len(want), 1)
        shutil.copy(support.SCRIPTS["server"], self.tmp)
        code = ("import runpy\nrunpy.run_path('osmo_pcap_server.py', run_name='bundled')\n"
                "from osmo_pcap import wire\nwire.encode_frame(9, b'')\n")
        p = subprocess.run([sys.executable, "-c", code], cwd=self.tmp, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('File "osmo_pcap/wire.py", line %d, in encode_frame' % want[0], p.stderr)
        # the loader hands its source to the traceback module (as used in logs) too
        code = ("import runpy, traceback\nrunpy.run_path('osmo_pcap_server.py', run_name='b')\n"
                "from osmo_pcap import wire\ntry:\n    wire.encode_frame(9, b'')\n"
                "except ValueError:\n    print(traceback.format_exc())\n")
        p = subprocess.run([sys.executable, "-c", code], cwd=self.tmp, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertIn('File "osmo_pcap/wire.py", line %d, in encode_frame' % want[0], p.stdout)
        self.assertIn('raise ValueError("unknown message type', p.stdout)

    def test_traceback_from_a_subpackage_module_names_its_file_and_line(self):
        rel = "osmo_pcap/server/storage.py"
        with open(os.path.join(support.REPO, rel), encoding="utf-8") as f:
            lines = f.read().splitlines()
        want = [i + 1 for i, l in enumerate(lines) if "fd = os.open(path, os.O_WRONLY" in l]
        self.assertEqual(len(want), 1)
        shutil.copy(support.SCRIPTS["server"], self.tmp)
        code = ("import runpy, traceback\nrunpy.run_path('osmo_pcap_server.py', run_name='b')\n"
                "from osmo_pcap.server import storage\nimport time\ntry:\n"
                "    storage.create_exclusive('/nonexistent-dir', 'c', time.localtime(), "
                "'pcap', 0o440)\nexcept OSError:\n    print(traceback.format_exc())\n")
        p = subprocess.run([sys.executable, "-c", code], cwd=self.tmp, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertIn('File "%s", line %d, in create_exclusive' % (rel, want[0]), p.stdout,
                      p.stderr)
        self.assertIn("fd = os.open(path, os.O_WRONLY", p.stdout)

    def test_header_contents_point_at_the_begin_markers(self):
        for prog in PROGRAMS:
            text = bundle.build(prog)
            lines = text.split("\n")
            start = lines.index("# Contents (line numbers in this file):")
            toc = []
            for line in lines[start + 1:]:
                m = re.match(r"^# +(\d+)  (.+)$", line)
                if not m:
                    break
                toc.append((int(m.group(1)), m.group(2)))
            modules = [(n, what) for n, what in toc if what.startswith("osmo_pcap/")]
            self.assertEqual([w for _, w in modules], sorted(embedded(text)), prog)
            for n, rel in modules:
                self.assertRegex(lines[n - 1], r"^# =+ Begin file %s =+$" % re.escape(rel),
                                 "%s line %d" % (prog, n))
            self.assertEqual(len(toc), len(modules) + 2, toc)
            (loader, what_l), (start_n, what_s) = toc[-2:]
            self.assertTrue(what_l.startswith("loader"), what_l)
            self.assertRegex(lines[loader - 1], r"^# -+ loader$")
            self.assertEqual(lines[loader], "# Registers the embedded modules above with "
                             "the import system. Each module is")
            self.assertTrue(what_s.startswith("start"), what_s)
            self.assertRegex(lines[start_n - 1], r"^# -+ start$")
            self.assertEqual(lines[start_n], 'if __name__ == "__main__":')
            self.assertEqual(lines[start_n + 1],
                             "    from %s import main" % bundle.PROGRAMS[prog][1])
            # execution starts at the end, and the header says so
            self.assertEqual(lines[-4:], lines[start_n:start_n + 3] + [""])
            self.assertIn("Execution starts at the end of the file", text[:3000])

    def test_header_usage_and_purpose_match_the_programs_help(self):
        for prog in PROGRAMS:
            about = bundle.ABOUT[prog]
            env = dict(os.environ, COLUMNS="80")
            out = support.run([sys.executable, support.SCRIPTS[prog], "--help"], env=env).stdout
            usage, _, rest = out.partition("\n\n")
            self.assertEqual(" ".join(usage.split()), "usage: " + about["usage"], prog)
            description = " ".join(rest.split("\n\n")[0].split())
            self.assertTrue(description.startswith(about["purpose"].rstrip(".")),
                            (prog, description))
            head = bundle.build(prog).split("\n# Contents")[0]
            self.assertIn("# " + about["purpose"] + "\n", head)
            flat = " ".join(l.lstrip("#").strip() for l in head.splitlines())
            self.assertIn(about["usage"], flat)

    def test_header_names_the_example_config_and_the_manual(self):
        with open(os.path.join(support.REPO, "mk", "ops.mk"), encoding="utf-8") as f:
            mk = f.read()
        prefix = re.search(r"^PREFIX \?= (\S+)$", mk, re.M).group(1)
        confdir = re.search(r"^CONFDIR \?= (\S+)$", mk, re.M).group(1)
        docdir = re.search(r"^DOCDIR \?= (\S+)$", mk, re.M).group(1).replace("$(PREFIX)", prefix)
        for prog in PROGRAMS:
            head = bundle.build(prog).split("\n# Contents")[0]
            flat = " ".join(l.lstrip("#").strip() for l in head.splitlines())
            ini = "osmo-pcap-%s.ini" % prog
            self.assertTrue(os.path.exists(os.path.join(support.REPO, "contrib", ini)))
            self.assertIn("contrib/%s in the source tree" % ini, flat)
            self.assertIn("%s/%s" % (confdir, ini), flat)
            manual = bundle.ABOUT[prog]["manual"]
            self.assertTrue(os.path.exists(os.path.join(support.REPO, "doc", manual)), manual)
            self.assertIn("doc/%s" % manual, flat)
            self.assertIn("doc/index.md", flat)
            self.assertIn(docdir + "/", flat)

    def test_bundler_refuses_sources_it_cannot_embed(self):
        bad = os.path.join(self.tmp, "bad.py")
        with open(bad, "w") as f:
            f.write("x = " + "'" * 3 + "a" + "'" * 3 + "\n")
        with open(bad, encoding="utf-8") as f:
            self.assertIn(bundle.DELIM, f.read())


if __name__ == "__main__":
    unittest.main()
