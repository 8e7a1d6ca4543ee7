#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Generate the man pages in man/ from the manual and the programs' argparse.

One source for the manual and the pages: the options come from each program's
argument parser (captured by calling its parse_args() with ArgumentParser
patched, so nothing in the programs changes for this), the configuration keys
from the key tables of doc/*.md (the tables tests/ops/test_contrib.py ties to
the code's keys both ways), the description, exit status and signals from the
chapters' own text. A key documented later appears in osmo-pcap.ini(5) at the
next `make`; `make check` fails while the committed pages are stale.

Pages: osmo-pcap-server(8), osmo-pcap-client(8), osmo-pcap-clean(8),
osmo-pcap-extcap(1) and osmo-pcap.ini(5). The output is deterministic (no
date): same sources, same bytes. Installed paths inside the pages are those of
`make install` with the default PREFIX; mk/ops.mk rewrites them like the units.

Usage: manpages.py [--check] [--out-dir DIR]
"""

import argparse
import importlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bundle  # noqa: E402  (tools/bundle.py: ABOUT, the programs' purpose)

DOC = os.path.join(ROOT, "doc")
MANDIR = "man"
CONFDIR = "/etc/osmo-pcap"
DOCDIR = "/usr/local/share/doc/osmo-pcap"   # mk/ops.mk DOCDIR with the default PREFIX

# program -> (page name, section, main module, chapter of the manual)
PAGES = {
    "server": ("osmo-pcap-server", 8, "osmo_pcap.server.main", "server.md"),
    "client": ("osmo-pcap-client", 8, "osmo_pcap.client.main", "client.md"),
    "clean": ("osmo-pcap-clean", 8, "osmo_pcap.clean.main", "clean.md"),
    "extcap": ("osmo-pcap-extcap", 1, "osmo_pcap.extcap.main", "wireshark.md"),
}
INI_PAGE = ("osmo-pcap.ini", 5)
# chapter -> the programs whose keys its tables describe (None: "Client" in the
# heading means the client, else the server); the same map as tests/ops/test_contrib.py
DOC_INI = {"server.md": ("server",), "hooks.md": ("server",), "client.md": ("client",),
           "clean.md": ("clean",), "operations.md": ("server", "client"), "tls.md": None,
           "wireshark.md": ("extcap",)}
DOC_DEFAULT_SECTION = {"hooks.md": "server"}
# the order of the keys in osmo-pcap.ini(5): each program's own chapter first
CHAPTER_ORDER = ("server.md", "client.md", "clean.md", "hooks.md", "tls.md", "operations.md",
                 "wireshark.md")
ORDER = ("server", "client", "clean", "extcap")
TITLES = {"server": "osmo-pcap-server.ini", "client": "osmo-pcap-client.ini",
          "clean": "osmo-pcap-clean.ini", "extcap": "osmo-pcap-extcap.ini"}


# ------------------------------------------------------------------ sources
class _Captured(Exception):
    def __init__(self, parser):
        Exception.__init__(self)
        self.parser = parser


def parser_of(module_name):
    """Return the ArgumentParser that module.parse_args() builds."""
    mod = importlib.import_module(module_name)
    saved = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args)

    def grab(self, args=None, namespace=None):
        raise _Captured(self)
    argparse.ArgumentParser.parse_args = grab
    argparse.ArgumentParser.parse_known_args = grab
    try:
        mod.parse_args([])
    except _Captured as c:
        if hasattr(c.parser, "color"):
            c.parser.color = False      # Python 3.14+: no ANSI colours from a terminal
        return c.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    raise SystemExit("manpages: %s.parse_args() built no parser" % module_name)


def read_doc(name):
    with open(os.path.join(DOC, name), encoding="utf-8") as f:
        return f.read()


def section_kind(name):
    """[client bts1] -> 'client NAME'; [server] -> 'server'."""
    word = name.split()[0]
    return word + " NAME" if " " in name.strip() else word


def key_tables():
    """Return [(program, section, key, default or None, meaning, chapter)] in order."""
    out = []
    for chapter in sorted(DOC_INI, key=lambda c: (CHAPTER_ORDER.index(c)
                                                 if c in CHAPTER_ORDER else 99, c)):
        programs = DOC_INI[chapter]
        section = DOC_DEFAULT_SECTION.get(chapter)
        heading = ""
        header = None
        for line in read_doc(chapter).splitlines():
            if line.startswith("#"):
                heading = line
            m = re.match(r"^(#+ .*|)`\[([^\]]+)\]`", line) or re.search(r"`\[([^\]]+)\]`$", line)
            if m and (line.startswith("#") or line.startswith("`")):
                section = m.groups()[-1]
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
                continue
            if header[0] != "key" or set(line) <= set("|-: "):
                continue
            default = cells[header.index("default")] if "default" in header else ""
            col = [i for i, h in enumerate(header) if h.startswith("meaning")]
            col = col[0] if col else [i for i, h in enumerate(header) if h == "values"][0]
            progs = programs or (("client",) if "Client" in heading else ("server",))
            for key in re.findall(r"`([a-zA-Z_]+)`", cells[0]):
                for prog in progs:
                    out.append((prog, section_kind(section), key, default, cells[col], chapter))
    return out


def paragraph_after(text, start_pattern):
    """Return the Markdown paragraph that starts with a line matching start_pattern."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(start_pattern, line):
            para = []
            for l in lines[i:]:
                if not l.strip():
                    break
                para.append(l)
            return " ".join(para)
    return None


def first_paragraph(text):
    """Return the first paragraph after the chapter's title."""
    lines = text.splitlines()
    para, started = [], False
    for line in lines:
        if line.startswith("# "):
            started = True
            continue
        if not started or line.startswith("<!--"):
            continue
        if not line.strip():
            if para:
                break
            continue
        para.append(line)
    return " ".join(para)


def section_text(text, heading):
    """Return the paragraphs under a '## heading' up to the next heading."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("#"):
            if inside:
                break
            inside = line.strip("# ").strip() == heading
            continue
        if inside:
            out.append(line)
    return "\n".join(out).strip()


def signal_rows(program):
    """Return [(signal, meaning)] of the operations chapter's signal table."""
    text = section_text(read_doc("operations.md"), "Signals")
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        if program in header:
            rows.append((cells[0], cells[header.index(program)]))
    return rows


# ------------------------------------------------------------------ roff
def esc(text):
    """Escape plain text for roff: backslashes, and non-ASCII as \\[uXXXX]."""
    text = text.replace("\\", "\\e")
    return "".join(c if ord(c) < 128 else "\\[u%04X]" % ord(c) for c in text)


def inline(md):
    """Convert one Markdown line (code, links, emphasis) to roff text."""
    out = []
    pos = 0
    for m in re.finditer(r"`([^`]*)`|\[([^\]]+)\]\([^)]*\)|\*\*([^*]+)\*\*", md):
        out.append(esc(md[pos:m.start()]))
        if m.group(1) is not None:
            out.append("\\fB%s\\fR" % esc(m.group(1)).replace("-", "\\-"))
        elif m.group(2) is not None:
            out.append(inline(m.group(2)))
        else:
            out.append("\\fB%s\\fR" % esc(m.group(3)))
        pos = m.end()
    out.append(esc(md[pos:]))
    text = "".join(out)
    return re.sub(r"\s+", " ", text).strip()


def path(p):
    """An installed path in italics, hyphens unescaped so that `make install` can
    rewrite it for its PREFIX and CONFDIR (mk/ops.mk) like the units' paths."""
    return "\\fI%s\\fR" % p


def line(text):
    """A text line that roff will not take for a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def para(md):
    return [".PP", line(inline(md))]


def markdown_block(md):
    """Paragraphs and bullet lists of Markdown as roff lines (no tables, no code)."""
    out = []
    items, current = [], []
    for raw in md.splitlines() + [""]:
        if raw.startswith("- ") or (raw.startswith("  ") and items is not None and current
                                    and current[0].startswith("- ")):
            if raw.startswith("- "):
                if current:
                    items.append(" ".join(current))
                current = [raw]
            else:
                current.append(raw.strip())
            continue
        if not raw.strip() or raw.startswith("|") or raw.startswith("```"):
            if current:
                items.append(" ".join(current))
                current = []
            for item in items:
                if item.startswith("- "):
                    out += [".IP \\(bu 2", line(inline(item[2:]))]
                else:
                    out += para(item)
            items = []
            continue
        current.append(raw.strip())
    return out


def option_lines(parser):
    """OPTIONS: every option of the parser with its metavar and help, by group."""
    out = []
    groups = [(g.title, g._group_actions) for g in parser._action_groups if g._group_actions]
    for title, actions in groups:
        if title not in ("options", "optional arguments"):
            out += [".SS \"%s\"" % esc(title[0].upper() + title[1:])]
        for action in actions:
            names = []
            for opt in action.option_strings:
                name = "\\fB%s\\fR" % opt.replace("-", "\\-")
                if action.nargs == "?" and action.metavar:
                    name += " [\\fI%s\\fR]" % esc(action.metavar)
                elif action.metavar:
                    name += " \\fI%s\\fR" % esc(action.metavar)
                names.append(name)
            help_text = (action.help or "") % dict(vars(action), prog=parser.prog) \
                if action.help else ""
            out += [".TP", ", ".join(names), line(esc(help_text[0].upper() + help_text[1:]
                                                      if help_text else ""))]
    return out


def header(name, section, title):
    from osmo_pcap import __version__
    return ['.\\" SPDX-License-Identifier: AGPL-3.0-or-later',
            '.\\" GENERATED by tools/manpages.py from doc/*.md and the programs\' --help:',
            '.\\" edit those and run `make`.',
            '.TH "%s" "%d" "" "osmo-pcap for Python %s" "%s"' % (name.upper(), section,
                                                                 __version__, title)]


def program_page(program):
    name, section, module, chapter = PAGES[program]
    parser = parser_of(module)
    about = bundle.ABOUT[program]
    text = read_doc(chapter)
    script = bundle.PROGRAMS[program][0]
    out = header(name, section, "osmo-pcap" if section == 1 else "System Administration")
    out += [".SH NAME", "%s \\- %s" % (name, esc(about["purpose"].rstrip(".")[0].lower()
                                                 + about["purpose"].rstrip(".")[1:]))]
    usage = re.sub(r"\x1b\[[0-9;]*m", "", parser.format_usage()).strip()
    usage = re.sub(r"^usage:\s*\S+\s*", "", usage)
    out += [".SH SYNOPSIS", ".B %s" % name, esc(" ".join(usage.split())).replace("-", "\\-")]
    out += [".SH DESCRIPTION"] + para(first_paragraph(text))
    out += para("The program is also a single file, `%s`: copied to a host, it runs with any "
                "CPython 3.6 or newer and nothing else installed." % script)
    out += [".SH OPTIONS"] + option_lines(parser)
    ini = "%s/osmo-pcap-%s.ini" % (CONFDIR, program)
    out += [".SH CONFIGURATION"]
    if program == "extcap":
        out += [".PP", line(inline("Where the tap is and how to reach it, in the first existing "
                                   "file of: the one named by `$OSMO_PCAP_EXTCAP_CONFIG`, "
                                   "`~/.config/osmo-pcap/extcap.ini` and ") + " " + path(ini)
                            + inline("; every key is described in osmo-pcap.ini(5). The "
                                     "capture dialog of Wireshark passes the same settings "
                                     "as options."))]
    else:
        out += [".PP", line("An INI file, " + path(ini) + inline(
            " for the packaged services; every key with its default is described in "
            "osmo-pcap.ini(5), and `--check-config` validates a file."))]
    exit_text = paragraph_after(text, r"^Exit status:")
    if exit_text is None:
        exit_text = section_text(text, "Exit status")
    if exit_text:
        exit_text = re.sub(r"^Exit status:\s*", "", exit_text)
        out += [".SH EXIT STATUS"] + markdown_block(exit_text)
    sigs = signal_rows(program)
    if sigs:
        out += [".SH SIGNALS"]
        for sig, meaning in sigs:
            out += [".TP", "\\fB%s\\fR" % esc(sig), line(inline(meaning))]
    out += [".SH FILES", ".TP", path(ini), "The configuration (the example "
            "installed with the program lists every key with its default)."]
    out += [".TP", path("%s/%s" % (DOCDIR, chapter)),
            "The chapter of the manual about %s; %s lists all chapters."
            % (esc(about["title"]), path(DOCDIR + "/index.md"))]
    see = ["osmo-pcap.ini (5)"] + ["%s (%d)" % PAGES[p][:2] for p in ORDER if p != program]
    if program == "extcap":
        see += ["tshark (1)", "wireshark (1)", "extcap (4)"]
    else:
        see += ["systemd.service (5)"]
    out += [".SH SEE ALSO", ", ".join("\\fB%s\\fR%s" % (s.split(" ")[0].replace("-", "\\-"),
                                                      s.split(" ")[1]) for s in see)]
    return "\n".join(out) + "\n"


def ini_page():
    name, section = INI_PAGE
    rows = key_tables()
    out = header(name, section, "File Formats")
    out += [".SH NAME", "osmo-pcap.ini \\- configuration files of the osmo-pcap programs"]
    out += [".SH SYNOPSIS"]
    for i, p in enumerate(ORDER):
        out += ([".br"] if i else []) + [path("%s/%s" % (CONFDIR, TITLES[p]))]
    out += [".SH DESCRIPTION"]
    out += para("Each program reads one INI file (`-c FILE`). Sections are in brackets; a "
                "line `key = value` sets a key; lines and line ends starting with `;` or `#` "
                "are comments. Keys are case-sensitive. A key a section does not know, a "
                "value that does not parse and a missing required key are errors that name "
                "the file, the section and the key; `--check-config` reports them without "
                "starting the program. Relative paths are taken from the directory of the "
                "file.")
    out += para("Sizes take `K`, `M`, `G`, `T` (binary: 1K = 1024). Durations take `ms`, `s`, "
                "`m`, `h`, `d`, `w` (a plain number is seconds). Booleans are `yes`/`no`, "
                "`on`/`off`, `true`/`false`, `1`/`0`. Where the default says off, the key "
                "is unset by default and setting it switches a feature on.")
    out += [".PP", inline("The example files (`contrib/osmo-pcap-*.ini` in the source tree, "
                          "installed in") + " " + path(CONFDIR) + inline(") list every key, "
                                                                        "commented, with its "
                                                                        "default.")]
    shared = {}
    for prog, sect, key, default, meaning, chapter in rows:
        shared.setdefault((sect, key, default, meaning), []).append(prog)
    done = set()
    for prog in ORDER:
        out += [".SH \"%s\"" % esc(TITLES[prog].upper().replace(".INI", " (%s)" % TITLES[prog]))]
        out += para("The file of %s (`%s`), described in %s." % (
            bundle.ABOUT[prog]["title"], PAGES[prog][0], "the chapters of the manual"))
        sections = []
        for p, sect, key, default, meaning, chapter in rows:
            if p == prog and sect not in sections:
                sections.append(sect)
        for sect in sections:
            keys = [r for r in rows if r[0] == prog and r[1] == sect]
            progs = shared[keys[0][1:5]]
            if len(progs) > 1:
                if sect in done:
                    out += [".SS \"[%s]\"" % esc(sect)]
                    out += para("The same keys as in %s above." % TITLES[progs[0]])
                    continue
                done.add(sect)
            out += [".SS \"[%s]\"" % esc(sect)]
            if prog == "server" and sect == "client NAME":
                out += para("One section per client; NAME (1-64 characters from `A-Z a-z 0-9 "
                            ". _ + -`, starting with a letter or digit) appears in the trace "
                            "file names.")
            seen = set()
            for _, _, key, default, meaning, chapter in keys:
                if key in seen:
                    continue
                seen.add(key)
                d = inline(default) if default else "none"
                out += [".TP", "\\fB%s\\fR (default: %s)" % (esc(key).replace("-", "\\-"), d),
                        line(inline(meaning))]
        if prog == "clean":
            out += [".SS \"[client NAME]\""]
            out += para("Overrides for one client (NAME as in the trace file names): "
                        "`max_age`, `max_files`, `compress_after`, `compress`, "
                        "`compress_level`, and `max_bytes`, which here is a budget for that "
                        "client alone. Keys not set are taken from `[clean]`; `paths`, "
                        "`min_free` and `lock_file` are errors here.")
    out += [".SH FILES"]
    for prog in ORDER:
        out += [".TP", path("%s/%s" % (CONFDIR, TITLES[prog])),
                "The configuration of \\fB%s\\fR(%d)." % (PAGES[prog][0].replace("-", "\\-"),
                                                          PAGES[prog][1])]
    out += [".SH SEE ALSO", ", ".join("\\fB%s\\fR(%d)" % (PAGES[p][0].replace("-", "\\-"),
                                                        PAGES[p][1]) for p in ORDER)]
    out += [".PP", "The manual in " + path(DOCDIR + "/") + inline(
        ": `server.md`, `client.md`, `clean.md`, `hooks.md`, `tls.md`, `operations.md`, "
        "`wireshark.md`.")]
    return "\n".join(out) + "\n"


def pages():
    """Return {file name: text} of every page."""
    out = {}
    for prog in ORDER:
        name, section = PAGES[prog][:2]
        out["%s.%d" % (name, section)] = program_page(prog)
    out["%s.%d" % INI_PAGE] = ini_page()
    return out


def main():
    ap = argparse.ArgumentParser(description="Generate the man pages in man/.")
    ap.add_argument("--check", action="store_true",
                    help="do not write; fail if a committed page differs from a fresh build")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, MANDIR))
    args = ap.parse_args()
    stale = []
    wanted = pages()
    if not args.check:
        os.makedirs(args.out_dir, exist_ok=True)
    for name, text in sorted(wanted.items()):
        path = os.path.join(args.out_dir, name)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old == text:
            continue
        if args.check:
            stale.append(name)
            continue
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        print("manpages: wrote %s/%s" % (MANDIR, name))
    if os.path.isdir(args.out_dir):
        extra = sorted(set(n for n in os.listdir(args.out_dir) if re.match(r".*\.\d$", n))
                       - set(wanted))
        if extra:
            stale += ["%s (no longer generated: remove it)" % n for n in extra]
    if stale:
        print("manpages: stale page(s): %s -- run `make` and commit them" % " ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
