# SPDX-License-Identifier: AGPL-3.0-or-later
"""Runs of equal packets: how many are taken at once, and how often to try.

The client's framer (client.capture) and the server's parser (server.ingest)
take RUN packets of one length with a few calls into C (precompiled structs
that check and split them), and fall back to their per-packet loops where
lengths vary. A failed try costs about as much as framing a few packets, so
after one they go packet by packet for a stretch that doubles with every
failure in a row, and shrinks back to one run span after a success.
"""

RUN = 32              # packets of one length taken at once
RUNS_MAX = 256        # cached run structs per cache (two each, a few kB)
BACKOFF_MAX = 256     # longest stretch between tries, in run spans


def after_failure(pos, back, span, limit):
    """A try at pos failed: return (where the per-packet loop stops, next back)."""
    top = pos + back * span
    if top > limit:
        top = limit
    if back < BACKOFF_MAX:
        back += back
    return top, back
