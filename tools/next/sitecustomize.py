# SPDX-License-Identifier: AGPL-3.0-or-later
"""Report what Python could not raise, in every process of a strict test run.

tools/test-next.sh puts this directory on PYTHONPATH and runs everything with
warnings as errors (-X dev, PYTHONWARNINGS=error). A warning raised in a
finalizer (ResourceWarning: unclosed file, socket, pipe...) or an exception in a
thread cannot propagate: Python prints "Exception ignored ..." and goes on, and
the test still passes. Here each such report of every Python process that
inherits the environment (the suite, the programs the tests start, Python test
peers) is also appended to $OSMO_PCAP_UNRAISABLE_LOG; tests/run.py reads that
file after each test and counts what appeared as an error of that test.
Nothing happens without OSMO_PCAP_UNRAISABLE_LOG. Python 3.8+ (sys.unraisablehook).
"""

import os
import sys

LOG = os.environ.get("OSMO_PCAP_UNRAISABLE_LOG")
MARK = "==== unraisable "
CONTEXT = None  # tests/run.py sets the running test's id here


def record(kind, exc_type, exc_value, exc_tb, detail):
    """Append one entry; a single O_APPEND write keeps entries of processes apart."""
    import traceback
    lines = ["%s%s in pid %d (%s)%s\n" % (MARK, kind, os.getpid(), " ".join(sys.argv)[:200],
                                          ", during " + CONTEXT if CONTEXT else "")]
    if detail:
        lines.append(detail.rstrip("\n") + "\n")
    lines.extend(traceback.format_exception(exc_type, exc_value, exc_tb))
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(lines).encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except Exception:
        pass


def _unraisable(u):
    detail = u.err_msg or "Exception ignored in"
    if u.object is not None:
        try:
            detail += ": %r" % (u.object,)
        except Exception:
            pass
    record("exception", u.exc_type, u.exc_value, u.exc_traceback, detail)
    sys.__unraisablehook__(u)


def _thread(args):
    if args.exc_type is not SystemExit:
        name = getattr(args.thread, "name", "?")
        record("thread exception", args.exc_type, args.exc_value, args.exc_traceback,
               "in thread %s" % name)
    import threading
    threading.__excepthook__(args)


if LOG and hasattr(sys, "unraisablehook"):
    sys.unraisablehook = _unraisable
    import threading
    threading.excepthook = _thread
