# SPDX-License-Identifier: AGPL-3.0-or-later
"""The cleanup tool, osmo_pcap_clean.py: compress and expire closed trace files.

main (command line), config ([clean] and [client NAME] rules), plan (pure
selection of what to do with each file), tracedir (listing a trace directory),
compress (atomic streaming gzip/bz2/xz, zstd on CPython 3.14+).
"""
