#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# make deb: build dist/osmo-pcap-python_VERSION_all.deb from a copy of this tree
# (dpkg-buildpackage writes next to the source directory: the copy keeps that out of
# the checkout's parent), then check it with lintian: errors fail the build.
# Build tools (dpkg-dev, debhelper, lintian) are installed when missing (root).
# Environment: PYTHON (default python3), LINTIAN=0 to skip lintian.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { echo "build-deb: $*"; }
die() { echo "build-deb: ERROR: $*" >&2; exit 1; }

need=""
for p in dpkg-dev debhelper; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ "${LINTIAN:-1}" != 0 ]; then
    dpkg-query -W -f='${Status}' lintian 2>/dev/null | grep -q "ok installed" || need="$need lintian"
fi
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || die "missing build tools:$need (apt-get install$need)"
    say "installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $need >/dev/null \
        || die "apt-get install$need failed"
fi

version=$($PYTHON -c 'import sys; sys.path.insert(0, "tools"); import osmo_pcap_build as b; print(b.version())')
debversion=$(dpkg-parsechangelog -S Version)
[ "$version" = "$debversion" ] || [ "${version}" = "${debversion%%+*}" ] || \
    die "debian/changelog says $debversion but osmo_pcap/__init__.py says $version: add a changelog entry"

stage=build/deb
rm -rf "$stage"
mkdir -p "$stage/osmo-pcap-python-$debversion" dist
# The tree without VCS data, earlier builds or caches.
tar --exclude=./.git --exclude=./build --exclude=./dist --exclude='__pycache__' \
    --exclude='*.pyc' -cf - . | tar -xf - -C "$stage/osmo-pcap-python-$debversion"
say "dpkg-buildpackage in $stage (log: $stage/build.log)"
if ! (cd "$stage/osmo-pcap-python-$debversion" && \
        dpkg-buildpackage -b -us -uc --no-pre-clean) >"$stage/build.log" 2>&1; then
    tail -n 30 "$stage/build.log" >&2
    die "dpkg-buildpackage failed (full log: $stage/build.log)"
fi
deb="osmo-pcap-python_${debversion}_all.deb"
mv "$stage/$deb" dist/
say "wrote dist/$deb ($(du -k "dist/$deb" | cut -f1) KiB)"
if [ "${LINTIAN:-1}" != 0 ]; then
    # Accepted warnings are explained in debian/osmo-pcap-python.lintian-overrides.
    say "lintian dist/$deb"
    lintian --fail-on error --info "dist/$deb" || die "lintian reports errors"
fi
