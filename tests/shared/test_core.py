# SPDX-License-Identifier: AGPL-3.0-or-later
"""Shared helpers: config parsing, the event loop, trace names, log rate limiting."""

import os
import platform
import signal
import socket
import subprocess
import sys
import time
import unittest

from tests import support
from osmo_pcap import log, loop, memory, tracename
from osmo_pcap import ini


class ConfigTest(support.TempDirTestCase):
    def ini(self, text):
        path = self.path("x.ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_values(self):
        self.assertEqual(ini.parse_size("16M"), 16 << 20)
        self.assertEqual(ini.parse_size("1G"), 1 << 30)
        self.assertEqual(ini.parse_size("4096"), 4096)
        self.assertEqual(ini.parse_size("off", allow_off=True), 0)
        self.assertRaises(ValueError, ini.parse_size, "12Q")
        self.assertEqual(ini.parse_duration("120d"), 120 * 86400)
        self.assertEqual(ini.parse_duration("2w"), 14 * 86400)
        self.assertEqual(ini.parse_duration("1.5", "h"), 5400)
        self.assertRaises(ValueError, ini.parse_duration, "soon")
        self.assertTrue(ini.parse_bool("Yes"))
        self.assertFalse(ini.parse_bool("off"))
        self.assertRaises(ValueError, ini.parse_bool, "maybe")
        self.assertEqual(ini.parse_octal_mode("0440"), 0o440)
        self.assertRaises(ValueError, ini.parse_octal_mode, "0948")
        self.assertEqual(ini.parse_host_port("127.0.0.1:9101"), ("127.0.0.1", 9101))
        self.assertEqual(ini.parse_host_port("[::1]:80"), ("::1", 80))
        self.assertEqual(ini.parse_host_port("57012"), ("127.0.0.1", 57012))
        self.assertRaises(ValueError, ini.parse_host_port, "host:99999")
        self.assertRaises(ValueError, ini.parse_int, "5", 6)

    def test_safe_names(self):
        for ok in ("bts1", "foo-bar", "a.b_c+d", "X" * 64):
            self.assertEqual(ini.check_safe_name(ok), ok)
        for bad in ("", ".", "..", "a/b", "-x", "a b", "x" * 65, "é", ".hidden"):
            self.assertRaises(ValueError, ini.check_safe_name, bad)

    def test_section_errors_name_file_section_and_key(self):
        path = self.ini("[server]\nport = 12x ; comment\nbogus = 1\n")
        cp = ini.read_ini(path)
        sec = ini.Section(cp, "server", path)
        with self.assertRaises(ini.ConfigError) as cm:
            sec.get("port", ini.parse_port)
        self.assertIn(path, str(cm.exception))
        self.assertIn("[server]", str(cm.exception))
        self.assertIn("port", str(cm.exception))
        sec = ini.Section(cp, "server", path)
        sec.get("port")
        with self.assertRaises(ini.ConfigError) as cm:
            sec.finish()
        self.assertIn("bogus", str(cm.exception))
        self.assertEqual(sec.get("absent", int, 7), 7)

    def test_indented_line_is_not_silently_joined(self):
        path = self.ini("[server]\nbase_path = /x\n  port = 1\n")
        sec = ini.Section(ini.read_ini(path), "server", path)
        with self.assertRaises(ini.ConfigError) as cm:
            sec.get("base_path")
        self.assertIn("indented line", str(cm.exception))
        self.assertIn("base_path", str(cm.exception))

    def test_file_errors(self):
        with self.assertRaises(ini.ConfigError) as cm:
            ini.read_ini(self.path("missing.ini"))
        self.assertIn("missing.ini", str(cm.exception))
        with self.assertRaises(ini.ConfigError) as cm:
            ini.read_ini(self.ini("[a]\nx=1\nx=2\n"))
        self.assertIn("duplicate", str(cm.exception))
        with self.assertRaises(ini.ConfigError) as cm:
            ini.read_ini(self.ini("x=1\n"))
        self.assertIn("line 1", str(cm.exception))
        with self.assertRaises(ini.ConfigError):
            ini.read_ini(self.ini("[a]\n[a]\n"))


class LoopTest(unittest.TestCase):
    def test_readers_timers_and_signals(self):
        lp = loop.Loop()
        self.addCleanup(lp.close)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        got = []
        lp.add_reader(a, lambda: got.append(a.recv(10)))
        b.send(b"hi")
        lp.call_later(0.05, got.append, "late")
        rep = lp.call_every(0.01, got.append, "tick")
        lp.call_later(0.035, rep.cancel)
        cancelled = lp.call_later(0.02, got.append, "never")
        cancelled.cancel()
        lp.on_signal(signal.SIGUSR2, lambda s: (got.append("sig"), lp.stop()))
        lp.call_later(0.08, os.kill, os.getpid(), signal.SIGUSR2)
        lp.run()
        self.assertEqual(got[0], b"hi")
        self.assertIn(got.count("tick"), (2, 3))
        self.assertNotIn("never", got)
        self.assertEqual(got[-2:], ["late", "sig"])
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)

    def test_writer_and_removal(self):
        lp = loop.Loop()
        self.addCleanup(lp.close)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        seen = []

        def writable():
            seen.append("w")
            lp.remove_writer(a)

        lp.add_writer(a, writable)
        lp.run_once(0.1)
        lp.run_once(0.01)
        self.assertEqual(seen, ["w"])
        lp.add_reader(a, lambda: seen.append("r"))
        lp.remove(a)
        b.send(b"x")
        lp.run_once(0.01)
        self.assertEqual(seen, ["w"])


    def test_object_removed_by_an_earlier_callback_of_the_round_is_not_called(self):
        lp = loop.Loop()
        self.addCleanup(lp.close)
        pairs = [socket.socketpair() for _ in range(2)]
        for a, b in pairs:
            self.addCleanup(a.close)
            self.addCleanup(b.close)
        called = []

        def reader(i):
            called.append(i)
            other = pairs[1 - i][0]
            lp.remove(other)      # e.g. a connection closed while handling another
            other.close()
        for i, (a, b) in enumerate(pairs):
            lp.add_reader(a, lambda i=i: reader(i))
            b.send(b"x")          # both readable in the same round
        lp.run_once(0.1)
        self.assertEqual(len(called), 1)

    def test_cancelled_timer_lets_go_of_its_callback_at_once(self):
        """A cancelled timer's arguments are freed now, not at its deadline."""
        import gc
        import weakref

        class Owner(object):
            def tick(self):
                pass
        lp = loop.Loop()
        self.addCleanup(lp.close)
        owner = Owner()
        ref = weakref.ref(owner)
        t = lp.call_later(3600, owner.tick)
        lp.call_later(3600, print, owner)
        was = gc.isenabled()
        gc.disable()   # freed by reference counting, not by a collection
        try:
            t.cancel()
            lp._timers[1].cancel()
            del owner
            self.assertIsNone(ref())
        finally:
            if was:
                gc.enable()
        self.assertEqual(lp.pending_timers(), 0)
        t.cancel()     # twice: no harm, counted once
        self.assertEqual(lp.pending_timers(), 0)

    def test_cancelled_timers_do_not_pile_up(self):
        lp = loop.Loop()
        self.addCleanup(lp.close)
        ran = []
        keep = lp.call_later(0, ran.append, "kept")
        for i in range(10000):
            lp.call_later(60, ran.append, i).cancel()
        self.assertLessEqual(len(lp._timers), 2 * loop.COMPACT_MIN + 2)
        self.assertEqual(lp.pending_timers(), 1)
        lp.run_once(0)
        self.assertEqual(ran, ["kept"])
        self.assertEqual(lp.pending_timers(), 0)
        keep.cancel()  # after it ran: nothing to count
        self.assertEqual(lp.pending_timers(), 0)
        self.assertGreaterEqual(lp._cancelled, 0)

    def test_timer_cancelled_by_an_earlier_timer_of_the_round_does_not_run(self):
        lp = loop.Loop()
        self.addCleanup(lp.close)
        ran = []
        later = []
        lp.call_later(0, lambda: [t.cancel() for t in later])
        later += [lp.call_later(0, ran.append, i) for i in range(200)]
        lp.run_once(0)
        self.assertEqual(ran, [])
        self.assertEqual(lp.pending_timers(), 0)


class TrimmerTest(unittest.TestCase):
    def test_trims_after_a_burst_or_during_a_long_one(self):
        from osmo_pcap import memory
        now = [0.0]
        calls = []
        t = memory.Trimmer(churn=100, interval=10.0, quiet=1.0, clock=lambda: now[0])
        t._trim = calls.append
        self.assertFalse(t.maybe_trim(50))          # too few connections
        now[0] += 5
        self.assertFalse(t.maybe_trim(150))         # a burst under way
        now[0] += 0.5
        self.assertFalse(t.maybe_trim(150))
        now[0] += 0.6
        self.assertTrue(t.maybe_trim(150))          # quiet for a second: trimmed
        self.assertEqual(calls, [0])
        for i in range(9):                          # a long burst: every 10 s
            now[0] += 1.0
            self.assertFalse(t.maybe_trim(200 + 100 * i))
        now[0] += 1.0
        self.assertTrue(t.maybe_trim(1200))
        self.assertFalse(t.maybe_trim(1200))        # nothing new since
        self.assertEqual(t.trims, 2)

    def test_the_c_function_is_found_or_quietly_absent(self):
        from osmo_pcap import memory
        t = memory.Trimmer(churn=1, quiet=0.0)
        self.assertIn(bool(t._function()), (True, False))
        t.maybe_trim(5)    # never raises, with or without glibc


_HEAP_PROBE = r"""
import ctypes, sys
sys.path.insert(0, sys.argv[1])
from osmo_pcap import memory


class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


mallinfo = ctypes.CDLL(None).mallinfo
mallinfo.restype = MallInfo
steady = memory.steady_heap() if sys.argv[2] == "steady" else False
mapped = mallinfo().hblkhd
block = bytearray(256 << 10)   # above glibc's default mmap threshold (128 KiB)
inside = mallinfo().hblkhd == mapped   # not a mapping of its own: from the heap
heap = mallinfo().arena
del block
print(steady, inside, mallinfo().arena >= heap)
"""


@unittest.skipUnless(sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc",
                     "glibc's malloc only")
class SteadyHeapTest(unittest.TestCase):
    def probe(self, mode):
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, support.REPO, mode],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True)
        return out.stdout.split()

    def test_round_sized_blocks_come_from_a_heap_that_stays(self):
        # Without it, a 256 KiB block is a mapping of its own (mapped and
        # unmapped every round); with it, the heap holds the block and keeps
        # its pages after the free. (glibc's mallinfo: hblkhd counts mapped
        # blocks, arena the heap's size.)
        self.assertEqual(self.probe("default"), ["False", "False", "True"])
        self.assertEqual(self.probe("steady"), ["True", "True", "True"])


_ARENA_PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from osmo_pcap import memory
kept = memory.keep_arenas(8 << 20) if sys.argv[2] == "keep" else 0
again = memory.keep_arenas(8 << 20) if sys.argv[2] == "keep" else 0
print(kept, again, flush=True)
sys._debugmallocstats()
for _ in range(20):
    batch = [bytes(100 + i % 7) for i in range(40000)]   # a received batch: 4 MiB of records
    del batch
sys._debugmallocstats()
"""


@unittest.skipUnless(sys.implementation.name == "cpython" and
                     os.environ.get("PYTHONMALLOC", "pymalloc").startswith("pymalloc"),
                     "CPython's small-object allocator")
class KeepArenasTest(unittest.TestCase):
    def probe(self, mode):
        """(objects keep_arenas() kept, arenas the allocator unmapped during 20 batches)"""
        out = subprocess.run([sys.executable, "-c", _ARENA_PROBE, support.REPO, mode],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, check=True)
        reclaimed = [int(line.split("=")[1]) for line in out.stderr.splitlines()
                     if line.startswith("# arenas reclaimed")]
        self.assertEqual(len(reclaimed), 2, out.stderr[-2000:])
        kept, again = (int(n) for n in out.stdout.split())
        self.assertEqual(again, kept)     # a second call keeps nothing more
        return kept, reclaimed[1] - reclaimed[0]

    def test_batches_of_small_objects_keep_their_arenas(self):
        # Without: every batch unmaps the arenas it emptied (all of them
        # before 3.10, all but one after). With: one holder per stretch of
        # the 8 MiB filled, and nothing unmapped.
        _, unmapped_without = self.probe("none")
        self.assertGreaterEqual(unmapped_without, 20)
        kept, unmapped = self.probe("keep")
        self.assertEqual(unmapped, 0)
        self.assertGreaterEqual(kept, (8 << 20) // memory.ARENA_STRETCH // 2)


class TraceNameTest(unittest.TestCase):
    def test_format_and_parse(self):
        tm = (2025, 3, 1, 14, 5, 9)
        self.assertEqual(tracename.format_name("bts1", tm, "pcapng"),
                         "trace-bts1-20250301_140509.pcapng")
        self.assertEqual(tracename.format_name("foo-bar", tm, "pcap", 2),
                         "trace-foo-bar-20250301_140509-2.pcap")
        t = tracename.parse_name("trace-foo-bar-20250301_140509-2.pcap.gz")
        self.assertEqual((t.client, t.stamp, t.seq, t.ext, t.compression, t.base),
                         ("foo-bar", "20250301_140509", 2, "pcap", "gz",
                          "trace-foo-bar-20250301_140509-2.pcap"))
        self.assertEqual(tracename.parse_name("trace-foo-20250301_140509.pcapng").client, "foo")
        self.assertEqual(tracename.parse_name("trace-x-20250101_000000.pcapng").ext, "pcapng")
        for other in ("trace-foo.pcap", "foo-20250301_140509.pcap", "trace-foo-20250301_140509.txt",
                      "trace-foo-20250301_140509.pcap.zip", "trace--20250301_140509.pcap",
                      ".trace-foo-20250301_140509.pcap.tmp"):
            self.assertIsNone(tracename.parse_name(other), other)
        self.assertEqual(tracename.parse_name("trace-a-20250301_140509.pcap").timestamp(),
                         time.mktime((2025, 3, 1, 14, 5, 9, 0, 0, -1)))
        self.assertIsNone(tracename.parse_name("trace-a-20251301_140509.pcap").timestamp())


class RateLimiterTest(unittest.TestCase):
    def test_counts_suppressed_lines(self):
        now = [100.0]
        rl = log.RateLimiter(10, clock=lambda: now[0])
        self.assertEqual(rl.ok("scan"), 0)
        self.assertIsNone(rl.ok("scan"))
        self.assertIsNone(rl.ok("scan"))
        self.assertEqual(rl.ok("other"), 0)
        now[0] += 10
        self.assertEqual(rl.ok("scan"), 2)

    def test_due_reports_held_lines_once_their_interval_ended(self):
        now = [100.0]
        rl = log.RateLimiter(10, clock=lambda: now[0])
        rl.ok("a")
        rl.ok("a")
        rl.ok("a")
        rl.ok("b")
        self.assertEqual(rl.due(), [])
        now[0] += 10
        self.assertEqual(rl.due(), [("a", 2)])
        self.assertEqual(rl.due(), [])
        self.assertIsNone(rl.ok("a"))     # the summary counts as a line let through
        now[0] += 10
        self.assertEqual(rl.ok("a"), 1)
        rl.ok("a")
        self.assertEqual(rl.due(), [])
        self.assertEqual(rl.due(everything=True), [("a", 1)])   # at exit


if __name__ == "__main__":
    unittest.main()
