#!/bin/sh
# SPDX-License-Identifier: AGPL-3.0-or-later
# make rpm: build dist/osmo-pcap-python-VERSION-1.noarch.rpm with rpmbuild from a
# tarball of this tree (rpm/osmo-pcap-python.spec). On Debian, rpmbuild comes from the
# `rpm` package (installed when missing, as root) and has no RPM database of build
# dependencies: --nodeps. Environment: PYTHON (default python3).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { echo "build-rpm: $*"; }
die() { echo "build-rpm: ERROR: $*" >&2; exit 1; }

if ! command -v rpmbuild >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "rpmbuild is missing (Debian: apt-get install rpm)"
    say "installing rpm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends rpm >/dev/null \
        || die "apt-get install rpm failed"
fi
version=$($PYTHON -c 'import sys; sys.path.insert(0, "tools"); import osmo_pcap_build as b; print(b.version())')
spec=rpm/osmo-pcap-python.spec
specversion=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
[ "$version" = "$specversion" ] || \
    die "$spec says Version $specversion but osmo_pcap/__init__.py says $version"

top=$PWD/build/rpm
rm -rf "$top"
mkdir -p "$top/SOURCES" "$top/BUILD" "$top/RPMS" "$top/SRPMS" "$top/SPECS" dist
tar --exclude=./.git --exclude=./build --exclude=./dist --exclude='__pycache__' \
    --exclude='*.pyc' --transform "s,^\\.,osmo-pcap-python-$version," \
    -czf "$top/SOURCES/osmo-pcap-python-$version.tar.gz" .
say "rpmbuild (log: build/rpm/build.log)"
if ! rpmbuild -bb --nodeps --define "_topdir $top" "$spec" >"$top/build.log" 2>&1; then
    tail -n 30 "$top/build.log" >&2
    die "rpmbuild failed (full log: build/rpm/build.log)"
fi
for f in "$top"/RPMS/noarch/*.rpm; do
    mv "$f" dist/
    say "wrote dist/${f##*/} ($(du -k "dist/${f##*/}" | cut -f1) KiB)"
done
