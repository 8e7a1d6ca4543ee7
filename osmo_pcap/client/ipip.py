# SPDX-License-Identifier: AGPL-3.0-or-later
"""protocol = ipip: each captured IPv4 packet sent as one IP-in-IP datagram.

For live viewing: the receiver (say, Wireshark on the target host) sees
ordinary IPIP packets. No framing, no queue, no reconnect; packets that are
not IPv4, or that the raw socket cannot take now, are counted.
"""

import socket

from osmo_pcap.client.forward import IDLE, STOPPED, UP, WAITING, new_server_counters
from osmo_pcap.transport import why

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8)


def ipv4_offset(linktype, data, caplen):
    """Return where the IPv4 packet starts in a frame, or -1 (not IPv4/unsupported)."""
    if linktype == 1:
        off = 12
        while off + 2 <= caplen:
            et = (data[off] << 8) | data[off + 1]
            if et in ETHERTYPE_VLAN:
                off += 4
                continue
            if et != ETHERTYPE_IPV4:
                return -1
            off += 2
            break
        else:
            return -1
    elif linktype == 113:
        if caplen < 16 or ((data[14] << 8) | data[15]) != ETHERTYPE_IPV4:
            return -1
        off = 16
    elif linktype == 276:
        if caplen < 20 or ((data[0] << 8) | data[1]) != ETHERTYPE_IPV4:
            return -1
        off = 20
    elif linktype in (12, 14, 101, 228):
        off = 0
    else:
        return -1
    if off + 20 > caplen or data[off] >> 4 != 4:
        return -1
    return off


class IpipSender(object):
    """protocol = ipip: each IPv4 packet as the payload of one IP-in-IP datagram.

    The raw socket is opened at start-up (it needs CAP_NET_RAW); a host name
    that does not resolve yet is retried, so DNS need not be up at boot.
    """

    def __init__(self, cfg, logger, loop=None):
        self.cfg = cfg             # the client.config.ServerEntry
        self.name = cfg.name
        self.log = logger
        self.loop = loop
        self.counters = new_server_counters()
        self.sock = None
        self.state = IDLE
        self.spool = None          # never: datagrams are sent at once or counted
        self.prefix = "server %s (%s ipip)" % (cfg.name, cfg.host)
        self.address = None
        self.on_address = None     # as Forwarder.on_address (detect_loop)
        self.timer = None
        self.delay = cfg.reconnect_min

    def start(self):
        if not self.cfg.enabled:
            return
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
            s.setblocking(False)
            if self.cfg.source_ip:
                s.bind((self.cfg.source_ip, 0))
        except OSError as e:
            raise OSError("%s: cannot open the raw IPIP socket: %s" % (self.prefix, why(e)))
        self.sock = s
        self.state = WAITING
        self._connect()

    def _connect(self):
        self.timer = None
        self.counters["server:connect"] += 1
        try:
            addr = socket.getaddrinfo(self.cfg.host, None, socket.AF_INET)[0][4][0]
            self.sock.connect((addr, 0))
        except OSError as e:
            if self.loop is None:
                raise OSError("%s: %s" % (self.prefix, why(e)))
            self.log.warning("%s: cannot resolve or reach %s: %s; next attempt in %.1fs",
                             self.prefix, self.cfg.host, why(e), self.delay)
            self.timer = self.loop.call_later(self.delay, self._connect)
            self.delay = min(self.delay * 2, self.cfg.reconnect_max)
            return
        self.address = addr
        if self.on_address is not None:
            self.on_address(self, addr)
        self.state = UP
        self.counters["server:connected"] = 1

    def send_packet(self, linktype, data, caplen):
        """Send one captured frame (data: bytes or a byte memoryview)."""
        off = ipv4_offset(linktype, data, caplen)
        if off < 0:
            self.counters["ipip:skipped"] += 1
            return
        if self.state != UP:
            self.counters["client:write_err"] += 1
            return
        try:
            self.sock.send(data[off:caplen])
            self.counters["ipip:sent"] += 1
            self.counters["sent:pkts"] += 1
        except (BlockingIOError, InterruptedError):
            # the socket buffer is full: given up, as a full queue
            self.counters["lost:queue_full"] += 1
            self.counters["client:queue_err"] += 1
        except OSError:
            # e.g. unreachable for a moment: count, never log per packet
            self.counters["client:write_err"] += 1

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.state = STOPPED
        self.counters["server:connected"] = 0

    @property
    def busy(self):
        return False

    @property
    def delivered(self):
        return self.counters["sent:pkts"]

    def queue_figures(self):
        return 0, 0, 0
