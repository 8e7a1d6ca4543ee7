# SPDX-License-Identifier: AGPL-3.0-or-later
# Packages (doc/install.md):
#   make deb              dist/osmo-pcap-python_VERSION_all.deb (dpkg-buildpackage, lintian)
#   make rpm              dist/osmo-pcap-python-VERSION-1.noarch.rpm (rpmbuild)
#   make test-packaging   build both once, then: the .deb installed, upgraded and purged
#                         in fresh bookworm and trixie chroots, the .rpm's files and
#                         requirements, pip and pipx into fresh virtualenvs (root;
#                         HACKING.md#test-packaging)

.PHONY: deb rpm test-packaging

deb: all
	PYTHON="$(PYTHON)" tools/build-deb.sh

rpm: all
	PYTHON="$(PYTHON)" tools/build-rpm.sh

test-packaging: all
	PYTHON="$(PYTHON)" tools/test-packaging.sh
