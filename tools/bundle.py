#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Build the standalone single-file programs from the osmo_pcap package.

Technique: embedded module sources registered through an import hook.
Each module the program needs (found by following its imports with `ast`)
is embedded verbatim as a raw string between "Begin file" / "End file"
marker lines, like SQLite's amalgamation, so a reader of the single file
sees the original text and knows which module every line came from. A small
meta-path finder at the end of the file compiles each module under its
original file name ("osmo_pcap/wire.py"), so modules keep their own
namespaces, relative line numbers stay exact, and a traceback names the
original module and line (the loader's get_source() even lets the
traceback print the source line). Concatenation with rewritten imports was
rejected: it merges namespaces and tracebacks would point at offsets in the
bundle. No third-party tool, no timestamps: same input, same bytes.

The file opens with a header for the administrator of the host it is copied
to: the program's purpose and usage synopsis (ABOUT, checked against --help
by the tests), where its example configuration and its manual chapter live,
and a table of contents giving the line of each module's "Begin file"
marker, of the loader and of the start code at the end of the file.

Usage: bundle.py [--check] [--out-dir DIR] [PROGRAM ...]
PROGRAM is client, server, clean or extcap (default: all four).
"""

import argparse
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "osmo_pcap"
PROGRAMS = {
    "client": ("osmo_pcap_client.py", "osmo_pcap.client.main"),
    "server": ("osmo_pcap_server.py", "osmo_pcap.server.main"),
    "clean": ("osmo_pcap_clean.py", "osmo_pcap.clean.main"),
    "extcap": ("osmo_pcap_extcap.py", "osmo_pcap.extcap.main"),
}
# What the header of each generated script tells a host administrator: the
# program's purpose and usage synopsis (tests/shared/test_bundle.py compares
# both with the program's --help), its example configuration and its chapter
# of the manual.
ABOUT = {
    "client": {
        "title": "the capture client",
        "purpose": "Capture packets with libpcap and forward them to osmo-pcap servers.",
        "usage": ("osmo_pcap_client.py [-h] [-V] [-c FILE] [--check-config] [--libpcap-info] "
                  "[-D] [--pidfile FILE] [--import-vty FILE]"),
        "manual": "client.md",
    },
    "server": {
        "title": "the central server",
        "purpose": "Receive osmo-pcap client streams and write rotating trace files.",
        "usage": ("osmo_pcap_server.py [-h] [-V] [-c FILE] [--check-config] [-D] "
                  "[--pidfile FILE] [--import-vty FILE]"),
        "manual": "server.md",
    },
    "clean": {
        "title": "the cleanup tool",
        "purpose": "Delete and compress old osmo-pcap trace files as configured.",
        "usage": "osmo_pcap_clean.py [-h] [-c FILE] [-n] [-v] [--check-config] [-V]",
        "manual": "clean.md",
    },
    "extcap": {
        "title": "the Wireshark extcap",
        "purpose": "Show an osmo-pcap server's capture clients as Wireshark interfaces.",
        "usage": ("osmo_pcap_extcap.py [-h] [-V] [-c FILE] [--check-config] [--list] "
                  "[--extcap-interfaces] [--extcap-version [VERSION]] "
                  "[--extcap-interface IFACE] [--extcap-dlts] [--extcap-config] [--capture] "
                  "[--fifo PATH] [--extcap-capture-filter FILTER] [--tap HOST:PORT] [--tls] "
                  "[--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE] [--tls-hostname NAME]"),
        "manual": "wireshark.md",
    },
}
CONFDIR = "/etc/osmo-pcap"                     # mk/ops.mk CONFDIR
DOCDIR = "/usr/local/share/doc/osmo-pcap"      # mk/ops.mk DOCDIR with the default PREFIX
DELIM = "'''"

LOADER = r'''
# ---------------------------------------------------------------- loader
# Registers the embedded modules above with the import system. Each module is
# compiled under its original file name so tracebacks name it and its lines.
import importlib.abc
import importlib.util


class _EmbeddedFinder(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Find and load the modules embedded in this file, before anything on disk."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _MODULES:
            return None
        is_pkg = _MODULES[fullname].endswith("__init__.py")
        spec = importlib.util.spec_from_loader(fullname, self, origin=_MODULES[fullname],
                                               is_package=is_pkg)
        spec.has_location = False
        return spec

    def get_source(self, fullname):
        return _SOURCES[_MODULES[fullname]][1:]  # drop the newline after the quotes

    def is_package(self, fullname):
        return _MODULES[fullname].endswith("__init__.py")

    def get_code(self, fullname):
        return compile(self.get_source(fullname), _MODULES[fullname], "exec", dont_inherit=True)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = _MODULES[module.__name__]
        if self.is_package(module.__name__):
            module.__path__ = []
        exec(self.get_code(module.__name__), module.__dict__)


_MODULES = dict((p[:-len("/__init__.py")] if p.endswith("/__init__.py") else p[:-3], p)
                for p in _SOURCES)
_MODULES = dict((k.replace("/", "."), v) for k, v in _MODULES.items())
sys.meta_path.insert(0, _EmbeddedFinder())
'''


def module_path(name):
    """Return the repository-relative path of a package module name."""
    parts = name.split(".")
    rel = os.path.join(*parts) + ".py"
    if os.path.isfile(os.path.join(ROOT, rel)):
        return rel.replace(os.sep, "/")
    rel = os.path.join(*(parts + ["__init__.py"]))
    if os.path.isfile(os.path.join(ROOT, rel)):
        return rel.replace(os.sep, "/")
    raise SystemExit("bundle: module %s not found (imported from the package)" % name)


def imports_of(name, source):
    """Return the package modules that the module `name` imports anywhere."""
    tree = ast.parse(source, module_path(name))
    is_pkg = module_path(name).endswith("__init__.py")
    base = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base.split(".")
                pkg = pkg[:len(pkg) - (node.level - 1)]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod != PACKAGE and not mod.startswith(PACKAGE + "."):
                continue
            found.add(mod)
            for alias in node.names:
                sub = mod + "." + alias.name
                try:
                    module_path(sub)
                except SystemExit:
                    continue
                found.add(sub)
    # importing a.b imports a as well
    for mod in list(found):
        parts = mod.split(".")
        for i in range(1, len(parts)):
            found.add(".".join(parts[:i]))
    return found


def read_source(rel):
    with open(os.path.join(ROOT, rel), "r", encoding="utf-8") as f:
        return f.read()


def closure(entry):
    """Return the sorted list of module names needed by the entry module."""
    todo = [entry, PACKAGE]
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imports_of(name, read_source(module_path(name))) - seen)
    return sorted(seen)


def version():
    src = read_source(PACKAGE + "/__init__.py")
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__version__":
            return ast.literal_eval(node.value)
    raise SystemExit("bundle: no __version__ in %s/__init__.py" % PACKAGE)


def wrap(text, width=76, indent=""):
    """Return text as comment lines of at most width characters.

    A bracketed option group such as "[--pidfile FILE]" (or "[--opt [VALUE]]") is
    never split.
    """
    out, line = [], ""
    for word in re.findall(r"\[(?:[^\[\]]|\[[^\]]*\])*\]|\S+", text):
        if line and len(indent) + len(line) + 1 + len(word) > width:
            out.append("# " + indent + line)
            line = word
        else:
            line = line + " " + word if line else word
    if line:
        out.append("# " + indent + line)
    return out


def header(program, ver, toc):
    """Return the opening comment lines; toc is [(line number, what)]."""
    out_name = PROGRAMS[program][0]
    about = ABOUT[program]
    short = "osmo-pcap-" + program
    lines = [
        "#!/usr/bin/env python3",
        "# SPDX-License-Identifier: AGPL-3.0-or-later",
        "# %s %s -- osmo-pcap for Python, %s." % (out_name, ver, about["title"]),
        "# " + about["purpose"],
        "#",
        "# Usage:",
    ]
    lines += wrap(about["usage"], indent="    ")
    lines += [
        "#     (--help explains every option)",
        "#",
        "# Needs only CPython 3.6 or newer: this one file is the whole program.",
        "# Example configuration: contrib/%s.ini in the source tree," % short,
        "#     installed by `make install` as %s/%s.ini." % (CONFDIR, short),
        "# Manual: doc/%s (all chapters: doc/index.md), installed in" % about["manual"],
        "#     %s/." % DOCDIR,
        "#",
        "# GENERATED by tools/bundle.py from the osmo_pcap/ package: do not edit this",
        "# file, edit the package and run `make`. Each embedded module lies verbatim",
        "# between its 'Begin file' and 'End file' markers; a traceback names the",
        "# original module and line. Execution starts at the end of the file, which",
        "# registers the modules with the import system and calls main().",
        "#",
        "# Contents (line numbers in this file):",
    ]
    lines += ["# %7d  %s" % (n, what) for n, what in toc]
    lines.append("")
    return lines


def build(program):
    """Return the text of the single-file program."""
    out_name, entry = PROGRAMS[program]
    ver = version()
    body = [
        "import sys",
        "",
        "__version__ = %r" % ver,
        "_SOURCES = {}",
        "",
    ]
    marks = []   # (index into body, what): lines the table of contents points at
    for name in closure(entry):
        rel = module_path(name)
        src = read_source(rel)
        if DELIM in src:
            raise SystemExit("bundle: %s contains %s, which the embedding cannot carry; "
                             "use \"\"\" instead" % (rel, DELIM))
        if src.endswith("\\") or not src.endswith("\n"):
            raise SystemExit("bundle: %s must end with a newline" % rel)
        marks.append((len(body), rel))
        body.append("# " + "=" * 20 + " Begin file %s " % rel + "=" * 20)
        body.append("_SOURCES[%r] = r%s" % (rel, DELIM))
        body.append(src + DELIM)
        body.append("# " + "=" * 20 + " End file %s " % rel + "=" * 22)
        body.append("")
    marks.append((len(body), "loader: registers the modules above with the import system"))
    body.append(LOADER.strip("\n"))
    body.append("")
    body.append("")
    marks.append((len(body), "start: calls %s.main()" % entry))
    body.append("# " + "-" * 64 + " start")
    body.append("if __name__ == \"__main__\":")
    body.append("    from %s import main" % entry)
    body.append("    sys.exit(main())")
    # Line number of each body element: 1 + the newlines before it.
    starts = []
    n = 1
    for part in body:
        starts.append(n)
        n += part.count("\n") + 1
    size = len(header(program, ver, [(0, what) for _, what in marks]))
    toc = [(size + starts[i], what) for i, what in marks]
    head = header(program, ver, toc)
    assert len(head) == size
    return "\n".join(head + body) + "\n"


def main():
    ap = argparse.ArgumentParser(description="Build the standalone single-file programs.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; fail if a committed script differs from a fresh build")
    ap.add_argument("--out-dir", default=ROOT, help="where to write the scripts")
    ap.add_argument("programs", nargs="*",
                    help="client, server, clean or extcap (default: all)")
    args = ap.parse_args()
    for program in args.programs:
        if program not in PROGRAMS:
            ap.error("unknown program %r (choose from %s)" % (program, ", ".join(sorted(PROGRAMS))))
    stale = []
    for program in args.programs or sorted(PROGRAMS):
        out_name = PROGRAMS[program][0]
        text = build(program)
        path = os.path.join(args.out_dir, out_name)
        old = None
        if os.path.exists(path):
            with open(path, "r", encoding="utf-8") as f:
                old = f.read()
        if args.check:
            if old != text:
                stale.append(out_name)
            continue
        if old != text:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
            print("bundle: wrote %s" % out_name)
    if stale:
        print("bundle: stale generated script(s): %s -- run `make` and commit them"
              % " ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
