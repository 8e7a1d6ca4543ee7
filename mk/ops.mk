# SPDX-License-Identifier: AGPL-3.0-or-later
# Operations targets, included by the Makefile:
#   make install [PREFIX=/usr/local] [DESTDIR=]   programs, configs, units, init scripts, manual,
#                [EXTCAPDIR=...]                 man pages; with EXTCAPDIR, the Wireshark extcap link
#   make demo                                     server + client on loopback (as root)
#   make test-ops [PY=python3.X]                  the operations tests on their own

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR ?= $(PREFIX)/share/doc/osmo-pcap
CONFDIR ?= /etc/osmo-pcap
INITDIR ?= /etc/init.d
MANDIR ?= $(PREFIX)/share/man
# Wireshark's extcap folder (`tshark -G folders`); empty: no link (doc/wireshark.md#install).
EXTCAPDIR ?=
INSTALL ?= install

# contrib/ files name the default locations (/usr/local/bin/osmo-pcap-NAME,
# /etc/osmo-pcap/); these rewrite them for the chosen PREFIX and CONFDIR. The
# underscore script names and /etc/osmocom/ are accepted as well.
OPS_SED = sed -e 's\#/usr/local/bin/osmo_pcap_\([a-z]*\)\.py\#$(BINDIR)/osmo-pcap-\1\#g' \
	-e 's\#/usr/local/bin/\#$(BINDIR)/\#g' \
	-e 's\#/usr/local/share/doc/osmo-pcap\#$(DOCDIR)\#g' \
	-e 's\#/etc/osmocom/osmo-pcap-\#$(CONFDIR)/osmo-pcap-\#g' \
	-e 's\#/etc/osmo-pcap/\#$(CONFDIR)/\#g'

# The manual: the README, the licence and the chapters of doc/ (each listed in
# doc/index.md; tools/docs.py checks that). They are installed side by side in
# DOCDIR, so the links between them lose their doc/ and ../ parts.
MANUAL := README.md LICENSE $(sort $(wildcard doc/*.md))
DOC_SED = sed -e 's\#](doc/\([a-z0-9_-]*\.md\)\#](\1\#g' -e 's\#](\.\./\(README\.md\|LICENSE\)\#](\1\#g'

.PHONY: install demo test-ops

install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(INITDIR) $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0644 contrib/osmo-pcap.sysusers $(DESTDIR)$(SYSUSERSDIR)/osmo-pcap.conf
	@for p in client server clean extcap; do \
		echo "install osmo_pcap_$$p.py -> $(DESTDIR)$(BINDIR)/osmo-pcap-$$p"; \
		$(INSTALL) -m 0755 osmo_pcap_$$p.py $(DESTDIR)$(BINDIR)/osmo-pcap-$$p || exit 1; \
	done
	@for f in contrib/*.ini; do \
		t=$(DESTDIR)$(CONFDIR)/$${f##*/}; \
		if [ -e "$$t" ]; then \
			echo "keep $$t (yours); the shipped version is $$t.dist"; \
			$(INSTALL) -m 0644 $$f $$t.dist || exit 1; \
		else \
			echo "install $$f -> $$t"; $(INSTALL) -m 0644 $$f $$t || exit 1; \
		fi; \
	done
	@for f in contrib/*.service contrib/*.timer; do \
		[ -e "$$f" ] || continue; \
		echo "install $$f -> $(DESTDIR)$(UNITDIR)/$${f##*/}"; \
		$(OPS_SED) $$f > $(DESTDIR)$(UNITDIR)/$${f##*/}.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${f##*/}.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$${f##*/}.tmp $(DESTDIR)$(UNITDIR)/$${f##*/} || exit 1; \
	done
	@for f in contrib/*.init; do \
		[ -e "$$f" ] || continue; \
		t=$(DESTDIR)$(INITDIR)/$$(basename $$f .init); \
		echo "install $$f -> $$t"; \
		$(OPS_SED) $$f > $$t.tmp && chmod 0755 $$t.tmp && mv $$t.tmp $$t || exit 1; \
	done
	@for f in contrib/*.cron; do \
		[ -e "$$f" ] || continue; \
		echo "install $$f -> $(DESTDIR)$(DOCDIR)/examples/ (copy to /etc/cron.d/ to use it)"; \
		$(OPS_SED) $$f > $(DESTDIR)$(DOCDIR)/examples/$${f##*/} || exit 1; \
	done
	@for f in contrib/*.bat; do \
		[ -e "$$f" ] || continue; \
		echo "install $$f -> $(DESTDIR)$(DOCDIR)/examples/ (Windows: doc/wireshark.md)"; \
		$(INSTALL) -m 0644 $$f $(DESTDIR)$(DOCDIR)/examples/$${f##*/} || exit 1; \
	done
	@for f in man/*.[1-8]; do \
		[ -e "$$f" ] || continue; \
		d=$(DESTDIR)$(MANDIR)/man$${f##*.}; t=$$d/$${f##*/}; \
		echo "install $$f -> $$t"; \
		$(INSTALL) -d $$d && $(OPS_SED) $$f > $$t.tmp && chmod 0644 $$t.tmp && \
		mv $$t.tmp $$t || exit 1; \
	done
	@if [ -n "$(EXTCAPDIR)" ]; then \
		echo "link $(DESTDIR)$(EXTCAPDIR)/osmo-pcap-extcap -> $(BINDIR)/osmo-pcap-extcap"; \
		$(INSTALL) -d $(DESTDIR)$(EXTCAPDIR) && \
		ln -sfn $(BINDIR)/osmo-pcap-extcap $(DESTDIR)$(EXTCAPDIR)/osmo-pcap-extcap || exit 1; \
	fi
	@for f in contrib/*.json; do \
		[ -e "$$f" ] || continue; \
		echo "install $$f -> $(DESTDIR)$(DOCDIR)/examples/ (import it into Grafana)"; \
		$(INSTALL) -m 0644 $$f $(DESTDIR)$(DOCDIR)/examples/$${f##*/} || exit 1; \
	done
	@for f in $(MANUAL); do \
		t=$(DESTDIR)$(DOCDIR)/$${f##*/}; \
		echo "install $$f -> $$t"; \
		$(DOC_SED) $$f > $$t.tmp && chmod 0644 $$t.tmp && mv $$t.tmp $$t || exit 1; \
	done
	@echo "installed under $(DESTDIR)$(PREFIX) and $(DESTDIR)$(CONFDIR); see $(DOCDIR)/index.md"

# A server and a client on loopback with a little UDP traffic (root; < 1 min).
demo: all
	$(PYTHON) tools/demo.py

test-ops: all
	$(or $(PY),$(PYTHON)) tests/run.py ops
