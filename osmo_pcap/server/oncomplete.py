# SPDX-License-Identifier: AGPL-3.0-or-later
"""The post-close command: run a program for every closed trace file.

A server hook. The command is split like a shell would split it but run
without a shell; {path} and {client} in its arguments are replaced by the
file's final path and the client's name. At most max_running commands run at
once, the rest wait in a bounded queue; each one is killed (its whole process
group) when it outlives its timeout. Exit status and the tail of stderr are
logged. Children are driven from the server's event loop (a pipe reader per
child and a polling timer while any runs), so nothing here ever blocks the
server, except close(), which gives the last files' commands a bounded time.
"""

import collections
import os
import re
import select
import shlex
import signal
import subprocess
import time

from osmo_pcap import log

DEFAULT_MAX_RUNNING = 2
DEFAULT_TIMEOUT = 300.0
DEFAULT_SHUTDOWN_WAIT = 30.0
QUEUE_MAX = 10000
STDERR_TAIL = 2048
KILL_GRACE = 2.0       # between SIGTERM and SIGKILL
POLL_INTERVAL = 0.1

_PLACEHOLDER = re.compile(r"\{(path|client)\}")


def parse_command(text):
    """Return the argv template of an on_complete value; raise ValueError."""
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise ValueError("cannot split the command: %s" % e)
    if not argv:
        raise ValueError("empty command")
    if "{" in argv[0]:
        raise ValueError("the program itself cannot be a placeholder: %r" % argv[0])
    return argv


def expand(template, path, client):
    """Return argv with {path} and {client} replaced (in one pass, no re-expansion)."""
    values = {"path": path, "client": client}
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], a) for a in template]


class _Job(object):
    """One running command."""

    __slots__ = ("proc", "argv", "path", "started", "stderr", "term_at", "fd", "eof")

    def __init__(self, proc, argv, path, started):
        self.proc = proc
        self.argv = argv
        self.path = path
        self.started = started
        self.stderr = bytearray()
        self.term_at = None
        self.fd = proc.stderr.fileno()
        self.eof = False


class OnComplete(object):
    """A server hook running the post-close command for every file_closed()."""

    def __init__(self, loop, template, max_running=DEFAULT_MAX_RUNNING, timeout=DEFAULT_TIMEOUT,
                 shutdown_wait=DEFAULT_SHUTDOWN_WAIT, queue_max=QUEUE_MAX, logger=None,
                 clock=time.monotonic):
        self.loop = loop
        self.template = list(template)
        self.max_running = max_running
        self.timeout = timeout
        self.shutdown_wait = shutdown_wait
        self.queue_max = queue_max
        self.log = logger or log.get("on_complete")
        self.clock = clock
        self.queue = collections.deque()
        self.running = []
        self.skipped = 0
        self.runs = 0           # commands that finished (or could not be started)
        self.failures = 0       # ... of them: not started, non-zero status or killed
        self.timeouts = 0       # ... killed for running longer than timeout
        self.finished = []      # (path, returncode) of the last commands, for tests
        self._poller = None

    # ---------------------------------------------------------- hook interface
    def client_connected(self, name, peer):
        pass

    def client_disconnected(self, name):
        pass

    def link_header(self, name, link):
        pass

    def data(self, name, link, payload):
        pass

    def file_closed(self, name, path):
        if len(self.queue) >= self.queue_max:
            self.skipped += 1
            self.log.error("on_complete: %d commands waiting already, not running it for %s "
                           "(%d skipped so far)", self.queue_max, path, self.skipped)
            return
        self.queue.append((expand(self.template, path, name), path))
        self._start_queued()

    def close(self):
        """Run the remaining commands (files closed at shutdown) for a bounded time."""
        deadline = self.clock() + self.shutdown_wait
        while (self.queue or self.running) and self.clock() < deadline:
            self._start_queued()
            self._wait_readable(min(POLL_INTERVAL, max(0.0, deadline - self.clock())))
            self._poll()
        if self.queue:
            self.log.error("on_complete: shutting down, %d commands not run (first for %s)",
                           len(self.queue), self.queue[0][1])
            self.queue.clear()
        for job in list(self.running):
            self.log.error("on_complete: shutting down, killing %s for %s after %.1f s",
                           job.argv[0], job.path, self.clock() - job.started)
            self._signal(job, signal.SIGKILL)
            job.proc.wait()
            self._finish(job)
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    # ---------------------------------------------------------- children
    def _start_queued(self):
        while self.queue and len(self.running) < self.max_running:
            argv, path = self.queue.popleft()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        close_fds=True, start_new_session=True)
            except (OSError, ValueError) as e:
                self.log.error("on_complete: cannot run %s for %s: %s", argv[0], path,
                               getattr(e, "strerror", None) or e)
                self.runs += 1
                self.failures += 1
                self.finished.append((path, None))
                continue
            job = _Job(proc, argv, path, self.clock())
            os.set_blocking(job.fd, False)
            self.running.append(job)
            self.loop.add_reader(job.fd, lambda j=job: self._read_stderr(j))
            self.log.debug("on_complete: started %s (pid %d)", " ".join(argv), proc.pid)
        if self.running and self._poller is None:
            self._poller = self.loop.call_every(POLL_INTERVAL, self._poll)

    def _read_stderr(self, job):
        """Keep the tail of the child's stderr; stop reading at end of file."""
        try:
            data = os.read(job.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            job.eof = True
            self.loop.remove(job.fd)
            return
        job.stderr += data
        if len(job.stderr) > STDERR_TAIL:
            del job.stderr[:-STDERR_TAIL]

    def _wait_readable(self, timeout):
        fds = [j.fd for j in self.running if not j.eof]
        if fds:
            try:
                r, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                r = []
            for job in list(self.running):
                if job.fd in r:
                    self._read_stderr(job)
        elif timeout > 0:
            time.sleep(timeout)

    def _signal(self, job, sig):
        try:
            os.killpg(job.proc.pid, sig)
        except OSError:
            pass

    def _poll(self):
        now = self.clock()
        for job in list(self.running):
            if job.proc.poll() is not None:
                self._finish(job)
            elif job.term_at is None and now - job.started >= self.timeout:
                self.log.error("on_complete: %s for %s still running after %.1f s: killing it",
                               job.argv[0], job.path, self.timeout)
                job.term_at = now
                self.timeouts += 1
                self._signal(job, signal.SIGTERM)
            elif job.term_at is not None and now - job.term_at >= KILL_GRACE:
                self._signal(job, signal.SIGKILL)
        self._start_queued()
        if not self.running and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def _finish(self, job):
        self.running.remove(job)
        # Whatever the child wrote before it ended is still in the pipe.
        while not job.proc.stderr.closed:
            try:
                data = os.read(job.fd, 65536)
            except (BlockingIOError, InterruptedError, OSError):
                break
            if not data:
                break
            job.stderr += data
            del job.stderr[:-STDERR_TAIL]
        self.loop.remove(job.fd)
        job.proc.stderr.close()
        rc = job.proc.returncode
        took = self.clock() - job.started
        self.runs += 1
        if rc != 0:
            self.failures += 1
        err = bytes(job.stderr).decode("utf-8", "replace").strip()
        err = (": " + " | ".join(err.splitlines())) if err else ""
        if rc == 0:
            self.log.info("on_complete: %s for %s done in %.1f s%s", job.argv[0], job.path,
                          took, err)
        elif rc < 0:
            self.log.error("on_complete: %s for %s killed by signal %d after %.1f s%s",
                           job.argv[0], job.path, -rc, took, err)
        else:
            self.log.error("on_complete: %s for %s exited with status %d after %.1f s%s",
                           job.argv[0], job.path, rc, took, err)
        self.finished.append((job.path, rc))
        if len(self.finished) > 100:
            del self.finished[:-100]
