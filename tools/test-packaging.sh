#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-packaging: build the .deb and the .rpm once, then run tests/packaging/:
# the .deb installed, run, upgraded and purged in a fresh Debian chroot, the .rpm's
# files, requirements and scriptlets, pip and pipx into fresh virtualenvs
# (HACKING.md#test-packaging). Root only (chroot, network namespaces, capture on lo).
#
# The chroot is cached like those of make test-32bit: $CHROOT_CACHE/pkg-amd64-SUITE,
# built by debootstrap once, reused while its .ready file names the current recipe;
# each test works on a copy, so the cached one stays pristine.
# Environment: CHROOT_CACHE (default /var/tmp/osmo-pcap-chroots), DEBIAN_MIRROR,
#   PYTHON (default python3), REBUILD=1, TESTARGS_PACKAGING="packaging.test_rpm -v",
#   PKG_SUITES (default "bookworm trixie": the package must install on both; the .deb
#   test runs in each suite's chroot, the other tests once, with the first).
set -eu
cd "$(dirname "$0")/.."

CHROOT_CACHE=${CHROOT_CACHE:-/var/tmp/osmo-pcap-chroots}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
PKG_SUITES=${PKG_SUITES:-bookworm trixie}
# Bump when the package list or the recipe changes: the cached chroot is rebuilt.
RECIPE=1
# libpcap is libpcap0.8t64 from trixie on (the package depends on either).
include_for() {
    case $1 in
        bookworm) echo python3,libpcap0.8,init-system-helpers;;
        *) echo python3,libpcap0.8t64,init-system-helpers;;
    esac
}

PROG=test-packaging
. tools/chroot-lib.sh

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, network namespaces, capture)"
T0=$(date +%s)

# ---------------------------------------------------------------- host tools
host_deps dpkg-dev debhelper lintian rpm debootstrap python3-venv pipx iproute2 util-linux \
    libpcap0.8

# ---------------------------------------------------------------- packages, once
rm -f dist/osmo-pcap-python_*_all.deb dist/osmo-pcap-python-*.noarch.rpm
PYTHON="$PYTHON" tools/build-deb.sh
PYTHON="$PYTHON" tools/build-rpm.sh

# ---------------------------------------------------------------- the chroot
mkdir -p "$CHROOT_CACHE"
exec 9>"$CHROOT_CACHE/.lock"
if ! flock -n 9; then
    say "waiting for another run using $CHROOT_CACHE"
    flock -w 1200 9 || die "another run holds $CHROOT_CACHE/.lock"
fi
# Copies left by a killed run (tests/packaging/test_deb.py makes work-PID beside it).
for w in "$CHROOT_CACHE"/work-*; do
    [ -d "$w" ] || continue
    if ! kill -0 "${w##*/work-}" 2>/dev/null; then
        rm -rf --one-file-system "$w"
    fi
done

# build_chroot SUITE: debootstrap $CHROOT_CACHE/pkg-amd64-SUITE unless it is ready.
build_chroot() {
    local suite=$1 target=pkg-amd64-$1 dir=$CHROOT_CACHE/pkg-amd64-$1 include ready start ok
    include=$(include_for "$suite")
    ready="recipe $RECIPE: amd64 $suite minbase $include"
    if [ "${REBUILD:-0}" != 1 ] && [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$ready" ]; then
        say "$target: reusing $dir"
        return 0
    fi
    rm -rf --one-file-system "$dir"
    start=$(date +%s)
    say "$target: debootstrap --variant=minbase $suite (log: $CHROOT_CACHE/$target.log)"
    ok=0
    for attempt in 1 2; do      # one retry from scratch: a mirror hiccup should not fail CI
        if debootstrap --arch=amd64 --variant=minbase --include="$include" "$suite" "$dir" \
                "$DEBIAN_MIRROR" >"$CHROOT_CACHE/$target.log" 2>&1 9>&-; then
            ok=1; break
        fi
        tail -n 5 "$CHROOT_CACHE/$target.log" >&2
        rm -rf --one-file-system "$dir"
        sleep 5
    done
    [ $ok = 1 ] || die "$target: debootstrap failed twice (log: $CHROOT_CACHE/$target.log)"
    chroot "$dir" /usr/bin/apt-get clean >/dev/null 2>&1 || true
    rm -rf "$dir/var/lib/apt/lists/"* 2>/dev/null || true
    echo "$ready" >"$dir/.ready"
    say "$target: built in $(( $(date +%s) - start )) s, $(du -sm --one-file-system "$dir" | cut -f1) MB"
}
for suite in $PKG_SUITES; do build_chroot "$suite"; done

# ---------------------------------------------------------------- the tests
rc=0
first=1
for suite in $PKG_SUITES; do
    dir=$CHROOT_CACHE/pkg-amd64-$suite
    if [ $first = 1 ]; then
        args=${TESTARGS_PACKAGING:-packaging -v}     # everything, with the first suite
    else
        args="packaging.test_deb -v"                   # the chroot test again
    fi
    first=0
    say "tests/packaging: $args (chroot $dir)"
    OSMO_PCAP_PKG_DIST="$PWD/dist" OSMO_PCAP_PKG_CHROOT="$dir" \
        "$PYTHON" tests/run.py $args 9>&- || rc=1
done
say "done in $(( $(date +%s) - T0 )) s"
exit $rc
