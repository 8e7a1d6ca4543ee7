# SPDX-License-Identifier: AGPL-3.0-or-later
# Shell functions shared by the chroot test runners (tools/test-32bit.sh,
# tools/test-next.sh, tools/test-packaging.sh). Sourced, not run: the runner sets
# PROG (the prefix of its messages) first.

say() { echo "$PROG: $*"; }
die() { echo "$PROG: ERROR: $*" >&2; exit 1; }

# host_deps PKG...: install those of the Debian packages that are missing.
host_deps() {
    local pkgs="" p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || pkgs="$pkgs $p"
    done
    if [ -n "$pkgs" ]; then
        say "installing host packages:$pkgs"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends $pkgs >/dev/null \
            || die "apt-get install$pkgs failed"
    fi
}

# mounts_below DIR: anything still mounted below DIR (a leftover of a killed run),
# deepest first.
mounts_below() {
    awk -v d="$1/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r
}

# unmount_stale DIR: mounts left below DIR by a run that was killed (SIGKILL skips
# the trap) are ours: unmount them before removing or reusing the chroot.
unmount_stale() {
    local m
    for m in $(mounts_below "$1"); do
        say "unmounting leftover $m"
        umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount leftover $m"
    done
    [ -z "$(mounts_below "$1")" ] || die "still mounted below $1: $(mounts_below "$1")"
}

TOTAL_P=0; TOTAL_F=0; TOTAL_S=0; SUMMARY=""
# count_line WHAT LOGFILE RC: add the log's closing line to the totals; a non-zero
# exit with no failure counted (no test ran, a crash, a timeout) counts as one failure.
count_line() {
    local what=$1 log=$2 rc=$3 last p f s
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ]; then
        TOTAL_F=$((TOTAL_F + 1)); SUMMARY="$SUMMARY
  $what: no closing line (crashed or timed out?)"; return
    fi
    p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$last" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; last="$last (but exit status $rc)"; fi
    TOTAL_P=$((TOTAL_P + p)); TOTAL_F=$((TOTAL_F + f)); TOTAL_S=$((TOTAL_S + ${s:-0}))
    SUMMARY="$SUMMARY
  $what: $last"
}
