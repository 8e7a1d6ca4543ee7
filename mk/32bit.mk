# SPDX-License-Identifier: AGPL-3.0-or-later
# make test-32bit: the unit suite and client checks in i386 (bookworm, trixie) and
# armhf (trixie, qemu-user) chroots, cached in /var/tmp/osmo-pcap-chroots.
# Root only. TARGETS_32BIT="i386-trixie" picks chroots; see HACKING.md#test-32bit.
.PHONY: test-32bit
test-32bit: all
	PYTHON="$(PYTHON)" tools/test-32bit.sh $(TARGETS_32BIT)
