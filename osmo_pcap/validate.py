# SPDX-License-Identifier: AGPL-3.0-or-later
"""Validation of received messages (doc/protocol.md#validation).

check_link_hdr() turns a LINK_HDR payload into a LinkInfo, or raises
ValidationError. LinkInfo.check_data(payload) validates one LINK_DATA payload
against that header; it is on the server's hot path and stays cheap.
Each error carries a stable `code` (tests and counters use it).
"""

from osmo_pcap import pcapfile, pcapng
from osmo_pcap.wire import ProtocolError

DEFAULT_MAX_SNAPLEN = 9000
# A frame carries at most 65531 payload bytes (doc/protocol.md#limits), so larger snaplens
# cannot occur on the wire; max_snaplen is capped accordingly by configs.
MAX_SNAPLEN_LIMIT = 262144


class ValidationError(ProtocolError):
    """A received message breaks a validation rule."""


class LinkInfo(object):
    """What a LINK_HDR announced: format, byte order and the snaplen limits.

    format: "pcap" or "pcapng"; ext: the file suffix; header: the payload bytes;
    pcap: snaplen, linktype, nanosecond; pcapng: interfaces (list of
    pcapng.Interface).
    """

    __slots__ = ("format", "byteorder", "header", "snaplen", "linktype", "nanosecond",
                 "interfaces", "max_snaplen", "_rec", "_blk", "_epb")

    def __init__(self, fmt, byteorder, header, max_snaplen):
        self.format = fmt
        self.byteorder = byteorder
        self.header = bytes(header)
        self.max_snaplen = max_snaplen
        self.snaplen = None
        self.linktype = None
        self.nanosecond = False
        self.interfaces = []
        self._rec = pcapfile.RECORD[byteorder]
        self._blk = pcapng.BLOCK_HEAD[byteorder]
        self._epb = pcapng.EPB_FIXED[byteorder]

    @property
    def ext(self):
        return self.format

    def check_data(self, payload):
        """Raise ValidationError unless payload is a LINK_DATA payload valid for this link.

        check_link_hdr() returns a subclass that calls the check of its format
        directly (no dispatch per packet, and no bound method stored in the
        object, which would make a reference cycle).
        """
        if self.format == "pcap":
            return self._check_pcap(payload)
        return self._check_pcapng(payload)

    def _check_pcap(self, payload):
        n = len(payload)
        if n < 16:
            raise ValidationError("pcap-record-short", "pcap record of %d bytes is shorter than "
                                  "its 16-byte header" % n)
        caplen = self._rec.unpack_from(payload, 0)[2]
        if caplen != n - 16:
            raise ValidationError("pcap-caplen-mismatch", "record caplen %d does not match the "
                                  "%d bytes that follow its header" % (caplen, n - 16))
        if caplen > self.snaplen:
            raise ValidationError("pcap-caplen-too-big", "record caplen %d exceeds the link "
                                  "header's snaplen %d" % (caplen, self.snaplen))

    def _check_pcapng(self, payload):
        n = len(payload)
        if n < 12:
            raise ValidationError("pcapng-block-short", "pcapng block of %d bytes is shorter "
                                  "than 12" % n)
        btype, total = self._blk.unpack_from(payload, 0)
        if total != n or total & 3:
            raise ValidationError("pcapng-block-length", "block total length %d is not a "
                                  "multiple of 4 equal to the frame length %d" % (total, n))
        if self._blk.unpack_from(payload, n - 8)[1] != total:
            raise ValidationError("pcapng-block-trailer", "block trailing length differs from "
                                  "its total length %d" % total)
        if btype == pcapng.BT_EPB:
            if n < pcapng.EPB_MIN_SIZE:
                raise ValidationError("pcapng-epb-short", "EPB of %d bytes is shorter than %d"
                                      % (n, pcapng.EPB_MIN_SIZE))
            _, _, if_id, _, _, caplen, _ = self._epb.unpack_from(payload, 0)
            if if_id >= len(self.interfaces):
                raise ValidationError("pcapng-epb-interface", "EPB names interface %d but the "
                                      "link header has %d" % (if_id, len(self.interfaces)))
            if caplen > self.max_snaplen:
                raise ValidationError("pcapng-epb-caplen", "EPB captured length %d exceeds "
                                      "max_snaplen %d" % (caplen, self.max_snaplen))
            snap = self.interfaces[if_id].snaplen
            if snap and caplen > snap:
                raise ValidationError("pcapng-epb-caplen", "EPB captured length %d exceeds the "
                                      "interface snaplen %d" % (caplen, snap))
            if 32 + ((caplen + 3) & ~3) > n:
                raise ValidationError("pcapng-epb-caplen", "EPB captured length %d does not fit "
                                      "a block of %d bytes" % (caplen, n))
        elif btype == pcapng.BT_SHB:
            raise ValidationError("pcapng-data-shb", "a section header block arrived as "
                                  "LINK_DATA (it belongs in LINK_HDR)")
        elif btype == pcapng.BT_IDB:
            raise ValidationError("pcapng-data-idb", "an interface description block arrived "
                                  "as LINK_DATA (it belongs in LINK_HDR)")
        # Other block types (ISB, NRB, custom, ...) are stored as they are:
        # forward compatibility, as upstream.


class _PcapLink(LinkInfo):
    __slots__ = ()
    check_data = LinkInfo._check_pcap


class _PcapngLink(LinkInfo):
    __slots__ = ()
    check_data = LinkInfo._check_pcapng


def check_link_hdr(payload, max_snaplen=DEFAULT_MAX_SNAPLEN):
    """Validate a LINK_HDR payload; return its LinkInfo or raise ValidationError."""
    n = len(payload)
    if n == 0:
        raise ValidationError("hdr-empty", "empty link header")
    found = pcapfile.detect_byteorder(payload)
    if found is not None:
        return _pcap_hdr(payload, found, max_snaplen)
    bo = pcapng.shb_byteorder(payload)
    if bo is not None:
        return _pcapng_hdr(payload, bo, max_snaplen)
    raise ValidationError("hdr-unknown-format", "link header is neither pcap nor pcapng "
                          "(starts with %s)" % bytes(payload[:8]).hex())


def _pcap_hdr(payload, found, max_snaplen):
    n = len(payload)
    if n != pcapfile.GLOBAL_HEADER_SIZE:
        raise ValidationError("pcap-hdr-length", "pcap link header must be exactly 24 bytes, "
                              "got %d" % n)
    try:
        gh = pcapfile.parse_global_header(payload)
    except ProtocolError as e:
        raise ValidationError(e.code, str(e))
    if gh.snaplen > max_snaplen:
        raise ValidationError("pcap-hdr-snaplen", "link header snaplen %d exceeds max_snaplen %d"
                              % (gh.snaplen, max_snaplen))
    if gh.snaplen == 0:
        raise ValidationError("pcap-hdr-snaplen", "link header snaplen is 0")
    info = _PcapLink("pcap", found[0], payload, max_snaplen)
    info.snaplen = gh.snaplen
    info.linktype = gh.linktype
    info.nanosecond = gh.nanosecond
    return info


def _pcapng_hdr(payload, bo, max_snaplen):
    n = len(payload)
    try:
        _, total, _ = pcapng.parse_shb(payload, 0, n)
        info = _PcapngLink("pcapng", bo, payload, max_snaplen)
        pos = total
        while pos < n:
            btype, total = pcapng.check_block(payload, pos, bo, n)
            if btype != pcapng.BT_IDB:
                raise ValidationError("pcapng-hdr-block", "link header block at offset %d has "
                                      "type 0x%08x; only IDBs may follow the SHB" % (pos, btype))
            intf = pcapng.parse_idb(payload, pos, bo, total)
            if intf.snaplen > max_snaplen:
                raise ValidationError("pcapng-idb-snaplen", "interface %d snaplen %d exceeds "
                                      "max_snaplen %d" % (len(info.interfaces), intf.snaplen,
                                                          max_snaplen))
            info.interfaces.append(intf)
            pos += total
    except ValidationError:
        raise
    except ProtocolError as e:
        raise ValidationError(e.code, str(e))
    return info
