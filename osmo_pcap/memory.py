# SPDX-License-Identifier: AGPL-3.0-or-later
"""Giving freed memory back to the system after a burst of connections.

Everything a connection holds is freed when it closes (doc/server.md#memory),
but the C library keeps freed heap memory for reuse: after a flood of TLS
handshakes (OpenSSL's allocations are many and small) the resident size stays
at its high-water mark, fragmented. glibc's malloc_trim(0) returns the free
pages inside the heap too. Trimmer calls it, through ctypes, once `churn`
connections came since the last call: as soon as no new one came for `quiet`
seconds (a burst is over), or after `interval` seconds during a long one.
Elsewhere (musl, other systems) it does nothing. ctypes is loaded at the first
trim, not at start-up.
"""

import time

CHURN = 256         # connections before a trim is worth it
QUIET = 1.0         # seconds without a new connection: the burst is over
INTERVAL = 10.0     # seconds between trims during a long burst


class Trimmer(object):
    """Trim the C heap now and then, after many connections came and went."""

    def __init__(self, churn=CHURN, interval=INTERVAL, quiet=QUIET, clock=time.monotonic):
        self.churn = churn
        self.interval = interval
        self.quiet = quiet
        self.clock = clock
        self.seen = 0         # the connection count at the last trim
        self.last = clock()   # ... and its time
        self.count = 0        # the connection count when it last changed
        self.changed = self.last
        self.trims = 0
        self._trim = None     # the C function, False where there is none

    def maybe_trim(self, connections):
        """Call often with the number of connections accepted so far; return True when
        the heap was trimmed."""
        now = self.clock()
        if connections != self.count:
            self.count, self.changed = connections, now
        if connections - self.seen < self.churn:
            return False
        if now - self.changed < self.quiet and now - self.last < self.interval:
            return False
        self.seen = connections
        self.last = now
        fn = self._function()
        if not fn:
            return False
        fn(0)
        self.trims += 1
        return True

    def _function(self):
        if self._trim is None:
            self._trim = False
            try:
                import ctypes
                # dlopen(NULL): the C library the interpreter runs on, no search needed
                fn = getattr(ctypes.CDLL(None), "malloc_trim", None)
                if fn is not None:
                    fn.argtypes = [ctypes.c_size_t]
                    fn.restype = ctypes.c_int
                    self._trim = fn
            except (ImportError, OSError, AttributeError):
                pass
        return self._trim
