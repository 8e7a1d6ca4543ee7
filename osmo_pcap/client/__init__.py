# SPDX-License-Identifier: AGPL-3.0-or-later
"""The capture client, osmo_pcap_client.py: capture with libpcap, frame, forward.

main (command line and the Client that wires the rest), config ([client] and
[server NAME]), libpcap (the ctypes binding), capture (devices and files to
framed records), gprs (the GPRS user-data filter), forward (one Forwarder per
server: the numbered stream, connection, acknowledged delivery), spool (the
part of a stream kept on disk), ipip (protocol = ipip).
"""
