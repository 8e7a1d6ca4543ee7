# SPDX-License-Identifier: AGPL-3.0-or-later
# Cleanup tool (osmo_pcap_clean.py): its tests and benchmark on their own.
CLEAN_TESTS := test_cleanplan test_cleanconfig test_cleancompress test_clean

.PHONY: test-clean bench-clean

# Its tests with one interpreter (PY=... to choose another).
test-clean: all
	$(or $(PY),$(PYTHON)) tests/run.py $(CLEAN_TESTS)

# Planning over 100,000 synthetic files; fails above 2 s.
bench-clean:
	$(PYTHON) bench/clean_plan.py
