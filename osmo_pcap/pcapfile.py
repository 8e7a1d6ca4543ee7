# SPDX-License-Identifier: AGPL-3.0-or-later
"""The classic pcap file format: global header and records (doc/protocol.md#link-hdr-pcap).

Pure functions over bytes; both byte orders, microsecond and nanosecond magic.
"""

import struct

from osmo_pcap.wire import ProtocolError

# doc/protocol.md#link-hdr-pcap
MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
GLOBAL_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16
VERSION_MAJOR = 2
VERSION_MINOR = 4

_GLOBAL = {bo: struct.Struct(bo + "IHHiIII") for bo in "<>"}
RECORD = {bo: struct.Struct(bo + "IIII") for bo in "<>"}
_U32 = {bo: struct.Struct(bo + "I") for bo in "<>"}

# libpcap DLT values that differ from the LINKTYPE written to files
# (doc/protocol.md#diff-linktype-mapping; values from libpcap's documented DLT/LINKTYPE tables).
_DLT_TO_LINKTYPE = {
    11: 100,   # DLT_ATM_RFC1483 -> LINKTYPE_ATM_RFC1483
    12: 101,   # DLT_RAW (most platforms) -> LINKTYPE_RAW
    14: 101,   # DLT_RAW (OpenBSD) -> LINKTYPE_RAW
    15: 102,   # DLT_SLIP_BSDOS
    16: 103,   # DLT_PPP_BSDOS
    17: 108,   # DLT_LOOP (OpenBSD) -> LINKTYPE_LOOP
    18: 246,   # DLT_PFSYNC (OpenBSD) -> LINKTYPE_PFSYNC
    19: 106,   # DLT_ATM_CLIP (Linux) -> LINKTYPE_ATM_CLIP
    50: 50,    # DLT_PPP_SERIAL
    51: 51,    # DLT_PPP_ETHER
}

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


class PcapFormatError(ProtocolError):
    """Bytes that are not a valid pcap header or record."""


def dlt_to_linktype(dlt):
    """Return the LINKTYPE value to write into files for a libpcap DLT value.

    DLT values 0-10 and 104 and above are equal to their LINKTYPE; a few
    historical values differ between platforms and are mapped.
    """
    if dlt < 0:
        raise ValueError("negative DLT %d" % dlt)
    return _DLT_TO_LINKTYPE.get(dlt, dlt)


class GlobalHeader(object):
    """A parsed pcap global header."""

    __slots__ = ("byteorder", "nanosecond", "version", "thiszone", "sigfigs",
                 "snaplen", "linktype")

    def __init__(self, byteorder, nanosecond, version, thiszone, sigfigs, snaplen, linktype):
        self.byteorder = byteorder
        self.nanosecond = nanosecond
        self.version = version
        self.thiszone = thiszone
        self.sigfigs = sigfigs
        self.snaplen = snaplen
        self.linktype = linktype

    @property
    def ts_divisor(self):
        return 1000000000 if self.nanosecond else 1000000

    def __repr__(self):
        return ("GlobalHeader(byteorder=%r, nanosecond=%r, snaplen=%d, linktype=%d)"
                % (self.byteorder, self.nanosecond, self.snaplen, self.linktype))


def encode_global_header(snaplen, linktype, nanosecond=False, byteorder="<"):
    """Return the 24-byte pcap global header."""
    magic = MAGIC_NS if nanosecond else MAGIC_US
    return _GLOBAL[byteorder].pack(magic, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, linktype)


def detect_byteorder(buf):
    """Return ('<' or '>', nanosecond) if buf starts with a pcap magic, else None."""
    if len(buf) < 4:
        return None
    magic = _U32["<"].unpack_from(buf, 0)[0]
    if magic == MAGIC_US:
        return "<", False
    if magic == MAGIC_NS:
        return "<", True
    magic = _U32[">"].unpack_from(buf, 0)[0]
    if magic == MAGIC_US:
        return ">", False
    if magic == MAGIC_NS:
        return ">", True
    return None


def parse_global_header(buf):
    """Parse a pcap global header at the start of buf; raise PcapFormatError."""
    if len(buf) < GLOBAL_HEADER_SIZE:
        raise PcapFormatError("pcap-short-header", "pcap header needs %d bytes, got %d"
                              % (GLOBAL_HEADER_SIZE, len(buf)))
    found = detect_byteorder(buf)
    if found is None:
        raise PcapFormatError("pcap-bad-magic", "not a pcap magic: %s" % bytes(buf[:4]).hex())
    bo, ns = found
    _, major, minor, zone, sigfigs, snaplen, linktype = _GLOBAL[bo].unpack_from(buf, 0)
    if major != VERSION_MAJOR:
        raise PcapFormatError("pcap-bad-version", "pcap version %d.%d is not 2.x" % (major, minor))
    return GlobalHeader(bo, ns, (major, minor), zone, sigfigs, snaplen, linktype)


def encode_record_header(ts_sec, ts_frac, caplen, orig_len, byteorder="<"):
    """Return the 16-byte record header (ts_frac in us or ns per the file's magic)."""
    return RECORD[byteorder].pack(ts_sec & 0xFFFFFFFF, ts_frac, caplen, orig_len)


def encode_record(ts_sec, ts_frac, data, orig_len=None, byteorder="<"):
    """Return record header + data; orig_len defaults to len(data)."""
    n = len(data)
    return encode_record_header(ts_sec, ts_frac, n, n if orig_len is None else orig_len,
                                byteorder) + bytes(data)


class Record(object):
    """One packet read from a pcap or pcapng file."""

    __slots__ = ("ts_sec", "ts_frac", "ts_divisor", "caplen", "orig_len", "data", "interface")

    def __init__(self, ts_sec, ts_frac, ts_divisor, orig_len, data, interface=0):
        self.ts_sec = ts_sec
        self.ts_frac = ts_frac
        self.ts_divisor = ts_divisor
        self.caplen = len(data)
        self.orig_len = orig_len
        self.data = data
        self.interface = interface

    @property
    def timestamp_ns(self):
        """Timestamp as integer nanoseconds since the epoch."""
        return self.ts_sec * 1000000000 + self.ts_frac * (1000000000 // self.ts_divisor)

    def __repr__(self):
        return "Record(ts=%d.%0*d, caplen=%d, len=%d, if=%d)" % (
            self.ts_sec, len(str(self.ts_divisor)) - 1, self.ts_frac, self.caplen,
            self.orig_len, self.interface)


def iter_records(buf, header=None, offset=GLOBAL_HEADER_SIZE):
    """Yield Record objects from a complete pcap file image in buf.

    Raise PcapFormatError on a truncated or inconsistent record.
    """
    if header is None:
        header = parse_global_header(buf)
    rec = RECORD[header.byteorder]
    div = header.ts_divisor
    end = len(buf)
    pos = offset
    while pos < end:
        if end - pos < RECORD_HEADER_SIZE:
            raise PcapFormatError("pcap-truncated", "truncated record header at offset %d" % pos)
        sec, frac, caplen, orig = rec.unpack_from(buf, pos)
        pos += RECORD_HEADER_SIZE
        if caplen > end - pos:
            raise PcapFormatError("pcap-truncated", "record at offset %d: caplen %d runs past "
                                  "the end" % (pos - RECORD_HEADER_SIZE, caplen))
        yield Record(sec, frac, div, orig, bytes(buf[pos:pos + caplen]))
        pos += caplen


def complete_prefix(buf, byteorder, offset=GLOBAL_HEADER_SIZE):
    """Return the length of the longest prefix of buf ending on a record boundary."""
    rec = RECORD[byteorder]
    end = len(buf)
    pos = offset
    while end - pos >= RECORD_HEADER_SIZE:
        caplen = rec.unpack_from(buf, pos)[2]
        if pos + RECORD_HEADER_SIZE + caplen > end:
            break
        pos += RECORD_HEADER_SIZE + caplen
    return pos
