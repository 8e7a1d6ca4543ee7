#!/bin/bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-next: the whole suite on the next CPython releases, in an amd64 Debian
# forky chroot (python3.14, python3.15, libpcap0.8t64 and the test peers of that
# archive), cached under $CHROOT_CACHE/amd64-forky like the 32-bit chroots.
#
# Each interpreter runs tests/run.py as root with CI passed through (under CI=true a
# missing peer is a failure) and warnings as errors (-X dev -W error, also for the
# programs the tests start, through PYTHONDEVMODE/PYTHONWARNINGS). The chroot runs in
# a private mount namespace (unshare -m): its root is bind-mounted onto itself (so
# `ip netns exec` can remount it), /proc, /sys, /dev, /dev/pts, and tmpfs on /run,
# /tmp and /dev/shm; all of it disappears with the namespace, even on SIGKILL.
# Usage: tools/test-next.sh [python3.14 python3.15]   (default: both, one after the other)
# Environment: CHROOT_CACHE (default /var/tmp/osmo-pcap-chroots), DEBIAN_MIRROR,
#   REBUILD=1 to rebuild the chroot, BUILD_ONLY=1, BENCH_NEXT=1 (run
#   bench/clean_compress.py instead of the suite), TESTARGS_NEXT="shared.test_tls -v"
#   (what tests/run.py runs), VERBOSE=1 (whole logs), NEXT_WARNINGS (default
#   "-X dev -W error").
# Prints "N passed, N failed[, N skipped]" per interpreter, then a total line.
set -eu
cd "$(dirname "$0")/.."

CHROOT_CACHE=${CHROOT_CACHE:-/var/tmp/osmo-pcap-chroots}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARGET=amd64-forky
DIR=$CHROOT_CACHE/$TARGET
ALL_PYTHONS="python3.14 python3.15"
# Bump when the package list or the recipe changes: the cached chroot is rebuilt.
RECIPE=2
# debootstrap brings the interpreters and libpcap; apt-get inside the chroot then adds
# the test peers (tcpdump, tshark, openssl, ip, ps/pkill, make, systemd-analyze,
# pyzmq for the ZeroMQ subscriber peer: Debian's python3-zmq; zstd to read .zst traces;
# man-db for the man page checks; promtool, a package of its own from forky on).
BASE=python3.14,python3.15,libpcap0.8t64,ca-certificates
PEERS="tcpdump tshark openssl iproute2 procps make systemd python3-zmq zstd man-db promtool"
NEXT_WARNINGS=${NEXT_WARNINGS:--X dev -W error}
# A hung test must not eat CI's time (measured: about 2-3 min per interpreter).
SUITE_TIMEOUT=900

PROG=test-next
. tools/chroot-lib.sh

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts, network namespaces)"
[ "$(uname -m)" = x86_64 ] || die "needs an amd64 host (the chroot is amd64)"
pythons=${*:-$ALL_PYTHONS}
for p in $pythons; do
    case " $ALL_PYTHONS " in *" $p "*) ;; *) die "unknown interpreter '$p' (known: $ALL_PYTHONS)";; esac
done

WORK=$(mktemp -d /tmp/osmo-pcap-next.XXXXXX)
PIDS=""
cleanup() {
    rc=$?
    set +e
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# in_ns DIR CMD...: run CMD (a shell snippet, $R is the chroot) in a private mount
# namespace with the chroot's mounts in place.
in_ns() {
    local dir=$1; shift
    R=$dir timeout --foreground -k 10 "${NS_TIMEOUT:-1800}" unshare --mount --propagation private /bin/sh -c '
        set -e
        mount --bind "$R" "$R"
        mount -t proc proc "$R/proc"
        mount -t sysfs sysfs "$R/sys"
        mount --bind /dev "$R/dev"
        mount --bind /dev/pts "$R/dev/pts"
        mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
        mount -t tmpfs -o mode=755 tmpfs "$R/run"
        mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
        mkdir -p "$R/run/netns" "$R/run/lock"
        set +e
        eval "$1"' sh "$@"
}

# build_chroot: debootstrap, then the peers with apt-get in the chroot. debootstrap
# cannot resume into a directory: an unfinished or outdated one is removed first.
build_chroot() {
    local ready start script log=$CHROOT_CACHE/$TARGET.log
    ready="recipe $RECIPE: amd64 forky minbase $BASE + $PEERS"
    if [ "${REBUILD:-0}" != 1 ] && [ -f "$DIR/.ready" ] && [ "$(cat "$DIR/.ready")" = "$ready" ]; then
        say "$TARGET: reusing $DIR"
        return 0
    fi
    if [ -e "$DIR" ]; then
        say "$TARGET: removing unfinished or outdated $DIR"
        rm -rf --one-file-system "$DIR"
    fi
    mkdir -p "$CHROOT_CACHE"
    start=$(date +%s)
    # bookworm's debootstrap has no forky script: forky is built like sid.
    script=/usr/share/debootstrap/scripts/forky
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    say "$TARGET: debootstrap --variant=minbase forky (log: $log)"
    local try
    for try in 1 2; do
        if debootstrap --arch=amd64 --variant=minbase --include="$BASE" \
                forky "$DIR" "$DEBIAN_MIRROR" "$script" >"$log" 2>&1 9>&-; then
            break
        fi
        tail -n 20 "$log" >&2
        unmount_stale "$DIR"
        rm -rf --one-file-system "$DIR"
        [ $try = 2 ] && die "$TARGET: debootstrap failed twice (full log: $log)"
        say "$TARGET: debootstrap failed, retrying once from scratch"
        sleep 5
    done
    # No daemon starts from a postinst inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$DIR/usr/sbin/policy-rc.d"
    chmod 755 "$DIR/usr/sbin/policy-rc.d"
    # forky's Release file is valid for a week (Valid-Until) and a mirror may be
    # older than that; its signature is still checked.
    printf 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n' \
        >"$DIR/etc/apt/apt.conf.d/99osmo-pcap-test"
    grep -qs localhost "$DIR/etc/hosts" || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$DIR/etc/hosts"
    say "$TARGET: apt-get install $PEERS"
    if ! in_ns "$DIR" 'chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 /bin/sh -c "
                apt-get -q update && apt-get -q -y install '"$PEERS"'"' \
            >>"$log" 2>&1 9>&-; then
        tail -n 20 "$log" >&2
        die "$TARGET: installing the test peers failed (full log: $log)"
    fi
    chroot "$DIR" /usr/bin/apt-get clean >/dev/null 2>&1 || true
    rm -rf "$DIR/var/lib/apt/lists/"* 2>/dev/null || true
    echo "$ready" >"$DIR/.ready"
    say "$TARGET: built in $(( $(date +%s) - start )) s, $(du -sm --one-file-system "$DIR" | cut -f1) MB"
}

# install_tree: the working tree (generated scripts, package, tests, docs, Makefile,
# contrib, tools) to /opt/osmo-pcap; a peer "virtualenv" for the ZeroMQ tests whose
# python is the chroot's python3 with Debian's python3-zmq.
install_tree() {
    local dst=$DIR/opt/osmo-pcap
    rm -rf --one-file-system "$dst" "$DIR/opt/zmq-peer"
    mkdir -p "$dst" "$DIR/opt/zmq-peer/bin"
    tar -c --exclude=.git --exclude=__pycache__ --exclude='*.pyc' . | tar -x -C "$dst"
    ln -s /usr/bin/python3 "$DIR/opt/zmq-peer/bin/python"
    chmod -R a+rX "$dst"
}

# run_python PY: the suite with one interpreter, the chroot in its own namespace.
run_python() {
    local py=$1 log=$WORK/$1.log rc=0 start
    start=$(date +%s)
    echo "======== $TARGET $py: $(chroot "$DIR" "$py" -c 'import platform, ssl, sys
print("Python %s, %s, %s" % (sys.version.split()[0], platform.machine(), ssl.OPENSSL_VERSION))') ========"
    PY=$py NS_TIMEOUT=$SUITE_TIMEOUT in_ns "$DIR" 'exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 CI="$CI" \
        PYTHONDEVMODE="$DEVMODE" PYTHONWARNINGS="$WARNINGS" \
        OSMO_PCAP_ZMQ_VENV=/opt/zmq-peer PYTHONPATH=/opt/osmo-pcap/tools/next \
        OSMO_PCAP_UNRAISABLE_LOG=/tmp/osmo-pcap-unraisable.log \
        /bin/sh -c "cd /opt/osmo-pcap && exec \"\$0\" $NEXT_WARNINGS tests/run.py \"\$@\"" \
        "$PY" $TESTARGS' >"$log" 2>&1 9>&- || rc=$?
    [ $rc = 124 ] && echo "test-next: $py: suite stopped after $SUITE_TIMEOUT s" >>"$log"
    if [ "${VERBOSE:-0}" = 1 ] || [ $rc != 0 ]; then cat "$log"; else tail -n 3 "$log"; fi
    count_line "$TARGET $py" "$log" $rc
    say "$py: done in $(( $(date +%s) - start )) s"
}

# ---------------------------------------------------------------- main
T0=$(date +%s)
host_deps debootstrap util-linux
[ -f osmo_pcap_client.py ] || die "run make first: osmo_pcap_client.py is missing"
mkdir -p "$CHROOT_CACHE"
exec 9>"$CHROOT_CACHE/.lock"          # shared with test-32bit: one run at a time
if ! flock -n 9; then
    say "waiting for another run using $CHROOT_CACHE"
    flock -w 1200 9 || die "another run holds $CHROOT_CACHE/.lock"
fi
unmount_stale "$DIR"
build_chroot
say "chroot ready after $(( $(date +%s) - T0 )) s"
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0

install_tree
# The programs the tests start inherit these: warnings are errors there too.
export CI=${CI:-} NEXT_WARNINGS TESTARGS=${TESTARGS_NEXT:-}
case " $NEXT_WARNINGS " in *" -X dev "*) export DEVMODE=1;; *) export DEVMODE=;; esac
case " $NEXT_WARNINGS " in *" -W error "*) export WARNINGS=error;; *) export WARNINGS=;; esac
if [ "${BENCH_NEXT:-0}" = 1 ]; then
    # bench/clean_compress.py instead of the suite (make bench-next): it records this
    # project's loopback traffic and compares gzip, bz2, xz and zstd on it.
    for py in $pythons; do
        PY=$py NS_TIMEOUT=1800 in_ns "$DIR" 'exec chroot "$R" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
            PYTHONDONTWRITEBYTECODE=1 OSMO_PCAP_ZMQ_VENV=/opt/zmq-peer /bin/sh -c \
            "cd /opt/osmo-pcap && exec \"\$0\" bench/clean_compress.py" "$PY"' 9>&- \
            || die "$py: bench/clean_compress.py failed"
    done
    rm -rf --one-file-system "$DIR/opt/osmo-pcap" "$DIR/opt/zmq-peer"
    exit 0
fi
for py in $pythons; do run_python "$py"; done
rm -rf --one-file-system "$DIR/opt/osmo-pcap" "$DIR/opt/zmq-peer"

echo "======== $TARGET summary ($(( $(date +%s) - T0 )) s) ========$SUMMARY"
line="$TOTAL_P passed, $TOTAL_F failed"
[ "$TOTAL_S" -gt 0 ] && line="$line, $TOTAL_S skipped"
echo "$line"
[ "$TOTAL_F" = 0 ] && [ "$TOTAL_P" -gt 0 ]
