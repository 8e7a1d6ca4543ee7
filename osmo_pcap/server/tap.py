# SPDX-License-Identifier: AGPL-3.0-or-later
"""Live tap: a PCAP-over-IP listener that streams the clients' packets as pcapng.

Every TCP connection gets one SHB, the IDBs of all interfaces known so far,
then EPBs from that moment on; an interface seen for the first time gets its
IDB sent to everyone before its first EPB. Interfaces are named NAME (pcap
clients) or NAME:IFNAME (pcapng clients' named interfaces) and keep the
client's time resolution. pcapng clients' EPBs are renumbered to the tap's
interface ids; other pcapng blocks (ISB, NRB, custom) are not forwarded, as
they would need renumbering too and a live viewer can do without them.
"""

import struct
import time

from osmo_pcap import log, pcapfile, pcapng
from osmo_pcap.server import fanout

BYTEORDER = "<"
SHB = pcapng.encode_shb(options=((pcapng.SHB_USERAPPL, b"osmo_pcap_server.py live tap"),))
# Interface ids are never reused within the stream's one section: bound them.
MAX_INTERFACES = 1024
MAX_CONSUMERS = 16
MAX_IFNAME = 128
_TSRESOL_US = 6
_TSRESOL_NS = 9


def _pcap_interfaces(name, link):
    # A pcap header's 32-bit link type field carries the FCS length and flags in
    # its upper half; an IDB's link type is the 16-bit lower half (the FCS
    # length would be the if_fcslen option, which the tap leaves out).
    return [(name, link.linktype & 0xFFFF, link.snaplen,
             _TSRESOL_NS if link.nanosecond else _TSRESOL_US)]


def _pcapng_interfaces(name, link):
    out = []
    for intf in link.interfaces:
        # A client's if_name may be up to 64 KiB: keep the label printable-sized.
        label = ("%s:%s" % (name, intf.name[:MAX_IFNAME]) if intf.name else name)
        out.append((label, intf.linktype, intf.snaplen, intf.tsresol))
    return out


def interfaces_of(name, link):
    """Return [(label, linktype, snaplen, tsresol)] for the interfaces of a link header."""
    if link.format == "pcap":
        return _pcap_interfaces(name, link)
    return _pcapng_interfaces(name, link)


def encode_interface(label, linktype, snaplen, tsresol):
    """Return the tap's IDB for one interface (if_tsresol only when not microseconds)."""
    return pcapng.encode_idb(linktype, snaplen, if_name=label,
                             if_tsresol=None if tsresol == _TSRESOL_US else tsresol,
                             byteorder=BYTEORDER)


def pcap_record_to_epb(link, tap_id, payload):
    """Return an EPB for one pcap record, or None if the record is malformed."""
    n = len(payload)
    if n < 16:
        return None
    sec, frac, caplen, orig = pcapfile.RECORD[link.byteorder].unpack_from(payload, 0)
    if 16 + caplen > n:
        return None
    ts = sec * (1000000000 if link.nanosecond else 1000000) + frac
    return b"".join((pcapng.encode_epb_header(tap_id, ts, caplen, orig, BYTEORDER),
                     payload[16:16 + caplen], pcapng.epb_trailer(caplen, BYTEORDER)))


def pcapng_block_to_epb(link, tap_ids, payload):
    """Return the EPB renumbered to the tap's interface id, or None to skip the block."""
    bo = link.byteorder
    n = len(payload)
    if n < pcapng.EPB_MIN_SIZE:
        return None
    btype, total = pcapng.BLOCK_HEAD[bo].unpack_from(payload, 0)
    if btype != pcapng.BT_EPB or total != n:
        return None
    _, _, if_id, hi, lo, caplen, orig = pcapng.EPB_FIXED[bo].unpack_from(payload, 0)
    if if_id >= len(tap_ids) or tap_ids[if_id] is None or 28 + caplen > n - 4:
        return None
    return b"".join((pcapng.encode_epb_header(tap_ids[if_id], (hi << 32) | lo, caplen, orig,
                                              BYTEORDER),
                     payload[28:28 + caplen], pcapng.epb_trailer(caplen, BYTEORDER)))


class Tap(object):
    """A server hook: the PCAP-over-IP listener and its consumers.

    only: a client name to stream alone (tap_listen_NAME), else all clients.
    """

    def __init__(self, loop, host, port, queue_max=4 << 20, only=None,
                 max_consumers=MAX_CONSUMERS, logger=None):
        self.loop = loop
        self.queue_max = queue_max
        self.only = only
        self.max_consumers = max_consumers
        self.log = logger or log.get("tap")
        self.sock = fanout.listen(host, port)
        self.address = self.sock.getsockname()[:2]
        self.consumers = {}     # Sender -> name for logs
        self._ids = {}          # (label, linktype, snaplen, tsresol) -> tap interface id
        self._idbs = []         # IDB bytes by tap interface id
        self._links = {}        # client name -> (LinkInfo, [tap id per client interface])
        self._full_logged = False
        self._refuse_log = log.RateLimiter(10.0)
        self.dropped_unmapped = 0
        self.dropped = 0        # packets not queued for a consumer (its queue was full)
        self.connections = 0    # consumers accepted since start
        loop.add_reader(self.sock, self._accept)
        what = "client %s" % only if only else "all clients"
        self.log.info("tap: streaming %s as pcapng to connections on %s", what,
                      fanout.format_peer(self.address))

    @property
    def port(self):
        return self.address[1]

    # ---------------------------------------------------------- consumers
    def _accept(self):
        for conn, peer in fanout.accept_all(self.sock, self._exhausted):
            name = fanout.format_peer(peer)
            if len(self.consumers) >= self.max_consumers:
                held = self._refuse_log.ok("full")  # one line per connection would flood
                if held is not None:
                    self.log.warning("tap: refusing %s: already %d consumers%s", name,
                                     self.max_consumers,
                                     " (%d more suppressed)" % held if held else "")
                conn.close()
                continue
            s = fanout.Sender(self.loop, conn, self.queue_max, self._send_failed)
            self.consumers[s] = name
            self.connections += 1
            # The stream's start is never dropped, whatever the limit.
            s.push(b"".join([SHB] + self._idbs))
            self.loop.add_reader(conn, lambda s=s: self._readable(s))
            self.log.info("tap: consumer %s connected", name)

    def _exhausted(self, err):
        self.log.warning("tap: accept failed: %s; pausing accepts for %gs",
                         err.strerror or err, fanout.ACCEPT_PAUSE)
        fanout.pause_accepting(self.loop, self.sock, self._accept)

    def _readable(self, s):
        # Consumers have nothing to say; read to notice the end of the connection.
        try:
            data = s.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(s, e.strerror or str(e))
            return
        if not data:
            self._drop(s, "disconnected")

    def _send_failed(self, s, reason):
        self._drop(s, reason)

    def _drop(self, s, reason):
        name = self.consumers.pop(s, None)
        if name is None:
            return
        self.log.info("tap: consumer %s gone (%s); %d packets (%d bytes) dropped for it",
                      name, reason, s.dropped, s.dropped_bytes)
        s.close()

    # ---------------------------------------------------------- interfaces
    def _tap_id(self, key):
        tid = self._ids.get(key)
        if tid is not None:
            return tid
        if len(self._idbs) >= MAX_INTERFACES:
            if not self._full_logged:
                self._full_logged = True
                self.log.error("tap: %d interfaces in the stream, packets of new ones are not "
                               "streamed (a server restart starts afresh)", MAX_INTERFACES)
            return None
        tid = len(self._idbs)
        try:
            idb = encode_interface(*key)
        except (struct.error, ValueError, OverflowError):
            # A client's odd header must not disable the tap for every client
            # (the server drops a hook that raises): its packets are skipped.
            self.log.warning("tap: cannot describe interface %r: not streamed", key)
            return None
        self._ids[key] = tid
        self._idbs.append(idb)
        for s in self.consumers:
            s.push(idb)
        return tid

    def _map(self, name, link):
        ids = [self._tap_id(key) for key in interfaces_of(name, link)]
        self._links[name] = (link, ids)
        return ids

    # ---------------------------------------------------------- hook interface
    def client_connected(self, name, peer):
        pass

    def client_disconnected(self, name):
        pass

    def link_header(self, name, link):
        if self.only is None or name == self.only:
            self._map(name, link)

    def data(self, name, link, payload):
        if not self.consumers or (self.only is not None and name != self.only):
            return
        entry = self._links.get(name)
        ids = entry[1] if entry is not None and entry[0] is link else self._map(name, link)
        if link.format == "pcap":
            epb = pcap_record_to_epb(link, ids[0], payload) if ids[0] is not None else None
        else:
            epb = pcapng_block_to_epb(link, ids, payload)
        if epb is None:
            self.dropped_unmapped += 1
            return
        size = len(epb)
        for s in self.consumers:
            if len(s.out) + size > s.limit:
                s.drop(size)
                self.dropped += 1
            else:
                s.push(epb)

    def file_closed(self, name, path):
        pass

    def close(self, flush_seconds=1.0):
        """Send what is queued for up to flush_seconds in all, then close everything."""
        deadline = time.monotonic() + flush_seconds
        for s in list(self.consumers):
            s.flush_until(deadline)
            self._drop(s, "server shutting down")
        self.loop.remove(self.sock)
        self.sock.close()
