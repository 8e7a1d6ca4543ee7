# SPDX-License-Identifier: AGPL-3.0-or-later
"""Cleanup planning: which trace files to delete and which to compress.

Pure logic over plain values (no filesystem, no clock): the caller lists the
files as FoundTrace objects, passes the policies and "now", and gets a Plan.
Rules (each evaluated on what the earlier rules left):

  max_age         delete files older than the limit
  max_files       per client, keep the newest N
  max_bytes       per-client budget ([client NAME]), then the global budget:
                  delete oldest first until the total fits
  min_free        per filesystem: delete oldest first until enough is freed
  compress_after  per client, compress all but the newest N survivors

A protected file (the newest of each client in each directory unless it is
compressed, or one the server holds locked) is never deleted or compressed;
it still counts in the totals. Deletions are returned oldest first, each with the rule that chose it.
"""

# the rules in the order they are applied (a deletion names the first that chose it)
RULES = ("max_age", "max_files", "max_bytes", "min_free")
METHODS = ("gzip", "bz2", "xz", "zstd", "none")


class Policy(object):
    """The per-client settings; 0 (or None for max_age) means a rule is off."""

    __slots__ = ("max_age", "max_files", "max_bytes", "compress_after", "compress",
                 "compress_level")

    def __init__(self, max_age=None, max_files=0, max_bytes=0, compress_after=3,
                 compress="gzip", compress_level=6):
        self.max_age = max_age
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.compress_after = compress_after
        self.compress = compress
        self.compress_level = compress_level

    def replace(self, **changes):
        """Return a copy with some settings changed."""
        p = Policy(*(getattr(self, k) for k in self.__slots__))
        for k, v in changes.items():
            setattr(p, k, v)
        return p

    def __eq__(self, other):
        return isinstance(other, Policy) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Policy(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)


class FoundTrace(object):
    """One trace file as found on disk.

    time: epoch seconds (from the name, else mtime); seq: collision suffix;
    size: bytes (budgets); usage: bytes on disk (freed space); dev: the
    filesystem; compression: None or "gz"/"bz2"/"xz"/"zst"; locked: in use.
    """

    __slots__ = ("path", "dir", "client", "time", "seq", "size", "usage", "dev",
                 "compression", "locked")

    def __init__(self, path, dir, client, time, seq=0, size=0, usage=None, dev=0,
                 compression=None, locked=False):
        self.path = path
        self.dir = dir
        self.client = client
        self.time = time
        self.seq = seq
        self.size = size
        self.usage = size if usage is None else usage
        self.dev = dev
        self.compression = compression
        self.locked = locked

    def order(self):
        """Sort key: oldest first (time, then collision suffix, then path)."""
        return (self.time, self.seq, self.path)

    def __repr__(self):
        return "FoundTrace(%r)" % self.path


class Plan(object):
    """The result of plan(): what to delete and compress, and why nothing else.

    delete: [(FoundTrace, rule)] oldest first; compress: [(FoundTrace, method,
    level)] oldest first; protected: {path: reason}; warnings: [text].
    """

    def __init__(self):
        self.delete = []
        self.compress = []
        self.protected = {}
        self.warnings = []

    def deleted_paths(self, rule=None):
        return set(f.path for f, r in self.delete if rule is None or r == rule)

    def compressed_paths(self):
        return set(f.path for f, _, _ in self.compress)


def protected_files(files):
    """Return {path: reason} for files that must never be touched."""
    newest = {}
    for f in files:
        key = (f.dir, f.client)
        cur = newest.get(key)
        if cur is None or f.order() > cur.order():
            newest[key] = f
    # a compressed file is never being written: the guard is for the file in progress
    prot = dict((f.path, "newest file of client %s in its directory" % f.client)
                for f in newest.values() if f.compression is None)
    for f in files:
        if f.locked:
            prot[f.path] = "in use (locked by the server)"
    return prot


def plan(files, now, default, clients=None, max_bytes=0, need_free=None, fs_names=None):
    """Return the Plan for files (FoundTrace list) at time now (epoch seconds).

    default: the Policy from [clean]; clients: {name: Policy} overrides;
    max_bytes: the global budget (0 = off); need_free: {dev: bytes to free}
    from the min_free rule (missing or <= 0 = nothing to do); fs_names:
    {dev: text} naming filesystems in warnings.
    """
    clients = clients or {}
    result = Plan()
    prot = result.protected = protected_files(files)
    files = sorted(files, key=FoundTrace.order)  # oldest first, everywhere below
    by_client = {}
    for f in files:
        by_client.setdefault(f.client, []).append(f)
    gone = {}  # path -> rule

    def drop(f, rule):
        gone[f.path] = rule
        result.delete.append((f, rule))

    # max_age
    for name, group in by_client.items():
        limit = clients.get(name, default).max_age
        if limit:
            for f in group:
                if now - f.time > limit and f.path not in prot:
                    drop(f, "max_age")

    # max_files: the newest N survivors of each client stay
    for name, group in by_client.items():
        keep = clients.get(name, default).max_files
        if keep:
            alive = [f for f in group if f.path not in gone]
            for f in alive[:max(0, len(alive) - keep)]:
                if f.path not in prot:
                    drop(f, "max_files")

    # max_bytes: per-client budgets, then the global one
    for name, group in sorted(by_client.items()):
        budget = clients[name].max_bytes if name in clients else 0
        if budget:
            _fit_budget(group, budget, gone, prot, drop, "max_bytes",
                        "client %s" % name, result.warnings)
    if max_bytes:
        _fit_budget(files, max_bytes, gone, prot, drop, "max_bytes", "all clients",
                    result.warnings)

    # min_free: per filesystem, oldest first until enough would be freed
    for dev, need in sorted((need_free or {}).items()):
        if need <= 0:
            continue
        freed = 0
        for f in files:
            if freed >= need:
                break
            if f.dev == dev and f.path not in gone and f.path not in prot:
                drop(f, "min_free")
                freed += f.usage
        if freed < need:
            result.warnings.append("min_free: %d more bytes should be freed on the filesystem "
                                   "of %s, but no more files there may be deleted"
                                   % (need - freed, (fs_names or {}).get(dev, dev)))

    result.delete.sort(key=lambda item: item[0].order())

    # compress_after: per client, all but the newest N survivors
    for name, group in by_client.items():
        pol = clients.get(name, default)
        if pol.compress == "none":
            continue
        alive = [f for f in group if f.path not in gone]
        for f in alive[:max(0, len(alive) - pol.compress_after)]:
            if f.compression is None and f.path not in prot:
                result.compress.append((f, pol.compress, pol.compress_level))
    result.compress.sort(key=lambda item: item[0].order())
    return result


def _fit_budget(files, budget, gone, prot, drop, rule, scope, warnings):
    """Delete the oldest of files (oldest first) until their total size fits budget."""
    alive = [f for f in files if f.path not in gone]
    total = sum(f.size for f in alive)
    for f in alive:
        if total <= budget:
            return
        if f.path not in prot:
            drop(f, rule)
            total -= f.size
    if total > budget:
        warnings.append("%s: %s still use %d bytes, over the budget of %d, but no more "
                        "of their files may be deleted" % (rule, scope, total, budget))
