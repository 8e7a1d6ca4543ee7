# SPDX-License-Identifier: AGPL-3.0-or-later
"""INI configuration helpers shared by the three programs.

Every error a user can make in a config file becomes one ConfigError whose
message names the file, the section and the key. Readers declare the keys they
know; anything else in a section is an error (a typo must not be ignored).
"""

import configparser
import difflib
import os
import re


class ConfigError(Exception):
    """A configuration problem, with file/section/key in its message."""

    def __init__(self, message, path=None, section=None, key=None):
        where = []
        if path:
            where.append(str(path))
        if section is not None:
            where.append("[%s]" % section)
        if key is not None:
            where.append(key)
        self.path, self.section, self.key = path, section, key
        self.reason = message
        Exception.__init__(self, "%s: %s" % (" ".join(where), message) if where else message)


def read_ini(path):
    """Parse the INI file at path; return a ConfigParser. Raise ConfigError."""
    cp = configparser.ConfigParser(interpolation=None, strict=True,
                                   inline_comment_prefixes=(";", "#"),
                                   comment_prefixes=(";", "#"),
                                   empty_lines_in_values=False,
                                   default_section="\x00no-default")
    cp.optionxform = str  # keys are case-sensitive, as documented
    try:
        with open(path, "r", encoding="utf-8") as f:
            cp.read_file(f, source=str(path))
    except OSError as e:
        raise ConfigError("cannot read config file: %s" % (e.strerror or e), path)
    except UnicodeDecodeError as e:
        raise ConfigError("not UTF-8 text: %s" % e, path)
    except configparser.DuplicateSectionError as e:
        raise ConfigError("line %s: duplicate section [%s]" % (e.lineno, e.section), path)
    except configparser.DuplicateOptionError as e:
        raise ConfigError("line %s: duplicate key" % e.lineno, path, e.section, e.option)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError("line %s: key outside of any [section]" % e.lineno, path)
    except configparser.ParsingError as e:
        lines = ", ".join(str(n) for n, _ in e.errors)
        raise ConfigError("cannot parse line(s) %s" % lines, path)
    return cp


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text, allow_off=False):
    """Return a byte count for '123', '16K', '16M', '1G', '2T' (binary units).

    With allow_off, '0', 'off' and 'no' return 0 (meaning disabled).
    """
    t = text.strip()
    if allow_off and t.lower() in ("off", "no", "none", "0"):
        return 0
    m = _SIZE_RE.match(t)
    if not m:
        raise ValueError("not a size (examples: 4096, 16K, 16M, 1G): %r" % text)
    return int(m.group(1)) * _SIZE_MULT[m.group(2).lower()]


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_MULT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text, default_unit="s"):
    """Return seconds (float) for '10', '2.5s', '5m', '12h', '120d', '2w'."""
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError("not a duration (examples: 30s, 5m, 12h, 120d, 2w): %r" % text)
    return float(m.group(1)) * _DURATION_MULT[m.group(2) or default_unit]


_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def parse_bool(text):
    """Return True/False for yes/no, true/false, on/off, 1/0."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected yes or no, got %r" % text)


def parse_int(text, lo=None, hi=None):
    """Return an integer within [lo, hi] (either bound may be None)."""
    try:
        v = int(text.strip(), 10)
    except ValueError:
        raise ValueError("not an integer: %r" % text)
    if lo is not None and v < lo:
        raise ValueError("%d is below the minimum %d" % (v, lo))
    if hi is not None and v > hi:
        raise ValueError("%d is above the maximum %d" % (v, hi))
    return v


def parse_octal_mode(text):
    """Return a file mode from an octal string such as '0440'."""
    t = text.strip()
    if not re.match(r"^0?[0-7]{1,4}$", t):
        raise ValueError("not an octal file mode (example: 0440): %r" % text)
    return int(t, 8)


def parse_port(text):
    """Return a TCP/UDP port number 1..65535."""
    return parse_int(text, 1, 65535)


def parse_host_port(text, default_host="127.0.0.1"):
    """Return (host, port) from 'HOST:PORT', '[v6]:PORT' or 'PORT'."""
    t = text.strip()
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", t)
    if m:
        return m.group(1), parse_port(m.group(2))
    if t.isdigit():
        return default_host, parse_port(t)
    host, sep, port = t.rpartition(":")
    if not sep or not host or ":" in host:
        raise ValueError("expected HOST:PORT (IPv6 as [ADDR]:PORT), got %r" % text)
    return host, parse_port(port)


_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def check_safe_name(name):
    """Raise ValueError unless name is safe as one file-name component."""
    if not _SAFE_NAME_RE.match(name) or name in (".", ".."):
        raise ValueError("%r is not a safe name: use 1-64 characters from "
                         "A-Z a-z 0-9 . _ + -, starting with a letter or digit" % name)
    return name


class Section(object):
    """One INI section read with declared keys; unknown keys are errors.

    Use get(key, parse, default) for each known key, then finish().
    """

    def __init__(self, cp, name, path):
        self.name = name
        self.path = path
        self._items = dict(cp.items(name)) if cp is not None and cp.has_section(name) else {}
        self._known = set()

    def has(self, key):
        return key in self._items

    def keys(self):
        """Return the keys the section sets, sorted (known or not)."""
        return sorted(self._items)

    def sets_any(self, prefix):
        """Return True if the section sets a key starting with prefix."""
        return any(k.startswith(prefix) for k in self._items)

    def raw(self, key):
        self._known.add(key)
        return self._items.get(key)

    def get(self, key, parse=None, default=None):
        """Return the parsed value of key, or default when absent or empty."""
        self._known.add(key)
        text = self._items.get(key)
        if text is None or text.strip() == "":
            return default
        if "\n" in text.strip():
            # configparser joins an indented next line to this value.
            raise self.error(key, "the value continues on an indented line (%r); "
                             "keys must start at the beginning of a line" % text.strip())
        if parse is None:
            return text.strip()
        try:
            return parse(text.strip())
        except ValueError as e:
            raise self.error(key, str(e))

    def error(self, key, message):
        return ConfigError(message, self.path, self.name, key)

    def finish(self):
        """Raise ConfigError for the first key that no get() asked for."""
        for key in sorted(self._items):
            if key not in self._known:
                raise ConfigError(unknown_key_message(key, self._known),
                                  self.path, self.name, key)


# Beyond this many known keys an unknown one names only the likely ones: a line
# listing thirty keys hides the one the user meant.
LIST_KNOWN_MAX = 8


def suggest(word, choices):
    """Return the choices that look like a misspelling of word, best first."""
    choices = sorted(choices)
    found = difflib.get_close_matches(word, choices, n=3, cutoff=0.75)
    if not found:
        low = word.lower().replace("-", "_")
        found = [c for c in choices if c.lower() == low]
    if not found and len(word) >= 4:
        # a part of the key: 'rotate' for rotate_localtime
        low = word.lower().replace("-", "_")
        found = [c for c in choices if low in c.lower()][:3]
    return found


def unknown_key_message(key, known):
    """'unknown key; did you mean max_file_size?' (or the short list of keys)."""
    likely = suggest(key, known)
    if likely:
        return "unknown key; did you mean %s?" % " or ".join(likely)
    if len(known) <= LIST_KNOWN_MAX:
        return "unknown key (known here: %s)" % ", ".join(sorted(known))
    return "unknown key (not one of the %d keys of this section; the manual's key " \
        "table lists them)" % len(known)


def resolve_path(base_dir, value):
    """Return value as an absolute path, relative paths taken from base_dir."""
    if value is None:
        return None
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
