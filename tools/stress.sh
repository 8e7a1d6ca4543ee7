#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-stress: the heavy tests of tests/stress/, once each, outside the
# per-interpreter suite. 10,000 TLS connections on CPython 3.6 and 3.13 (pyenv's
# newest patch releases; without pyenv, or with PY=..., the one interpreter),
# 10,000 plain connections and the 60-second soak on python3 (or $PY). Prints
# each run's closing line, then "stress: N passed, N failed"; exits non-zero if
# anything failed. About 2 minutes on a 2-core machine (HACKING.md#stress).
set -u
cd "$(dirname "$0")/.." || exit 2

pyenv_python() {   # newest patch release of 3.$1 under pyenv, or nothing
    root=$(pyenv root 2>/dev/null || true)
    [ -n "$root" ] || return 0
    py=$(ls -d "$root"/versions/3."$1".* 2>/dev/null | sort -t. -k3 -n | tail -n 1)
    [ -n "$py" ] && [ -x "$py/bin/python3" ] && echo "$py/bin/python3"
    return 0
}

default=$(command -v "${PY:-python3}" || echo "${PY:-python3}")
runs=""
if [ -n "${PY:-}" ]; then
    runs="$default:stress.stress_tls"
else
    for minor in 6 13; do
        py=$(pyenv_python $minor)
        if [ -z "$py" ]; then
            if [ "${CI:-}" = "true" ]; then
                echo "stress: no CPython 3.$minor under pyenv (required under CI=true)"
                runs="$runs missing-3.$minor:stress.stress_tls"
                continue
            fi
            echo "stress: no CPython 3.$minor under pyenv; using $default"
            py=$default
        fi
        runs="$runs $py:stress.stress_tls"
    done
fi
runs="$runs $default:stress.stress_plain $default:stress.stress_soak"

start=$(date +%s)
tp=0; tf=0; ts=0
log=$(mktemp)
for run in $runs; do
    py=${run%%:*}
    module=${run#*:}
    if [ ! -x "$py" ] && ! command -v "$py" >/dev/null 2>&1; then
        echo "======== $module: interpreter $py missing: counted as a failure"
        tf=$((tf + 1)); continue
    fi
    echo "======== $module on $("$py" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])')"
    t0=$(date +%s)
    "$py" tests/run.py -v "$module" 2>&1 | tee "$log"
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ]; then
        echo "no closing line: counted as a failure"; tf=$((tf + 1)); continue
    fi
    p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$last" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + ${s:-0}))
    echo "($module: $(( $(date +%s) - t0 )) s)"
done
rm -f "$log"
echo "======== stress tests: $(( $(date +%s) - start )) s"
if [ "$ts" -gt 0 ]; then
    echo "stress: $tp passed, $tf failed, $ts skipped"
else
    echo "stress: $tp passed, $tf failed"
fi
[ "$tf" -eq 0 ] && [ "$tp" -gt 0 ]
