# SPDX-License-Identifier: AGPL-3.0-or-later
# osmo-pcap for Python. `make` builds the three standalone scripts from osmo_pcap/.

PYTHON ?= python3

.PHONY: all scripts check test test-deps bench clean-build

all: scripts

# Always run: the bundler is fast, deterministic and rewrites only what changed, and
# file times say nothing reliable after a checkout or a merge.
scripts:
	$(PYTHON) tools/bundle.py

# Static checks, no network: stale scripts, CPython 3.6 grammar, compilation on 3.6,
# SPDX lines; the documentation's size, links and anchors (tools/docs.py).
check:
	$(PYTHON) tools/bundle.py --check
	$(PYTHON) tools/check.py
	$(PYTHON) tools/docs.py

# The whole suite on every CPython 3.6-3.13 found via pyenv (or PY=python3.X).
test: all
	PY="$(PY)" tools/runtests.sh

# Install the test peers on a Debian machine (root), as .ci/run does.
test-deps:
	tools/test-deps.sh

# The soak (minutes, root) has its own target: make soak (mk/stress.mk).
bench: all
	@for b in $(filter-out bench/soak.py,$(wildcard bench/*.py)); do \
		echo "== $$b"; $(PYTHON) $$b || exit 1; done
-include mk/*.mk
