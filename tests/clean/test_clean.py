# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_clean.py end to end: the generated script on real directory trees.

Trees of synthetic trace files (names and mtimes chosen here) and exact sets
kept, deleted and compressed; files held locked by another process (and by a
real server); a run lock; interrupted compression; min_free on a small tmpfs.
"""

import errno
import gzip
import os
import signal
import socket
import subprocess
import sys
import time

from tests import support
from osmo_pcap import tracename
from osmo_pcap.clean import compress

DAY = 86400.0
PY = sys.executable
# holds an exclusive flock on argv[1] until stdin closes
LOCK_HOLDER = ("import fcntl, os, sys\n"
               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
               "print('locked', flush=True)\n"
               "sys.stdin.read()\n")


def name_at(client, t, ext="pcap", seq=0, comp=None):
    """Return the server's name for a file of client started at epoch t."""
    n = tracename.format_name(client, time.localtime(t), ext, seq)
    return n + "." + comp if comp else n


def pcap_bytes(tag):
    """Return a small valid pcap file whose one packet carries tag."""
    from osmo_pcap import pcapfile
    payload = tag.encode() + b"\x00" * 40
    return pcapfile.encode_global_header(65535, 1) + pcapfile.encode_record(1700000000, 0, payload)


class CleanCase(support.TempDirTestCase):
    def setUp(self):
        support.TempDirTestCase.setUp(self)
        self.now = time.time()
        self.contents = {}

    def make(self, directory, name, days_old=None, data=None, mode=0o440, mtime=None):
        """Create a trace file; remember its bytes; set the mtime to its age."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        data = pcap_bytes(name) if data is None else data
        if name.endswith(".gz"):
            data = gzip.compress(data)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        if mtime is None and days_old is not None:
            mtime = self.now - days_old * DAY
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        self.contents[path] = data
        return path

    def aged(self, client, days_old, **kw):
        return name_at(client, self.now - days_old * DAY, **kw)

    def config(self, text, name="clean.ini"):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def clean(self, cfg, *args, **kw):
        kw.setdefault("check", False)
        return support.run(support.script_cmd("clean", "-c", cfg, *args), **kw)

    def listing(self, directory):
        """Return the names in directory, without the run's lock file."""
        return sorted(n for n in os.listdir(directory) if n != ".osmo-pcap-clean.lock")

    def assert_gzip_of(self, gz_path, original_path):
        with gzip.open(gz_path) as f:
            self.assertEqual(f.read(), self.contents[original_path])


class TreeTest(CleanCase):
    """One tree with the upstream failure cases; every rule; exact results."""

    def build(self):
        base, done = self.path("base"), self.path("done")
        a = self.aged
        foo = [a("foo", d) for d in (20.5, 12.5, 8.5, 6.5, 4.5, 2.5, 0.5)]
        foo.append(a("foo", 0.5, seq=1))  # same second: collision suffix, the newest
        foobar = [a("foo-bar", d, ext="pcapng") for d in (9.5, 7.5, 5.5, 3.5, 1.5)]
        for n, d in zip(foo, (20.5, 12.5, 8.5, 6.5, 4.5, 2.5, 0.5, 0.5)):
            self.make(base, n, d)
        for n, d in zip(foobar, (9.5, 7.5, 5.5, 3.5, 1.5)):
            self.make(base, n, d)
        done_foo = [a("foo", 30.5, comp="gz"), a("foo", 15.5, comp="gz")]
        for n, d in zip(done_foo, (30.5, 15.5)):
            self.make(done, n, d)
        old_x = a("x", 40.5, ext="pcapng")
        self.make(done, old_x, 40.5)
        # never touched: other names, a symlink, a directory
        others = ["README", "trace-notes.txt", "trace-foo-2025.pcap", "trace-foo-20200101_000000.txt"]
        for n in others:
            self.make(base, n, 100)
        outside = self.make(self.path("elsewhere"), "x.pcap", 100)
        link = a("foo", 50)
        os.symlink(outside, os.path.join(base, link))
        os.mkdir(os.path.join(base, a("foo", 60)))
        cfg = self.config("[clean]\npaths = base done\nmax_age = 10d\nmax_files = 4\n"
                          "compress_after = 1\n\n[client foo-bar]\nmax_files = 2\n")
        expect_base = sorted(others + [link, a("foo", 60), foo[7], foo[6] + ".gz",
                                       foo[5] + ".gz", foo[4] + ".gz", foobar[4],
                                       foobar[3] + ".gz"])
        expect_done = [old_x]  # the newest of x in done/ is protected, a compressed one not
        deleted = {
            os.path.join(base, foo[0]): "max_age", os.path.join(base, foo[1]): "max_age",
            os.path.join(done, done_foo[0]): "max_age",
            os.path.join(done, done_foo[1]): "max_age",
            os.path.join(base, foo[2]): "max_files", os.path.join(base, foo[3]): "max_files",
            os.path.join(base, foobar[0]): "max_files",
            os.path.join(base, foobar[1]): "max_files",
            os.path.join(base, foobar[2]): "max_files",
        }
        compressed = [os.path.join(base, n) for n in (foo[4], foo[5], foo[6], foobar[3])]
        return cfg, base, done, expect_base, expect_done, deleted, compressed

    def test_tree(self):
        cfg, base, done, expect_base, expect_done, deleted, compressed = self.build()
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.listing(base), expect_base)
        self.assertEqual(self.listing(done), expect_done)
        for path in compressed:
            self.assert_gzip_of(path + ".gz", path)
            st = os.stat(path + ".gz")
            self.assertEqual(st.st_mode & 0o777, 0o440)
            self.assertAlmostEqual(st.st_mtime, os.path.getmtime(path + ".gz"))
        # the report names the rule for each deletion, oldest first
        lines = [l for l in p.stdout.splitlines() if l.startswith("deleted /")]
        got = dict((l.split()[1], l.split("(", 1)[1].split(":")[0]) for l in lines)
        self.assertEqual(got, deleted)
        self.assertIn("deleted 9 file(s)", p.stdout)
        self.assertIn("compressed 4 file(s)", p.stdout)
        self.assertEqual(p.stderr, "")
        # a second run has nothing left to do
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted 0 file(s)", p.stdout)
        self.assertIn("compressed 0 file(s)", p.stdout)
        self.assertEqual(self.listing(base), expect_base)

    def test_dry_run_changes_nothing(self):
        cfg, base, done, _, _, deleted, compressed = self.build()

        def state():
            return dict((os.path.join(d, n), os.lstat(os.path.join(d, n)).st_mtime_ns)
                        for d in (base, done) for n in os.listdir(d))
        before = state()
        p = self.clean(cfg, "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(state(), before)
        self.assertFalse(os.path.exists(os.path.join(base, ".osmo-pcap-clean.lock")))
        lines = p.stdout.splitlines()
        self.assertEqual(dict((l.split()[2], l.split("(", 1)[1].split(":")[0])
                              for l in lines if l.startswith("would delete /")), deleted)
        self.assertEqual(sorted(l.split()[2] for l in lines if l.startswith("would compress /")),
                         sorted(compressed))


class ScanTest(CleanCase):
    """tracedir.scan in-process: what counts as a trace file, times, temporaries."""

    def test_scan(self):
        from osmo_pcap.clean import tracedir
        d = self.path("d")
        good = self.make(d, "trace-foo-bar-20250102_030405-2.pcapng.xz", mtime=1000)
        odd = self.make(d, "trace-foo-20251399_000000.pcap", mtime=123456)  # no valid date
        tmp = self.make(d, compress.temp_name("trace-foo-20250101_000000.pcap.gz"))
        self.make(d, "trace-foo-20250101_000000.pcap.zip")
        self.make(d, ".osmo-pcap-clean.lock")
        os.symlink(good, os.path.join(d, "trace-foo-20250101_000000.pcap"))
        os.mkdir(os.path.join(d, "trace-foo-20250101_000001.pcap"))
        files, temps = tracedir.scan(d)
        self.assertEqual(temps, [tmp])
        got = dict((f.path, f) for f in files)
        self.assertEqual(sorted(got), sorted([good, odd]))
        g = got[good]
        self.assertEqual((g.client, g.seq, g.compression, g.dir, g.size, g.locked),
                         ("foo-bar", 2, "xz", d, os.path.getsize(good), False))
        self.assertEqual(g.time, time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1)))
        self.assertEqual((got[odd].client, got[odd].time), ("foo", 123456))
        self.assertEqual(g.dev, os.stat(d).st_dev)


class ExitStatusTest(CleanCase):
    def test_config_error_exits_2(self):
        cfg = self.config("[clean]\npaths = x\nmax_files = many\n")
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 2)
        self.assertIn("clean.ini [clean] max_files", p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        p = self.clean(self.path("missing.ini"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing.ini", p.stderr)
        p = self.clean(cfg, "--no-such-option")
        self.assertEqual(p.returncode, 2)

    def test_failures_logged_run_continues_exit_1(self):
        d = self.path("d")
        bad = self.make(d, self.aged("a", 5))
        with open(bad + ".gz", "wb") as f:
            f.write(b"someone else's file")
        other = self.make(d, self.aged("b", 5))
        self.make(d, self.aged("a", 1))
        self.make(d, self.aged("b", 1))
        old = self.make(d, self.aged("b", 50))
        cfg = self.config("[clean]\npaths = d nonexistent\nmax_age = 30d\ncompress_after = 1\n")
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot compress %s: %s.gz exists already" % (bad, bad), p.stderr)
        self.assertIn("cannot read directory %s" % self.path("nonexistent"), p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        self.assertTrue(os.path.exists(bad))
        self.assert_gzip_of(other + ".gz", other)
        self.assertFalse(os.path.exists(old))

    def test_version_help_check_config(self):
        p = support.run(support.script_cmd("clean", "--version"))
        self.assertIn("osmo_pcap_clean.py", p.stdout)
        p = support.run(support.script_cmd("clean", "-V"))
        self.assertIn("osmo_pcap_clean.py", p.stdout)
        p = support.run(support.script_cmd("clean", "-h"))
        self.assertIn("--dry-run", p.stdout)
        self.config("[clean]\npaths = d e\n[client bts1]\nmax_files = 100\n",
                    "osmo-pcap-clean.ini")
        # a directory that does not exist is named, with the key (and never created)
        p = support.run(support.script_cmd("clean", "--check-config"), cwd=self.tmp,
                        check=False)
        self.assertEqual((p.returncode, p.stdout), (2, ""))
        self.assertEqual(p.stderr.splitlines(), [
            "osmo_pcap_clean.py: %s [clean] paths: %s does not exist"
            % ("osmo-pcap-clean.ini", self.path(n)) for n in ("d", "e")])
        self.assertFalse(os.path.exists(self.path("d")))
        os.mkdir(self.path("d"))
        with open(self.path("e"), "w"):
            pass
        p = support.run(support.script_cmd("clean", "--check-config"), cwd=self.tmp,
                        check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("[clean] paths: %s is not a directory" % self.path("e"), p.stderr)
        os.unlink(self.path("e"))
        os.mkdir(self.path("e"))
        p = support.run(support.script_cmd("clean", "--check-config"), cwd=self.tmp)
        self.assertIn("client bts1: max_age=off max_files=100", p.stdout)


class LockTest(CleanCase):
    def hold_lock(self, path):
        """Start a helper process holding flock(LOCK_EX) on path."""
        p = subprocess.Popen([PY, "-c", LOCK_HOLDER, path], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True)

        def release():
            p.stdin.close()
            p.wait(30)
            p.stdout.close()
        self.addCleanup(release)
        self.assertEqual(p.stdout.readline().strip(), "locked")
        return release

    def test_locked_file_left_alone(self):
        d = self.path("d")
        busy = self.make(d, self.aged("a", 50))  # old, not the newest: only the lock saves it
        idle = self.make(d, self.aged("a", 49))
        self.make(d, self.aged("a", 1))
        release = self.hold_lock(busy)
        cfg = self.config("[clean]\npaths = d\nmax_age = 30d\n")
        p = self.clean(cfg, "--dry-run", "-v")
        self.assertIn("keep %s (in use (locked by the server))" % busy, p.stdout)
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(busy))
        self.assertFalse(os.path.exists(idle))
        cfg = self.config("[clean]\npaths = d\ncompress_after = 0\n")
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(busy))
        self.assertFalse(os.path.exists(busy + ".gz"))
        release()
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_gzip_of(busy + ".gz", busy)

    def test_second_run_exits_at_once(self):
        d = self.path("d")
        old = self.make(d, self.aged("a", 50))
        self.make(d, self.aged("a", 1))
        cfg = self.config("[clean]\npaths = d\nmax_age = 30d\nlock_file = run.lock\n")
        release = self.hold_lock(self.path("run.lock"))
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 1)
        self.assertIn("another run is busy (lock file %s" % self.path("run.lock"), p.stderr)
        self.assertTrue(os.path.exists(old))
        p = self.clean(cfg, "--dry-run")  # a dry run changes nothing: no lock needed
        self.assertEqual(p.returncode, 0, p.stderr)
        release()
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(old))
        with open(self.path("run.lock")) as f:
            self.assertTrue(f.read().strip().isdigit())  # the pid of the last run


class InterruptTest(CleanCase):
    """Kill the cleaner while it compresses a large file; the directory stays consistent."""

    def start_slow_compression(self):
        d = self.path("d")
        big = self.make(d, self.aged("a", 10), data=os.urandom(12 << 20))  # xz: ~2 MB/s here
        self.make(d, self.aged("a", 1))
        cfg = self.config("[clean]\npaths = d\ncompress_after = 1\ncompress = xz\n")
        p = subprocess.Popen(support.script_cmd("clean", "-c", cfg), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        tmp = os.path.join(d, compress.temp_name(os.path.basename(big) + ".xz"))
        for _ in range(3000):  # wait for the temporary file, not for a time
            if os.path.exists(tmp) or p.poll() is not None:
                break
            time.sleep(0.01)
        self.assertTrue(os.path.exists(tmp), "the compression never started")
        return d, big, tmp, p

    def test_sigkill_then_next_run_cleans_up(self):
        d, big, tmp, p = self.start_slow_compression()
        p.kill()
        p.communicate(timeout=30)
        # the original is intact; the final name holds nothing or a complete file
        with open(big, "rb") as f:
            self.assertEqual(f.read(), self.contents[big])
        self.assertFalse(os.path.exists(big + ".xz"))
        self.config("[clean]\npaths = d\ncompress_after = 1\ncompress = gzip\n"
                    "compress_level = 1\n")
        q = self.clean(self.path("clean.ini"), "-v")
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertIn("removed %s (temporary file of an interrupted run)" % tmp, q.stdout)
        self.assertEqual([n for n in os.listdir(d) if n.startswith(".osmo-pcap-clean.")
                          and n.endswith(".tmp")], [])
        self.assertFalse(os.path.exists(big))
        self.assert_gzip_of(big + ".gz", big)

    def test_sigterm_removes_temporary(self):
        d, big, tmp, p = self.start_slow_compression()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("stopped by signal %d" % signal.SIGTERM, err)
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(tmp))
        self.assertFalse(os.path.exists(big + ".xz"))
        with open(big, "rb") as f:
            self.assertEqual(f.read(), self.contents[big])


class MinFreeTest(CleanCase):
    def mount_tmpfs(self, size):
        support.require_root()
        mnt = self.path("small")
        os.mkdir(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        support.need(r.returncode == 0, "cannot mount a tmpfs: %r" % r.stdout)
        self.addCleanup(subprocess.call, ["umount", "-l", mnt])
        return mnt

    def test_min_free_on_small_tmpfs(self):
        mnt = self.mount_tmpfs("4m")
        other = self.path("other")
        names = [self.aged("a", d) for d in (6, 5, 4, 3, 2, 1)]
        for n in names:  # 6 x 512 KiB of 4 MiB: 1 MiB free
            self.make(mnt, n, data=os.urandom(512 << 10))
        far = [self.make(other, self.aged("a", d)) for d in (9, 8)]  # another filesystem
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        self.assertEqual(free, 1 << 20)
        # (the lock file lives elsewhere: on the tmpfs it would take a page)
        cfg = self.config("[clean]\npaths = %s other\nmin_free = 2M\ncompress = none\n"
                          "lock_file = run.lock\n" % mnt)
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.listing(mnt), sorted(names[2:]))  # the two oldest went
        for path in far:
            self.assertTrue(os.path.exists(path))
        self.assertIn("(min_free", p.stdout)
        st = os.statvfs(mnt)
        self.assertGreaterEqual(st.f_bavail * st.f_frsize, 2 << 20)
        # as a percentage: 75% of 4 MiB = 3 MiB free wanted, 2 MiB free now
        cfg = self.config("[clean]\npaths = %s\nmin_free = 75%%\ncompress = none\n"
                          "lock_file = run.lock\n" % mnt)
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.listing(mnt), sorted(names[4:]))
        # unreachable: everything but the newest goes, and a warning says so
        cfg = self.config("[clean]\npaths = %s\nmin_free = 99%%\ncompress = none\n"
                          "lock_file = run.lock\n" % mnt)
        p = self.clean(cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.listing(mnt), names[5:])
        self.assertIn("WARNING min_free: ", p.stderr)
        self.assertIn("the filesystem of %s, but no more files there may be deleted" % mnt,
                      p.stderr)

    def test_no_compression_without_room(self):
        mnt = self.mount_tmpfs("4m")
        big = self.make(mnt, self.aged("a", 3), data=os.urandom(1536 << 10))
        small = self.make(mnt, self.aged("a", 2), data=b"\x00" * (256 << 10))
        self.make(mnt, self.aged("a", 1), data=os.urandom(1536 << 10))
        # 768 KiB free: the big one could fill the disk under the server's feet
        cfg = self.config("[clean]\npaths = %s\ncompress_after = 1\nlock_file = run.lock\n"
                          % mnt)
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("skipped %s: compressing it needs up to 1.5 MiB, but only" % big, p.stderr)
        self.assertTrue(os.path.exists(big))
        self.assert_gzip_of(small + ".gz", small)
        self.assertEqual([n for n in os.listdir(mnt) if n.endswith(".tmp")], [])
        # with min_free, compression must not eat into the reserve either
        os.unlink(small + ".gz")
        cfg = self.config("[clean]\npaths = %s\ncompress_after = 1\nmin_free = 256K\n"
                          "lock_file = run.lock\n" % mnt)
        os.unlink(big)
        # 1216 KiB: 1344 KiB free, enough room to compress, but not above 256K
        big = self.make(mnt, self.aged("a", 3), data=os.urandom(1216 << 10))
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("with min_free 256.0 KiB", p.stderr)
        self.assertTrue(os.path.exists(big))


class ServerTest(CleanCase):
    """A real osmo_pcap_server.py process writes a file; the cleanup leaves it alone."""

    def test_file_being_written_is_left_alone(self):
        from osmo_pcap import pcapfile, wire
        base = self.path("base")
        os.mkdir(base)
        port = support.free_port()
        scfg = self.config("[server]\nlisten = 127.0.0.1\nport = %d\nbase_path = base\n"
                           "[client bts1]\nip = 127.0.0.1\n" % port, "server.ini")
        server = subprocess.Popen(support.script_cmd("server", "-c", scfg),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def stop():
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        self.addCleanup(server.stdout.close)
        self.addCleanup(stop)
        sock = None
        for _ in range(1000):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError as e:
                if server.poll() is not None:
                    self.fail("server exited: %s" % server.stdout.read())
                if e.errno not in (errno.ECONNREFUSED, errno.ECONNRESET):
                    raise
                time.sleep(0.02)
        self.assertIsNotNone(sock, "server never listened")
        self.addCleanup(sock.close)
        sock.sendall(wire.encode_frame(0, pcapfile.encode_global_header(1500, 1)))
        for i in range(20):
            sock.sendall(wire.encode_frame(1, pcapfile.encode_record(
                1700000000 + i, 0, b"\x00" * 60)))
        written = None
        for _ in range(1500):  # until the file exists and holds some records
            names = [n for n in os.listdir(base) if tracename.parse_name(n)]
            if names and os.path.getsize(os.path.join(base, names[0])) > 24:
                written = os.path.join(base, names[0])
                break
            time.sleep(0.02)
        if written is None:
            stop()
            self.fail("the server wrote no file; its log:\n%s" % server.stdout.read())
        size = os.path.getsize(written)
        # a newer file of the same client, so only the server's lock protects its file
        newer = self.make(base, name_at("bts1", self.now + 365 * DAY))
        cfg = self.config("[clean]\npaths = base\nmax_files = 1\ncompress_after = 0\n")
        p = self.clean(cfg, "--dry-run", "-v")
        self.assertIn("keep %s (in use" % written, p.stdout)
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(written))
        self.assertFalse(os.path.exists(written + ".gz"))
        self.assertGreaterEqual(os.path.getsize(written), size)
        self.assertTrue(os.path.exists(newer))
        # once the connection ends the server closes the file; then it may go
        sock.close()
        from osmo_pcap.clean import tracedir
        for _ in range(1500):
            if not tracedir.is_locked(written):
                break
            time.sleep(0.02)
        self.assertFalse(tracedir.is_locked(written), "the server kept the file locked")
        p = self.clean(cfg, "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted %s (max_files" % written, p.stdout)
        self.assertFalse(os.path.exists(written))


if __name__ == "__main__":
    import unittest
    unittest.main()


class ReportingTest(CleanCase):
    """What a run says: nothing under cron, one summary line in the journal,
    progress on a terminal, where it is on SIGUSR1 (doc/clean.md#reporting)."""

    def tree(self):
        d = self.path("d")
        for i in range(6):
            self.make(d, self.aged("a", 10 + i))
        self.make(d, self.aged("a", 50))
        return self.config("[clean]\npaths = d\nmax_age = 30d\ncompress_after = 1\n")

    def test_summary_in_the_journal_only(self):
        cfg = self.tree()
        env = dict(os.environ)
        for k in ("INVOCATION_ID", "JOURNAL_STREAM"):
            env.pop(k, None)
        p = self.clean(cfg, env=env)   # cron: quiet when all went well
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))
        cfg = self.tree()
        env["INVOCATION_ID"] = "0123456789abcdef0123456789abcdef"   # a systemd unit
        p = self.clean(cfg, env=env)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        self.assertRegex(p.stdout, r"^deleted 1 file\(s\) \(\d+ B\), compressed 5 file\(s\) "
                                   r"\(\d+ B -> \d+ B\), 0 failure\(s\), in \d+\.\ds\n$")

    def test_progress_on_a_terminal(self):
        import pty
        cfg = self.tree()
        try:
            master, slave = pty.openpty()
        except OSError as e:   # a chroot without /dev/pts
            support.need(False, "no pseudo-terminal: %s" % e)
        self.addCleanup(os.close, master)
        p = subprocess.Popen(support.script_cmd("clean", "-c", cfg), stdout=subprocess.PIPE,
                             stderr=slave, universal_newlines=True)
        os.close(slave)
        out, _ = p.communicate(timeout=60)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        self.assertEqual((p.returncode, out), (0, ""))
        text = seen.decode()
        self.assertIn("\rosmo_pcap_clean.py: scanning %s: 0 of 1; so far deleted 0 file(s)"
                      % self.path("d"), text)
        self.assertTrue(text.endswith("\r"), repr(text[-80:]))   # the line is cleared at the end
        self.assertNotIn("\n", text)

    def test_sigusr1_reports_and_sighup_goes_on(self):
        """In-process, with a signal sent in the middle of the run."""
        from osmo_pcap.clean import main as cleanmain
        cfg = self.tree()
        real = compress.compress_file
        sent = []
        before = signal.getsignal(signal.SIGHUP)   # SIG_IGN under nohup

        def compress_file(*args, **kw):
            if not sent:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGUSR1)
                os.kill(os.getpid(), signal.SIGHUP)
            return real(*args, **kw)
        # the handlers write to file descriptor 2 (never reentrant into sys.stderr)
        errpath = self.path("stderr")
        fd = os.open(errpath, os.O_RDWR | os.O_CREAT, 0o600)
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(fd, 2)
        compress.compress_file = compress_file
        try:
            status = cleanmain.main(["-c", cfg])
        finally:
            compress.compress_file = real
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
        with open(errpath) as f:
            err = f.read()
        self.assertEqual(status, 0, err)
        self.assertEqual(sent, [1])
        lines = err.splitlines()
        self.assertRegex(lines[0], r"^osmo_pcap_clean.py: compressing 0 of 5; so far deleted "
                                   r"1 file\(s\) \(\d+ B\), compressed 0 ")
        self.assertEqual(lines[1], "osmo_pcap_clean.py: signal %d: the cleanup tool has no "
                                   "log file and writes no trace files; the run goes on"
                         % signal.SIGHUP)
        self.assertEqual(len(lines), 2)
        self.assertEqual(len([n for n in os.listdir(self.path("d")) if n.endswith(".gz")]), 5)
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)   # restored
