#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Static checks that need no network.

- every Python file parses under CPython 3.6's grammar (ast feature_version);
- every Python file compiles with a real CPython 3.6 when pyenv has one;
- every source file carries an SPDX licence line.
"""

import ast
import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_files():
    pats = ["*.py", "osmo_pcap/**/*.py", "tests/**/*.py", "tools/**/*.py", "bench/*.py"]
    files = []
    for p in pats:
        files.extend(glob.glob(os.path.join(ROOT, p), recursive=True))
    return sorted(set(files))


def find_py36():
    try:
        root = subprocess.check_output(["pyenv", "root"], universal_newlines=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    cands = sorted(glob.glob(os.path.join(root, "versions", "3.6.*", "bin", "python3")))
    return cands[-1] if cands else None


def main():
    errors = []
    files = python_files()
    for path in files:
        rel = os.path.relpath(path, ROOT)
        with open(path, "r", encoding="utf-8") as f:
            src = f.read()
        if "SPDX-License-Identifier: AGPL-3.0-or-later" not in src[:400]:
            errors.append("%s: no SPDX-License-Identifier line near the top" % rel)
        if sys.version_info >= (3, 8):
            try:
                ast.parse(src, rel, feature_version=(3, 6))
            except SyntaxError as e:
                errors.append("%s:%s: not CPython 3.6 syntax: %s" % (rel, e.lineno, e.msg))
    py36 = find_py36()
    if py36:
        code = ("import sys\nbad = 0\nfor p in sys.argv[1:]:\n"
                "    try:\n        compile(open(p, encoding='utf-8').read(), p, 'exec')\n"
                "    except SyntaxError as e:\n        print('%s:%s: %s' % (p, e.lineno, e.msg)); bad = 1\n"
                "sys.exit(bad)\n")
        p = subprocess.run([py36, "-c", code] + files, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode:
            errors.append("compilation with %s failed:\n%s" % (py36, p.stdout))
    else:
        print("check: no CPython 3.6 found via pyenv; grammar checked with ast only")
    for e in errors:
        print("check: " + e, file=sys.stderr)
    if not errors:
        print("check: %d files OK (3.6 grammar%s, SPDX lines)"
              % (len(files), ", compiled on " + py36 if py36 else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
