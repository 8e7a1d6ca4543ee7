# SPDX-License-Identifier: AGPL-3.0-or-later
# Cleanup tool (osmo_pcap_clean.py): its tests and benchmark on their own.

.PHONY: test-clean bench-clean

# Its tests with one interpreter (PY=... to choose another).
test-clean: all
	$(or $(PY),$(PYTHON)) tests/run.py clean

# Planning over 100,000 synthetic files; fails above 2 s.
bench-clean:
	$(PYTHON) bench/clean_plan.py
