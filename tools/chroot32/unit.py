# SPDX-License-Identifier: AGPL-3.0-or-later
"""Run the unit suite inside a chroot, leaving out what cannot work there.

tools/test-32bit.sh copies this to /opt/osmo-pcap/tools/chroot32/ and runs it with
the chroot's python3. EXCLUDE (environment) lists modules ("ops.test_demo") or test
classes ("ops.test_ops_process.TrafficMetricsTest") to leave out, each printed; all the
rest runs through tests/run.py, which prints the closing "N passed, N failed" line.
Usage: unit.py [run.py arguments]; with arguments, exactly those run (no EXCLUDE).
"""

import os
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests import run  # noqa: E402


def classes_of(suite):
    """TestCase classes in a loaded suite, in order."""
    out = []
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            for c in classes_of(t):
                if c not in out:
                    out.append(c)
        elif type(t) not in out:
            out.append(type(t))
    return out


def test_modules():
    """Every test module as "area.test_name", areas (tests/ folders) in order."""
    out = []
    top = os.path.join(REPO, "tests")
    for area in sorted(os.listdir(top)):
        if not os.path.isfile(os.path.join(top, area, "__init__.py")):
            continue
        for f in sorted(os.listdir(os.path.join(top, area))):
            if f.startswith("test_") and f.endswith(".py"):
                out.append("%s.%s" % (area, f[:-3]))
    return out


def selection(exclude):
    names = []
    for mod in test_modules():
        if mod in exclude:
            print("left out here: %s" % mod)
            continue
        drop = [e for e in exclude if e.startswith(mod + ".")]
        if not drop:
            names.append(mod)
            continue
        try:
            suite = unittest.TestLoader().loadTestsFromName("tests." + mod)
        except Exception:          # run.py reports the import error
            names.append(mod)
            continue
        for cls in classes_of(suite):
            name = "%s.%s" % (mod, cls.__name__)
            if name in drop:
                print("left out here: %s" % name)
            elif cls.__module__ == "tests." + mod:
                names.append(name)
    sys.stdout.flush()
    return names


def main(argv):
    if argv:
        return run.main(argv)
    names = selection(os.environ.get("EXCLUDE", "").split())
    if not names:
        print("no test left to run")
        print("0 passed, 1 failed")
        return 1
    return run.main(names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
