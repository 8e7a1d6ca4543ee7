# SPDX-License-Identifier: AGPL-3.0-or-later
# osmo-pcap for Python. `make` builds the four standalone scripts from osmo_pcap/
# and the man pages in man/ (tools/manpages.py).

PYTHON ?= python3

.PHONY: all scripts manpages check test test-deps bench clean-build

all: scripts manpages

# Always run: the bundler is fast, deterministic and rewrites only what changed, and
# file times say nothing reliable after a checkout or a merge.
scripts:
	$(PYTHON) tools/bundle.py

# The man pages from doc/*.md and the programs' --help (deterministic, like the scripts).
manpages: scripts
	$(PYTHON) tools/manpages.py

# Static checks, no network: stale scripts and man pages, CPython 3.6 grammar,
# compilation on 3.6, SPDX lines; the documentation's size, links and anchors
# (tools/docs.py).
check:
	$(PYTHON) tools/bundle.py --check
	$(PYTHON) tools/manpages.py --check
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
