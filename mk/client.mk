# SPDX-License-Identifier: AGPL-3.0-or-later
# Capture client (osmo_pcap_client.py): its tests and benchmark on their own.

.PHONY: test-client bench-client

# Its tests with one interpreter (PY=... to choose another); needs root for the process tests.
test-client: all
	$(or $(PY),$(PYTHON)) tests/run.py client

# Zero-loss forwarding rate on lo next to tcpdump -w (root); prints figures, never fails on speed.
bench-client: all
	$(PYTHON) bench/client_capture.py
