# SPDX-License-Identifier: AGPL-3.0-or-later
"""The C heap and Python's small-object arenas: giving freed memory back after
a burst of connections, and keeping it steady on a busy data path.

steady_heap() (client and server, at start-up): each capture round or
received batch allocates and frees up to a few MiB. glibc shrinks its heap
whenever more than its trim threshold lies free at the top, and a round later
grows it again, faulting every page back in: on CPython 3.6 that was two brk
calls per round and a fifth of the client's CPU, and a fifth of the server's
with 1400-byte packets. A fixed mmap threshold of 4 MiB and a trim threshold of
8 MiB (the heap keeps at most that much free memory at its top) stop it.
Where the C library has no mallopt, or refuses the values, nothing changes.

keep_arenas() (at start-up: the server; the client before 3.10, see there):
CPython hands its small-object arenas back to the system as soon as they are
empty (before 3.10 every one, of 256 KiB; from 3.10 all but one, of 1 MiB on
64-bit builds). A received batch of small records (an object each) fills a few
arenas; writing the batch frees them, and the next batch maps them again and
faults their pages in: on 3.6 to 3.9 that doubled the cost of parsing and
writing 100-byte packets, and cost 3.11 a third of the server's CPU. An arena
stays mapped while one object in it lives, so keep_arenas() fills a few MiB
with small objects and keeps, for good, only one in every aligned stretch of a
quarter arena (every arena holds a whole stretch): those arenas stay, nearly
all their memory free for any object.

Trimmer (the server): everything a connection holds is freed when it closes
(doc/server.md#memory), but the C library keeps freed heap memory for reuse:
after a flood of TLS handshakes (OpenSSL's allocations are many and small) the
resident size stays at its high-water mark, fragmented. glibc's malloc_trim(0)
returns the free pages inside the heap too. Trimmer calls it, through ctypes,
once `churn` connections came since the last call: as soon as no new one came
for `quiet` seconds (a burst is over), or after `interval` seconds during a
long one. Elsewhere (musl, other systems) it does nothing. A trim returns
memory whatever the trim threshold says.
"""

import sys
import time

M_TRIM_THRESHOLD = -1      # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20   # larger blocks still get their own mapping
TRIM_THRESHOLD = 8 << 20   # free memory the heap keeps at its top

ARENA_KEEP = 8 << 20  # small-object arenas the server keeps: a batch of 1 MiB of tiny records
# A quarter of CPython's arena size: any arena holds a whole aligned stretch.
ARENA_STRETCH = (256 << 10) if sys.version_info >= (3, 10) and sys.maxsize > 2 ** 32 \
    else (64 << 10)

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
            self._trim = _c_function("malloc_trim", "c_size_t") or False
        return self._trim


def _c_function(name, *argtypes):
    """The C library's function name (ctypes type names for its arguments,
    returning int), or None where there is none."""
    try:
        import ctypes
        # dlopen(NULL): the C library the interpreter runs on, no search needed
        fn = getattr(ctypes.CDLL(None), name, None)
    except (ImportError, OSError):
        return None
    if fn is not None:
        fn.argtypes = [getattr(ctypes, t) for t in argtypes]
        fn.restype = ctypes.c_int
    return fn


def steady_heap(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD):
    """Stop the C heap from shrinking and growing back every round; return True
    when both thresholds were set (glibc), False where nothing changed."""
    fn = _c_function("mallopt", "c_int", "c_int")
    if fn is None:
        return False
    # Setting either threshold turns off glibc's own adjustment of both: with
    # the mmap threshold refused (32-bit builds take at most 512 KiB) a trim
    # threshold alone would leave every round's large blocks to mmap/munmap.
    if fn(M_MMAP_THRESHOLD, mmap_threshold) != 1:
        if fn(M_MMAP_THRESHOLD, 512 << 10) != 1:
            return False
    return fn(M_TRIM_THRESHOLD, trim_threshold) == 1


# The objects that hold keep_arenas()'s arenas; never released.
_arena_holders = []


def keep_arenas(size=ARENA_KEEP):
    """Keep about size bytes of CPython's small-object arenas mapped for good;
    return how many objects hold them (0 on other Pythons). Only the first call
    in a process keeps any."""
    if sys.implementation.name != "cpython":
        return 0
    if _arena_holders:
        return len(_arena_holders)    # once per process (a test may start many servers)
    # bytes(31): an object of 64 bytes (48 on 32-bit builds), one of the small sizes.
    fill = [bytes(31) for _ in range(size // 64)]
    seen = set()
    for obj in fill:
        stretch = id(obj) // ARENA_STRETCH     # id() is the address in CPython
        if stretch not in seen:
            seen.add(stretch)
            _arena_holders.append(obj)
    return len(seen)
