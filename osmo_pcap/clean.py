# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_clean.py: command line entry point (placeholder until its issue lands)."""

import argparse
import sys

from osmo_pcap import __version__, COPYRIGHT


def main(argv=None):
    """Run the program; return the exit status."""
    ap = argparse.ArgumentParser(prog="osmo_pcap_clean.py")
    ap.add_argument("-V", "--version", action="version",
                    version="osmo_pcap_clean.py %s\n%s" % (__version__, COPYRIGHT))
    ap.add_argument("-c", "--config-file", metavar="FILE")
    ap.parse_args(argv)
    print("osmo_pcap_clean.py: not implemented yet", file=sys.stderr)
    return 1
