# SPDX-License-Identifier: AGPL-3.0-or-later
"""The man pages in man/: fresh, clean roff, every option and every config key.

"Every key the code knows" is measured on the code, not on a list: the config
readers run on each example file with every commented key uncommented in turn
(as tests/ops/test_contrib.py does) while ini.Section records each key they
declare (get(), and what finish() knows). The pages must name every such key, and no key no reader asks for.
"""

import os
import re
import sys

from tests import support
from tests.ops import test_contrib
from osmo_pcap import ini
from osmo_pcap.ini import ConfigError

sys.path.insert(0, os.path.join(support.REPO, "tools"))
import manpages  # noqa: E402  (tools/manpages.py)

MAN = os.path.join(support.REPO, "man")
PROGRAMS = ("server", "client", "clean", "extcap")


def page_path(program):
    name, section = manpages.PAGES[program][:2]
    return os.path.join(MAN, "%s.%d" % (name, section))


def ini_page_path():
    return os.path.join(MAN, "%s.%d" % manpages.INI_PAGE)


def render(path):
    """Return (text, warnings) of man rendering the page alone."""
    man = support.require_tool("man")
    env = dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="", LANG="C.UTF-8",
               MANPAGER="cat", PAGER="cat")
    p = support.run([man, "--warnings", "-E", "UTF-8", "-l", path], env=env, check=False)
    text = re.sub(r".\x08", "", p.stdout)
    return text, p.stderr, p.returncode


def ini_page_keys():
    """Return {program: {section: set(keys)}} read from the roff of osmo-pcap.ini(5)."""
    with open(ini_page_path(), encoding="utf-8") as f:
        lines = f.read().splitlines()
    out, prog, sect = {}, None, None
    titles = dict((manpages.TITLES[p], p) for p in PROGRAMS)
    for i, line in enumerate(lines):
        m = re.match(r'^\.SH "?.*\((osmo-pcap-[a-z]+\.ini)\)"?$', line)
        if m:
            prog, sect = titles[m.group(1)], None
            out[prog] = {}
            continue
        if line.startswith(".SH"):
            prog = None
            continue
        m = re.match(r'^\.SS "?\[([^\]]+)\]"?$', line)
        if m and prog:
            sect = m.group(1)
            out[prog].setdefault(sect, set())
            continue
        m = re.match(r"^\\fB([a-zA-Z_]+)\\fR \(default: ", line)
        if m and prog and sect and lines[i - 1] == ".TP":
            out[prog][sect].add(m.group(1))
        m = re.match(r"^The same keys as in (\S+) above\.$", line)
        if m and prog and sect:
            out[prog][sect] |= out[titles[m.group(1)]][sect]
    return out


def keys_the_code_reads(tmp):
    """Return {(program, section kind): set(keys)} that the config readers ask for."""
    seen = {}
    orig_get, orig_finish = ini.Section.get, ini.Section.finish
    current = {}

    def record(section, keys):
        kind = test_contrib.section_kind(section.name).replace(" *", " NAME")
        seen.setdefault((current["prog"], kind), set()).update(keys)

    # get() declares a key (also when a later check fails, as with TLS files that
    # the examples only name); finish() sees every key the section declared.
    # raw() alone may be a probe of another section's key: not counted.
    def get(self, key, *a, **kw):
        record(self, [key])
        return orig_get(self, key, *a, **kw)

    def finish(self):
        record(self, self._known)
        return orig_finish(self)
    ini.Section.get, ini.Section.finish = get, finish
    try:
        os.makedirs(os.path.join(tmp, "base"), exist_ok=True)
        for prog, load in sorted(test_contrib.LOADERS.items()):
            current["prog"] = prog
            with open(os.path.join(test_contrib.CONTRIB, "osmo-pcap-%s.ini" % prog)) as f:
                lines = f.read().replace("/var/lib/osmo-pcap",
                                         os.path.join(tmp, "base")).splitlines()
            variants = [lines] + [test_contrib.uncomment(lines, n, key, value)
                                  for _, key, value, commented, n
                                  in test_contrib.example_keys(prog) if commented]
            for text in variants:
                path = os.path.join(tmp, "%s.ini" % prog)
                with open(path, "w") as f:
                    f.write("\n".join(text) + "\n")
                try:
                    load(path)
                except ConfigError:
                    pass
    finally:
        ini.Section.get, ini.Section.finish = orig_get, orig_finish
    return seen


class ManPagesTest(support.TempDirTestCase):

    def test_pages_are_generated_and_fresh(self):
        pages = manpages.pages()
        self.assertEqual(sorted(pages), sorted(os.listdir(MAN)))
        for name, text in pages.items():
            with open(os.path.join(MAN, name), encoding="utf-8") as f:
                self.assertEqual(f.read(), text, "man/%s is stale: run make" % name)
            self.assertTrue(text.startswith('.\\" SPDX-License-Identifier: AGPL-3.0-or-later\n'))

    def test_man_renders_every_page_without_warnings(self):
        man = support.require_tool("man")
        for path in [page_path(p) for p in PROGRAMS] + [ini_page_path()]:
            text, warnings, rc = render(path)
            self.assertEqual((rc, warnings), (0, ""), path)
            self.assertIn("NAME", text)
            self.assertNotIn("\\f", text)          # no escape left unrendered
            # and exactly as an operator would, in the C locale
            env = dict(os.environ, LC_ALL="C", LANG="C", MANPAGER="cat", PAGER="cat")
            p = support.run([man, "--warnings", "-l", path], env=env, check=False)
            self.assertEqual((p.returncode, p.stderr), (0, ""), path)

    def test_every_option_of_help_is_in_the_page(self):
        for prog in PROGRAMS:
            env = dict(os.environ, COLUMNS="200")
            out = support.run(support.script_cmd(prog, "--help"), env=env).stdout
            opts = set()
            for line in out.splitlines():
                m = re.match(r"^\s+(-[^ ].*?)(?:\s{2,}|$)", line)
                if m:
                    opts.update(re.findall(r"(?<![\w-])(--?[a-zA-Z][-a-zA-Z]*)", m.group(1)))
            self.assertIn("--help", opts)
            self.assertIn("--version", opts)
            text, _, _ = render(page_path(prog))
            options = text.split("\nOPTIONS\n", 1)[1]
            for opt in sorted(opts):
                self.assertRegex(options, r"(^|[\s,])%s\b" % re.escape(opt), (prog, opt))
            # and no option the program does not have
            for opt in set(re.findall(r"(?m)^\s{7}(--?[a-zA-Z][-a-zA-Z]*)", options)):
                self.assertIn(opt, opts, (prog, opt))

    def test_ini_page_has_every_key_the_code_reads_and_no_other(self):
        page = ini_page_keys()
        read = keys_the_code_reads(self.tmp)
        self.assertEqual(sorted(page), sorted(PROGRAMS))
        self.assertGreater(sum(len(k) for s in page.values() for k in s.values()), 100)
        for (prog, kind), keys in sorted(read.items()):
            if prog == "clean" and kind == "client NAME":
                kind = "clean"      # the per-client overrides are [clean] keys
            documented = page[prog].get(kind, set())
            for key in sorted(keys):
                ok = any(test_contrib.doc_pattern(k).match(key) for k in documented)
                self.assertTrue(ok, "osmo-pcap.ini(5) lacks [%s] %s of %s" % (kind, key, prog))
        for prog, sections in sorted(page.items()):
            for kind, keys in sorted(sections.items()):
                known = read.get((prog, kind), set())
                if prog == "clean" and kind == "clean":
                    known = known | read.get((prog, "client NAME"), set())
                for key in sorted(keys):
                    ok = any(test_contrib.doc_pattern(key).match(k) for k in known)
                    self.assertTrue(ok, "osmo-pcap.ini(5) names [%s] %s of %s, which no "
                                    "reader of %s asks for" % (kind, key, prog, prog))

    def test_every_documented_key_is_in_the_page_with_its_default(self):
        with open(ini_page_path(), encoding="utf-8") as f:
            roff = f.read()
        for prog, kind, key, default, where in test_contrib.doc_tables():
            self.assertTrue("\\fB%s\\fR (default: " % key in roff, "%s: %s" % (where, key))
            if default is not None:
                want = "\\fB%s\\fR (default: \\fB%s\\fR)" % (
                    key, manpages.esc(default).replace("-", "\\-"))
                self.assertTrue(want in roff, "%s: %s" % (where, want))
