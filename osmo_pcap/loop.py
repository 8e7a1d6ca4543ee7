# SPDX-License-Identifier: AGPL-3.0-or-later
"""A small single-threaded event loop over `selectors`, with timers and signals.

Readers and writers are callbacks per file object; timers run on a monotonic
clock; signal handlers only set a flag and wake the loop, and the callbacks
registered with on_signal() run in the loop, outside signal context.
"""

import heapq
import os
import selectors
import signal
import time

# Cancelled timers stay in the heap (removing one from the middle costs a
# rebuild); once there are more than this many and they are over half of the
# heap, one pass drops them all.
COMPACT_MIN = 64


class Timer(object):
    """A scheduled call; cancel() prevents it from running.

    cancel() lets go of the callback and its arguments at once: a cancelled
    timer left in the loop's heap until its deadline holds nothing but itself,
    and the loop drops such entries in bulk when they pile up
    (Loop._timer_cancelled, HACKING.md#mem-release).
    """

    __slots__ = ("when", "callback", "args", "cancelled", "seq", "loop")

    def __init__(self, when, seq, callback, args, loop=None):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.loop = loop

    def cancel(self):
        if not self.cancelled:
            self.cancelled = True
            self.callback = self.args = None
            loop, self.loop = self.loop, None
            if loop is not None:
                loop._timer_cancelled()

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)


class _Repeat(object):
    """A periodic call made of successive Timers; cancel() stops it."""

    def __init__(self, loop, interval, callback, args):
        self.loop, self.interval, self.callback, self.args = loop, interval, callback, args
        self.cancelled = False
        self.timer = loop.call_later(interval, self._tick)

    def _tick(self):
        if not self.cancelled:
            self.timer = self.loop.call_later(self.interval, self._tick)
            self.callback(*self.args)

    def cancel(self):
        self.cancelled = True
        self.timer.cancel()


class Loop(object):
    """Dispatch readiness of registered file objects, timers and signals."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self._timers = []
        self._cancelled = 0     # cancelled Timers still in the heap
        self._seq = 0
        self._running = False
        self._signals = {}
        self._pending_signals = set()
        self._wake_r = self._wake_w = None
        self._old_wakeup = None

    # ------------------------------------------------------------ file objects
    def _update(self, fileobj, reader, writer):
        try:
            key = self.selector.get_key(fileobj)
        except KeyError:
            key = None
        if key is not None:
            r, w = key.data
            reader = r if reader is False else reader
            writer = w if writer is False else writer
        mask = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        if key is None:
            if mask:
                self.selector.register(fileobj, mask, (reader, writer))
        elif not mask:
            self.selector.unregister(fileobj)
        else:
            self.selector.modify(fileobj, mask, (reader, writer))

    def add_reader(self, fileobj, callback):
        """Call callback() whenever fileobj is readable."""
        self._update(fileobj, callback, False)

    def remove_reader(self, fileobj):
        self._update(fileobj, None, False)

    def add_writer(self, fileobj, callback):
        """Call callback() whenever fileobj is writable."""
        self._update(fileobj, False, callback)

    def remove_writer(self, fileobj):
        self._update(fileobj, False, None)

    def remove(self, fileobj):
        """Forget fileobj entirely (call before closing it)."""
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    # ------------------------------------------------------------ timers
    def call_later(self, delay, callback, *args):
        """Run callback(*args) after delay seconds; return its Timer."""
        self._seq += 1
        t = Timer(self.clock() + max(0.0, delay), self._seq, callback, args, self)
        heapq.heappush(self._timers, t)
        return t

    def _timer_cancelled(self):
        """Count a cancelled heap entry; drop them all once they are most of the heap."""
        self._cancelled += 1
        timers = self._timers
        if self._cancelled > COMPACT_MIN and self._cancelled * 2 > len(timers):
            timers[:] = [t for t in timers if not t.cancelled]
            heapq.heapify(timers)
            self._cancelled = 0

    def pending_timers(self):
        """Return the number of timers that will still run (for tests and metrics)."""
        return len(self._timers) - self._cancelled

    def call_every(self, interval, callback, *args):
        """Run callback(*args) every interval seconds; return a cancellable handle."""
        return _Repeat(self, interval, callback, args)

    # ------------------------------------------------------------ signals
    def on_signal(self, signum, callback):
        """Run callback(signum) in the loop when signum arrives."""
        if self._wake_r is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
            self.add_reader(self._wake_r, self._drain_wakeup)
        self._signals[signum] = callback
        signal.signal(signum, self._flag_signal)

    def _flag_signal(self, signum, frame):
        self._pending_signals.add(signum)

    def _drain_wakeup(self):
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _run_signals(self):
        while self._pending_signals:
            signum = self._pending_signals.pop()
            cb = self._signals.get(signum)
            if cb is not None:
                cb(signum)

    # ------------------------------------------------------------ running
    def stop(self):
        """Make run() return after the current iteration."""
        self._running = False

    def run_once(self, timeout=None):
        """Wait up to timeout (or the next timer) and dispatch what is ready."""
        timers = self._timers
        if timers:
            delay = max(0.0, timers[0].when - self.clock())
            timeout = delay if timeout is None else min(timeout, delay)
        if self._pending_signals:
            timeout = 0
        get_key = self.selector.get_key
        for key, mask in self.selector.select(timeout):
            # An earlier callback of this round may have unregistered or replaced
            # this object (a connection closed, its socket number reused): ask again.
            try:
                reader = get_key(key.fileobj).data[0]
            except (KeyError, ValueError):
                continue
            if mask & selectors.EVENT_READ and reader:
                reader()
            if mask & selectors.EVENT_WRITE:
                try:
                    writer = get_key(key.fileobj).data[1]
                except (KeyError, ValueError):
                    continue
                if writer:
                    writer()
        self._run_signals()
        now = self.clock()
        while timers and timers[0].when <= now:
            t = heapq.heappop(timers)
            if t.cancelled:
                self._cancelled -= 1
                continue
            t.loop = None    # it runs now: a late cancel() has nothing to count
            callback, args = t.callback, t.args
            t.callback = t.args = None
            callback(*args)

    def run(self):
        """Run until stop() is called."""
        self._running = True
        while self._running:
            self.run_once()

    def close(self):
        """Release the selector and restore signal wake-up."""
        if self._wake_r is not None:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            self.remove(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = None
        self.selector.close()
