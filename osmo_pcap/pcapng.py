# SPDX-License-Identifier: AGPL-3.0-or-later
"""The pcapng format: SHB, IDB, EPB, ISB and options (doc/protocol.md#link-hdr-pcapng).

Encoders reproduce upstream's bytes exactly (doc/protocol.md#example-pcapng); the parser validates
block framing and options and serves as the project's own pcapng reader.
"""

import struct

from osmo_pcap.wire import ProtocolError
from osmo_pcap.pcapfile import Record

# block types (doc/protocol.md#link-hdr-pcapng)
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_SPB = 0x00000003
BT_NRB = 0x00000004
BT_ISB = 0x00000005
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

# option codes
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_FILTER = 11
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_FILTERACCEPT = 6
ISB_OSDROP = 7
ISB_USRDELIV = 8

# upstream's SHB option values (doc/protocol.md#link-hdr-pcapng), 88 bytes in all
UPSTREAM_SHB_OPTIONS = ((SHB_HARDWARE, b"osmo-pcap hw"), (SHB_OS, b"osmo-pcap os"),
                        (SHB_USERAPPL, b"osmo-pcap userappl"))

SHB_MIN_SIZE = 28
IDB_MIN_SIZE = 20
EPB_MIN_SIZE = 32
BLOCK_HEAD = {bo: struct.Struct(bo + "II") for bo in "<>"}
_U32 = {bo: struct.Struct(bo + "I") for bo in "<>"}
_U64 = {bo: struct.Struct(bo + "Q") for bo in "<>"}
_OPT = {bo: struct.Struct(bo + "HH") for bo in "<>"}
_SHB_FIXED = {bo: struct.Struct(bo + "IIIHHq") for bo in "<>"}
_IDB_FIXED = {bo: struct.Struct(bo + "IIHHI") for bo in "<>"}
EPB_FIXED = {bo: struct.Struct(bo + "IIIIIII") for bo in "<>"}
_ISB_FIXED = {bo: struct.Struct(bo + "IIIII") for bo in "<>"}
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


class PcapngFormatError(ProtocolError):
    """Bytes that are not valid pcapng."""


def pad4(n):
    """Return n rounded up to a multiple of 4."""
    return (n + 3) & ~3


def encode_options(options, byteorder="<"):
    """Return encoded options [(code, bytes), ...] plus end-of-options.

    An empty list gives no bytes at all (the end marker is then omitted too).
    """
    if not options:
        return b""
    opt = _OPT[byteorder]
    parts = []
    for code, value in options:
        value = bytes(value)
        if len(value) > 0xFFFF:
            raise ValueError("option %d value too long" % code)
        parts.append(opt.pack(code, len(value)))
        parts.append(value)
        parts.append(_PAD[len(value) & 3])
    parts.append(opt.pack(OPT_ENDOFOPT, 0))
    return b"".join(parts)


def _block(block_type, body, byteorder):
    total = 12 + len(body)
    u32 = _U32[byteorder]
    return BLOCK_HEAD[byteorder].pack(block_type, total) + body + u32.pack(total)


def encode_shb(options=UPSTREAM_SHB_OPTIONS, byteorder="<"):
    """Return a Section Header Block (v1.0, unknown section length)."""
    u = _U32[byteorder]
    body = (u.pack(BYTE_ORDER_MAGIC) + struct.pack(byteorder + "HHq", 1, 0, -1)
            + encode_options(options, byteorder))
    return _block(BT_SHB, body, byteorder)


def encode_idb(linktype, snaplen, if_name=None, if_filter=None, if_tsresol=None,
               if_description=None, byteorder="<"):
    """Return an Interface Description Block.

    if_filter is a libpcap filter string; upstream always sends the option,
    with an empty string as a single 0 byte (pass "" for that).
    if_tsresol is the raw option byte (6 = microseconds, 9 = nanoseconds).
    """
    opts = []
    if if_name is not None:
        opts.append((IF_NAME, _text(if_name)))
    if if_description is not None:
        opts.append((IF_DESCRIPTION, _text(if_description)))
    if if_tsresol is not None:
        opts.append((IF_TSRESOL, struct.pack("B", if_tsresol)))
    if if_filter is not None:
        opts.append((IF_FILTER, b"\0" + _text(if_filter)))
    body = struct.pack(byteorder + "HHI", linktype, 0, snaplen) + encode_options(opts, byteorder)
    return _block(BT_IDB, body, byteorder)


def _text(s):
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def epb_size(caplen):
    """Return the size of an EPB without options beyond end-of-options."""
    return 36 + pad4(caplen)


def encode_epb_header(interface_id, timestamp, caplen, orig_len, byteorder="<"):
    """Return the 28 bytes that precede the packet data of an EPB.

    timestamp is an integer count of the interface's time units (us by default).
    The block ends with pad + end-of-options + trailer: see epb_trailer().
    """
    total = 36 + pad4(caplen)
    return EPB_FIXED[byteorder].pack(BT_EPB, total, interface_id, (timestamp >> 32) & 0xFFFFFFFF,
                                     timestamp & 0xFFFFFFFF, caplen, orig_len)


def epb_trailer(caplen, byteorder="<"):
    """Return padding + end-of-options + trailing length for an EPB of caplen."""
    return _PAD[caplen & 3] + b"\0\0\0\0" + _U32[byteorder].pack(36 + pad4(caplen))


def encode_epb(interface_id, timestamp, data, orig_len=None, byteorder="<"):
    """Return an Enhanced Packet Block with only end-of-options, as upstream."""
    n = len(data)
    return (encode_epb_header(interface_id, timestamp, n, n if orig_len is None else orig_len,
                              byteorder) + bytes(data) + epb_trailer(n, byteorder))


def encode_isb(interface_id, timestamp, counters=(), byteorder="<"):
    """Return an Interface Statistics Block.

    counters: [(ISB_IFRECV, value), ...]; u64 values except start/end time,
    which take a timestamp in interface units.
    """
    opts = [(code, _U64[byteorder].pack(v) if code not in (ISB_STARTTIME, ISB_ENDTIME)
             else _U32[byteorder].pack((v >> 32) & 0xFFFFFFFF) + _U32[byteorder].pack(v & 0xFFFFFFFF))
            for code, v in counters]
    body = (struct.pack(byteorder + "III", interface_id, (timestamp >> 32) & 0xFFFFFFFF,
                        timestamp & 0xFFFFFFFF) + encode_options(opts, byteorder))
    return _block(BT_ISB, body, byteorder)


def tsresol_divisor(value):
    """Return units per second for an if_tsresol option byte."""
    if value & 0x80:
        exp = value & 0x7F
        if exp > 63:
            raise PcapngFormatError("pcapng-bad-tsresol", "if_tsresol 2^-%d is too fine" % exp)
        return 1 << exp
    if value > 18:
        raise PcapngFormatError("pcapng-bad-tsresol", "if_tsresol 10^-%d is too fine" % value)
    return 10 ** value


# ---------------------------------------------------------------- parsing

def shb_byteorder(buf, offset=0):
    """Return '<' or '>' if an SHB starts at offset, else None."""
    if len(buf) - offset < 12:
        return None
    if _U32["<"].unpack_from(buf, offset)[0] != BT_SHB:  # palindromic
        return None
    magic = _U32["<"].unpack_from(buf, offset + 8)[0]
    if magic == BYTE_ORDER_MAGIC:
        return "<"
    if magic == 0x4D3C2B1A:
        return ">"
    return None


def parse_options(buf, start, end, byteorder, where="block"):
    """Return [(code, bytes)] for the options in buf[start:end]; validate sizes."""
    opt = _OPT[byteorder]
    out = []
    pos = start
    while pos < end:
        if end - pos < 4:
            raise PcapngFormatError("pcapng-bad-option", "%s: truncated option header" % where)
        code, length = opt.unpack_from(buf, pos)
        pos += 4
        if code == OPT_ENDOFOPT:
            break
        if pos + length > end:
            raise PcapngFormatError("pcapng-bad-option", "%s: option %d of %d bytes runs past "
                                    "the block" % (where, code, length))
        out.append((code, bytes(buf[pos:pos + length])))
        pos += pad4(length)
    return out


def check_block(buf, offset, byteorder, limit=None):
    """Validate the framing of the block at offset; return (type, total_length).

    limit is the end of the available bytes (default len(buf)).
    """
    end = len(buf) if limit is None else limit
    if end - offset < 12:
        raise PcapngFormatError("pcapng-short-block", "block at offset %d: %d bytes left, need "
                                "at least 12" % (offset, end - offset))
    btype, total = BLOCK_HEAD[byteorder].unpack_from(buf, offset)
    if total < 12 or total & 3:
        raise PcapngFormatError("pcapng-bad-length", "block at offset %d: total length %d is "
                                "not a multiple of 4 of at least 12" % (offset, total))
    if total > end - offset:
        raise PcapngFormatError("pcapng-bad-length", "block at offset %d: total length %d runs "
                                "past the end (%d bytes left)" % (offset, total, end - offset))
    if _U32[byteorder].unpack_from(buf, offset + total - 4)[0] != total:
        raise PcapngFormatError("pcapng-bad-trailer", "block at offset %d: trailing length "
                                "differs from leading length %d" % (offset, total))
    return btype, total


class Interface(object):
    """An interface described by an IDB."""

    __slots__ = ("linktype", "snaplen", "name", "filter", "description", "tsresol", "divisor")

    def __init__(self, linktype, snaplen, options):
        self.linktype = linktype
        self.snaplen = snaplen
        opts = dict(reversed(options))  # the first occurrence wins
        self.name = opts.get(IF_NAME, b"").decode("utf-8", "replace") or None
        self.description = opts.get(IF_DESCRIPTION, b"").decode("utf-8", "replace") or None
        flt = opts.get(IF_FILTER)
        self.filter = flt[1:].decode("utf-8", "replace") if flt else None
        self.tsresol = opts[IF_TSRESOL][0] if opts.get(IF_TSRESOL) else 6
        self.divisor = tsresol_divisor(self.tsresol)

    def __repr__(self):
        return "Interface(linktype=%d, snaplen=%d, name=%r)" % (self.linktype, self.snaplen, self.name)


def parse_shb(buf, offset=0, limit=None):
    """Validate the SHB at offset; return (byteorder, total_length, options)."""
    bo = shb_byteorder(buf, offset)
    if bo is None:
        raise PcapngFormatError("pcapng-no-shb", "no section header block at offset %d" % offset)
    btype, total = check_block(buf, offset, bo, limit)
    if total < SHB_MIN_SIZE:
        raise PcapngFormatError("pcapng-bad-length", "SHB of %d bytes is shorter than %d"
                                % (total, SHB_MIN_SIZE))
    _, _, _, major, minor, _ = _SHB_FIXED[bo].unpack_from(buf, offset)
    if major != 1:
        raise PcapngFormatError("pcapng-bad-version", "pcapng version %d.%d is not 1.x"
                                % (major, minor))
    opts = parse_options(buf, offset + 24, offset + total - 4, bo, "SHB")
    return bo, total, opts


def parse_idb(buf, offset, byteorder, total):
    """Return the Interface of the IDB at offset (framing already checked)."""
    if total < IDB_MIN_SIZE:
        raise PcapngFormatError("pcapng-bad-length", "IDB of %d bytes is shorter than %d"
                                % (total, IDB_MIN_SIZE))
    _, _, linktype, _, snaplen = _IDB_FIXED[byteorder].unpack_from(buf, offset)
    opts = parse_options(buf, offset + 16, offset + total - 4, byteorder, "IDB")
    return Interface(linktype, snaplen, opts)


def parse_epb(buf, offset, byteorder, total):
    """Return (interface_id, timestamp, caplen, orig_len, data_offset) of an EPB."""
    if total < EPB_MIN_SIZE:
        raise PcapngFormatError("pcapng-bad-length", "EPB of %d bytes is shorter than %d"
                                % (total, EPB_MIN_SIZE))
    _, _, if_id, hi, lo, caplen, orig = EPB_FIXED[byteorder].unpack_from(buf, offset)
    if 28 + pad4(caplen) + 4 > total:
        raise PcapngFormatError("pcapng-bad-caplen", "EPB captured length %d does not fit a "
                                "block of %d bytes" % (caplen, total))
    return if_id, (hi << 32) | lo, caplen, orig, offset + 28


def iter_packets(buf):
    """Yield Record objects (with .interface) from a complete pcapng image.

    Handles several sections, IDBs with any if_tsresol, EPBs and SPBs; other
    blocks are skipped. Raise PcapngFormatError on malformed input.
    """
    pos = 0
    end = len(buf)
    bo = None
    interfaces = []
    while pos < end:
        if shb_byteorder(buf, pos) is not None:
            bo, total, _ = parse_shb(buf, pos)
            interfaces = []
            pos += total
            continue
        if bo is None:
            raise PcapngFormatError("pcapng-no-shb", "file does not start with a section header")
        btype, total = check_block(buf, pos, bo)
        if btype == BT_IDB:
            interfaces.append(parse_idb(buf, pos, bo, total))
        elif btype == BT_EPB:
            if_id, ts, caplen, orig, data = parse_epb(buf, pos, bo, total)
            if if_id >= len(interfaces):
                raise PcapngFormatError("pcapng-bad-interface", "EPB at offset %d names interface "
                                        "%d of %d" % (pos, if_id, len(interfaces)))
            div = interfaces[if_id].divisor
            yield Record(ts // div, ts % div, div, orig, bytes(buf[data:data + caplen]), if_id)
        elif btype == BT_SPB:
            if not interfaces:
                raise PcapngFormatError("pcapng-bad-interface", "SPB before any IDB")
            orig = _U32[bo].unpack_from(buf, pos + 8)[0]
            caplen = min(orig, total - 16, interfaces[0].snaplen or orig)
            yield Record(0, 0, interfaces[0].divisor, orig, bytes(buf[pos + 12:pos + 12 + caplen]), 0)
        pos += total


def iter_blocks(buf):
    """Yield (byteorder, block_type, offset, total_length) for every block."""
    pos = 0
    bo = None
    while pos < len(buf):
        if shb_byteorder(buf, pos) is not None:
            bo, total, _ = parse_shb(buf, pos)
            yield bo, BT_SHB, pos, total
        elif bo is None:
            raise PcapngFormatError("pcapng-no-shb", "file does not start with a section header")
        else:
            btype, total = check_block(buf, pos, bo)
            yield bo, btype, pos, total
        pos += total
