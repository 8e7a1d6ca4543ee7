# SPDX-License-Identifier: AGPL-3.0-or-later
"""contrib/: systemd units pass systemd-analyze verify; init scripts parse and
carry complete LSB headers; the example INI files, the key tables of doc/*.md and
the config loaders agree on every key and default."""

import configparser
import glob
import os
import re
import shutil
import unittest

from tests import support

from osmo_pcap.clean import config as cleanconfig
from osmo_pcap.extcap import config as extcapconfig
from osmo_pcap.client import config as clientconfig
from osmo_pcap.server import config as serverconfig
from osmo_pcap.client import main as _client
from osmo_pcap.ini import ConfigError

CONTRIB = os.path.join(support.REPO, "contrib")
LSB_FIELDS = ("Provides", "Required-Start", "Required-Stop", "Default-Start",
              "Default-Stop", "Short-Description", "Description")


def read_unit(name):
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str
    cp.read(os.path.join(CONTRIB, name))
    return cp


class UnitTest(support.TempDirTestCase):

    def test_systemd_analyze_verify(self):
        tool = support.require_tool("systemd-analyze")
        units = []
        for src in sorted(glob.glob(os.path.join(CONTRIB, "*.service")) +
                          glob.glob(os.path.join(CONTRIB, "*.timer"))):
            with open(src) as f:
                text = f.read()
            # ExecStart must name an existing executable: point it at the build.
            text = re.sub(r"/usr/local/bin/osmo[-_]pcap[-_](\w+)(\.py)?",
                          lambda m: support.SCRIPTS[m.group(1)], text)
            dst = self.path(os.path.basename(src))
            with open(dst, "w") as f:
                f.write(text)
            units.append(dst)
        self.assertTrue(units)
        p = support.run([tool, "verify"] + units, check=False, timeout=120)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_client_unit(self):
        s = read_unit("osmo-pcap-client.service")
        self.assertEqual(s["Service"]["Type"], "notify")
        self.assertEqual(s["Unit"]["After"], "network-online.target")
        self.assertEqual(s["Unit"]["Wants"], "network-online.target")
        # capture, promiscuous mode and large buffers need CAP_NET_RAW alone
        for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
            self.assertEqual(s["Service"][key].split(), ["CAP_NET_RAW"])
        self.assertNotIn(s["Service"]["User"], ("", "root"))
        self.assertIn("AF_PACKET", s["Service"]["RestrictAddressFamilies"])
        self.assertNotIn("PrivateNetwork", s["Service"])
        self.assertEqual(s["Service"]["Restart"], "on-failure")
        self.assertTrue(s["Service"]["ExecStart"].endswith(
            " -c /etc/osmo-pcap/osmo-pcap-client.ini"))

    def test_security_exposure(self):
        """systemd-analyze security rates the cleanup unit no worse than the daemons."""
        tool = support.require_tool("systemd-analyze")
        scores = {}
        for name in ("server", "client", "clean"):
            p = support.run([tool, "security", "--offline=true",
                             os.path.join(CONTRIB, "osmo-pcap-%s.service" % name)],
                            check=False, timeout=120)
            m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", p.stdout)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            scores[name] = float(m.group(1))
        self.assertLessEqual(scores["clean"], min(scores["server"], scores["client"]), scores)
        self.assertLessEqual(max(scores.values()), 2.4, scores)

    def test_clean_unit(self):
        s = read_unit("osmo-pcap-clean.service")
        self.assertEqual(s["Service"]["Type"], "oneshot")
        self.assertEqual(s["Service"]["CapabilityBoundingSet"], "")
        self.assertEqual(s["Service"]["ProtectSystem"], "strict")
        # the run may write where the server keeps its traces, nowhere else
        self.assertEqual(s["Service"]["ReadWritePaths"], "/var/lib/osmo-pcap")
        with open(os.path.join(CONTRIB, "osmo-pcap-clean.ini")) as f:
            self.assertIn("\npaths = /var/lib/osmo-pcap\n", f.read())

    def test_server_unit(self):
        s = read_unit("osmo-pcap-server.service")
        self.assertEqual(s["Service"]["Type"], "notify")
        self.assertEqual(s["Service"]["StateDirectory"], "osmo-pcap")
        self.assertEqual(s["Service"]["CapabilityBoundingSet"], "")
        self.assertEqual(s["Service"]["AmbientCapabilities"], "")
        self.assertNotIn(s["Service"]["User"], ("", "root"))
        self.assertEqual(s["Unit"]["After"], "network-online.target")


class InitScriptTest(unittest.TestCase):

    SCRIPTS = ("osmo-pcap-client.init", "osmo-pcap-server.init")

    def test_sh_syntax(self):
        shells = [s for s in ("sh", "dash", "bash") if shutil.which(s)]
        for name in self.SCRIPTS:
            for sh in shells:
                support.run([sh, "-n", os.path.join(CONTRIB, name)])

    def test_lsb_header(self):
        for name in self.SCRIPTS:
            with open(os.path.join(CONTRIB, name)) as f:
                text = f.read()
            self.assertTrue(text.startswith("#!/bin/sh\n"))
            m = re.search(r"^### BEGIN INIT INFO\n(.*?)^### END INIT INFO$", text, re.M | re.S)
            self.assertIsNotNone(m, name)
            fields = dict(re.findall(r"^# ([A-Za-z-]+):\s+(.*)$", m.group(1), re.M))
            for field in LSB_FIELDS:
                self.assertIn(field, fields, "%s: %s" % (name, field))
            self.assertEqual(fields["Provides"], name[:-len(".init")])
            self.assertEqual(fields["Default-Start"], "2 3 4 5")
            self.assertEqual(fields["Default-Stop"], "0 1 6")
            self.assertIn("$network", fields["Required-Start"])
            self.assertIn("start-stop-daemon", text)
            self.assertIn("-D --pidfile \"$PIDFILE\"", text)


# ---------------------------------------------------------------- INI examples

DOC = os.path.join(support.REPO, "doc")
LOADERS = {"server": serverconfig.load, "client": clientconfig.load, "clean": cleanconfig.read,
           "extcap": extcapconfig.read}
# doc chapter -> the example INI its key tables describe (None: decided per heading)
DOC_INI = {"server.md": ("server",), "hooks.md": ("server",), "client.md": ("client",),
           "clean.md": ("clean",), "operations.md": ("server", "client"), "tls.md": None,
           "wireshark.md": ("extcap",)}
# the section a table describes when no `[section]` precedes it
DOC_DEFAULT_SECTION = {"hooks.md": "server"}
_SECTION_LINE = re.compile(r"^(;\s?)?\[([^\]]+)\]\s*$")
_KEY_LINE = re.compile(r"^(;\s?)?([a-z][a-z0-9_]*)\s*=\s*(.*?)\s*$")


def section_kind(name):
    """[client bts1] -> 'client *'; [server] -> 'server'."""
    word = name.split()[0]
    return word + " *" if " " in name.strip() else word


def example_keys(program):
    """Return [(section, key, value, commented, line number)] of contrib/osmo-pcap-PROGRAM.ini.

    Commented-out lines ('; key = value' or ';key = value') count as well."""
    out = []
    section = None
    with open(os.path.join(CONTRIB, "osmo-pcap-%s.ini" % program)) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = _SECTION_LINE.match(line)
            if m:
                section = m.group(2)
                continue
            m = _KEY_LINE.match(line)
            if m:
                out.append((section, m.group(2), m.group(3), bool(m.group(1)), n))
    return out


def doc_tables():
    """Return [(program, section kind, key, default or None, where)] from the
    key tables (header '| key | ...') of doc/*.md."""
    out = []
    for name, programs in sorted(DOC_INI.items()):
        with open(os.path.join(DOC, name)) as f:
            lines = f.read().splitlines()
        section = DOC_DEFAULT_SECTION.get(name)
        heading = ""
        header = None
        for n, line in enumerate(lines, 1):
            if line.startswith("#"):
                heading = line
            m = re.match(r"^(#+ .*|)`\[([^\]]+)\]`", line) or re.search(r"`\[([^\]]+)\]`$", line)
            if m and (line.startswith("#") or line.startswith("`")):
                section = m.groups()[-1]
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                continue
            if header[0] != "key" or set(line) <= set("|-: "):
                continue
            progs = programs or (("client",) if "Client" in heading else ("server",))
            default = None
            if "default" in header:
                d = cells[header.index("default")]
                if re.match(r"^`[^`]+`$", d):
                    default = d.strip("`")
            for key in re.findall(r"`([a-zA-Z_]+)`", cells[0]):
                for prog in progs:
                    out.append((prog, section_kind(section), key, default,
                                "doc/%s:%d" % (name, n)))
    return out


def doc_pattern(key):
    """tap_listen_NAME stands for tap_listen_bts1 and so on."""
    return re.compile("^" + re.escape(key).replace("NAME", r"\w+") + "$")


def uncomment(lines, n, key, value):
    """lines with line n set to 'key = value' and its section header opened."""
    text = list(lines)
    text[n - 1] = "%s = %s" % (key, value)
    for i in range(n - 2, -1, -1):
        m = _SECTION_LINE.match(text[i])
        if m:
            text[i] = "[%s]" % m.group(2)
            break
    return text


def config_dump(obj, depth=0):
    """A comparable picture of a loaded configuration (plain values, nested objects)."""
    if depth > 4:
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return [config_dump(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {k: config_dump(v, depth + 1) for k, v in obj.items()}
    names = list(getattr(obj, "__dict__", {})) + list(getattr(type(obj), "__slots__", ()))
    if not names:
        return obj
    return {n: config_dump(getattr(obj, n, None), depth + 1) for n in names
            if n not in ("section", "path")}


def has_key_table(text):
    """True when a Markdown text has a table whose first column is `key`."""
    return any(re.match(r"^\|\s*key\s*\|", line) for line in text.splitlines())


class ExampleKeysTest(support.TempDirTestCase):
    """Every key the docs' tables list is in the matching contrib/*.ini (commented,
    with the documented default), every key there is documented and accepted."""

    def test_every_chapter_with_key_tables_is_checked(self):
        for path in sorted(glob.glob(os.path.join(DOC, "*.md"))):
            with open(path) as f:
                if has_key_table(f.read()):
                    self.assertIn(os.path.basename(path), DOC_INI,
                                  "%s has a key table: add it to DOC_INI" % path)
        for name in DOC_INI:
            with open(os.path.join(DOC, name)) as f:
                self.assertTrue(has_key_table(f.read()), "%s: no key table any more" % name)

    def test_doc_keys_are_in_the_examples(self):
        examples = {p: example_keys(p) for p in LOADERS}
        rows = doc_tables()
        self.assertGreater(len(rows), 80)
        for prog, kind, key, default, where in rows:
            pat = doc_pattern(key)
            found = [e for e in examples[prog]
                     if section_kind(e[0]) == kind and pat.match(e[1])]
            self.assertTrue(found, "%s: [%s] %s is not in contrib/osmo-pcap-%s.ini"
                            % (where, kind, key, prog))
            commented = [e for e in found if e[3] and e[2]]
            if default is not None and commented and "NAME" not in key:
                self.assertEqual(commented[0][2], default,
                                 "contrib/osmo-pcap-%s.ini:%d: %s = %s, but %s says the "
                                 "default is %s" % (prog, commented[0][4], key, commented[0][2],
                                                    where, default))

    def test_example_keys_are_documented(self):
        rows = doc_tables()
        for prog in LOADERS:
            for section, key, _, _, n in example_keys(prog):
                kind = section_kind(section)
                if prog == "clean" and kind == "client *":
                    kind = "clean"  # the per-client overrides are [clean] keys
                ok = any(p == prog and k == kind and doc_pattern(dk).match(key)
                         for p, k, dk, _, _ in rows)
                self.assertTrue(ok, "contrib/osmo-pcap-%s.ini:%d: [%s] %s is in no key "
                                "table of doc/*.md" % (prog, n, section, key))

    def test_example_keys_are_accepted(self):
        """Uncommenting any one key of an example leaves a file the program accepts
        (or, for keys that need files or other keys, rejects for that reason only)."""
        os.mkdir(self.path("base"))
        for prog, load in sorted(LOADERS.items()):
            path = os.path.join(CONTRIB, "osmo-pcap-%s.ini" % prog)
            with open(path) as f:
                lines = f.read().replace("/var/lib/osmo-pcap", self.path("base")).splitlines()
            keys = example_keys(prog)
            self.assertTrue(keys)
            load(self.write(prog, lines))  # as shipped
            for section, key, value, commented, n in keys:
                if not commented:
                    continue
                ini = self.write(prog, uncomment(lines, n, key, value))
                try:
                    load(ini)
                except ConfigError as e:
                    self.assertNotIn("unknown", str(e), "%s:%d" % (path, n))
                    self.assertTrue(key.startswith(("tls", "tap_tls")) or key == "on_complete",
                                    "%s:%d: %s" % (path, n, e))

    def test_uncommented_defaults_change_nothing(self):
        """A commented line showing the documented default, uncommented, gives the
        same configuration as the file as shipped."""
        documented = set((p, k, key, d) for p, k, key, d, _ in doc_tables() if d is not None)
        os.mkdir(self.path("base"))
        checked = 0
        for prog, load in sorted(LOADERS.items()):
            with open(os.path.join(CONTRIB, "osmo-pcap-%s.ini" % prog)) as f:
                lines = f.read().replace("/var/lib/osmo-pcap", self.path("base")).splitlines()
            shipped = config_dump(load(self.write(prog, lines)))
            for section, key, value, commented, n in example_keys(prog):
                if not commented or key.startswith("tls") or \
                        (prog, section_kind(section), key, value) not in documented:
                    continue  # TLS keys need tls_cert (see the example's comment)
                text = uncomment(lines, n, key, value)
                self.assertEqual(config_dump(load(self.write(prog, text))), shipped,
                                 "contrib/osmo-pcap-%s.ini:%d: %s = %s" % (prog, n, key, value))
                checked += 1
        self.assertGreater(checked, 40)

    def write(self, prog, lines):
        p = self.path("%s.ini" % prog)
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        return p


if __name__ == "__main__":
    unittest.main()
