# SPDX-License-Identifier: AGPL-3.0-or-later
"""GPRS user-data suppressor: drop Gb user-plane frames (doc/client.md#gprs-filter).

A frame is dropped when it is IPv4/UDP carrying NS-UNITDATA whose BSSGP PDU is
FLOW-CONTROL-BVC(-ACK), or DL/UL-UNITDATA whose LLC-PDU is on a user-data SAPI.
Everything else is forwarded. Unlike upstream, the IPv4 header length is
honoured, the EtherType is checked (VLAN tags skipped), Linux cooked v2 and raw
IP are understood, non-first fragments are forwarded, and an unsupported link
type is reported once instead of once per frame.
"""

from osmo_pcap import log

# link types (LINKTYPE_ and the DLT values libpcap reports)
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
RAW_IP_LINKTYPES = (12, 14, 101, 228)  # DLT_RAW (two platforms), LINKTYPE_RAW, IPV4

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8, 0x9100)
IPPROTO_UDP = 17

# doc/client.md#gprs-filter
NS_PDU_UNITDATA = 0x00
NS_UNITDATA_HDR = 4          # PDU type, SDU control bits, BVCI (2)
BSSGP_DL_UNITDATA = 0x00
BSSGP_UL_UNITDATA = 0x01
BSSGP_FLOW_CONTROL_BVC = 0x26
BSSGP_FLOW_CONTROL_BVC_ACK = 0x27
BSSGP_UNITDATA_HDR = 8       # PDU type, TLLI (4), QoS profile (3)
BSSGP_IE_LLC_PDU = 0x0E
LLC_USER_SAPIS = (3, 5, 9, 11)


def ip_offset(linktype, data, caplen):
    """Return the offset of the IPv4 header, -1 if the frame is not IPv4, None if
    the link type is not supported."""
    if linktype == LINKTYPE_ETHERNET:
        off = 12
        while True:
            if off + 2 > caplen:
                return -1
            etype = (data[off] << 8) | data[off + 1]
            if etype in ETHERTYPE_VLAN:
                off += 4
                continue
            return off + 2 if etype == ETHERTYPE_IPV4 else -1
    if linktype == LINKTYPE_LINUX_SLL:
        if caplen < 16:
            return -1
        return 16 if ((data[14] << 8) | data[15]) == ETHERTYPE_IPV4 else -1
    if linktype == LINKTYPE_LINUX_SLL2:
        if caplen < 20:
            return -1
        return 20 if ((data[0] << 8) | data[1]) == ETHERTYPE_IPV4 else -1
    if linktype in RAW_IP_LINKTYPES:
        return 0
    return None


def bssgp_is_user_data(data, start, end):
    """Decide on a BSSGP PDU in data[start:end]: True to drop, False to forward."""
    n = end - start
    if n < BSSGP_UNITDATA_HDR:
        return False
    pdu = data[start]
    if pdu in (BSSGP_FLOW_CONTROL_BVC, BSSGP_FLOW_CONTROL_BVC_ACK):
        return True
    if pdu not in (BSSGP_DL_UNITDATA, BSSGP_UL_UNITDATA):
        return False
    pos = start + BSSGP_UNITDATA_HDR
    llc = None
    while pos < end:
        # IE: tag, then length: 1 byte with 0x80 set (7-bit) or 2 bytes big-endian
        if pos + 2 > end:
            return False
        tag = data[pos]
        first = data[pos + 1]
        if first & 0x80:
            length = first & 0x7F
            value = pos + 2
        else:
            if pos + 3 > end:
                return False
            length = (first << 8) | data[pos + 2]
            value = pos + 3
        if value + length > end:
            return False  # truncated IE: a parse error forwards the frame
        if tag == BSSGP_IE_LLC_PDU and llc is None:
            llc = (value, length)
        pos = value + length
    if llc is None or llc[1] == 0:
        return False
    return (data[llc[0]] & 0x0F) in LLC_USER_SAPIS


def udp_payload(data, ip, caplen, ports=None):
    """Return (start, end) of the UDP payload of the IPv4 packet at ip, or None."""
    if ip + 20 > caplen:
        return None
    vihl = data[ip]
    if vihl >> 4 != 4 or data[ip + 9] != IPPROTO_UDP:
        return None
    ihl = (vihl & 0x0F) * 4
    if ihl < 20:
        return None
    if ((data[ip + 6] & 0x1F) << 8) | data[ip + 7]:
        return None  # a non-first fragment carries no UDP header
    udp = ip + ihl
    if udp + 8 > caplen:
        return None
    if ports is not None:
        sport = (data[udp] << 8) | data[udp + 1]
        dport = (data[udp + 2] << 8) | data[udp + 3]
        if sport not in ports and dport not in ports:
            return None
    return udp + 8, caplen


def should_drop(linktype, data, caplen, ports=None):
    """Return True to drop the frame, False to forward, None for an unknown link type."""
    ip = ip_offset(linktype, data, caplen)
    if ip is None:
        return None
    if ip < 0:
        return False
    span = udp_payload(data, ip, caplen, ports)
    if span is None:
        return False
    p, end = span
    # NS header: PDU type, then (for NS-UNITDATA) 3 more bytes before BSSGP.
    if p + 1 > end or data[p] != NS_PDU_UNITDATA:
        return False
    if end - (p + 1) < NS_UNITDATA_HDR - 1:
        return False
    return bssgp_is_user_data(data, p + NS_UNITDATA_HDR, end)


class GprsFilter(object):
    """The suppressor as used by a capture: counts drops, logs unknown link types once."""

    def __init__(self, ports=None, logger=None):
        self.ports = frozenset(ports) if ports else None
        self.dropped = 0
        self._unsupported = set()
        self.log = logger or log.get("client")

    def __call__(self, linktype, data, caplen):
        """Return True when the frame must be dropped."""
        verdict = should_drop(linktype, data, caplen, self.ports)
        if verdict:
            self.dropped += 1
            return True
        if verdict is None and linktype not in self._unsupported:
            self._unsupported.add(linktype)
            self.log.warning("gprs_filter: link type %d is not handled (Ethernet, Linux "
                             "cooked v1/v2 and raw IP are); its frames are forwarded", linktype)
        return False
