#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-32bit: run osmo-pcap on real 32-bit userlands (see HACKING.md#test-32bit).
#
# Builds (or reuses) Debian chroots with debootstrap under $CHROOT_CACHE:
#   i386-bookworm, i386-trixie (native 32-bit x86), armhf-trixie (qemu-user,
#   64-bit time_t), copies the standalone scripts, osmo_pcap/, tests/ in and runs
#   (a) the unit suite with the chroot's python3 (root, CI unset: absent peers skip);
#   (b) i386: the client capturing live on lo, forwarding to a server on the host,
#       packets compared byte for byte with an independent tcpdump capture;
#   (c) every chroot: --libpcap-info reports the expected struct pcap_pkthdr size and
#       the client's capture path replays a host-made pcap through a FIFO
#       (pcap_open_offline) to the host server: every record identical.
# Usage: tools/test-32bit.sh [TARGET ...]   (default: all three)
# Environment: CHROOT_CACHE (default /var/tmp/osmo-pcap-chroots), DEBIAN_MIRROR,
#   PYTHON (host interpreter, default python3), REBUILD=1 to rebuild the chroots,
#   BUILD_ONLY=1, TESTARGS_32BIT="client.test_libpcap -v" (unit tests to run), VERBOSE=1.
# Prints a closing line "N passed, N failed[, N skipped]" over all chroots.
set -eu
cd "$(dirname "$0")/.."

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

PROG=test-32bit
. tools/chroot-lib.sh

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts, live capture)"
targets=${*:-$ALL_TARGETS}
for t in $targets; do
    case " $ALL_TARGETS " in *" $t "*) ;; *) die "unknown target '$t' (known: $ALL_TARGETS)";; esac
done

# ---------------------------------------------------------------- cleanup (trap)
MOUNTED=""        # mount points we made, unmounted in reverse order on exit
PIDS=""           # background processes we started
WORK=$(mktemp -d /tmp/osmo-pcap-32bit.XXXXXX)
cleanup() {
    rc=$?
    set +e
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    umount_all
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

umount_all() {
    local m rest=""
    for m in $MOUNTED; do rest="$m $rest"; done    # reverse
    for m in ${rest:-}; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "$PROG: could not unmount $m" >&2
    done
    MOUNTED=""
}

# ---------------------------------------------------------------- host tools
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
    if [ -e "$dir" ]; then
        say "$t: removing unfinished or outdated $dir"
        rm -rf --one-file-system "$dir"
    fi
    mkdir -p "$CHROOT_CACHE"
    start=$(date +%s)
    say "$t: debootstrap --arch=$arch --variant=minbase $suite (log: $CHROOT_CACHE/$t.log)"
    # One retry from scratch: a mirror hiccup should not fail CI.
    if ! debootstrap --arch="$arch" --variant=minbase --include="$include" \
            "$suite" "$dir" "$DEBIAN_MIRROR" >"$CHROOT_CACHE/$t.log" 2>&1 9>&-; then
        tail -n 5 "$CHROOT_CACHE/$t.log" >&2
        say "$t: debootstrap failed, retrying once from scratch"
        unmount_stale "$dir"
        rm -rf --one-file-system "$dir"
        sleep 5
        if ! debootstrap --arch="$arch" --variant=minbase --include="$include" \
                "$suite" "$dir" "$DEBIAN_MIRROR" >"$CHROOT_CACHE/$t.log" 2>&1 9>&-; then
            tail -n 20 "$CHROOT_CACHE/$t.log" >&2
            die "$t: debootstrap failed twice (full log: $CHROOT_CACHE/$t.log)"
        fi
    fi
    chroot "$dir" /usr/bin/apt-get clean >/dev/null 2>&1 || true
    rm -rf "$dir/var/lib/apt/lists/"* 2>/dev/null || true
    echo "$ready" >"$dir/.ready"
    say "$t: built in $(( $(date +%s) - start )) s, $(du -sm --one-file-system "$dir" | cut -f1) MB"
}

# mount_chroot DIR: /proc, /sys and /dev for the chroot; unmounted by the trap.
mount_chroot() {
    local dir=$1 m
    unmount_stale "$dir"
    mount -t proc proc "$dir/proc" && MOUNTED="$MOUNTED $dir/proc"
    mount -t sysfs sysfs "$dir/sys" && MOUNTED="$MOUNTED $dir/sys"
    mount --bind /dev "$dir/dev" && MOUNTED="$MOUNTED $dir/dev"
    for m in proc sys dev; do
        mountpoint -q "$dir/$m" || die "could not mount $dir/$m"
    done
}

# install_tree DIR: the standalone scripts, osmo_pcap/, tests/, contrib/ (example
# configs the tests read) and tools/*.py into DIR/opt/osmo-pcap.
install_tree() {
    local dst=$1/opt/osmo-pcap
    rm -rf --one-file-system "$dst"
    mkdir -p "$dst"
    cp -p osmo_pcap_*.py "$dst/"                      # the four generated programs
    cp -rp osmo_pcap tests contrib doc man mk .ci debian rpm pyproject.toml Makefile README.md LICENSE HACKING.md \
        "$dst/"                                      # tests read these too
    mkdir -p "$dst/tools/chroot32"
    cp -p tools/*.py "$dst/tools/"                   # tests/shared/test_bundle.py uses them
    cp -p tools/chroot32/unit.py "$dst/tools/chroot32/"
    find "$dst" -name __pycache__ -prune -exec rm -rf {} +
    chmod -R a+rX "$dst"
}

# wrap_for TARGET: i386 runs under `setarch linux32` so that uname -m says i686, as
# on a real i386 host; armhf reports armv7l through qemu-user by itself.
wrap_for() {
    case $1 in i386-*) echo "setarch linux32";; *) echo "";; esac
}

# The expected struct pcap_pkthdr size: 16 with a 32-bit time_t (i386, even trixie's
# libpcap0.8t64), 24 with armhf trixie's 64-bit time_t.
hdr_size_for() {
    case $1 in armhf-trixie) echo 24;; *) echo 16;; esac
}

# Which scenario checks: live capture needs the packet mmap ring that qemu-user
# does not emulate, so it runs on i386 only.
checks_for() {
    case $1 in
        i386-*) echo "libpcap-info replay replay-pcapng live fifo-live";;
        *) echo "libpcap-info replay replay-pcapng fifo-live";;
    esac
}

# A hung test must not eat CI's time: the unit suite is stopped after this many
# seconds (measured: ~25 s on i386, ~110 s on armhf under qemu).
unit_timeout_for() {
    case $1 in armhf-*) echo 900;; *) echo 300;; esac
}

# Unit test modules or classes left out per chroot (tools/chroot32/unit.py). Under
# qemu-user a live capture sees no packets, so tests where the client captures on lo
# cannot pass there.
exclude_for() {
    case $1 in
        armhf-*) echo "ops.test_demo ops.test_ops_process.TrafficMetricsTest";;
        *) echo "";;
    esac
}

# run_target TARGET: mount, install, unit suite, scenarios, unmount.
run_target() {
    local t=$1 dir=$CHROOT_CACHE/$1 wrap log rc start
    wrap=$(wrap_for "$t")
    log=$WORK/$t.log
    start=$(date +%s)
    mount_chroot "$dir"
    install_tree "$dir"
    echo "======== $t: $($wrap chroot "$dir" python3 -c 'import platform, struct, sys
print("Python %s, %s, %d-bit" % (sys.version.split()[0], platform.machine(),
                                 8 * struct.calcsize("P")))') ========"

    # (a) The unit suite with the chroot's python3, as root (as in CI) but with CI
    # unset: tests whose peers the chroot lacks (tshark, tcpdump, ip, openssl, make)
    # skip there; they run on the host in `make test`.
    say "$t: unit suite (CI unset)"
    rc=0
    timeout --foreground -k 10 "$(unit_timeout_for "$t")" $wrap chroot "$dir" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
        OSMO_PCAP_EXPECT_PKTHDR="$(hdr_size_for "$t")" \
        EXCLUDE="$(exclude_for "$t")" /bin/sh -c 'cd /opt/osmo-pcap && exec python3 "$@"' sh \
        tools/chroot32/unit.py ${TESTARGS_32BIT:-} >"$log" 2>&1 9>&- || rc=$?
    [ $rc = 124 ] && echo "test-32bit: $t: unit suite stopped after $(unit_timeout_for "$t") s" >>"$log"
    if [ "${VERBOSE:-0}" = 1 ] || [ $rc != 0 ]; then cat "$log"; else tail -n 3 "$log"; fi
    count_line "$t unit suite" "$log" $rc

    # (b)/(c) The client in the chroot, the server on the host.
    say "$t: client in the chroot, server on the host: $(checks_for "$t")"
    rc=0
    timeout --foreground -k 10 300 "$PYTHON" tools/chroot32/scenario.py --chroot "$dir" \
        --wrap "$wrap" --hdr-size "$(hdr_size_for "$t")" --python "$PYTHON" \
        $(checks_for "$t") >"$log" 2>&1 9>&- || rc=$?
    cat "$log"
    count_line "$t client checks" "$log" $rc

    umount_all
    rm -rf --one-file-system "$dir/opt/osmo-pcap"
    say "$t: done in $(( $(date +%s) - start )) s"
}

# ---------------------------------------------------------------- main
T0=$(date +%s)
host_deps debootstrap qemu-user-static binfmt-support tcpdump libpcap0.8
case " $targets " in *" armhf-"*) binfmt_arm;; esac
[ -f osmo_pcap_client.py ] || die "run make first: osmo_pcap_client.py is missing"

# One run at a time per cache: another run's mounts would look like leftovers.
# (fd 9 is closed for the long-running children, so orphans cannot keep the lock.)
mkdir -p "$CHROOT_CACHE"
exec 9>"$CHROOT_CACHE/.lock"
if ! flock -n 9; then
    say "waiting for another test-32bit run using $CHROOT_CACHE"
    flock -w 1200 9 || die "another test-32bit run holds $CHROOT_CACHE/.lock"
fi
for t in $targets; do unmount_stale "$CHROOT_CACHE/$t"; done
# Build missing chroots in parallel (network and dpkg bound; ~35 s i386, ~75 s armhf).
pids=""
for t in $targets; do
    build_chroot "$t" &
    pids="$pids $!"; PIDS="$PIDS $!"
done
bad=0
for p in $pids; do wait "$p" || bad=1; done
PIDS=""
[ $bad = 0 ] || die "could not set up the chroots (see above)"
say "chroots ready after $(( $(date +%s) - T0 )) s: $targets"
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0

for t in $targets; do run_target "$t"; done

echo "======== 32-bit summary ($(( $(date +%s) - T0 )) s) ========$SUMMARY"
line="$TOTAL_P passed, $TOTAL_F failed"
[ "$TOTAL_S" -gt 0 ] && line="$line, $TOTAL_S skipped"
echo "$line"
[ "$TOTAL_F" = 0 ] && [ "$TOTAL_P" -gt 0 ]
