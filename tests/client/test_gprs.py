# SPDX-License-Identifier: AGPL-3.0-or-later
"""GPRS user-data suppressor: every branch.

Behaviour: doc/client.md#gprs-filter; what differs from upstream: doc/protocol.md#diff-gprs.
"""

import struct
import unittest

from osmo_pcap.client import gprs


def llc_ie(sapi=3, length=None, value=None, long_form=False):
    value = bytes([sapi]) + b"\x00\x00" if value is None else value
    n = len(value) if length is None else length
    if long_form:
        return bytes([0x0E, n >> 8, n & 0xFF]) + value
    return bytes([0x0E, 0x80 | n]) + value


def bssgp(pdu=0x00, ies=b""):
    # PDU type, TLLI (4), QoS profile (3), then IEs
    return bytes([pdu]) + b"\xc0\x00\x00\x01" + b"\x00\x00\x00" + ies


def ns(payload, pdu=0x00):
    # NS-UNITDATA: PDU type, SDU control bits, BVCI
    return bytes([pdu, 0x00, 0x00, 0x02]) + payload


def ipv4_udp(payload, options=b"", proto=17, frag=0, sport=23000, dport=23000, version=4):
    ihl = (20 + len(options)) // 4
    total = 20 + len(options) + 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 1, frag, 64, proto, 0,
                     b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02") + options
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ip + udp + payload


def eth(ip, vlans=(), ethertype=0x0800):
    hdr = b"\x02" * 6 + b"\x04" * 6
    for vid in vlans:
        hdr += struct.pack("!HH", 0x8100, vid)
    return hdr + struct.pack("!H", ethertype) + ip


def sll(ip, proto=0x0800):
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, proto) + ip


def sll2(ip, proto=0x0800):
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, b"\x02" * 8) + ip


def drop(frame, linktype=1, ports=None):
    return gprs.should_drop(linktype, frame, len(frame), ports)


USER = eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3)))))


class SuppressorTest(unittest.TestCase):
    def test_user_data_sapis_dropped(self):
        for sapi in (3, 5, 9, 11):
            for pdu in (0x00, 0x01):
                self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(pdu, llc_ie(sapi)))))), (sapi, pdu))

    def test_signalling_sapis_forwarded(self):
        for sapi in (1, 2, 7, 8):
            self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(sapi)))))), sapi)

    def test_sapi_is_low_nibble(self):
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(0x43)))))))

    def test_flow_control_dropped(self):
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x26))))))
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x27))))))

    def test_other_bssgp_pdu_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x02, llc_ie(3)))))))

    def test_other_ns_pdu_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3)), pdu=0x0A)))))

    def test_short_ns_and_bssgp_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(b"\x00\x00"))))            # NS header cut
        self.assertFalse(drop(eth(ipv4_udp(ns(b"\x00\xc0\x00")))))    # BSSGP < 8 bytes
        self.assertFalse(drop(eth(ipv4_udp(b""))))                    # no UDP payload

    def test_ie_parsing(self):
        # the LLC-PDU after another IE, long length form, first occurrence wins
        other = bytes([0x1F, 0x82, 0xAA, 0xBB])
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x00, other + llc_ie(5)))))))
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(9, long_form=True)))))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(1) + llc_ie(3)))))))

    def test_missing_or_empty_llc_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, bytes([0x1F, 0x81, 0x03])))))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(value=b"")))))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00))))))

    def test_truncated_ie_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3) + b"\x1f\x85\x00"))))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3) + b"\x1f"))))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3) + b"\x1f\x00"))))))

    def test_ip_header_length_honoured(self):
        # upstream assumed 20 bytes and would read the options as UDP (doc/protocol.md#diff-gprs)
        frame = eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3))), options=b"\x01\x01\x01\x00"))
        self.assertTrue(drop(frame))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(1))), options=b"\x01" * 8))))

    def test_not_ipv4_udp_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3))), proto=6))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3))), version=6))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3)))), ethertype=0x86DD)))

    def test_non_first_fragment_forwarded(self):
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3))), frag=0x0010))))

    def test_short_frame_forwarded(self):
        self.assertFalse(drop(USER[:14 + 20 + 8]))
        self.assertFalse(drop(USER[:10]))

    def test_vlan_tagged_ethernet(self):
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3)))), vlans=(10,))))
        self.assertTrue(drop(eth(ipv4_udp(ns(bssgp(0x01, llc_ie(11)))), vlans=(10, 20))))
        self.assertFalse(drop(eth(ipv4_udp(ns(bssgp(0x00, llc_ie(7)))), vlans=(10,))))

    def test_linux_cooked_v1_v2_and_raw_ip(self):
        ip = ipv4_udp(ns(bssgp(0x00, llc_ie(3))))
        self.assertTrue(drop(sll(ip), 113))
        self.assertTrue(drop(sll2(ip), 276))
        self.assertTrue(drop(ip, 101))
        self.assertTrue(drop(ip, 12))
        self.assertFalse(drop(sll(ip, proto=0x86DD), 113))
        self.assertFalse(drop(sll2(ip, proto=0x0806), 276))

    def test_unknown_link_type(self):
        self.assertIsNone(drop(USER, 147))

    def test_udp_ports_when_configured(self):
        frame = eth(ipv4_udp(ns(bssgp(0x00, llc_ie(3))), sport=1000, dport=2000))
        self.assertTrue(drop(frame, ports=frozenset([2000])))
        self.assertTrue(drop(frame, ports=frozenset([1000])))
        self.assertFalse(drop(frame, ports=frozenset([23000])))


class _Log(object):
    def __init__(self):
        self.lines = []

    def warning(self, fmt, *args):
        self.lines.append(fmt % args)


class FilterObjectTest(unittest.TestCase):
    def test_counts_and_logs_unknown_link_type_once(self):
        logger = _Log()
        f = gprs.GprsFilter(logger=logger)
        self.assertTrue(f(1, USER, len(USER)))
        for _ in range(5):
            self.assertFalse(f(147, USER, len(USER)))
        self.assertEqual(f.dropped, 1)
        self.assertEqual(len(logger.lines), 1)
        self.assertIn("147", logger.lines[0])

    def test_works_on_a_byte_memoryview(self):
        f = gprs.GprsFilter(logger=_Log())
        self.assertTrue(f(1, memoryview(bytearray(USER)), len(USER)))
        # caplen shorter than the buffer: the LLC-PDU is beyond the captured part
        self.assertFalse(f(1, memoryview(USER), len(USER) - 4))


if __name__ == "__main__":
    unittest.main()
