# SPDX-License-Identifier: AGPL-3.0-or-later
# Hostile load, once per CI run and outside the per-interpreter suite (HACKING.md#stress):
#   make test-stress      10,000 TLS connections on 3.6 and 3.13, 10,000 plain ones,
#                         the 60-second soak (root; about 2 minutes)
#   make soak [MINUTES=10]  bench/soak.py: the full soak with its verdict (root)

MINUTES ?= 10

.PHONY: test-stress soak

test-stress: all
	PY="$(PY)" tools/stress.sh

soak: all
	$(PYTHON) bench/soak.py --minutes $(MINUTES)
