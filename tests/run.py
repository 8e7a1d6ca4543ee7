# SPDX-License-Identifier: AGPL-3.0-or-later
"""Run the test suite with the current interpreter and print one closing line.

Usage: python tests/run.py [-v] [-k PATTERN] [AREA | TEST_MODULE ...]
AREA is a folder of tests/ (shared, client, server, clean, ops): all its tests.
TEST_MODULE is area.test_name (or tests/area/test_name.py).
The last line is exactly "N passed, N failed" (", N skipped" when any).
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


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
    result = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # A skipped module or class is reported as a skip without being "run".
    passed = max(0, result.testsRun - failed - skipped)
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print("(%.1f s)" % (time.time() - start))
    print(line)
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
