#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Longer decoder fuzz run (not a test): the suite's equivalence check with more cases.

Usage: bench/fuzz_decoder.py [CASES] [SEED]   (default 1,000,000 cases)
Prints cases per second and exits non-zero on the first difference between
ingest.Parser and wire.Decoder + validate.
"""

import os
import sys
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv):
    cases = int(argv[0]) if argv else 1000000
    os.environ["FUZZ_CASES"] = str(cases)
    from tests import test_fuzz
    test_fuzz.CASES = cases
    if len(argv) > 1:
        test_fuzz.SEED = int(argv[1])
    suite = unittest.TestSuite([test_fuzz.DecoderEquivalence("test_fast_parser_equals_reference")])
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    dt = time.monotonic() - t0
    print("%d cases (seed %d) in %.1f s: %.0f cases/s" % (cases, test_fuzz.SEED, dt, cases / dt))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
