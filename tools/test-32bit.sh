#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-32bit: run osmo-pcap on real 32-bit userlands (see doc/32bit.md).
#
# Builds (or reuses) Debian chroots with debootstrap under $CHROOT_CACHE:
#   i386-bookworm, i386-trixie (native 32-bit x86), armhf-trixie (qemu-user,
#   64-bit time_t), copies the standalone scripts, osmo_pcap/ and tests/ in and runs
#   (a) the unit suite with the chroot's python3, as an unprivileged user;
#   (b) i386: the client capturing live on lo, forwarding to a server on the host,
#       packets compared byte for byte with an independent tcpdump capture;
#   (c) every chroot: --libpcap-info reports the expected struct pcap_pkthdr size and
#       the client's capture path replays a host-made pcap through a FIFO
#       (pcap_open_offline) to the host server: every record identical.
# Usage: tools/test-32bit.sh [TARGET ...]   (default: all three)
# Environment: CHROOT_CACHE (default /var/tmp/osmo-pcap-chroots), DEBIAN_MIRROR,
#   PYTHON (host interpreter, default python3), REBUILD=1 to rebuild the chroots.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)

CHROOT_CACHE=${CHROOT_CACHE:-/var/tmp/osmo-pcap-chroots}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
ALL_TARGETS="i386-bookworm i386-trixie armhf-trixie"
# Bump when the package list or the chroot recipe changes: cached chroots rebuild.
RECIPE=1
# python3-minimal lacks ctypes and gzip: libpython3-stdlib adds them. libpcap's
# package is libpcap0.8 up to bookworm and libpcap0.8t64 from trixie on (the name
# does not tell the pcap_pkthdr layout: i386 kept a 32-bit time_t, armhf did not).
include_for() {
    case $1 in
        *-bookworm) echo python3-minimal,libpython3-stdlib,libpcap0.8;;
        *) echo python3-minimal,libpython3-stdlib,libpcap0.8t64;;
    esac
}

say() { echo "test-32bit: $*"; }
die() { echo "test-32bit: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts, live capture)"
targets=${*:-$ALL_TARGETS}
for t in $targets; do
    case " $ALL_TARGETS " in *" $t "*) ;; *) die "unknown target '$t' (known: $ALL_TARGETS)";; esac
done

# ---------------------------------------------------------------- cleanup (trap)
MOUNTED=""        # mount points we made, unmounted in reverse order on exit
PIDS=""           # background processes we started
cleanup() {
    rc=$?
    set +e
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    umount_all
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

umount_all() {
    local m rest
    for m in $MOUNTED; do rest="$m $rest"; done    # reverse
    for m in ${rest:-}; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "test-32bit: could not unmount $m" >&2
    done
    MOUNTED=""
}

# Anything still mounted below $1 (a leftover of a killed earlier run)?
mounts_below() {
    awk -v d="$1/" 'index($2 "/", d) == 1 {print $2}' /proc/mounts | sort -r
}

# ---------------------------------------------------------------- host tools
host_deps() {
    local pkgs="" p
    for p in debootstrap qemu-user-static binfmt-support tcpdump libpcap0.8; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || pkgs="$pkgs $p"
    done
    if [ -n "$pkgs" ]; then
        say "installing host packages:$pkgs"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends $pkgs >/dev/null || die "apt-get install$pkgs failed"
    fi
}

# armhf binaries run through qemu-arm-static registered with binfmt_misc (flag F:
# the interpreter is opened at registration, so the chroot needs no copy of it).
binfmt_arm() {
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
    fi
    if ! head -n 1 /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null | grep -q enabled; then
        update-binfmts --enable qemu-arm || die "update-binfmts --enable qemu-arm failed"
    fi
    head -n 1 /proc/sys/fs/binfmt_misc/qemu-arm | grep -q enabled \
        || die "qemu-arm binfmt handler is not enabled"
}

# ---------------------------------------------------------------- chroots
# build_chroot TARGET: debootstrap into $CHROOT_CACHE/TARGET unless it has a .ready
# marker naming the current recipe. debootstrap cannot resume into a directory, so
# an unfinished one is removed first (after checking nothing is mounted inside).
build_chroot() {
    local t=$1 arch=${1%%-*} suite=${1#*-} dir=$CHROOT_CACHE/$1 start include ready
    include=$(include_for "$t")
    ready="recipe $RECIPE: $arch $suite minbase $include"
    if [ "${REBUILD:-0}" != 1 ] && [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$ready" ]; then
        say "$t: reusing $dir"
        return 0
    fi
    [ -z "$(mounts_below "$dir")" ] || die "$t: something is still mounted below $dir: $(mounts_below "$dir")"
    if [ -e "$dir" ]; then
        say "$t: removing unfinished or outdated $dir"
        rm -rf --one-file-system "$dir"
    fi
    mkdir -p "$CHROOT_CACHE"
    start=$(date +%s)
    say "$t: debootstrap --arch=$arch --variant=minbase $suite (log: $CHROOT_CACHE/$t.log)"
    if ! debootstrap --arch="$arch" --variant=minbase --include="$include" \
            "$suite" "$dir" "$DEBIAN_MIRROR" >"$CHROOT_CACHE/$t.log" 2>&1; then
        tail -n 20 "$CHROOT_CACHE/$t.log" >&2
        die "$t: debootstrap failed (full log: $CHROOT_CACHE/$t.log)"
    fi
    chroot "$dir" /usr/bin/apt-get clean >/dev/null 2>&1 || true
    rm -rf "$dir/var/lib/apt/lists/"* 2>/dev/null || true
    echo "$ready" >"$dir/.ready"
    say "$t: built in $(( $(date +%s) - start )) s, $(du -sm --one-file-system "$dir" | cut -f1) MB"
}

# mount_chroot DIR: /proc, /sys and /dev for the chroot; unmounted by the trap.
mount_chroot() {
    local dir=$1 m
    [ -z "$(mounts_below "$dir")" ] || die "already mounted below $dir: $(mounts_below "$dir")"
    mount -t proc proc "$dir/proc" && MOUNTED="$MOUNTED $dir/proc"
    mount -t sysfs sysfs "$dir/sys" && MOUNTED="$MOUNTED $dir/sys"
    mount --bind /dev "$dir/dev" && MOUNTED="$MOUNTED $dir/dev"
    for m in proc sys dev; do
        mountpoint -q "$dir/$m" || die "could not mount $dir/$m"
    done
}

# ---------------------------------------------------------------- main
host_deps
case " $targets " in *" armhf-"*) binfmt_arm;; esac

if [ "${1:-}" = "--build-only" ]; then shift; fi
for t in $targets; do build_chroot "$t"; done
say "chroots ready: $targets"
