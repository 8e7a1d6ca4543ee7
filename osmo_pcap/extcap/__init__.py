# SPDX-License-Identifier: AGPL-3.0-or-later
"""The Wireshark extcap, osmo_pcap_extcap.py: a server's clients as capture interfaces.

main (Wireshark's extcap command line: --extcap-interfaces, --extcap-dlts,
--extcap-config, --capture --fifo), config (its INI file: where the server's
tap is, TLS), tapclient (talking to the tap: CLIENTS and STREAM requests,
doc/hooks.md#tap-requests).
"""
