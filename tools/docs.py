#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Check the documentation (run by `make check`); change nothing.

README.md is written by hand and doc/ holds the operator's manual, one chapter
per topic. This checks what a reader relies on:

- README.md is at most README_MAX bytes;
- every relative link in README.md, HACKING.md and doc/*.md names an existing
  file, and its #anchor exists there (an <a id="..."> or a heading, slugged as
  GitHub does);
- README.md links only into doc/ and to LICENSE, and the chapters only to each
  other, to ../README.md and ../LICENSE, so the flat copy `make install` makes
  keeps working;
- doc/index.md lists every chapter;
- every chapter (doc/<name>.md) and every anchor (doc/<name>.md#<anchor>,
  HACKING.md#<anchor>) named in the sources (osmo_pcap/, tools/, tests/,
  bench/, contrib/, mk/, .ci/, Makefile) exists;
- no document or source outside osmo_pcap/ and bench/ cites the developers'
  private analysis of upstream by section number.

Usage: docs.py
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX = 15 * 1024
SOURCE_DIRS = ("osmo_pcap", "tools", "tests", "bench", "contrib", "mk", ".ci")
SOURCE_FILES = ("Makefile",)
# Chapters renamed while osmo_pcap/ was being refactored elsewhere: a comment
# there may still name the old file (CITATIONS.txt lists each place). Noted,
# not failed; drop an entry once no source names it any more.
# Citations of material that is not part of the repository. Built from pieces
# so that this file does not match them itself.
FOREIGN = re.compile(r"\bspec (?:section )?[0-9]|\b11 #[0-9]|" + "perf" + "-notes|"
                     + r"\.\./shared/|/work/" + "shared")
FOREIGN_SCOPE = ("README.md", "HACKING.md", "doc", "contrib", "tools", "tests", "mk", ".ci",
                 "Makefile", "osmo_pcap", "bench")

_LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
_ID = re.compile(r"<a id=\"([^\"]+)\"></a>")
_CITED = re.compile(r"\b((?:doc/[A-Za-z0-9_.-]+|HACKING)\.md)(?:#([A-Za-z0-9_-]+))?")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def prose(text):
    """Return text without fenced code blocks and inline code spans."""
    out = []
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            out.append("")
            continue
        out.append("" if fence else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading):
    """Return the anchor GitHub gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Return the set of anchors of a Markdown file."""
    if path not in cache:
        text = read(path)
        found = set(_ID.findall(text))
        seen = {}
        fence = False
        for line in text.splitlines():
            if line.lstrip().startswith("```"):
                fence = not fence
            if fence:
                continue
            m = re.match(r"^#{1,6} (.*)$", line)
            if m:
                base = slug(m.group(1))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else "%s-%d" % (base, n))
        cache[path] = found
    return cache[path]


def rel(path):
    return os.path.relpath(path, ROOT)


def check_links(path, allowed, errors):
    """Check the relative links of one Markdown file; allowed(target) limits targets."""
    text = prose(read(path))
    for n, line in enumerate(text.splitlines(), 1):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:, ...
            where = "%s:%d: %s" % (rel(path), n, target)
            name, _, frag = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name else path
            if not os.path.exists(dest):
                errors.append("%s: no such file" % where)
                continue
            if not allowed(dest):
                errors.append("%s: links outside what `make install` installs beside it" % where)
            if frag and not dest.endswith(".md"):
                errors.append("%s: an anchor into a file that is not Markdown" % where)
            elif frag and frag not in anchors(dest):
                errors.append("%s: no anchor #%s in %s" % (where, frag, rel(dest)))


def source_files():
    for d in SOURCE_DIRS:
        for base, dirs, files in os.walk(os.path.join(ROOT, d)):
            dirs[:] = sorted(x for x in dirs if x not in ("__pycache__", "data"))
            for f in sorted(files):
                yield os.path.join(base, f)
    for f in SOURCE_FILES:
        yield os.path.join(ROOT, f)


def check_citations(errors, notes):
    """Every chapter and anchor of doc/ or HACKING.md named in a source exists."""
    for path in source_files():
        try:
            text = read(path)
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for name, frag in _CITED.findall(line):
                where = "%s:%d: %s%s" % (rel(path), n, name, "#" + frag if frag else "")
                dest = os.path.join(ROOT, name)
                if not os.path.exists(dest):
                    errors.append("%s: no such file" % where)
                elif frag and frag not in anchors(dest):
                    errors.append("%s: no such anchor" % where)


def check_foreign(errors):
    paths = []
    for item in FOREIGN_SCOPE:
        full = os.path.join(ROOT, item)
        if os.path.isdir(full):
            for base, dirs, files in os.walk(full):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                paths.extend(os.path.join(base, f) for f in sorted(files))
        elif os.path.exists(full):
            paths.append(full)
    for path in paths:
        try:
            text = read(path)
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if FOREIGN.search(line):
                errors.append("%s:%d: cites material outside the repository; point at "
                              "doc/ or HACKING.md instead" % (rel(path), n))


def main():
    errors = []
    notes = []
    readme = os.path.join(ROOT, "README.md")
    doc = os.path.join(ROOT, "doc")
    size = os.path.getsize(readme)
    if size > README_MAX:
        errors.append("README.md: %d bytes, more than %d: move detail into doc/"
                      % (size, README_MAX))
    chapters = sorted(os.path.join(doc, f) for f in os.listdir(doc) if f.endswith(".md"))
    installed = set(chapters) | {readme, os.path.join(ROOT, "LICENSE")}
    check_links(readme, lambda p: p in installed, errors)
    check_links(os.path.join(ROOT, "HACKING.md"), lambda p: True, errors)
    for path in chapters:
        check_links(path, lambda p: p in installed, errors)
    index = os.path.join(doc, "index.md")
    if not os.path.exists(index):
        errors.append("doc/index.md is missing")
    else:
        listed = set(os.path.normpath(os.path.join(doc, t.partition("#")[0]))
                     for t in _LINK.findall(prose(read(index))))
        for path in chapters:
            if path != index and path not in listed:
                errors.append("%s is not listed in doc/index.md" % rel(path))
    check_citations(errors, notes)
    check_foreign(errors)
    for n in notes:
        print("docs: note: " + n)
    for e in errors:
        print("docs: " + e, file=sys.stderr)
    if errors:
        return 1
    print("docs: README.md %d bytes, %d chapters, links and anchors OK" % (size, len(chapters)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
