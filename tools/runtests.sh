#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Run the test suite on every CPython 3.6-3.13 that pyenv has (or on $PY, or on
# plain python3 without pyenv). Prints each interpreter's output and closing line
# "N passed, N failed", then a total; exits non-zero if any interpreter failed.
#
# JOBS (default 2) interpreters run at the same time: the suite mostly waits for
# processes and sockets, and two suites side by side take about half the time on
# two cores. Each gets its own range of test ports (OSMO_PCAP_PORT_RANGE, below
# the kernel's ephemeral ports) so they never pick the same one. Outputs are
# kept apart and printed whole, in interpreter order.
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
JOBS=${JOBS:-2}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run_one INDEX PYTHON: the suite with one interpreter, into $work/INDEX.log
run_one() {
    i=$1 py=$2
    first=$((20000 + (i % 6) * 2000))
    {
        echo "======== $("$py" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])') ========"
        OSMO_PCAP_PORT_RANGE="$first-$((first + 1999))" "$py" tests/run.py ${TESTARGS:-} 2>&1
        echo "exit status $?"
    } >"$work/$i.log" 2>&1
}

# Deal the interpreters out to JOBS lanes; each lane runs its share in turn.
i=0
for py in $interpreters; do
    echo "$i $py" >>"$work/lane$((i % JOBS))"
    i=$((i + 1))
done
count=$i
lane=0
while [ "$lane" -lt "$JOBS" ]; do
    if [ -f "$work/lane$lane" ]; then
        ( while read -r n py; do run_one "$n" "$py"; done <"$work/lane$lane" ) &
    fi
    lane=$((lane + 1))
done
wait

status=0; tp=0; tf=0; ts=0
i=0
while [ "$i" -lt "$count" ]; do
    log=$work/$i.log
    cat "$log"
    i=$((i + 1))
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ]; then
        echo "no closing line: counted as a failure"; status=1; tf=$((tf + 1)); continue
    fi
    p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$last" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + ${s:-0}))
    if [ "$f" != 0 ] || ! grep -q '^OK' "$log" || ! grep -q '^exit status 0$' "$log"; then
        status=1
    fi
done
echo "======== all interpreters ========"
if [ "$ts" -gt 0 ]; then
    echo "total: $tp passed, $tf failed, $ts skipped"
else
    echo "total: $tp passed, $tf failed"
fi
exit $status
