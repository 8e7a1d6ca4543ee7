#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# Install what the tests use as independent peers, on Debian (as root).
# The product itself needs none of it beyond libpcap for the client.
set -eu
export DEBIAN_FRONTEND=noninteractive
pkgs=""
missing() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || pkgs="$pkgs $1"; }
for p in libpcap0.8 tcpdump tshark openssl iproute2 procps systemd man-db; do missing "$p"; done
if [ -n "$pkgs" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-deps: need root to install:$pkgs" >&2; exit 1
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends $pkgs
fi
echo "test-deps: libpcap, tcpdump, tshark, openssl, iproute2 and man present"
# pyzmq: a test-only ZeroMQ SUB peer, in its own virtualenv outside the repo
# (never a runtime dependency); tests/zmtp_peers.py looks for it there.
zmq_venv="${OSMO_PCAP_ZMQ_VENV:-/var/tmp/osmo-pcap-venv}"
if ! "$zmq_venv/bin/python" -c "import zmq" 2>/dev/null; then
    python3 -m venv "$zmq_venv" && "$zmq_venv/bin/pip" install -q pyzmq
fi
echo "test-deps: pyzmq present in $zmq_venv"
# promtool: Prometheus' linter for the metrics, from Debian's prometheus package,
# unpacked outside the system (installing the package would start a Prometheus
# server); tests/support.py looks for it there.
prom_dir="${OSMO_PCAP_PROMTOOL_DIR:-/var/tmp/osmo-pcap-promtool}"
# From Debian 14 (forky) on, promtool is a package of its own.
if ! command -v promtool >/dev/null 2>&1 && apt-cache show promtool >/dev/null 2>&1; then
    apt-get install -y -q promtool >/dev/null
fi
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$prom_dir/usr/bin/promtool" ]; then
    tmp=$(mktemp -d)
    ( cd "$tmp" && chmod 755 . && apt-get download -q prometheus >/dev/null 2>&1 ) || \
        { apt-get update -q && ( cd "$tmp" && apt-get download -q prometheus >/dev/null ); }
    mkdir -p "$prom_dir"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    install -D -m 0755 "$tmp/root/usr/bin/promtool" "$prom_dir/usr/bin/promtool"
    rm -rf "$tmp"
fi
echo "test-deps: promtool present"
