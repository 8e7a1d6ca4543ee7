# SPDX-License-Identifier: AGPL-3.0-or-later
"""Logging set-up shared by the programs, and a rate limiter for noisy lines.

Everything logs through the stdlib `logging` module under the logger name
"osmo-pcap" (children: "osmo-pcap.server", ...). setup() picks the target.
The daemons use read_config() + configure() for their [log] section instead,
reopen() on SIGHUP and schedule_flush() for the repeat filter's summaries.
"""

import logging
import logging.handlers
import os
import socket
import sys
import time

from osmo_pcap.ini import ConfigError, parse_bool, resolve_path

ROOT = "osmo-pcap"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
          "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


def get(name=None):
    """Return the program logger, or a child of it."""
    return logging.getLogger(ROOT + "." + name if name else ROOT)


def setup(level="info", stream=None, timestamps=True):
    """Log to stderr (or stream) at level; return the root program logger."""
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    h = logging.StreamHandler(stream or sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(message)s" if timestamps else "%(levelname)s %(message)s"
    h.setFormatter(logging.Formatter(fmt))
    logger.addHandler(h)
    logger.setLevel(LEVELS.get(level, logging.INFO) if isinstance(level, str) else level)
    logger.propagate = False
    return logger


class RateLimiter(object):
    """Allow a keyed log line at most once per interval; count what was held back.

    ok(key) returns None when the line must be suppressed, else the number of
    lines suppressed for that key since it was last allowed (usually 0).
    """

    def __init__(self, interval=10.0, clock=time.monotonic, max_keys=1024):
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._last = {}
        self._held = {}

    def ok(self, key):
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) >= self.max_keys and key not in self._last:
            self._last.clear()  # bounded memory against many distinct keys
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)

    def due(self, everything=False):
        """Return [(key, held)] for keys whose lines were held back and whose interval
        has ended since (with everything: all of them, at exit); each counts as let
        through now (for a summary line)."""
        now = self.clock()
        out = []
        for key, held in list(self._held.items()):
            if everything or now - self._last.get(key, now) >= self.interval:
                del self._held[key]
                self._last[key] = now
                out.append((key, held))
        return out


# ------------------------------------------------------------ [log] section
# Everything below is for the daemons: the [log] section, its three targets,
# SIGHUP reopening and the repeat filter. setup() above stays the simple way
# for tools and tests.
TARGETS = ("stderr", "syslog", "file")
SYSLOG_ADDRESS = "/dev/log"
REPEAT_INTERVAL = 10.0  # seconds an identical warning/error line stays quiet


class LogConfig(object):
    """The [log] section: level, target, file, timestamps (yes/no/auto)."""

    def __init__(self, level="info", target="stderr", file=None, timestamps="auto"):
        self.level = level
        self.target = target
        self.file = file
        self.timestamps = timestamps


def _parse_level(text):
    t = text.lower()
    if t not in LEVELS:
        raise ValueError("unknown level %r (one of: %s)" % (text, ", ".join(sorted(LEVELS))))
    return t


def _parse_target(text):
    t = text.lower()
    if t not in TARGETS:
        raise ValueError("unknown target %r (one of: %s)" % (text, ", ".join(TARGETS)))
    return t


def _parse_timestamps(text):
    t = text.lower()
    if t == "auto":
        return t
    return "yes" if parse_bool(t) else "no"


def read_config(section):
    """Return a LogConfig from a config.Section for [log]; raise ConfigError.

    Relative `file` paths are taken from the config file's directory.
    """
    cfg = LogConfig(level=section.get("level", _parse_level, "info"),
                    target=section.get("target", _parse_target, "stderr"),
                    file=section.get("file"),
                    timestamps=section.get("timestamps", _parse_timestamps, "auto"))
    section.finish()
    if cfg.target == "file" and not cfg.file:
        raise section.error("file", "target = file needs file = PATH")
    if cfg.file:
        base = os.path.dirname(os.path.abspath(section.path)) if section.path else os.getcwd()
        cfg.file = resolve_path(base, cfg.file)
    return cfg


def under_systemd(env=None):
    """Return True when started by systemd (the journal adds its own timestamps)."""
    env = os.environ if env is None else env
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def want_timestamps(cfg, env=None):
    """Resolve timestamps = auto: off for syslog and under systemd, on otherwise."""
    if cfg.timestamps != "auto":
        return cfg.timestamps == "yes"
    if cfg.target == "syslog":
        return False
    if cfg.target == "file":
        return True  # a file is read without the journal's help
    return not under_systemd(env)


def _stderr_is_journal(env):
    """True if fd 2 is the journal stream systemd announced in $JOURNAL_STREAM."""
    js = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = js.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


class JournalPrefixFormatter(logging.Formatter):
    """Prefix lines with <N> (syslog priority) so the journal keeps the level."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        prio = self.PRIORITY.get(record.levelno, 6)
        return "<%d>%s" % (prio, logging.Formatter.format(self, record))


class ReopenableFileHandler(logging.FileHandler):
    """A log file that reopen() closes and opens again by name (logrotate)."""

    def reopen(self):
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            if old is not None:
                try:
                    old.close()
                except OSError:
                    pass
        finally:
            self.release()


class RepeatFilter(logging.Filter):
    """Hold back identical warning/error lines repeated within interval seconds.

    The first line passes; repeats within the interval are counted, not
    written. The count is reported on the next identical line after the
    interval, or by take_summaries() (called from a timer) if none comes.
    """

    def __init__(self, interval=REPEAT_INTERVAL, min_level=logging.WARNING,
                 clock=time.monotonic, max_keys=1024):
        logging.Filter.__init__(self)
        self.interval = interval
        self.min_level = min_level
        self.clock = clock
        self.max_keys = max_keys
        self._seen = {}  # key -> [time first let through, lines held back]

    def filter(self, record):
        if record.levelno < self.min_level or getattr(record, "osmo_repeat_summary", False):
            return True
        msg = record.getMessage()
        key = (record.levelno, record.name, msg)
        now = self.clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = "%s (%d identical lines suppressed)" % (msg, entry[1])
            record.args = None
        if entry is None and len(self._seen) >= self.max_keys:
            self._expire(now, force=True)
        self._seen[key] = [now, 0]
        return True

    def _expire(self, now, force=False):
        """Drop keys whose window is over; return their held-back counts."""
        out = []
        for key, (first, held) in list(self._seen.items()):
            if force or now - first >= self.interval:
                del self._seen[key]
                if held:
                    out.append((key, held))
        return out

    def take_summaries(self):
        """Return [(levelno, logger name, message, count)] for finished windows."""
        return [(k[0], k[1], k[2], n) for k, n in self._expire(self.clock())]


def _probe_syslog(address):
    """Raise OSError unless the unix socket at address accepts a connection."""
    if not isinstance(address, str):
        return  # (host, port) is UDP syslog: nothing to probe
    error = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect(address)
            return
        except OSError as e:
            error = e
        finally:
            s.close()
    raise error


_state = {"handler": None, "repeat": None}


def configure(cfg, program="osmo-pcap", env=None, syslog_address=None, stream=None):
    """Install the handler cfg (a LogConfig) asks for; return the program logger.

    Raise ConfigError if the log file cannot be opened. A missing syslog
    socket falls back to stderr with a warning rather than losing the log.
    """
    env = os.environ if env is None else env
    stream = stream or sys.stderr
    stamps = want_timestamps(cfg, env)
    body = "%(levelname)s %(message)s"
    fallback = None
    if cfg.target == "file":
        try:
            handler = ReopenableFileHandler(cfg.file, encoding="utf-8")
        except OSError as e:
            raise ConfigError("cannot open log file %s: %s" % (cfg.file, e.strerror or e),
                              None, "log", "file")
        fmt = logging.Formatter("%(asctime)s " + body if stamps else body)
    elif cfg.target == "syslog":
        address = syslog_address or SYSLOG_ADDRESS
        try:
            _probe_syslog(address)  # Python 3.11+ no longer raises for a missing socket
            handler = logging.handlers.SysLogHandler(
                address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            # The pid is formatted per record: it changes when -D forks.
            fmt = logging.Formatter(program + "[%(process)d]: " + body)
        except OSError as e:
            fallback = "syslog socket %s unusable (%s); logging to stderr" % (
                address, e.strerror or e)
            handler = logging.StreamHandler(stream)
            fmt = logging.Formatter("%(asctime)s " + body if stamps else body)
    else:
        handler = logging.StreamHandler(stream)
        cls = logging.Formatter
        if stream is sys.stderr and _stderr_is_journal(env):
            cls = JournalPrefixFormatter
        fmt = cls("%(asctime)s " + body if stamps else body)
    handler.setFormatter(fmt)
    repeat = RepeatFilter()
    handler.addFilter(repeat)
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if h is _state["handler"]:
            h.close()
    logger.addHandler(handler)
    logger.setLevel(LEVELS[cfg.level])
    logger.propagate = False
    _state["handler"], _state["repeat"] = handler, repeat
    if fallback:
        logger.warning(fallback)
    return logger


def configure_daemon(cfg, program, daemonize, env=None, syslog_address=None, stream=None):
    """configure() for a daemon started with or without -D; return a note or None.

    -D connects stderr to /dev/null once detached, so `target = stderr` (the
    default) would lose every line: the log goes to syslog instead, and the
    returned note says so (doc/operations.md#daemonize). Without a usable
    syslog socket that is a ConfigError naming [log] target.
    """
    note = None
    if daemonize and cfg.target == "stderr":
        address = syslog_address or SYSLOG_ADDRESS
        try:
            _probe_syslog(address)
        except OSError as e:
            raise ConfigError("-D detaches from stderr, and the syslog socket %s is unusable "
                              "(%s): set target = file (and file = PATH)"
                              % (address, e.strerror or e), None, "log", "target")
        cfg = LogConfig(cfg.level, "syslog", cfg.file, cfg.timestamps)
        note = ("-D: logging to syslog (facility daemon), because stderr is closed once "
                "detached; [log] target chooses another place")
    logger = configure(cfg, program, env, syslog_address, stream)
    if note:
        logger.info("%s", note)
    return note


def reopen():
    """Reopen the log file (SIGHUP after logrotate); return True if there was one."""
    h = _state["handler"]
    if isinstance(h, ReopenableFileHandler):
        h.reopen()
        return True
    return False


def flush_repeats():
    """Log how many identical lines were held back in windows that have ended."""
    repeat = _state["repeat"]
    if repeat is None:
        return 0
    items = repeat.take_summaries()
    for levelno, name, msg, count in items:
        logging.getLogger(name).log(
            levelno, "%s (repeated %d more times in %ds)", msg, count, int(repeat.interval),
            extra={"osmo_repeat_summary": True})
    return len(items)


def schedule_flush(loop):
    """Report held-back repeats from loop every REPEAT_INTERVAL seconds."""
    return loop.call_every(REPEAT_INTERVAL, flush_repeats)
