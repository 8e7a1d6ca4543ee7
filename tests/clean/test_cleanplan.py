# SPDX-License-Identifier: AGPL-3.0-or-later
"""Cleanup planning (osmo_pcap.cleanplan): exact kept/deleted/compressed sets, no filesystem."""

import time
import unittest

from tests import support  # noqa: F401  (puts the repository on sys.path)
from osmo_pcap import tracename
from osmo_pcap.clean.plan import Policy, FoundTrace, plan

DAY = 86400.0
NOW = time.mktime((2025, 6, 1, 12, 0, 0, 0, 0, -1))


def tf(name, directory="/base", size=1000, usage=None, dev=1, locked=False, mtime=None):
    """Return a FoundTrace for a synthetic trace name, as the scanner would."""
    tn = tracename.parse_name(name)
    assert tn is not None, name
    t = tn.timestamp()
    if t is None:
        t = mtime
    return FoundTrace(directory + "/" + name, directory, tn.client, t, tn.seq, size,
                     usage, dev, tn.compression, locked)


def day_name(client, day, ext="pcap", seq=0, comp=None):
    """Name of a file of client started on May <day> 2025 (older for smaller days)."""
    name = tracename.format_name(client, (2025, 5, day, 0, 0, 0), ext, seq)
    return name + "." + comp if comp else name


def names(paths):
    return sorted(p.rsplit("/", 1)[-1] for p in paths)


NOCOMP = Policy(compress="none")


class AgeTest(unittest.TestCase):
    def test_older_than_max_age_deleted_newest_kept(self):
        files = [tf(day_name("bts1", d)) for d in range(1, 11)]  # May 1..10
        p = plan(files, NOW, NOCOMP.replace(max_age=25 * DAY))
        # NOW is June 1 12:00: May 1..6 are older than 25 days, May 7 is 25.5 days old
        self.assertEqual(names(p.deleted_paths("max_age")),
                         names(day_name("bts1", d) for d in range(1, 8)))
        self.assertEqual(p.compress, [])

    def test_all_old_keeps_the_newest(self):
        files = [tf(day_name("bts1", d)) for d in range(1, 4)]
        p = plan(files, NOW, NOCOMP.replace(max_age=1 * DAY))
        self.assertEqual(names(p.deleted_paths()), names([day_name("bts1", 1), day_name("bts1", 2)]))
        self.assertIn("/base/" + day_name("bts1", 3), p.protected)

    def test_mtime_fallback_for_impossible_date(self):
        bad = "trace-x-20251399_000000.pcap"  # month 13: no time in the name
        files = [tf(bad, mtime=NOW - 40 * DAY), tf(day_name("x", 30))]
        p = plan(files, NOW, NOCOMP.replace(max_age=30 * DAY))
        self.assertEqual(names(p.deleted_paths()), [bad])
        files = [tf(bad, mtime=NOW - 1 * DAY), tf(day_name("x", 30))]
        # now the bad-named file is the newest by mtime, hence protected
        p = plan(files, NOW, NOCOMP.replace(max_age=30 * DAY))
        self.assertEqual(p.delete, [])


class FilesTest(unittest.TestCase):
    def test_prefix_clients_are_separate(self):
        # upstream's script ate foo's budget with foo-bar's files (doc/clean.md#differences)
        files = [tf(day_name(c, d)) for c in ("foo", "foo-bar", "foo-bar-baz") for d in range(1, 7)]
        p = plan(files, NOW, NOCOMP.replace(max_files=2))
        expect = [day_name(c, d) for c in ("foo", "foo-bar", "foo-bar-baz") for d in range(1, 5)]
        self.assertEqual(names(p.deleted_paths("max_files")), sorted(expect))

    def test_pcapng_and_suffixes_ordered_by_seq(self):
        files = [tf(day_name("x", 5, "pcapng")), tf(day_name("x", 5, "pcapng", 1)),
                 tf(day_name("x", 5, "pcapng", 2)), tf(day_name("x", 4, "pcap", 7))]
        p = plan(files, NOW, NOCOMP.replace(max_files=2))
        self.assertEqual(names(p.deleted_paths()),
                         sorted([day_name("x", 4, "pcap", 7), day_name("x", 5, "pcapng")]))

    def test_across_directories_and_compressed(self):
        files = [tf(day_name("a", d, comp="gz"), "/base/done") for d in range(1, 5)]
        files += [tf(day_name("a", 5), "/base/done"), tf(day_name("a", 6), "/base")]
        p = plan(files, NOW, NOCOMP.replace(max_files=3))
        self.assertEqual(names(p.deleted_paths()),
                         sorted(day_name("a", d, comp="gz") for d in range(1, 4)))

    def test_newest_per_directory_protected(self):
        # done/ holds only old files: its newest stays although max_files=1
        files = [tf(day_name("a", d), "/done") for d in range(1, 4)] + [tf(day_name("a", 9))]
        p = plan(files, NOW, NOCOMP.replace(max_files=1))
        self.assertEqual(names(p.deleted_paths()), names([day_name("a", 1), day_name("a", 2)]))

    def test_compressed_newest_not_protected(self):
        files = [tf(day_name("a", d, comp="gz"), "/done") for d in range(1, 4)]
        files.append(tf(day_name("a", 9)))
        p = plan(files, NOW, NOCOMP.replace(max_age=20 * DAY))
        self.assertEqual(names(p.deleted_paths()),
                         sorted(day_name("a", d, comp="gz") for d in range(1, 4)))
        self.assertEqual(list(p.protected), ["/base/" + day_name("a", 9)])

    def test_client_override(self):
        files = [tf(day_name(c, d)) for c in ("a", "b") for d in range(1, 6)]
        p = plan(files, NOW, NOCOMP.replace(max_files=2),
                 {"b": NOCOMP.replace(max_files=4)})
        self.assertEqual(names(p.deleted_paths()),
                         sorted([day_name("a", d) for d in (1, 2, 3)] + [day_name("b", 1)]))

    def test_locked_file_untouched(self):
        files = [tf(day_name("a", d), locked=(d == 1)) for d in range(1, 5)]
        p = plan(files, NOW, Policy(max_files=1, compress_after=0))
        self.assertEqual(names(p.deleted_paths()), names([day_name("a", 2), day_name("a", 3)]))
        self.assertEqual(p.compress, [])
        self.assertIn("locked", p.protected["/base/" + day_name("a", 1)])


class BytesTest(unittest.TestCase):
    def test_global_budget_oldest_first_across_clients(self):
        files = [tf(day_name("a", d), size=100) for d in (1, 3, 5, 7)]
        files += [tf(day_name("b", d), size=100) for d in (2, 4, 6, 8)]
        p = plan(files, NOW, NOCOMP, max_bytes=450)
        self.assertEqual(names(p.deleted_paths("max_bytes")),
                         sorted([day_name("a", 1), day_name("b", 2), day_name("a", 3),
                                 day_name("b", 4)]))
        self.assertEqual(p.warnings, [])

    def test_client_budget_then_global(self):
        files = [tf(day_name("a", d), size=100) for d in (1, 2, 3, 4)]
        files += [tf(day_name("b", d), size=100) for d in (5, 6, 7, 8)]
        p = plan(files, NOW, NOCOMP, {"b": NOCOMP.replace(max_bytes=250)}, max_bytes=500)
        # b alone: 400 -> 200 (days 5, 6 go); total 600 -> 500 (a day 1 goes)
        self.assertEqual(names(p.deleted_paths()),
                         sorted([day_name("b", 5), day_name("b", 6), day_name("a", 1)]))

    def test_unreachable_budget_warns(self):
        files = [tf(day_name("a", 1), size=1000)]
        p = plan(files, NOW, NOCOMP, max_bytes=10)
        self.assertEqual(p.delete, [])
        self.assertEqual(len(p.warnings), 1)
        self.assertIn("max_bytes", p.warnings[0])


class FreeTest(unittest.TestCase):
    def test_min_free_per_filesystem_uses_disk_usage(self):
        files = [tf(day_name("a", d), "/fs1", size=10, usage=4096, dev=1) for d in range(1, 6)]
        files += [tf(day_name("b", d), "/fs2", size=10, usage=4096, dev=2) for d in range(1, 6)]
        p = plan(files, NOW, NOCOMP, need_free={1: 5000, 2: 0})
        self.assertEqual(names(p.deleted_paths("min_free")),
                         names([day_name("a", 1), day_name("a", 2)]))

    def test_min_free_after_other_rules(self):
        files = [tf(day_name("a", d), size=100) for d in range(1, 6)]
        p = plan(files, NOW, NOCOMP.replace(max_age=30 * DAY), need_free={1: 150})
        # max_age takes May 1 and 2; min_free then needs two more (100 each)
        self.assertEqual(names(p.deleted_paths("max_age")),
                         names([day_name("a", 1), day_name("a", 2)]))
        self.assertEqual(names(p.deleted_paths("min_free")),
                         names([day_name("a", 3), day_name("a", 4)]))


class CombinedTest(unittest.TestCase):
    def test_first_rule_wins_and_oldest_first(self):
        files = [tf(day_name("a", d), size=100) for d in range(1, 11)]
        pol = NOCOMP.replace(max_age=28 * DAY, max_files=5)
        p = plan(files, NOW, pol, max_bytes=300)
        got = [(f.path.rsplit("/", 1)[1], rule) for f, rule in p.delete]
        expect = ([(day_name("a", d), "max_age") for d in (1, 2, 3, 4)]
                  + [(day_name("a", 5), "max_files")]
                  + [(day_name("a", d), "max_bytes") for d in (6, 7)])
        self.assertEqual(got, expect)  # also oldest first

    def test_max_files_then_bytes(self):
        files = [tf(day_name("a", d), size=100) for d in range(1, 6)]
        p = plan(files, NOW, NOCOMP.replace(max_files=4), max_bytes=200)
        self.assertEqual([r for _, r in p.delete], ["max_files", "max_bytes", "max_bytes"])


class CompressTest(unittest.TestCase):
    def test_compress_after(self):
        files = [tf(day_name("a", d)) for d in range(1, 7)]
        files.append(tf(day_name("a", 1, comp="xz")))
        p = plan(files, NOW, Policy(compress_after=3))
        self.assertEqual(names(f.path for f, m, l in p.compress),
                         names(day_name("a", d) for d in (1, 2, 3)))
        self.assertEqual(set((m, l) for f, m, l in p.compress), {("gzip", 6)})

    def test_compress_counts_survivors_only(self):
        files = [tf(day_name("a", d)) for d in range(1, 7)]
        p = plan(files, NOW, Policy(max_files=4, compress_after=2))
        self.assertEqual(names(p.deleted_paths()), names([day_name("a", 1), day_name("a", 2)]))
        self.assertEqual(names(f.path for f, _, _ in p.compress),
                         names([day_name("a", 3), day_name("a", 4)]))

    def test_zero_compresses_all_but_protected(self):
        files = [tf(day_name("a", d)) for d in range(1, 4)]
        files += [tf(day_name("a", d), "/done") for d in range(1, 3)]
        p = plan(files, NOW, Policy(compress_after=0))
        self.assertEqual(sorted(f.path for f, _, _ in p.compress),
                         sorted(["/base/" + day_name("a", 1), "/base/" + day_name("a", 2),
                                 "/done/" + day_name("a", 1)]))

    def test_per_client_method_and_none(self):
        files = [tf(day_name(c, d)) for c in ("a", "b", "c") for d in range(1, 4)]
        p = plan(files, NOW, Policy(compress_after=1),
                 {"b": Policy(compress_after=1, compress="xz", compress_level=9),
                  "c": Policy(compress="none")})
        got = sorted((f.client, m, l) for f, m, l in p.compress)
        self.assertEqual(got, [("a", "gzip", 6), ("a", "gzip", 6), ("b", "xz", 9), ("b", "xz", 9)])


if __name__ == "__main__":
    unittest.main()
