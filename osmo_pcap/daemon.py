# SPDX-License-Identifier: AGPL-3.0-or-later
"""Fit a daemon into a Linux host: detach (-D), pidfile, systemd notifications.

daemonize() detaches the way classic daemons do (doc/operations.md#daemonize, minus upstream's
umask 0 and chdir /tmp). sd_notify() speaks systemd's $NOTIFY_SOCKET datagram
protocol; start_watchdog() keeps WatchdogSec= satisfied from the event loop.
Nothing here is needed for a plain foreground run: every call is a no-op when
its environment is absent.
"""

import atexit
import os
import socket
import sys


class DaemonError(Exception):
    """A start-up problem a user can cause (pidfile in use, unwritable, ...)."""


def add_arguments(parser):
    """Add -D/--daemonize and --pidfile to an argparse parser."""
    parser.add_argument("-D", "--daemonize", action="store_true",
                        help="detach from the terminal and run in the background")
    parser.add_argument("--pidfile", metavar="FILE",
                        help="write the process id to FILE (removed at exit); "
                             "refuse to start while it names a running process")


# ------------------------------------------------------------ paths
def absolute(path, base_dir=None):
    """Return path made absolute against base_dir (default: the working directory)."""
    if path is None or path == "":
        return path
    path = os.path.expanduser(path)
    return os.path.normpath(os.path.join(base_dir or os.getcwd(), path))


def resolve_paths(obj, names, base_dir=None):
    """Make the relative paths stored under names absolute, before a chdir.

    obj is a dict or any object with attributes; names are its keys or
    attribute names. Missing, None and empty values are left alone. Return
    the list of (name, old, new) that changed, for a debug log line.
    """
    changed = []
    for name in names:
        if isinstance(obj, dict):
            value = obj.get(name)
        else:
            value = getattr(obj, name, None)
        if not isinstance(value, str) or value == "" or os.path.isabs(value):
            continue
        new = absolute(value, base_dir)
        if isinstance(obj, dict):
            obj[name] = new
        else:
            setattr(obj, name, new)
        changed.append((name, value, new))
    return changed


# ------------------------------------------------------------ pidfile
def read_pidfile(path):
    """Return the pid recorded in path, or None if absent or unreadable."""
    try:
        with open(path, "r") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid):
    """Return True if a process with that pid exists (ours or another user's)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_pidfile(path):
    """Raise DaemonError if path names a live process other than this one."""
    pid = read_pidfile(path)
    if pid is not None and pid != os.getpid() and pid_alive(pid):
        raise DaemonError("pidfile %s: already running as pid %d" % (path, pid))


def write_pidfile(path):
    """Write our pid to path atomically (temporary file, then rename)."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DaemonError("pidfile %s: cannot write: %s" % (path, e.strerror or e))


def remove_pidfile(path):
    """Remove path if it still holds our pid (a successor may have replaced it)."""
    if read_pidfile(path) == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass


def own_pidfile(path):
    """Check, write, and arrange removal at exit of a pidfile for this process."""
    check_pidfile(path)
    write_pidfile(path)
    atexit.register(remove_pidfile, path)


# ------------------------------------------------------------ detaching
def daemonize(pidfile=None, umask=None):
    """Detach: double fork, setsid, chdir /, stdio on /dev/null, optional pidfile.

    Call after the configuration is loaded and the sockets are open, with
    relative paths already made absolute (resolve_paths). The original
    process exits 0 once the daemon has written its pidfile, or 1 with the
    daemon's error message on stderr, so an init script sees failures. The
    umask is kept unless one is given (upstream set 0, which made file modes
    ignore the administrator's umask). Return in the daemon process only.
    """
    if pidfile:
        pidfile = absolute(pidfile)
        check_pidfile(pidfile)
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        _parent_wait(rfd)  # does not return
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # the session leader goes; the daemon can never regain a tty
    if umask is not None:
        os.umask(umask)
    os.chdir("/")
    try:
        if pidfile:
            own_pidfile(pidfile)
    except DaemonError as e:
        _report(wfd, "error " + str(e))
        os._exit(1)
    _redirect_stdio()
    _report(wfd, "ok")
    os.close(wfd)


def _parent_wait(rfd):
    """Wait for the daemon's first word on the pipe; exit accordingly."""
    data = b""
    while True:
        try:
            chunk = os.read(rfd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace")
    if text.startswith("ok"):
        os._exit(0)
    msg = text[len("error "):] if text.startswith("error ") else "daemon exited during start-up"
    sys.stderr.write("%s: %s\n" % (os.path.basename(sys.argv[0] or "osmo-pcap"), msg))
    sys.stderr.flush()
    os._exit(1)


def _report(wfd, text):
    try:
        os.write(wfd, text.encode("utf-8"))
    except OSError:
        pass


def _redirect_stdio():
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


# ------------------------------------------------------------ systemd
def _notify_address(env):
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr:
        return None
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace socket
    if addr.startswith("/"):
        return addr
    return None  # vsock and other forms are not used for services


def sd_notify(state, env=None):
    """Send state (e.g. "READY=1", "STOPPING=1", "STATUS=...") to systemd.

    Return True if sent, False when not under systemd or the send failed
    (never raises: notifications are best-effort by design).
    """
    env = os.environ if env is None else env
    addr = _notify_address(env)
    if addr is None:
        return False
    if isinstance(state, str):
        state = state.encode("utf-8")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(state, addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def notify_ready(status=None, env=None):
    """Tell systemd we are ready (listening or capturing), with an optional STATUS."""
    msg = "READY=1"
    if status:
        msg += "\nSTATUS=" + status.replace("\n", " ")
    return sd_notify(msg, env)


def notify_stopping(env=None):
    """Tell systemd an orderly shutdown has started."""
    return sd_notify("STOPPING=1", env)


def notify_status(status, env=None):
    """Update the one-line status shown by systemctl status."""
    return sd_notify("STATUS=" + status.replace("\n", " "), env)


def watchdog_interval(env=None):
    """Return systemd's watchdog interval in seconds for this process, or None."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. our parent before -D)
    return int(usec) / 1e6


def start_watchdog(loop, env=None):
    """Send WATCHDOG=1 now and every half interval from loop; return the handle.

    Return None when systemd asked for no watchdog. Because the pings come
    from the event loop, a stuck loop stops them and systemd restarts us,
    which is the point.
    """
    interval = watchdog_interval(env)
    if interval is None:
        return None
    sd_notify("WATCHDOG=1", env)
    return loop.call_every(interval / 2.0, sd_notify, "WATCHDOG=1", env)



def status_wanted(env=None):
    """Return True when a STATUS= line reaches someone (started by systemd)."""
    env = os.environ if env is None else env
    return _notify_address(env) is not None


# ------------------------------------------------------------ status figures
class RateMeter(object):
    """Per-second rates of cumulative counters between two calls of rates().

    The first call measures from the meter's creation (counters at 0 then).
    """

    def __init__(self, clock):
        self.clock = clock
        self.last = (clock(), {})

    def rates(self, values):
        """Return {name: per second} for values {name: cumulative}, plus 'interval'."""
        now = self.clock()
        then, before = self.last
        self.last = (now, dict(values))
        dt = now - then
        out = dict((k, (v - before.get(k, 0)) / dt if dt > 0 else 0.0)
                   for k, v in values.items())
        out["interval"] = dt
        return out


def format_duration(seconds):
    """Return '45s', '12m03s', '5h02m', '3d04h' for a number of seconds."""
    s = int(max(0, seconds))
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    return "%dd%02dh" % (s // 86400, s % 86400 // 3600)
