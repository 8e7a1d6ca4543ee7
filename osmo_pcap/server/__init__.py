# SPDX-License-Identifier: AGPL-3.0-or-later
"""The central server, osmo_pcap_server.py: receive client streams, store trace files.

main (command line and the Server: data, acknowledgements, shutdown, metrics),
config ([server] and [client NAME]), admission (accepted sockets to admitted
connections: client entry, TLS, pending limits), ingest (decode and validate
one stream), recorder (one client's files, rotation, what is durable), ackstate
(the stream state kept for acknowledged delivery), storage (one trace file on
disk), and the hooks
that see the stream too: hooks (their config and fan-out), tap (live pcapng
over TCP), zmtp (ZeroMQ publisher), fanout (bounded subscriber queues),
oncomplete (a command per closed file).
"""
