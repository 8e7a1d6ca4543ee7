# SPDX-License-Identifier: AGPL-3.0-or-later
"""The rotate_localtime period check (doc/protocol.md#rotation) and its config syntax."""

import os
import time
import unittest

from tests import support
from osmo_pcap import rotation


def load_vectors():
    rows = []
    with open(os.path.join(support.DATA, "rotate_localtime.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            group, unit, mod, last, now, expected = line.rstrip("\n").split("\t")
            rows.append((group, unit, int(mod), tuple(int(x) for x in last.split()),
                         tuple(int(x) for x in now.split()), expected == "REOPEN"))
    return rows


class UpstreamVectors(unittest.TestCase):
    def test_all_337_vectors(self):
        rows = load_vectors()
        self.assertEqual(len(rows), 337)
        wrong = [r for r in rows if rotation.new_period(r[3], r[4], r[1], r[2]) != r[5]]
        self.assertEqual(wrong, [])

    def test_groups_chain_last_to_now(self):
        # The file's own promise: within a group, last of row n+1 is now of row n.
        rows = load_vectors()
        for a, b in zip(rows, rows[1:]):
            if a[0] == b[0]:
                self.assertEqual(b[3], a[4])
        self.assertEqual(len(set(r[0] for r in rows)), 14)


class PeriodCheck(unittest.TestCase):
    def test_minute_mod_21_boundaries(self):
        t = lambda m, s=0: (125, 0, 1, 10, m, s)
        self.assertFalse(rotation.new_period(t(0), t(20, 59), "minute", 21))
        self.assertTrue(rotation.new_period(t(20, 59), t(21), "minute", 21))
        self.assertTrue(rotation.new_period(t(41), t(42), "minute", 21))
        self.assertFalse(rotation.new_period(t(42), t(59, 59), "minute", 21))
        # next hour always starts a new period
        self.assertTrue(rotation.new_period(t(59), (125, 0, 1, 11, 0, 0), "minute", 21))

    def test_day_periods_start_at_day_one(self):
        d = lambda day: (125, 4, day, 0, 0, 0)
        self.assertFalse(rotation.new_period(d(1), d(10), "day", 10))
        self.assertTrue(rotation.new_period(d(10), d(11), "day", 10))
        self.assertTrue(rotation.new_period(d(30), d(31), "day", 10))

    def test_clock_backwards_keeps(self):
        self.assertFalse(rotation.new_period((125, 0, 1, 10, 30, 0), (125, 0, 1, 9, 59, 0),
                                             "hour", 1))


class LastWriteGuard(unittest.TestCase):
    def test_never_moves_backwards(self):
        lw = rotation.LastWrite()
        self.assertEqual(lw.tm, rotation.ZERO)
        lw.update(1000.0, (125, 0, 1, 10, 0, 0))
        lw.update(900.0, (125, 0, 1, 9, 58, 20))
        self.assertEqual((lw.epoch, lw.tm), (1000.0, (125, 0, 1, 10, 0, 0)))
        lw.update(1001.0, (125, 0, 1, 10, 0, 1))
        self.assertEqual(lw.tm, (125, 0, 1, 10, 0, 1))


class Syntax(unittest.TestCase):
    def test_accepted(self):
        self.assertEqual(rotation.parse_rotate("hour"), ("hour", 1))
        self.assertEqual(rotation.parse_rotate("minute mod 21"), ("minute", 21))
        self.assertEqual(rotation.parse_rotate("second  mod 2"), ("second", 2))
        self.assertIsNone(rotation.parse_rotate("off"))
        self.assertEqual(rotation.format_rotate(("minute", 21)), "minute mod 21")
        self.assertEqual(rotation.format_rotate(("day", 1)), "day")
        self.assertEqual(rotation.format_rotate(None), "off")

    def test_modulus_checked_against_its_own_unit(self):
        # upstream checked the bound of the previously set unit
        # (doc/protocol.md#diff-rotate-modulus)
        self.assertEqual(rotation.parse_rotate("minute mod 45"), ("minute", 45))
        for bad in ("hour mod 30", "minute mod 0", "minute mod 61", "fortnight", "day mod x",
                    "minute 5", "", "month mod 13"):
            with self.assertRaises(ValueError, msg=bad):
                rotation.parse_rotate(bad)


class Clock(unittest.TestCase):
    def test_localtime_cached_per_second(self):
        calls = []
        now = [1700000000.25]

        def lt(sec):
            calls.append(sec)
            return time.gmtime(sec)
        c = rotation.LocalClock(lambda: now[0], lt)
        a = c.now()
        now[0] = 1700000000.75
        b = c.now()
        now[0] = 1700000001.1
        d = c.now()
        self.assertEqual(calls, [1700000000, 1700000001])
        self.assertEqual(a[1], b[1])
        self.assertEqual(a[1], (123, 10, 14, 22, 13, 20))
        self.assertEqual(d[1][5], 21)
        self.assertEqual(b[0], 1700000000.75)


if __name__ == "__main__":
    unittest.main()
