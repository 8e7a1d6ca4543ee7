# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_clean.py: expire and compress old trace files (run from cron or a timer).

One run: take the run lock, scan the configured directories, remove
temporaries of interrupted runs, plan (cleanplan) and carry out the plan:
deletions oldest first, then compressions. Exit status: 0 success, 1 if any
action failed (each failure is logged with path and reason; the run goes on)
or another run holds the lock, 2 for a configuration or usage error.
"""

import argparse
import errno
import fcntl
import os
import signal
import sys
import time

from osmo_pcap import __version__, COPYRIGHT, log
from osmo_pcap.clean import config as cleanconfig
from osmo_pcap.clean import plan as cleanplan
from osmo_pcap.clean import compress
from osmo_pcap.clean import tracedir
from osmo_pcap.ini import ConfigError

PROG = "osmo_pcap_clean.py"
DEFAULT_CONFIG = "osmo-pcap-clean.ini"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

_log = log.get("clean")


class Interrupted(Exception):
    """A termination signal arrived; unwinding removes any temporary file."""

    def __init__(self, signum):
        Exception.__init__(self, "signal %d" % signum)
        self.signum = signum


# ---------------------------------------------------------------- run lock

class Busy(Exception):
    """Another run holds the lock file."""


class RunLock(object):
    """An flock on the lock file, held for the whole run; the file itself stays."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        """Take the lock or raise Busy (with the holder's pid when known); OSError on I/O."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Busy(holder)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------- reporting

def human(n):
    """Return a byte count as a short text: 512 B, 1.5 KiB, 12.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def days(seconds):
    """Return a duration as days for messages: '120d', '1.5d'."""
    return ("%.2f" % (seconds / 86400.0)).rstrip("0").rstrip(".") + "d"


def why(f, rule, cfg, now):
    """Return the reason text for deleting f by rule."""
    pol = cfg.policy(f.client)
    if rule == "max_age":
        return "max_age: %s old, limit %s" % (days(now - f.time), days(pol.max_age))
    if rule == "max_files":
        return "max_files: client %s keeps its newest %d" % (f.client, pol.max_files)
    if rule == "max_bytes":
        if pol.max_bytes:
            return "max_bytes: client %s budget %s" % (f.client, human(pol.max_bytes))
        return "max_bytes: total budget %s" % human(cfg.max_bytes)
    if rule == "min_free":
        return "min_free: filesystem needs free space"
    return rule


class Progress(object):
    """One self-overwriting line on a terminal (stderr) while a run works; nothing
    when stderr is not a terminal (cron, the journal)."""

    INTERVAL = 0.5

    def __init__(self, stream, enabled, clock=time.monotonic):
        self.stream = stream
        self.enabled = enabled
        self.clock = clock
        self.shown = 0
        self.last = None

    def update(self, text, force=False):
        if not self.enabled:
            return
        now = self.clock()
        if not force and self.last is not None and now - self.last < self.INTERVAL:
            return
        self.last = now
        text = text[:200]
        pad = max(0, self.shown - len(text))
        self._write("\r%s%s" % (text, " " * pad))
        self.shown = len(text)

    def clear(self):
        if self.shown:
            self._write("\r%s\r" % (" " * self.shown))
            self.shown = 0

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False   # the terminal went away: carry on without it


class Report(object):
    """Action lines on stdout (always in a dry run, with -v otherwise), totals,
    progress on a terminal and the one-line summary."""

    def __init__(self, out, show, progress=None, clock=time.monotonic):
        self.out = out
        self.show = show
        self.progress = progress or Progress(None, False)
        self.clock = clock
        self.started = clock()
        self.deleted = self.deleted_bytes = 0
        self.compressed = self.bytes_in = self.bytes_out = 0
        self.failed = 0
        self.stage = "scanning"
        self.done = self.total = 0

    def line(self, text, force=False):
        if self.show or force:
            self.progress.clear()
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass   # stdout went away (a closed terminal): the run goes on

    def fail(self, fmt, *args):
        self.failed += 1
        self.progress.clear()
        _log.error(fmt, *args)

    def step(self, stage, done, total):
        """Record where the run is (SIGUSR1, the terminal line)."""
        self.stage, self.done, self.total = stage, done, total
        self.progress.update(self.status())

    def status(self):
        where = "%s %d of %d" % (self.stage, self.done, self.total) if self.total else \
            self.stage
        return "%s: %s; so far deleted %d file(s) (%s), compressed %d (%s -> %s), %d " \
            "failure(s), running %ds" % (PROG, where, self.deleted, human(self.deleted_bytes),
                                        self.compressed, human(self.bytes_in),
                                        human(self.bytes_out), self.failed,
                                        self.clock() - self.started)

    def summary(self, dry_run, force=False):
        """The closing line: with -v or a dry run, and always under systemd (force)."""
        self.progress.clear()
        took = self.clock() - self.started
        if dry_run:
            self.line("would delete %d file(s) (%s), would compress %d file(s) (%s)" % (
                self.deleted, human(self.deleted_bytes), self.compressed, human(self.bytes_in)))
            return
        self.line("deleted %d file(s) (%s), compressed %d file(s) (%s -> %s), %d failure(s), "
                  "in %.1fs" % (self.deleted, human(self.deleted_bytes), self.compressed,
                                human(self.bytes_in), human(self.bytes_out), self.failed, took),
                  force=force)


# ---------------------------------------------------------------- one run

def collect(cfg, report, dry_run):
    """Scan every directory; remove leftover temporaries.

    Return (files, bytes to free per filesystem, a directory naming each filesystem).
    """
    files, need_free, fs_names, seen = [], {}, {}, set()
    for i, d in enumerate(cfg.paths):
        report.step("scanning %s:" % d, i, len(cfg.paths))
        real = os.path.realpath(d)
        if real in seen:
            continue  # the same directory under two names: list its files once
        seen.add(real)
        try:
            found, temps = tracedir.scan(d)
        except OSError as e:
            report.fail("cannot read directory %s: %s", d, e.strerror or e)
            continue
        for t in temps:
            if dry_run:
                report.line("would remove %s (temporary file of an interrupted run)" % t)
                continue
            try:
                os.unlink(t)
                report.line("removed %s (temporary file of an interrupted run)" % t)
            except FileNotFoundError:
                pass
            except OSError as e:
                report.fail("cannot remove temporary file %s: %s", t, e.strerror or e)
        files.extend(found)
        if cfg.min_free:
            try:
                dev, total, avail = tracedir.fs_space(d)
            except OSError as e:
                report.fail("cannot read free space of %s: %s", d, e.strerror or e)
                continue
            need_free[dev] = cleanconfig.min_free_bytes(cfg.min_free, total) - avail
            fs_names.setdefault(dev, d)
    return files, need_free, fs_names


def delete(f, reason, report, dry_run):
    """Delete one file unless its writer holds it."""
    if dry_run:
        report.line("would delete %s (%s)" % (f.path, reason))
        report.deleted += 1
        report.deleted_bytes += f.size
        return
    src = None
    try:
        if f.compression is None:  # the server never writes compressed files
            src = tracedir.open_unused(f.path)  # hold the lock while unlinking
        os.unlink(f.path)
    except tracedir.InUse:
        _log.warning("skipped %s: in use (locked by the server)", f.path)
        return
    except FileNotFoundError:
        _log.warning("skipped %s: it disappeared", f.path)
        return
    except OSError as e:
        report.fail("cannot delete %s: %s", f.path, e.strerror or e)
        return
    finally:
        if src is not None:
            src.close()
    report.deleted += 1
    report.deleted_bytes += f.size
    report.line("deleted %s (%s)" % (f.path, reason))


def room_to_compress(f, min_free):
    """Return None if compressing f cannot push its filesystem below min_free (or
    fill it), else the reason why not: the temporary file may grow to f's size."""
    try:
        _, total, avail = tracedir.fs_space(os.path.dirname(f.path))
    except OSError:
        return None  # the compression itself will report the problem
    keep = cleanconfig.min_free_bytes(min_free, total)
    if avail - f.size >= keep:
        return None
    return "compressing it needs up to %s, but only %s is free%s" % (
        human(f.size), human(avail), " with min_free %s" % human(keep) if keep else "")


def compress_one(f, method, level, report, dry_run, min_free=None):
    """Compress one file unless its writer holds it or the disk has no room for it."""
    final = compress.final_path(f.path, method)
    if dry_run:
        report.line("would compress %s -> %s (%s)" % (f.path, os.path.basename(final), method))
        report.compressed += 1
        report.bytes_in += f.size
        return
    no_room = room_to_compress(f, min_free)
    if no_room:
        # the server must not find the disk full because of us; a later run retries
        _log.warning("skipped %s: %s", f.path, no_room)
        return
    try:
        src = tracedir.open_unused(f.path)
    except tracedir.InUse:
        _log.warning("skipped %s: in use (locked by the server)", f.path)
        return
    except FileNotFoundError:
        _log.warning("skipped %s: it disappeared", f.path)
        return
    except OSError as e:
        report.fail("cannot compress %s: %s", f.path, e.strerror or e)
        return
    try:
        final, n_in, n_out = compress.compress_file(f.path, method, level, src)
    except compress.CompressError as e:
        report.fail("cannot compress %s: %s", f.path, e)
        return
    except OSError as e:
        report.fail("cannot compress %s: %s%s", f.path, e.strerror or e,
                    " (%s)" % e.filename if e.filename and e.filename != f.path else "")
        return
    finally:
        src.close()
    report.compressed += 1
    report.bytes_in += n_in
    report.bytes_out += n_out
    report.line("compressed %s -> %s (%s -> %s)" % (f.path, os.path.basename(final),
                                                    human(n_in), human(n_out)))


def run(cfg, now, dry_run=False, verbose=False, out=None, report=None):
    """Carry out one cleanup run for cfg at time now; return the exit status."""
    report = report or Report(out or sys.stdout, dry_run or verbose)
    files, need_free, fs_names = collect(cfg, report, dry_run)
    report.step("planning %d file(s)" % len(files), 0, 0)
    plan = cleanplan.plan(files, now, cfg.default, cfg.clients, cfg.max_bytes, need_free,
                          fs_names)
    for w in plan.warnings:
        _log.warning("%s", w)
    if dry_run and verbose:
        for path, reason in sorted(plan.protected.items()):
            report.line("keep %s (%s)" % (path, reason))
    for i, (f, rule) in enumerate(plan.delete):
        report.step("deleting", i, len(plan.delete))
        delete(f, why(f, rule, cfg, now), report, dry_run)
    for i, (f, method, level) in enumerate(plan.compress):
        report.step("compressing", i, len(plan.compress))
        compress_one(f, method, level, report, dry_run, cfg.min_free)
    report.summary(dry_run, force=log.under_systemd())
    return EXIT_FAILED if report.failed else EXIT_OK


# ---------------------------------------------------------------- command line

def path_problems(cfg):
    """Return one line per directory of paths (and the lock file's) a run cannot use
    as this user: missing, not a directory, not readable and writable."""
    out = []
    for d in cfg.paths:
        if not os.path.exists(d):
            out.append("%s [clean] paths: %s does not exist" % (cfg.path, d))
        elif not os.path.isdir(d):
            out.append("%s [clean] paths: %s is not a directory" % (cfg.path, d))
        elif not os.access(d, os.R_OK | os.W_OK | os.X_OK):
            out.append("%s [clean] paths: %s is not readable and writable for uid %d (files "
                       "are deleted and compressed there)" % (cfg.path, d, os.geteuid()))
    lock_dir = os.path.dirname(cfg.lock_file)
    if cfg.lock_file and os.path.isdir(lock_dir):
        if not os.access(lock_dir, os.W_OK | os.X_OK) and not os.access(cfg.lock_file,
                                                                          os.W_OK):
            out.append("%s [clean] lock_file: cannot create %s: %s is not writable for uid %d"
                       % (cfg.path, cfg.lock_file, lock_dir, os.geteuid()))
    elif cfg.lock_file and lock_dir not in cfg.paths:
        out.append("%s [clean] lock_file: the directory of %s does not exist"
                   % (cfg.path, cfg.lock_file))
    return out


def describe(cfg, out):
    """Print the effective configuration (for --check-config)."""
    def pol_text(p, budget):
        return ("max_age=%s max_files=%s%s compress_after=%d compress=%s compress_level=%d" % (
            days(p.max_age) if p.max_age else "off", p.max_files or "off",
            " max_bytes=%s" % (human(p.max_bytes) if p.max_bytes else "off") if budget else "",
            p.compress_after, p.compress, p.compress_level))
    out.write("config OK: %s: %d path(s) %s, %d client section(s)\n"
              % (cfg.path, len(cfg.paths), " ".join(cfg.paths), len(cfg.clients)))
    out.write("paths: %s\n" % " ".join(cfg.paths))
    out.write("lock_file: %s\n" % cfg.lock_file)
    out.write("max_bytes (all clients): %s\n" % (human(cfg.max_bytes) if cfg.max_bytes else "off"))
    mf = cfg.min_free
    out.write("min_free: %s\n" % ("off" if mf is None else
                                  ("%g%%" % mf[1] if mf[0] == "percent" else human(mf[1]))))
    out.write("every client: %s\n" % pol_text(cfg.default, False))
    for name in sorted(cfg.clients):
        out.write("client %s: %s\n" % (name, pol_text(cfg.clients[name], True)))


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Delete and compress old osmo-pcap trace files as "
        "configured; see doc/clean.md. Exit status: 0 ok, 1 an action failed or "
        "another run is busy, 2 configuration error.")
    ap.add_argument("-c", "--config-file", metavar="FILE", default=DEFAULT_CONFIG,
                    help="configuration file (default: %s in the current directory)"
                    % DEFAULT_CONFIG)
    ap.add_argument("-n", "--dry-run", action="store_true",
                    help="print what would be deleted and compressed; change nothing")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every action with its reason, and a summary")
    ap.add_argument("--check-config", action="store_true",
                    help="check the configuration file, print a summary and the effective "
                    "settings per client, and exit")
    ap.add_argument("-V", "--version", action="version",
                    version="%s %s\n%s" % (PROG, __version__, COPYRIGHT))
    return ap.parse_args(argv)


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write_err(report, text):
    """Write a line to stderr from a signal handler.

    os.write, not sys.stderr: the handler may run while the run itself is in
    the middle of a write to sys.stderr, and a buffered stream refuses a
    reentrant call.
    """
    shown, report.progress.shown = report.progress.shown, 0
    data = ("\r%s\r" % (" " * shown) if shown else "") + text + "\n"
    try:
        os.write(2, data.encode("utf-8", "replace"))
    except OSError:
        pass


def _status(report):
    """SIGUSR1: say where the run is."""
    _write_err(report, report.status())


def _ignored(report, signum):
    """SIGHUP (reopen logs) and SIGUSR2 (rotate): nothing of the kind here."""
    _write_err(report, "%s: signal %d: the cleanup tool has no log file and writes no "
                       "trace files; the run goes on" % (PROG, signum))


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    log.setup("info" if args.verbose else "warning", timestamps=False)
    try:
        cfg = cleanconfig.read(args.config_file)
    except ConfigError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return EXIT_CONFIG
    if args.check_config:
        problems = path_problems(cfg)
        for p in problems:
            sys.stderr.write("%s: %s\n" % (PROG, p))
        if problems:
            return EXIT_CONFIG
        describe(cfg, sys.stdout)
        return EXIT_OK
    show = args.dry_run or args.verbose
    report = Report(sys.stdout, show, Progress(sys.stderr, not show and _isatty(sys.stderr)))
    old = {}
    try:
        # The signals of all three programs (doc/operations.md#signals).
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, _raise_interrupted)
        old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda n, f: _status(report))
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda n, f: _ignored(report, n))
        old[signal.SIGUSR2] = signal.signal(signal.SIGUSR2, lambda n, f: _ignored(report, n))
        if args.dry_run:  # changes nothing, so it needs no lock
            return run(cfg, time.time(), dry_run=True, verbose=args.verbose, report=report)
        return locked_run(cfg, args.verbose, report)
    except Interrupted as e:
        sys.stderr.write("%s: stopped by signal %d; temporary files removed\n"
                         % (PROG, e.signum))
        return EXIT_FAILED
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def locked_run(cfg, verbose, report=None):
    """Run with the run lock held; exit at once if another run holds it."""
    lock = RunLock(cfg.lock_file)
    try:
        lock.acquire()
    except Busy as e:
        sys.stderr.write("%s: another run is busy (lock file %s held%s); exiting\n"
                         % (PROG, cfg.lock_file, " by pid %s" % e if str(e) else ""))
        return EXIT_FAILED
    except OSError as e:
        sys.stderr.write("%s: cannot open lock file %s: %s\n"
                         % (PROG, cfg.lock_file, e.strerror or e))
        return EXIT_FAILED
    try:
        return run(cfg, time.time(), verbose=verbose, report=report)
    finally:
        lock.release()
