# SPDX-License-Identifier: AGPL-3.0-or-later
# Central server (osmo_pcap_server.py): its tests and benchmark on their own.

.PHONY: test-server bench-server fuzz-server

# Its tests with one interpreter (PY=... to choose another).
test-server: all
	$(or $(PY),$(PYTHON)) tests/run.py server

# Ingest rate with 1, 8, 64 and 500 clients; prints packets/s, MB/s, CPU s per Mpkt.
bench-server: all
	$(PYTHON) bench/server_ingest.py

# The decoder fuzz with ten times the cases of the suite.
fuzz-server:
	$(PYTHON) bench/fuzz_decoder.py 1000000
