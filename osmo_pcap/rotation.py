# SPDX-License-Identifier: AGPL-3.0-or-later
"""When to start a new trace file by wall-clock period (doc/protocol.md#rotation).

Times are raw broken-down local-time tuples in the fields of C's struct tm:
(years since 1900, month 0-11, day 1-31, hour, minute, second). The period
check works on those raw fields without normalising them, so the upstream
unit-test vectors (some with second 60 or day 0) reproduce exactly.
"""

import collections
import time

# field order from coarse to fine; index of each unit's field
UNITS = ("year", "month", "day", "hour", "minute", "second")
_FIELD = dict((u, i) for i, u in enumerate(UNITS))
# Largest sensible modulus per unit, validated against the unit being set
# (doc/protocol.md#diff-rotate-modulus).
MAX_MODULUS = {"second": 60, "minute": 60, "hour": 24, "day": 31, "month": 12,
               "year": 4294967295}
ZERO = (0, 0, 0, 0, 0, 0)


def new_period(last, now, unit, modulus=1):
    """Return True when `now` lies in a later rotation period than `last`."""
    f = _FIELD[unit]
    if last[:f + 1] == now[:f + 1]:
        return False
    for i in range(f):
        if now[i] > last[i]:
            return True
    x, y = last[f], now[f]
    if f == 2:  # days count from 1: days 1..N form the first period
        x -= 1
        y -= 1
    return y - y % modulus > x - x % modulus


def parse_rotate(text):
    """Return (unit, modulus) for 'hour', 'minute mod 21', or None for 'off'.

    Raise ValueError with a message that lists the accepted forms.
    """
    words = text.split()
    if len(words) == 1 and words[0].lower() in ("off", "no", "none"):
        return None
    if not words or words[0] not in _FIELD or len(words) not in (1, 3) or (
            len(words) == 3 and words[1] != "mod"):
        raise ValueError("expected UNIT or 'UNIT mod N' with UNIT one of %s, or 'off'; got %r"
                         % (", ".join(UNITS[::-1]), text))
    unit = words[0]
    if len(words) == 1:
        return unit, 1
    try:
        n = int(words[2], 10)
    except ValueError:
        raise ValueError("modulus must be an integer, got %r" % words[2])
    if not 1 <= n <= MAX_MODULUS[unit]:
        raise ValueError("modulus for %s must be 1..%d, got %d" % (unit, MAX_MODULUS[unit], n))
    return unit, n


def format_rotate(rule):
    """Return the config text for a (unit, modulus) rule or None."""
    if rule is None:
        return "off"
    return rule[0] if rule[1] == 1 else "%s mod %d" % rule


def tm_fields(st):
    """Return the raw struct-tm tuple for a time.struct_time (or 6+ tuple)."""
    return (st[0] - 1900, st[1] - 1, st[2], st[3], st[4], st[5])


Instant = collections.namedtuple("Instant", "epoch tm local")
Instant.__doc__ = """One moment: epoch seconds (float), raw struct-tm tuple, time.struct_time."""


class LocalClock(object):
    """Wall-clock time for rotation and file names, local time cached per second.

    now() returns an Instant. Tests pass their own `time` and `localtime` functions.
    """

    def __init__(self, timefunc=time.time, localtime=time.localtime):
        self.time = timefunc
        self.localtime = localtime
        self._sec = None
        self._tm = None
        self._st = None

    def now(self):
        t = self.time()
        sec = int(t)
        if sec != self._sec:
            self._st = self.localtime(sec)
            self._tm = tm_fields(self._st)
            self._sec = sec
        return Instant(t, self._tm, self._st)


class LastWrite(object):
    """The time of a client's last write, which never moves backwards.

    A clock stepped back (NTP, DST fall-back) leaves it where it is, so no
    rotation happens until the clock is past it again (doc/protocol.md#rotation).
    """

    __slots__ = ("epoch", "tm")

    def __init__(self):
        self.epoch = None
        self.tm = ZERO

    def update(self, epoch, tm):
        if self.epoch is None or epoch > self.epoch:
            self.epoch = epoch
            self.tm = tm
