# SPDX-License-Identifier: AGPL-3.0-or-later
"""Run the test suite with the current interpreter and print one closing line.

Usage: python tests/run.py [-v] [-k PATTERN] [AREA | TEST_MODULE ...]
AREA is a folder of tests/ (shared, client, server, clean, ops): all its tests.
TEST_MODULE is area.test_name (or tests/area/test_name.py).
The last line is exactly "N passed, N failed" (", N skipped" when any).
With OSMO_PCAP_UNRAISABLE_LOG set (tools/test-next.sh, with tools/next/ on
PYTHONPATH), what any process wrote to that file during a test (a warning in a
finalizer, an exception in a thread) is an error of that test.
"""

import gc
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


class UnraisableLog(object):
    """Entries that tools/next/sitecustomize.py appends to OSMO_PCAP_UNRAISABLE_LOG."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.site = sys.modules.get("sitecustomize")
        if getattr(self.site, "LOG", None) != path:
            self.site = None

    def set_context(self, name):
        if self.site is not None:
            self.site.CONTEXT = name

    def new_entries(self):
        """Return the text appended since the last call ("" if none)."""
        gc.collect()  # finalizers of this process run now, inside the test
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return ""
        self.offset += len(data)
        return data.decode("utf-8", "replace")


def result_class(unraisable):
    """A result that counts its passes (skipped classes are counted differently by
    different CPython releases, so "run - failed - skipped" is not reliable) and,
    with unraisable, reports the entries that log gained during each test."""
    class Result(unittest.TextTestResult):
        passes = 0
        passed_now = False

        def addSuccess(self, test):
            self.passes += 1
            self.passed_now = True
            super(Result, self).addSuccess(test)

        def startTest(self, test):
            self.passed_now = False
            if unraisable:
                unraisable.set_context(test.id())
            super(Result, self).startTest(test)

        def stopTest(self, test):
            super(Result, self).stopTest(test)
            if not unraisable:
                return
            unraisable.set_context(None)
            text = unraisable.new_entries()
            if text:
                self.passes -= self.passed_now   # reported as an error instead
                self.errors.append((test, "warnings or exceptions that could not be raised "
                                    "(" + unraisable.path + "):\n" + text))
                self.stream.write("U")
                self.stream.flush()
    return Result


def main(argv):
    verbosity = 1
    pattern = None
    names = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "-v":
            verbosity = 2
        elif a == "-k":
            pattern = args.pop(0)
        else:
            names.append(a)
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    if names:
        suite = unittest.TestSuite()
        for n in names:
            n = n[len("tests/"):] if n.startswith("tests/") else n
            n = n[:-3] if n.endswith(".py") else n
            n = n.strip("/")
            if os.path.isdir(os.path.join(HERE, n)):
                suite.addTests(loader.discover(os.path.join(HERE, n), pattern="test_*.py",
                                               top_level_dir=REPO))
                continue
            n = n.replace("/", ".")
            suite.addTests(loader.loadTestsFromName(n if n.startswith("tests.") else "tests." + n))
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=REPO)
    print("Python %s (%s)" % (sys.version.split()[0], sys.executable))
    sys.stdout.flush()
    start = time.time()
    log = os.environ.get("OSMO_PCAP_UNRAISABLE_LOG")
    unraisable = UnraisableLog(log) if log else None
    runner = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stdout,
                                     resultclass=result_class(unraisable))
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    late = unraisable.new_entries() if unraisable else ""
    if late:
        print("warnings or exceptions that could not be raised, after the tests:\n" + late)
        failed += late.count("==== unraisable ")
    skipped = len(result.skipped)
    passed = result.passes
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print("(%.1f s)" % (time.time() - start))
    print(line)
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
