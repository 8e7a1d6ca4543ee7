# SPDX-License-Identifier: AGPL-3.0-or-later
"""Translate an upstream osmo-pcap VTY config file into our INI (--import-vty).

The VTY dialect: `!` comment lines, nodes scoped by indentation (`server`,
`client`, `pcap-store-connection NAME`, libosmocore's `log ...`, `line vty`,
`stats ...`), `no ...` forms, and keywords that may be abbreviated to any
unique prefix. Commands are those of doc/migration.md#server-commands and #client-commands.
The INI goes to stdout; every line that is not mapped one to one is reported
on stderr with its line number, so an operator can review the few that
matter.
"""

import configparser
import os
import re
import shutil
import sys
import tempfile
from collections import OrderedDict

from osmo_pcap import rotation
from osmo_pcap.ini import check_safe_name

# ------------------------------------------------------------ command grammar
# Pattern tokens: a plain word is a keyword (abbreviable); (a|b) a choice of
# keywords; A.B.C.D an IPv4 address; <lo-hi> an integer; an UPPERCASE word any
# word; .WORD the rest of the line. Each command names its handler method.

LOG_NODE_CMDS = [
    ("logging level WORD WORD", "log_level"),
    ("logging timestamp (0|1)", "log_timestamp"),
    ("logging filter all (0|1)", "log_filter_all"),
    ("logging color .REST", "log_format"),
    ("logging print .REST", "log_format"),
    ("logging set-log-mask .REST", "log_format"),
]

COMMON_CONFIG_CMDS = [
    ("log stderr", "log_target_stderr"),
    ("log stderr blocking-io", "log_target_stderr"),
    ("log file .PATH", "log_target_file"),
    ("log syslog WORD", "log_target_syslog"),
    ("log systemd-journal", "log_target_journal"),
    ("log systemd-journal raw", "log_target_journal"),
    ("log gsmtap", "log_target_other"),
    ("log gsmtap HOST", "log_target_other"),
    ("log alarms <2-32700>", "log_target_other"),
    ("line vty", "line_vty"),
    ("stats interval <0-65535>", "stats_interval"),
    ("stats reporter (statsd|log)", "stats_reporter"),
    ("stats reporter (statsd|log) NAME", "stats_reporter"),
    ("stats-tcp .REST", "stats_line"),
]

SERVER_CONFIG_CMDS = [("server", "enter_server"), ("client", "wrong_kind")] + COMMON_CONFIG_CMDS
CLIENT_CONFIG_CMDS = [("client", "enter_client"), ("server", "wrong_kind")] + COMMON_CONFIG_CMDS

UNITS = "(second|minute|hour|day|month|year)"
SERVER_NODE_CMDS = [
    ("base-path PATH", "s_base_path"),
    ("completed-path PATH", "s_completed_path"),
    ("no completed-path", "s_no_completed_path"),
    ("file-permission-mask MODE", "s_file_mask"),
    ("file-write-queue-max-length <0-4294967295>", "s_write_queue"),
    ("server ip A.B.C.D", "s_listen"),
    ("server port <1-65535>", "s_port"),
    ("server max-snaplen <1-262144>", "s_max_snaplen_old"),
    ("rotate-localtime " + UNITS, "s_rotate"),
    ("rotate-localtime " + UNITS + " mod <1-4294967295>", "s_rotate_mod"),
    ("no rotate-localtime", "s_no_rotate"),
    ("max-file-size NR", "s_max_file_size"),
    ("no max-file-size", "s_no_max_file_size"),
    ("max-snaplen <1-262144>", "s_max_snaplen"),
    ("zeromq-publisher ADDR <1-65535>", "s_zmq"),
    ("no zeromq-publisher", "s_no_zmq"),
    ("enable tls", "s_enable_tls"),
    ("disable tls", "s_disable_tls"),
    ("tls log-level <0-255>", "tls_log_level"),
    ("tls allow-auth anonymous", "s_tls_anon"),
    ("no tls allow-auth anonymous", "s_tls_no_anon"),
    ("tls allow-auth x509", "s_tls_x509"),
    ("no tls allow-auth x509", "s_tls_no_x509"),
    ("tls priority STR", "tls_priority"),
    ("no tls priority", "tls_no_priority"),
    ("tls capath .PATH", "s_tls_ca"),
    ("no tls capath", "s_no_tls_ca"),
    ("tls crlfile .PATH", "s_tls_crl"),
    ("no tls crlfile", "s_no_tls_crl"),
    ("tls server-cert .PATH", "s_tls_cert"),
    ("no tls server-cert", "s_no_tls_cert"),
    ("tls server-key .PATH", "s_tls_key"),
    ("no tls server-key", "s_no_tls_key"),
    ("tls dh pkcs .FILE", "s_tls_dh"),
    ("tls dh pkcs3 .FILE", "s_tls_dh"),
    ("tls dh generate", "s_tls_dh"),
    ("client NAME A.B.C.D", "s_client"),
    ("client NAME A.B.C.D (store|no-store)", "s_client"),
    ("client NAME A.B.C.D (store|no-store) (tls)", "s_client"),
    ("client NAME A.B.C.D tls", "s_client_tls_only"),
    ("no client NAME", "s_no_client"),
]

# (C) commands: in the client node they set the default connection.
CONN_CMDS = [
    ("server ip A.B.C.D", "c_host"),
    ("server port <0-65535>", "c_port"),
    ("source ip A.B.C.D", "c_source_ip"),
    ("protocol (osmo-pcap|ipip)", "c_protocol"),
    ("enable tls", "c_enable_tls"),
    ("disable tls", "c_disable_tls"),
    ("tls hostname .NAME", "c_tls_hostname"),
    ("no tls hostname", "c_no_tls_hostname"),
    ("tls verify-cert", "c_tls_verify"),
    ("no tls verify-cert", "c_no_tls_verify"),
    ("tls capath .PATH", "c_tls_ca"),
    ("no tls capath", "c_no_tls_ca"),
    ("tls client-cert .PATH", "c_tls_cert"),
    ("no tls client-cert", "c_no_tls_cert"),
    ("tls client-key .PATH", "c_tls_key"),
    ("no tls client-key", "c_no_tls_key"),
    ("tls priority STR", "tls_priority"),
    ("no tls priority", "tls_no_priority"),
    ("tls log-level <0-255>", "tls_log_level"),
]

CLIENT_NODE_CMDS = CONN_CMDS + [
    ("pcap file-format (pcap|pcapng)", "c_file_format"),
    ("pcap device NAME", "c_device"),
    ("no pcap device NAME", "c_no_device"),
    ("pcap snaplen <1-262144>", "c_snaplen"),
    ("pcap filter .NAME", "c_filter"),
    ("pcap detect-loop (0|1)", "c_detect_loop"),
    ("pcap add-filter gprs", "c_gprs"),
    ("no pcap add-filter gprs", "c_no_gprs"),
    ("wqueue max-length <1-4294967295>", "c_wqueue"),
    ("pcap-store-connection .NAME", "enter_conn"),
    ("no pcap-store-connection .NAME", "c_no_conn"),
]

STORE_NODE_CMDS = CONN_CMDS + [
    ("connect", "c_connect"),
    ("disconnect", "c_disconnect"),
    ("wqueue max-length <1-4294967295>", "c_wqueue_store"),
]

LOG_LEVELS = {"debug": "debug", "info": "info", "notice": "notice", "error": "error",
              "fatal": "critical", "everything": "debug"}
VERBOSITY = ["debug", "info", "notice", "error", "critical"]
OUR_CATEGORIES = ("pcap", "client", "server", "vty", "tls")
SERVER_KEYS = ("listen", "port", "base_path", "completed_path", "file_permission_mask",
               "max_snaplen", "max_file_size", "rotate_localtime", "zmq_publish",
               "tls_cert", "tls_key", "tls_ca", "tls_crl", "tls_ciphers")
CLIENT_KEYS = ("devices", "filter", "detect_loop", "gprs_filter", "snaplen", "file_format")
CONN_KEYS = ("host", "port", "source_ip", "protocol", "queue_size", "tls", "tls_ca",
             "tls_verify", "tls_hostname", "tls_cert", "tls_key", "tls_ciphers", "enabled")
LOG_KEYS = ("level", "target", "file", "timestamps")
RECORD_OVERHEAD = 20  # bytes per queued record besides its data (frame + record header)
MIN_QUEUE_SIZE = 65536  # clientconfig: one largest frame must fit
DEFAULT_SNAPLEN = 9000
PROGRAMS = {"server": "osmo_pcap_server.py", "client": "osmo_pcap_client.py"}


def _compile(cmds):
    return [(pattern.split(), handler) for pattern, handler in cmds]


NODES = {
    ("server", "config"): _compile(SERVER_CONFIG_CMDS),
    ("client", "config"): _compile(CLIENT_CONFIG_CMDS),
    ("server", "server"): _compile(SERVER_NODE_CMDS),
    ("client", "client"): _compile(CLIENT_NODE_CMDS),
    ("client", "store"): _compile(STORE_NODE_CMDS),
    ("server", "log"): _compile(LOG_NODE_CMDS),
    ("client", "log"): _compile(LOG_NODE_CMDS),
}

_IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def _is_ipv4(word):
    m = _IPV4_RE.match(word)
    return bool(m) and all(int(g) <= 255 for g in m.groups())


def _match_token(tok, word):
    """Return (kind, value) for one word against one pattern token, or None.

    kind: 2 exact keyword, 1 abbreviated keyword, 0 variable.
    """
    if tok.startswith("(") and tok.endswith(")"):
        alts = tok[1:-1].split("|")
        if word in alts:
            return 2, word
        pre = [a for a in alts if a.startswith(word)]
        return (1, pre[0]) if len(pre) == 1 else None
    if tok == "A.B.C.D":
        return (0, word) if _is_ipv4(word) else None
    if tok.startswith("<") and tok.endswith(">"):
        lo, hi = tok[1:-1].split("-")
        if not word.isdigit() or not int(lo) <= int(word) <= int(hi):
            return None
        return 0, word
    if tok.isupper() or tok.startswith("."):
        return 0, word
    if word == tok:
        return 2, None
    if tok.startswith(word):
        return 1, None
    return None


def match_command(cmds, words):
    """Return ('ok', handler, args) or ('unknown'|'ambiguous'|'incomplete', None, None).

    Like the VTY: a keyword may be any unique prefix; at each position an
    exact keyword beats abbreviations; `.REST` takes the rest of the line.
    """
    found = []
    incomplete = False
    for toks, handler in cmds:
        m = _match_pattern(toks, words)
        if m == "incomplete":
            incomplete = True
        elif m is not None:
            found.append((m[0], m[1], handler))
    for i in range(len(words)):
        if any(i < len(k) and k[i] == 2 for k, _, _ in found):
            found = [f for f in found if not (i < len(f[0]) and f[0][i] == 1)]
    if len(found) == 1:
        return "ok", found[0][2], found[0][1]
    if found:
        return "ambiguous", None, None
    return ("incomplete" if incomplete else "unknown"), None, None


def _match_pattern(toks, words):
    """Return (kinds, args) for a full match, "incomplete", or None."""
    rest = toks[-1].startswith(".")
    if len(words) < len(toks) or (len(words) > len(toks) and not rest):
        if len(words) < len(toks) and all(_match_token(t, w) is not None
                                          for t, w in zip(toks, words)):
            return "incomplete"
        return None
    kinds, args = [], []
    for i, tok in enumerate(toks):
        if tok.startswith("."):
            kinds.append(0)
            args.append(" ".join(words[i:]))
            break
        m = _match_token(tok, words[i])
        if m is None:
            return None
        kinds.append(m[0])
        if m[0] == 0 or tok.startswith("("):
            args.append(m[1])
    return kinds, args


# ------------------------------------------------------------ the importer
class Importer(object):
    """Walk a VTY config, build INI sections, collect messages for stderr."""

    def __init__(self, kind, name="<config>"):
        self.kind = kind
        self.name = name
        self.messages = []
        self.sections = OrderedDict()
        self.comments = {}  # (section, key) -> comment line written above the key
        self.origin = {}  # section -> (line number, text) of the command that opened it
        self.lineno = 0
        self.line = ""
        self.node = "config"
        self.conn = None
        self.server_tls = False
        self.tls_clients = []
        self.snaplen = DEFAULT_SNAPLEN
        self.wqueue = {}
        self.log_all = None
        self.log_cats = []
        self.log_target_line = None
        self.unmapped = 0
        self.wrong = None   # the other program's name when its node was found
        self.entered = False  # the program's own node (server / client) was found

    # ------------------------------------------------ messages and values
    def report(self, what, text):
        """Record a message for the current line; what: unsupported/unknown/note/error."""
        if what != "note":
            self.unmapped += 1
        self.messages.append((self.lineno, "%s:%d: %s: '%s': %s" % (
            self.name, self.lineno, what, self.line.strip(), text)))

    def section(self, name):
        if name not in self.sections:
            self.sections[name] = OrderedDict()
            self.origin.setdefault(name, (self.lineno, self.line))
        return self.sections[name]

    def at(self, name):
        """Point messages at the line that opened section name."""
        self.lineno, self.line = self.origin.get(name, (0, ""))

    def set(self, section, key, value, comment=None):
        value = str(value)
        if re.search(r"(^|\s)[;#]", value):
            self.report("error", "value contains ';' or '#' after a space, which INI reads "
                                 "as a comment; not converted")
            return False
        self.section(section)[key] = value
        if comment:
            self.comments[(section, key)] = comment
        return True

    def unset(self, section, key):
        if section in self.sections:
            self.sections[section].pop(key, None)
        self.comments.pop((section, key), None)

    # ------------------------------------------------ walking the file
    def run(self, text):
        stack = []  # (indent, node)
        for self.lineno, raw in enumerate(text.splitlines(), 1):
            self.line = raw
            body = raw.strip()
            if not body or body.startswith("!") or body.startswith("#"):
                continue
            indent = len(raw) - len(raw.lstrip(" \t"))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            self.node = stack[-1][1] if stack else "config"
            if self.node == "store" and stack:
                self.conn = stack[-1][2]
            words = body.split()
            if words[0] in ("exit", "end", "write", "show"):
                if words[0] in ("write", "show"):
                    self.report("unsupported", "not a configuration command")
                continue
            entered = self.dispatch(words)
            if entered:
                stack.append((indent,) + tuple(entered))
        self.finish()
        return self

    def dispatch(self, words):
        """Handle one command line; return (node[, data]) when it opens a node."""
        if self.node == "ignore":
            return None  # inside a node of the other program, reported once
        if self.node in ("vty", "stats", "otherlog"):
            return self.catch_all(words)
        cmds = NODES[(self.kind, self.node)]
        status, handler, args = match_command(cmds, words)
        if status == "ok":
            return getattr(self, handler)(*args)
        where = {"config": "at the top level", "server": "in the server node",
                 "client": "in the client node", "store": "in a pcap-store-connection node",
                 "log": "in a log node"}[self.node]
        if status == "ambiguous":
            self.report("error", "ambiguous abbreviation %s; spell the keywords out" % where)
        elif status == "incomplete":
            self.report("error", "incomplete command %s" % where)
        else:
            self.report("unknown", "not an osmo-pcap %s command %s" % (self.kind, where))
        return None

    def catch_all(self, words):
        reason = {"vty": "there is no telnet VTY: use --check-config, signals, the log "
                         "and [metrics] instead",
                  "stats": "no statsd/log stats reporter: use [metrics] listen (Prometheus)",
                  "otherlog": "only one log target is supported (see [log])"}[self.node]
        self.report("unsupported", reason)
        return None

    # ------------------------------------------------ top level
    def enter_server(self):
        self.section("server")
        self.entered = True
        return ("server",)

    def enter_client(self):
        self.section("client")
        self.entered = True
        return ("client",)

    def wrong_kind(self):
        other = "client" if self.kind == "server" else "server"
        self.wrong = other
        self.report("error", "this looks like an osmo-pcap-%s configuration: use %s "
                             "--import-vty" % (other, PROGRAMS[other]))
        return ("ignore",)

    def _log_target(self, target, file=None):
        if self.log_target_line is not None:
            self.report("unsupported", "only one log target is supported; the one on "
                                       "line %d is used" % self.log_target_line)
            return ("otherlog",)
        self.log_target_line = self.lineno
        self.set("log", "target", target)
        if file:
            self.set("log", "file", file)
        return ("log",)

    def log_target_stderr(self):
        return self._log_target("stderr")

    def log_target_file(self, path):
        return self._log_target("file", path)

    def log_target_syslog(self, facility):
        if facility != "daemon":
            self.report("note", "syslog facility %s: we log with facility daemon" % facility)
        return self._log_target("syslog")

    def log_target_journal(self):
        self.report("note", "written as target = stderr: under systemd, stderr goes to "
                            "the journal with levels kept")
        return self._log_target("stderr")

    def log_target_other(self, *args):
        self.report("unsupported", "no such log target here (stderr, syslog or file)")
        return ("otherlog",)

    def line_vty(self):
        self.report("unsupported", "there is no telnet VTY: use --check-config, signals, "
                                   "the log and [metrics] instead")
        return ("vty",)

    def stats_line(self, *args):
        self.report("unsupported", "no statsd/log stats reporter: use [metrics] listen "
                                   "(Prometheus)")
        return None

    def stats_interval(self, n):
        # upstream: how often the stats reporters run; here: how often the
        # counters are logged (there is no statsd reporter; [metrics] serves them)
        sec = "server" if self.kind == "server" else "client"
        if n == "0":
            self.set(sec, "stats_interval", "off" if sec == "server" else "0")
        else:
            self.set(sec, "stats_interval", n + "s")
        self.report("note", "written as stats_interval: the counters are logged this often; "
                            "for a statsd-like feed use [metrics] listen (Prometheus)")
        return None

    def stats_reporter(self, *args):
        self.stats_line()
        return ("stats",)

    # ------------------------------------------------ log node
    def log_level(self, category, level):
        if level not in LOG_LEVELS:
            self.report("error", "unknown level %r (debug, info, notice, error, fatal)" % level)
            return None
        if category in ("all", "set-all", "force-all"):
            self.log_all = LOG_LEVELS[level]
        elif category in OUR_CATEGORIES:
            self.log_cats.append((self.lineno, self.line, LOG_LEVELS[level]))
        else:
            self.report("unsupported", "libosmocore category %s has no equivalent here"
                        % category)
        return None

    def log_timestamp(self, on):
        self.set("log", "timestamps", "yes" if on == "1" else "no")

    def log_filter_all(self, on):
        if on == "0":
            self.report("note", "logging disabled by 'logging filter all 0': level = critical")
            self.log_all = "critical"

    def log_format(self, rest):
        self.report("unsupported", "log line layout is fixed (level, message; timestamps "
                                   "per [log] timestamps)")

    # ------------------------------------------------ TLS shared
    def tls_log_level(self, n):
        self.report("unsupported", "no GnuTLS debug level: use [log] level = debug")

    def tls_priority(self, s):
        self.report("unsupported", "GnuTLS priority strings do not translate; set tls_ciphers "
                                   "(OpenSSL cipher list) if you must restrict ciphers")

    def tls_no_priority(self):
        pass

    # ------------------------------------------------ server node
    def s_base_path(self, path):
        self.set("server", "base_path", path)

    def s_completed_path(self, path):
        self.set("server", "completed_path", path)

    def s_no_completed_path(self):
        self.unset("server", "completed_path")

    def s_file_mask(self, mode):
        if not re.match(r"^[0-7]{1,4}$", mode):
            self.report("error", "not an octal mode (example: 0440); not converted")
            return
        value = int(mode, 8)
        if value & ~0o666:
            # The server accepts read and write bits only (doc/server.md#configuration).
            self.report("note", "0%o without its execute, set-user-ID, set-group-ID and "
                        "sticky bits: trace files are data" % value)
            value &= 0o666
        self.set("server", "file_permission_mask", "0%o" % value)

    def s_write_queue(self, n):
        self.report("unsupported", "not needed: the server batches writes and applies TCP "
                                   "back-pressure instead of a message queue")

    def s_listen(self, ip):
        self.set("server", "listen", ip)

    def s_port(self, port):
        self.set("server", "port", port)

    def s_max_snaplen_old(self, n):
        self.report("note", "0.1.0-0.7.0 wrote 'server max-snaplen'; read as max-snaplen")
        self.s_max_snaplen(n)

    def s_rotate(self, unit):
        self.set("server", "rotate_localtime", unit)

    def s_rotate_mod(self, unit, n):
        value = unit if n == "1" else "%s mod %s" % (unit, n)
        try:
            rotation.parse_rotate(value)
        except ValueError as e:
            self.report("error", "%s; not converted" % e)
            return
        self.set("server", "rotate_localtime", value)

    def s_no_rotate(self):
        self.set("server", "rotate_localtime", "off")

    def s_max_file_size(self, nr):
        if not nr.isdigit():
            self.report("error", "not a byte count (upstream read it as 0, a new file per "
                                 "packet); not converted")
            return
        self.set("server", "max_file_size", "off" if int(nr) == 0 else nr)

    def s_no_max_file_size(self):
        self.set("server", "max_file_size", "off")

    def s_max_snaplen(self, n):
        self.set("server", "max_snaplen", n)

    def s_zmq(self, addr, port):
        if addr == "*":
            self.report("note", "'*' written as 0.0.0.0 (all IPv4 addresses)")
            addr = "0.0.0.0"
        elif not _is_ipv4(addr):
            self.report("error", "expected an IPv4 address or *; not converted")
            return
        self.set("server", "zmq_publish", "tcp://%s:%s" % (addr, port))

    def s_no_zmq(self):
        self.unset("server", "zmq_publish")

    def s_enable_tls(self):
        self.server_tls = True

    def s_disable_tls(self):
        self.server_tls = False

    def s_tls_anon(self):
        self.report("unsupported", "no anonymous TLS: the server always presents tls_cert; "
                                   "clients without a CA use tls_verify = no")

    def s_tls_no_anon(self):
        pass

    def s_tls_x509(self):
        pass  # what we always do: present tls_cert/tls_key

    def s_tls_no_x509(self):
        self.report("unsupported", "the server always presents its certificate when TLS "
                                   "is used")

    def s_tls_ca(self, path):
        self.report("unsupported", "upstream never asked clients for certificates; to verify "
                                   "them set tls_ca = %s and tls_client_auth = optional or "
                                   "required in [server]" % path)

    def s_no_tls_ca(self):
        pass

    def s_tls_crl(self, path):
        self.report("unsupported", "only used when clients present certificates: set "
                                   "tls_crl = %s together with tls_ca and tls_client_auth"
                                   % path)

    def s_no_tls_crl(self):
        pass

    def s_tls_cert(self, path):
        self.set("server", "tls_cert", path)

    def s_no_tls_cert(self):
        self.unset("server", "tls_cert")

    def s_tls_key(self, path):
        self.set("server", "tls_key", path)

    def s_no_tls_key(self):
        self.unset("server", "tls_key")

    def s_tls_dh(self, *args):
        self.report("unsupported", "not needed: key exchange uses ECDHE and built-in groups")

    def _client_section(self, name):
        safe = _safe_name(name)
        if safe != name:
            self.report("note", "client name %r is not a safe file-name component; "
                                "written as %r" % (name, safe))
        return "client " + safe

    def s_client(self, name, ip, store="store", *tls):
        sec = self._client_section(name)
        self.sections.pop(sec, None)
        self.set(sec, "ip", ip)
        self.set(sec, "store", "yes" if store == "store" else "no")
        if tls:
            self.tls_clients.append((sec, self.lineno, self.line))

    def s_client_tls_only(self, name, ip):
        self.report("note", "upstream rejects this form (tls without store/no-store); "
                            "read as store with tls")
        self.s_client(name, ip, "store", "tls")

    def s_no_client(self, name):
        self.sections.pop(self._client_section(name), None)

    # ------------------------------------------------ client node
    def _conn(self):
        return self.conn if self.node == "store" else "server default"

    def c_file_format(self, fmt):
        self.set("client", "file_format", fmt)

    def c_device(self, dev):
        devs = self.section("client").get("devices", "").split()
        if dev not in devs:
            devs.append(dev)
        self.set("client", "devices", " ".join(devs))

    def c_no_device(self, dev):
        devs = [d for d in self.section("client").get("devices", "").split() if d != dev]
        if devs:
            self.set("client", "devices", " ".join(devs))
        else:
            self.unset("client", "devices")

    def c_snaplen(self, n):
        self.snaplen = int(n)
        self.set("client", "snaplen", n)

    def c_filter(self, text):
        self.set("client", "filter", text)

    def c_detect_loop(self, on):
        if on == "1":
            self.report("note", "detect-loop did nothing upstream; detect_loop = yes now "
                                "really excludes the traffic to the servers")
        self.set("client", "detect_loop", "yes" if on == "1" else "no")

    def c_gprs(self):
        self.set("client", "gprs_filter", "yes")

    def c_no_gprs(self):
        self.set("client", "gprs_filter", "no")

    def c_wqueue(self, n):
        self.wqueue[self._conn()] = (int(n), self.lineno, self.line)

    def c_wqueue_store(self, n):
        self.report("unsupported", "upstream cannot set this per store connection (its "
                                   "config writer wrote it anyway); ignored")

    def enter_conn(self, name):
        safe = _safe_name(name)
        if safe != name:
            self.report("note", "connection name %r written as %r" % (name, safe))
        sec = "server " + safe
        self.section(sec)
        return ("store", sec)

    def c_no_conn(self, name):
        self.sections.pop("server " + _safe_name(name), None)
        self.wqueue.pop("server " + _safe_name(name), None)

    def c_connect(self):
        self.unset(self._conn(), "enabled")  # connecting is the default

    def c_disconnect(self):
        self.set(self._conn(), "enabled", "no")

    def c_host(self, ip):
        self.set(self._conn(), "host", ip)

    def c_port(self, port):
        if port == "0":
            self.unset(self._conn(), "port")
        else:
            self.set(self._conn(), "port", port)

    def c_source_ip(self, ip):
        self.set(self._conn(), "source_ip", ip)

    def c_protocol(self, proto):
        self.set(self._conn(), "protocol", proto)

    def c_enable_tls(self):
        self.set(self._conn(), "tls", "yes")

    def c_disable_tls(self):
        self.set(self._conn(), "tls", "no")

    def c_tls_hostname(self, name):
        if name == "(null)":
            self.report("note", "written by upstream's config writer when no hostname was "
                                "set; left unset")
            self.unset(self._conn(), "tls_hostname")
            return
        self.set(self._conn(), "tls_hostname", name)

    def c_no_tls_hostname(self):
        self.unset(self._conn(), "tls_hostname")

    def c_tls_verify(self):
        self.set(self._conn(), "tls_verify", "yes")

    def c_no_tls_verify(self):
        self.set(self._conn(), "tls_verify", "no")

    def c_tls_ca(self, path):
        self.set(self._conn(), "tls_ca", path)

    def c_no_tls_ca(self):
        self.unset(self._conn(), "tls_ca")

    def c_tls_cert(self, path):
        self.set(self._conn(), "tls_cert", path)

    def c_no_tls_cert(self):
        self.unset(self._conn(), "tls_cert")

    def c_tls_key(self, path):
        self.set(self._conn(), "tls_key", path)

    def c_no_tls_key(self):
        self.unset(self._conn(), "tls_key")

    # ------------------------------------------------ end of file
    def finish(self):
        """Settle what depends on the whole file: TLS, queues, log level."""
        for sec, lineno, line in self.tls_clients:
            if sec not in self.sections:
                continue
            if self.server_tls:
                self.sections[sec]["tls"] = "required"
            else:
                self.lineno, self.line = lineno, line
                self.report("note", "TLS is not enabled in the server node ('enable tls'); "
                                    "written as tls = no")
                self.sections[sec]["tls"] = "no"
        for sec, (n, lineno, line) in self.wqueue.items():
            if sec not in self.sections:
                continue
            size = n * (self.snaplen + RECORD_OVERHEAD)
            self.lineno, self.line = lineno, line
            self.report("note", "a queue of %d messages is written as queue_size = %d bytes "
                                "(%d x (snaplen %d + %d))"
                        % (n, size, n, self.snaplen, RECORD_OVERHEAD))
            if size < MIN_QUEUE_SIZE:
                self.report("note", "raised to the minimum queue_size of %d bytes"
                            % MIN_QUEUE_SIZE)
                size = MIN_QUEUE_SIZE
            self.set(sec, "queue_size", str(size),
                     "; from 'wqueue max-length %d' at snaplen %d" % (n, self.snaplen))
        levels = [self.log_all] if self.log_all else []
        for lineno, line, level in self.log_cats:
            if self.log_all is None or level != self.log_all:
                self.lineno, self.line = lineno, line
                self.report("note", "one level for all categories: the most verbose one "
                                    "configured is used")
            levels.append(level)
        if levels:
            self.set("log", "level", min(levels, key=VERBOSITY.index))
        if self.kind == "server":
            owner = {}
            for sec in [n for n in self.sections if n.startswith("client ")]:
                ip = self.sections[sec].get("ip")
                if ip in owner:
                    self.at(sec)
                    self.report("note", "the address of [%s] as well: upstream took every "
                                        "connection from %s for the first of them, so this "
                                        "client's entry was never used; give it its own "
                                        "address or remove it" % (owner[ip], ip))
                else:
                    owner[ip] = sec
        if self.kind == "server" and "server" in self.sections:
            if "base_path" not in self.sections["server"]:
                self.at("server")
                self.report("note", "no base-path: upstream wrote into its working directory; "
                                    "here base_path defaults to the config file's directory")
        if self.kind == "client":
            self._finish_client()

    def _finish_client(self):
        if "client" in self.sections and "devices" not in self.sections["client"]:
            self.at("client")
            self.report("error", "no 'pcap device': set devices in [client]")
        for sec in [n for n in self.sections if n.startswith("server ")]:
            keys = self.sections[sec]
            self.at(sec)
            if sec != "server default" and "host" not in keys:
                self.report("error", "no 'server ip' for this connection: set host")
            elif "host" in keys and "port" not in keys and keys.get("protocol") != "ipip":
                self.report("error", "no 'server port' for this connection: set port")
        default = self.sections.get("server default")
        if default is not None and "host" not in default:
            self.sections.pop("server default")
            if default:
                self.at("server default")
                self.report("note", "connection settings without 'server ip' in the "
                                    "client node: no [server default] written")

    def ini(self, source="config"):
        """Return the INI text for what was read."""
        order = self._section_order()
        out = ["; Converted from %s by %s --import-vty\n" % (source, PROGRAMS[self.kind])]
        for sec in order:
            keys = self._key_order(sec)
            out.append("\n[%s]\n" % sec)
            for key in keys:
                if (sec, key) in self.comments:
                    out.append(self.comments[(sec, key)] + "\n")
                out.append("%s = %s\n" % (key, self.sections[sec][key]))
        return "".join(out)

    def _section_order(self):
        names = list(self.sections)
        first = [n for n in ("server", "client") if n in self.sections]
        if self.kind == "server":
            rest = [n for n in names if n.startswith("client ")]
        else:
            rest = [n for n in names if n.startswith("server ")]
            if "server default" in rest:
                rest.remove("server default")
                rest.insert(0, "server default")
        tail = ["log"] if "log" in self.sections else []
        return first + rest + tail

    def _key_order(self, sec):
        if sec == "server" and self.kind == "server":
            known = SERVER_KEYS
        elif sec == "client" and self.kind == "client":
            known = CLIENT_KEYS
        elif sec.startswith("server "):
            known = CONN_KEYS
        elif sec.startswith("client "):
            known = ("ip", "store", "tls")
        else:
            known = LOG_KEYS
        keys = self.sections[sec]
        return [k for k in known if k in keys] + [k for k in keys if k not in known]


def _safe_name(name):
    """Return name, or a version of it made of safe file-name characters."""
    try:
        return check_safe_name(name)
    except ValueError:
        safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip("._+-")[:64]
        return safe or "unnamed"


def convert(kind, text, name="<config>"):
    """Return (ini_text, messages, unmapped_count) for a VTY config text."""
    imp = Importer(kind, name).run(text)
    messages = [m for _, m in sorted(imp.messages, key=lambda m: m[0])]
    return imp.ini(name.rsplit("/", 1)[-1]), messages, imp.unmapped


# Exit statuses of --import-vty (doc/migration.md#import-vty)
EXIT_OK, EXIT_UNUSABLE, EXIT_CANNOT_START = 0, 2, 3
MAX_PROBLEMS = 20


def _ini_parser(text):
    cp = configparser.ConfigParser(interpolation=None, strict=False,
                                   inline_comment_prefixes=(";", "#"),
                                   comment_prefixes=(";", "#"))
    cp.optionxform = str
    cp.read_string(text)
    return cp


def start_problems(text, load, after=None):
    """Return why the INI text cannot start as it is, one line each, every one found.

    load(path) is the program's configuration loader (raising ConfigError);
    after(cfg) returns the further problems of a loaded configuration (the
    filter, devices, ...). After each ConfigError the offending key (in a main
    section) or section is left out and the file loaded again, so one run
    finds every independent problem.
    """
    from osmo_pcap.ini import ConfigError
    cp = _ini_parser(text)
    tmp = tempfile.mkdtemp(prefix="osmo-pcap-import-")
    path = os.path.join(tmp, "imported.ini")
    out, seen = [], set()
    try:
        for _ in range(MAX_PROBLEMS):
            with open(path, "w") as f:
                cp.write(f)
            try:
                cfg = load(path)
            except ConfigError as e:
                where = (e.section, e.key)
                text_ = "%s%s%s" % ("[%s] " % e.section if e.section else "",
                                    "%s: " % e.key if e.key else "", e.reason)
                if where in seen:
                    break
                seen.add(where)
                out.append(text_)
                if e.section is None or not cp.has_section(e.section):
                    break
                if e.key is not None and " " not in e.section and cp.has_option(e.section, e.key):
                    cp.remove_option(e.section, e.key)
                else:
                    cp.remove_section(e.section)
                continue
            if after is not None:
                out.extend(after(cfg))
            break
    finally:
        shutil.rmtree(tmp, True)
    return out


def main(kind, path, stdout=None, stderr=None, load=None, after=None):
    """Print path (an upstream VTY config) as our INI; return the exit status.

    0: converted, and the result starts as it is (lines not mapped one to one
    are listed on stderr); 3: converted, but the result cannot start as it is
    (every reason on stderr, after the messages); 2: nothing converted: the
    file cannot be read, or it configures the other program (stdout stays
    empty). load and after are the program's checks (see start_problems).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    prog = PROGRAMS.get(kind, "osmo-pcap")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        stderr.write("%s: --import-vty %s: %s\n" % (prog, path, e.strerror or e))
        return EXIT_UNUSABLE
    text = data.decode("utf-8", "replace")
    imp = Importer(kind, path).run(text)
    if imp.wrong is not None or not imp.entered:
        other = imp.wrong or ("client" if kind == "server" else "server")
        why = ("it configures osmo-pcap-%s" % imp.wrong if imp.wrong else
               "it has no '%s' node" % kind)
        stderr.write("%s: --import-vty %s: not an osmo-pcap-%s configuration (%s); nothing "
                     "converted%s\n" % (prog, path, kind, why,
                                         "; use %s --import-vty" % PROGRAMS[other]
                                         if imp.wrong else ""))
        return EXIT_UNUSABLE
    ini, messages, unmapped = convert(kind, text, path)
    stdout.write(ini)
    stdout.flush()
    for m in messages:
        stderr.write(m + "\n")
    if unmapped:
        stderr.write("%s: %d line(s) of %s not converted one to one: review the messages "
                     "above\n" % (prog, unmapped, path))
    problems = start_problems(ini, load, after) if load is not None else []
    if problems:
        stderr.write("%s: the result cannot start as it is (%s --check-config would refuse "
                     "it):\n" % (prog, prog))
        for p in problems:
            stderr.write("%s: - %s\n" % (prog, p))
        return EXIT_CANNOT_START
    return EXIT_OK
