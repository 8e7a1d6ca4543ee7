# SPDX-License-Identifier: AGPL-3.0-or-later
"""Network namespace helpers for tests: namespaces, veth pairs, commands inside.

Names contain the test process id (interface names stay within 15 characters)
and everything created is removed by the TestCase's cleanups, even on failure.
"""

import itertools
import os
import subprocess

from tests import support

_counter = itertools.count(1)


def _ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if check and p.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def require_netns():
    """Skip (fail under CI) unless namespaces can be created here."""
    support.require_root()
    support.require_tool("ip")
    name = "opchk%d" % os.getpid()
    p = _ip("netns", "add", name, check=False)
    support.need(p.returncode == 0, "cannot create network namespaces: %s" % p.stderr.strip())
    _ip("netns", "del", name, check=False)


def unique(prefix):
    """Return a short name with the pid and a counter, at most 15 characters."""
    name = "%s%d%s" % (prefix, os.getpid() % 100000, chr(ord("a") + next(_counter) % 26))
    assert len(name) <= 15, name
    return name


def add_ns(test, prefix="ns"):
    """Create a namespace with lo up; removed at cleanup. Return its name."""
    name = unique("op" + prefix)
    _ip("netns", "add", name)
    test.addCleanup(_ip, "netns", "del", name, check=False)
    exec_in(name, ["ip", "link", "set", "lo", "up"])
    return name


def exec_cmd(ns, cmd):
    """Return argv running cmd inside ns (None: the current namespace)."""
    return (["ip", "netns", "exec", ns] if ns else []) + list(cmd)


def python_in(ns, code, *args, **kw):
    """Run a Python snippet (with the repository importable) inside ns."""
    import sys
    return support.run(exec_cmd(ns, [sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n"
                                     % support.REPO + code] + list(args)), **kw)


def exec_in(ns, cmd, check=True):
    return support.run(exec_cmd(ns, cmd), check=check)


def veth(test, ns_a, addr_a, ns_b, addr_b, prefix="v", names=None):
    """Create a veth pair between two namespaces (None = current), addresses in
    CIDR form, IPv6 off, links up. Return (name_a, name_b)."""
    a, b = names or (unique(prefix + "a"), unique(prefix + "b"))
    _ip("link", "add", a, "type", "veth", "peer", "name", b)
    test.addCleanup(_ip, "link", "del", a, check=False)
    for ns, name, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
        if ns:
            _ip("link", "set", name, "netns", ns)
            test.addCleanup(exec_in, ns, ["ip", "link", "del", name], False)
        exec_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.%s.disable_ipv6=1" % name], False)
        if addr:
            exec_in(ns, ["ip", "addr", "add", addr, "dev", name])
        exec_in(ns, ["ip", "link", "set", name, "up"])
    return a, b
