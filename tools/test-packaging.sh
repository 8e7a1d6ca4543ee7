#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-packaging: build the .deb and the .rpm once, then run tests/packaging/:
# the .deb installed, run, upgraded and purged in a fresh Debian chroot, the .rpm's
# files, requirements and scriptlets, pip and pipx into fresh virtualenvs
# (HACKING.md#test-packaging). Root only (chroot, network namespaces, capture on lo).
#
# The chroot is cached like those of make test-32bit: $CHROOT_CACHE/pkg-amd64-bookworm,
# built by debootstrap once, reused while its .ready file names the current recipe;
# each test works on a copy, so the cached one stays pristine.
# Environment: CHROOT_CACHE (default /var/tmp/osmo-pcap-chroots), DEBIAN_MIRROR,
#   PYTHON (default python3), REBUILD=1, TESTARGS_PACKAGING="packaging.test_rpm -v".
set -eu
cd "$(dirname "$0")/.."

CHROOT_CACHE=${CHROOT_CACHE:-/var/tmp/osmo-pcap-chroots}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
TARGET=pkg-amd64-bookworm
# Bump when the package list or the recipe changes: the cached chroot is rebuilt.
RECIPE=1
INCLUDE=python3,libpcap0.8,init-system-helpers

say() { echo "test-packaging: $*"; }
die() { echo "test-packaging: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, network namespaces, capture)"
T0=$(date +%s)

# ---------------------------------------------------------------- host tools
pkgs=""
for p in dpkg-dev debhelper lintian rpm debootstrap python3-venv pipx iproute2 util-linux \
        libpcap0.8; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || pkgs="$pkgs $p"
done
if [ -n "$pkgs" ]; then
    say "installing host packages:$pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends $pkgs >/dev/null \
        || die "apt-get install$pkgs failed"
fi

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
dir=$CHROOT_CACHE/$TARGET
ready="recipe $RECIPE: amd64 bookworm minbase $INCLUDE"
# Copies left by a killed run (tests/packaging/test_deb.py makes work-PID beside it).
for w in "$CHROOT_CACHE"/work-*; do
    [ -d "$w" ] || continue
    if ! kill -0 "${w##*/work-}" 2>/dev/null; then
        rm -rf --one-file-system "$w"
    fi
done
if [ "${REBUILD:-0}" != 1 ] && [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$ready" ]; then
    say "$TARGET: reusing $dir"
else
    rm -rf --one-file-system "$dir"
    start=$(date +%s)
    say "$TARGET: debootstrap --variant=minbase bookworm (log: $CHROOT_CACHE/$TARGET.log)"
    ok=0
    for attempt in 1 2; do      # one retry from scratch: a mirror hiccup should not fail CI
        if debootstrap --arch=amd64 --variant=minbase --include="$INCLUDE" bookworm "$dir" \
                "$DEBIAN_MIRROR" >"$CHROOT_CACHE/$TARGET.log" 2>&1 9>&-; then
            ok=1; break
        fi
        tail -n 5 "$CHROOT_CACHE/$TARGET.log" >&2
        rm -rf --one-file-system "$dir"
        sleep 5
    done
    [ $ok = 1 ] || die "$TARGET: debootstrap failed twice (log: $CHROOT_CACHE/$TARGET.log)"
    chroot "$dir" /usr/bin/apt-get clean >/dev/null 2>&1 || true
    rm -rf "$dir/var/lib/apt/lists/"* 2>/dev/null || true
    echo "$ready" >"$dir/.ready"
    say "$TARGET: built in $(( $(date +%s) - start )) s, $(du -sm --one-file-system "$dir" | cut -f1) MB"
fi

# ---------------------------------------------------------------- the tests
say "tests/packaging (chroot $dir)"
rc=0
OSMO_PCAP_PKG_DIST="$PWD/dist" OSMO_PCAP_PKG_CHROOT="$dir" \
    "$PYTHON" tests/run.py ${TESTARGS_PACKAGING:-packaging -v} 9>&- || rc=$?
say "done in $(( $(date +%s) - T0 )) s"
exit $rc
