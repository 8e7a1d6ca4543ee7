#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Run the test suite on every CPython 3.6-3.13 that pyenv has (or on $PY, or on
# plain python3 without pyenv). Prints each interpreter's closing line
# "N passed, N failed", then a total; exits non-zero if any interpreter failed.
set -u
cd "$(dirname "$0")/.." || exit 2

if [ -n "${PY:-}" ]; then
    interpreters=$(command -v "$PY" || echo "$PY")
else
    interpreters=""
    root=$(pyenv root 2>/dev/null || true)
    if [ -n "$root" ]; then
        for minor in 6 7 8 9 10 11 12 13; do
            # newest patch release of each minor version
            py=$(ls -d "$root"/versions/3.$minor.* 2>/dev/null | sort -t. -k3 -n | tail -n 1)
            [ -n "$py" ] && [ -x "$py/bin/python3" ] && interpreters="$interpreters $py/bin/python3"
        done
    fi
    [ -n "$interpreters" ] || interpreters=$(command -v python3)
fi

status=0; tp=0; tf=0; ts=0
log=$(mktemp)
for py in $interpreters; do
    echo "======== $("$py" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])') ========"
    "$py" tests/run.py ${TESTARGS:-} 2>&1 | tee "$log"
    rc=$?
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ]; then
        echo "no closing line from $py: counted as a failure"; status=1; tf=$((tf + 1)); continue
    fi
    p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$last" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + ${s:-0}))
    if [ "$f" != 0 ] || ! grep -q '^OK' "$log"; then status=1; fi
done
rm -f "$log"
echo "======== all interpreters ========"
if [ "$ts" -gt 0 ]; then
    echo "total: $tp passed, $tf failed, $ts skipped"
else
    echo "total: $tp passed, $tf failed"
fi
exit $status
