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

Usage: bundle.py [--check] [--out-dir DIR] [PROGRAM ...]
PROGRAM is client, server or clean (default: all three).
"""

import argparse
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "osmo_pcap"
PROGRAMS = {
    "client": ("osmo_pcap_client.py", "osmo_pcap.client.main"),
    "server": ("osmo_pcap_server.py", "osmo_pcap.server.main"),
    "clean": ("osmo_pcap_clean.py", "osmo_pcap.clean.main"),
}
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
            return node.value.s if hasattr(node.value, "s") else node.value.value
    raise SystemExit("bundle: no __version__ in %s/__init__.py" % PACKAGE)


def build(program):
    """Return the text of the single-file program."""
    out_name, entry = PROGRAMS[program]
    ver = version()
    lines = [
        "#!/usr/bin/env python3",
        "# SPDX-License-Identifier: AGPL-3.0-or-later",
        "# %s %s -- osmo-pcap for Python, standalone %s." % (out_name, ver, program),
        "#",
        "# GENERATED by tools/bundle.py from the osmo_pcap/ package: do not edit this",
        "# file, edit the package and run `make`. Each embedded module lies between",
        "# its 'Begin file' and 'End file' markers; a traceback names the original",
        "# module and line. Needs only CPython 3.6 or newer.",
        "",
        "import sys",
        "",
        "__version__ = %r" % ver,
        "_SOURCES = {}",
        "",
    ]
    for name in closure(entry):
        rel = module_path(name)
        src = read_source(rel)
        if DELIM in src:
            raise SystemExit("bundle: %s contains %s, which the embedding cannot carry; "
                             "use \"\"\" instead" % (rel, DELIM))
        if src.endswith("\\") or not src.endswith("\n"):
            raise SystemExit("bundle: %s must end with a newline" % rel)
        lines.append("# " + "=" * 20 + " Begin file %s " % rel + "=" * 20)
        lines.append("_SOURCES[%r] = r%s" % (rel, DELIM))
        lines.append(src + DELIM)
        lines.append("# " + "=" * 20 + " End file %s " % rel + "=" * 22)
        lines.append("")
    lines.append(LOADER)
    lines.append("")
    lines.append("if __name__ == \"__main__\":")
    lines.append("    from %s import main" % entry)
    lines.append("    sys.exit(main())")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description="Build the standalone single-file programs.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; fail if a committed script differs from a fresh build")
    ap.add_argument("--out-dir", default=ROOT, help="where to write the scripts")
    ap.add_argument("programs", nargs="*", help="client, server or clean (default: all)")
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
