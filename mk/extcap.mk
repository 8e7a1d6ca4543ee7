# SPDX-License-Identifier: AGPL-3.0-or-later
# Wireshark extcap (osmo_pcap_extcap.py): its tests on their own.

.PHONY: test-extcap

# Its tests with one interpreter (PY=... to choose another); the tshark tests bind-mount
# a folder over tshark's extcap folder when run as root.
test-extcap: all
	$(or $(PY),$(PYTHON)) tests/run.py extcap
