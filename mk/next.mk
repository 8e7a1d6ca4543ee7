# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-next: the whole suite on CPython 3.14 and 3.15 in an amd64 Debian forky
# chroot (cached in /var/tmp/osmo-pcap-chroots/amd64-forky), warnings as errors.
# Root only. PYTHONS_NEXT="python3.15" picks interpreters; see HACKING.md.
.PHONY: test-next
test-next: all
	tools/test-next.sh $(PYTHONS_NEXT)

# gzip, bz2, xz and zstd (compression.zstd, 3.14+) on a capture of this project's
# loopback traffic, with python3.14 in the same chroot; prints sizes and CPU seconds.
.PHONY: bench-next
bench-next: all
	BENCH_NEXT=1 tools/test-next.sh python3.14
