# SPDX-License-Identifier: AGPL-3.0-or-later
"""Trace file names: trace-NAME-YYYYMMDD_HHMMSS[-N].pcap|.pcapng[.gz|.bz2|.xz|.zst].

The server makes them (doc/protocol.md#file-names, with a collision suffix instead of
truncation), the cleanup tool parses them. NAME may contain '-': the
timestamp part is matched from the right, so 'foo' and 'foo-bar' stay apart.
"""

import re
import time

EXTENSIONS = ("pcap", "pcapng")
COMPRESSED = ("gz", "bz2", "xz", "zst")

_NAME_RE = re.compile(
    r"^trace-(?P<client>.+)-(?P<stamp>\d{8}_\d{6})(?:-(?P<seq>[1-9]\d{0,5}))?"
    r"\.(?P<ext>pcapng|pcap)(?:\.(?P<comp>gz|bz2|xz|zst))?$")


def format_name(client, tm, ext, seq=0):
    """Return the file name for client at local time tm (a struct_time or 6-tuple).

    seq > 0 adds the collision suffix -seq.
    """
    if ext not in EXTENSIONS:
        raise ValueError("unknown trace extension %r" % ext)
    stamp = "%04d%02d%02d_%02d%02d%02d" % tuple(tm[:6])
    return "trace-%s-%s%s.%s" % (client, stamp, "-%d" % seq if seq else "", ext)


class TraceName(object):
    """A parsed trace file name."""

    __slots__ = ("filename", "client", "stamp", "seq", "ext", "compression")

    def __init__(self, filename, client, stamp, seq, ext, compression):
        self.filename = filename
        self.client = client
        self.stamp = stamp
        self.seq = seq
        self.ext = ext
        self.compression = compression

    @property
    def base(self):
        """The name without a compression suffix."""
        return self.filename[:-(len(self.compression) + 1)] if self.compression else self.filename

    def time_tuple(self):
        """Return (year, month, day, hour, minute, second) from the name."""
        s = self.stamp
        return (int(s[0:4]), int(s[4:6]), int(s[6:8]), int(s[9:11]), int(s[11:13]), int(s[13:15]))

    def timestamp(self):
        """Return the name's local time as epoch seconds, or None if it is not a valid date."""
        y, mo, d, h, mi, s = self.time_tuple()
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 61):
            return None
        try:
            return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))
        except (OverflowError, ValueError):
            return None

    def sort_key(self):
        """Order by time in the name, then collision suffix."""
        return (self.stamp, self.seq)

    def __repr__(self):
        return "TraceName(%r)" % self.filename


def parse_name(filename):
    """Return a TraceName for a trace file name, or None for any other name."""
    m = _NAME_RE.match(filename)
    if not m:
        return None
    return TraceName(filename, m.group("client"), m.group("stamp"), int(m.group("seq") or 0),
                     m.group("ext"), m.group("comp"))
