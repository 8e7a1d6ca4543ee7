# SPDX-License-Identifier: AGPL-3.0-or-later
"""Logging set-up shared by the programs, and a rate limiter for noisy lines.

Everything logs through the stdlib `logging` module under the logger name
"osmo-pcap" (children: "osmo-pcap.server", ...). setup() picks the target.
"""

import logging
import sys
import time

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
