# SPDX-License-Identifier: AGPL-3.0-or-later
"""The live PCAP-over-IP tap (osmo_pcap.tap), driven with fake server events."""

import logging
import os
import socket
import struct
import subprocess
import unittest

from tests import support
from tests.zmtp_peers import wait_for
from osmo_pcap import pcapfile, pcapng, validate
from osmo_pcap.server import tap
from osmo_pcap.loop import Loop


def ipv4_udp(payload, src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02"):
    """Return a raw IPv4/UDP packet (checksums left zero)."""
    udp = struct.pack("!HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst) + udp


def ether(payload):
    return b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00" + payload


# Three clients with different link types, byte orders and time resolutions.
PCAP_US = validate.check_link_hdr(pcapfile.encode_global_header(9000, 1))
PCAP_NS_BE = validate.check_link_hdr(pcapfile.encode_global_header(
    9000, 101, nanosecond=True, byteorder=">"))
PCAPNG_BE = validate.check_link_hdr(
    pcapng.encode_shb(byteorder=">")
    + pcapng.encode_idb(1, 9000, if_name="eth0", if_filter="", byteorder=">")
    + pcapng.encode_idb(101, 9000, if_name="tun0", if_tsresol=9, byteorder=">"))


def events():
    """Return [(name, link, payload, (ts_ns, label, data))] for a mixed stream."""
    out = []
    for i in range(5):
        d = ether(ipv4_udp(b"a%d" % i * 10))
        out.append(("bts1", PCAP_US, pcapfile.encode_record(1700000000 + i, 123456, d),
                    ((1700000000 + i) * 10**9 + 123456000, "bts1", d)))
        d = ipv4_udp(b"c%d" % i * 30)
        out.append(("gw", PCAP_NS_BE, pcapfile.encode_record(1700000100, 999999999 - i, d,
                                                              byteorder=">"),
                    (1700000100 * 10**9 + 999999999 - i, "gw", d)))
        d = ether(ipv4_udp(b"b%d" % i))
        ts = 1700000200 * 10**6 + i
        out.append(("bsc", PCAPNG_BE, pcapng.encode_epb(0, ts, d, byteorder=">"),
                    (ts * 1000, "bsc:eth0", d)))
        d = ipv4_udp(b"t%d" % i * 3)
        ts = 1700000300 * 10**9 + i
        out.append(("bsc", PCAPNG_BE, pcapng.encode_epb(1, ts, d, orig_len=len(d) + 7,
                                                        byteorder=">"),
                    (ts, "bsc:tun0", d)))
    return out


def parse_stream(data):
    """Return [(ts_ns, interface label, data, orig_len)] of a pcapng stream, and the IDBs."""
    idbs = []
    pos = 0
    while pos < len(data):
        bo = pcapng.shb_byteorder(data, pos) or "<"
        btype, total = pcapng.check_block(data, pos, bo)
        if btype == pcapng.BT_IDB:
            idbs.append(pcapng.parse_idb(data, pos, bo, total))
        pos += total
    pkts = [(r.timestamp_ns, idbs[r.interface].name, r.data, r.orig_len)
            for r in pcapng.iter_packets(data)]
    return pkts, idbs


class Consumer(object):
    """A tap consumer socket read without blocking."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.data = bytearray()
        self.eof = False

    def pump(self):
        while True:
            try:
                d = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if not d:
                self.eof = True
                return
            self.data += d

    def close(self):
        self.sock.close()


class ConversionTest(unittest.TestCase):

    def test_pcap_records_become_epbs_in_their_resolution(self):
        rec = pcapfile.encode_record(10, 5, b"xyz", orig_len=9)
        epb = tap.pcap_record_to_epb(PCAP_US, 3, rec)
        self.assertEqual(epb, pcapng.encode_epb(3, 10 * 10**6 + 5, b"xyz", orig_len=9))
        rec = pcapfile.encode_record(10, 5, b"xyz", byteorder=">")
        self.assertEqual(tap.pcap_record_to_epb(PCAP_NS_BE, 0, rec),
                         pcapng.encode_epb(0, 10 * 10**9 + 5, b"xyz"))

    def test_pcapng_epbs_are_renumbered_and_swapped(self):
        blk = pcapng.encode_epb(1, (7 << 32) | 9, b"abcde", byteorder=">")
        self.assertEqual(tap.pcapng_block_to_epb(PCAPNG_BE, [4, 5], blk),
                         pcapng.encode_epb(5, (7 << 32) | 9, b"abcde"))

    def test_malformed_or_unmapped_input_is_skipped(self):
        self.assertIsNone(tap.pcap_record_to_epb(PCAP_US, 0, b"short"))
        bad = pcapfile.encode_record_header(1, 1, 100, 100) + b"x"
        self.assertIsNone(tap.pcap_record_to_epb(PCAP_US, 0, bad))
        blk = pcapng.encode_epb(2, 0, b"abcd", byteorder=">")
        self.assertIsNone(tap.pcapng_block_to_epb(PCAPNG_BE, [0, 1], blk))
        isb = pcapng.encode_isb(0, 0, byteorder=">")
        self.assertIsNone(tap.pcapng_block_to_epb(PCAPNG_BE, [0, 1], isb))
        blk = bytearray(pcapng.encode_epb(0, 0, b"abcd", byteorder=">"))
        blk[20:24] = struct.pack(">I", 1000)   # caplen beyond the block
        self.assertIsNone(tap.pcapng_block_to_epb(PCAPNG_BE, [0, 1], bytes(blk)))

    def test_interface_labels(self):
        self.assertEqual(tap.interfaces_of("bts1", PCAP_US), [("bts1", 1, 9000, 6)])
        self.assertEqual(tap.interfaces_of("gw", PCAP_NS_BE), [("gw", 101, 9000, 9)])
        self.assertEqual(tap.interfaces_of("bsc", PCAPNG_BE),
                         [("bsc:eth0", 1, 9000, 6), ("bsc:tun0", 101, 9000, 9)])

    def quiet_tap(self):
        loop = Loop()
        self.addCleanup(loop.close)
        quiet = logging.getLogger("test_tap.quiet")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        t = tap.Tap(loop, "127.0.0.1", 0, logger=quiet)
        self.addCleanup(t.close, 0)
        return t

    def test_pcap_link_type_upper_half_is_not_the_idb_link_type(self):
        # The pcap header's 32-bit field may carry FCS bits above the link type
        # (validation accepts it); before, packing it into the IDB's 16 bits
        # raised struct.error in link_header() and the server disabled the tap.
        link = validate.check_link_hdr(pcapfile.encode_global_header(200, 0x10000001))
        self.assertEqual(tap.interfaces_of("fcs", link), [("fcs", 1, 200, 6)])
        t = self.quiet_tap()
        t.link_header("fcs", link)
        sink = Sink()
        t.consumers[sink] = "sink"
        t.data("fcs", link, pcapfile.encode_record(1, 2, b"abc"))
        del t.consumers[sink]
        self.assertEqual(t.dropped_unmapped, 0)
        self.assertEqual(bytes(sink.out), pcapng.encode_epb(0, 1000002, b"abc"))
        self.assertEqual(t._idbs, [tap.encode_interface("fcs", 1, 200, 6)])

    def test_interface_that_cannot_be_described_is_skipped(self):
        t = self.quiet_tap()
        self.assertIsNone(t._tap_id(("x", 1 << 20, 200, 6), "x"))
        self.assertEqual(t._idbs, [])


class Sink(object):
    """Stands for a consumer's fanout.Sender: keeps what is pushed."""

    def __init__(self):
        self.out = bytearray()
        self.limit = 1 << 20
        self.want = None        # streams every client, like a viewer that asked nothing

    def push(self, data):
        self.out += data


class TapTest(unittest.TestCase):

    def setUp(self):
        self.loop = Loop()
        self.addCleanup(self.loop.close)

    def make_tap(self, **kw):
        t = tap.Tap(self.loop, "127.0.0.1", 0, **kw)
        self.addCleanup(t.close, 0)
        return t

    def consumer(self, t, **kw):
        c = Consumer(t.port, **kw)
        self.addCleanup(c.close)
        n = len(t.consumers)
        wait_for(self.loop, lambda: len(t.consumers) > n)
        return c

    def feed(self, t, evs):
        seen = set()
        for name, link, payload, _ in evs:
            if (name, id(link)) not in seen:
                seen.add((name, id(link)))
                t.link_header(name, link)
            # the server's payload is a memoryview valid only during the call
            buf = bytearray(payload)
            t.data(name, link, memoryview(buf))
            buf[:] = b"\xee" * len(buf)

    def drain(self, t, consumers):
        """Run until every consumer has read all that the tap sent it."""
        def sender(c):
            port = c.sock.getsockname()[1]
            return [s for s in t.consumers if s.sock.getpeername()[1] == port][0]
        pairs = [(c, sender(c)) for c in consumers]

        def done():
            for c in consumers:
                c.pump()
            return all(not s.out and len(c.data) == s.sent for c, s in pairs)
        wait_for(self.loop, done)

    def test_stream_has_every_packet_of_three_link_types(self):
        t = self.make_tap()
        c = self.consumer(t)
        evs = events()
        self.feed(t, evs)
        self.drain(t, [c])
        pkts, idbs = parse_stream(bytes(c.data))
        self.assertEqual([(i.name, i.linktype, i.tsresol) for i in idbs],
                         [("bts1", 1, 6), ("gw", 101, 9), ("bsc:eth0", 1, 6),
                          ("bsc:tun0", 101, 9)])
        self.assertEqual([p[:3] for p in pkts], [e[3] for e in evs])
        self.assertEqual(pkts[3][3], len(evs[3][3][2]) + 7)   # orig_len kept

    def test_tshark_reads_the_stream_from_stdin(self):
        tshark = support.require_tool("tshark")
        t = self.make_tap()
        c = self.consumer(t)
        evs = events()
        self.feed(t, evs)
        self.drain(t, [c])
        p = subprocess.run([tshark, "-n", "-r", "-", "-T", "fields", "-e", "frame.time_epoch",
                            "-e", "frame.interface_name", "-e", "frame.cap_len"],
                           input=bytes(c.data), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [line.split("\t") for line in p.stdout.decode().splitlines()]
        want = [["%d.%09d" % divmod(ts, 10**9), label, str(len(d))]
                for ts, label, d in (e[3] for e in evs)]
        self.assertEqual(rows, want)

    def test_tshark_live_pcap_over_ip(self):
        tshark = support.require_tool("tshark")
        t = self.make_tap()
        evs = events()
        proc = subprocess.Popen([tshark, "-n", "-i", "TCP@127.0.0.1:%d" % t.port,
                                 "-c", str(len(evs)), "-T", "fields",
                                 "-e", "frame.interface_name", "-e", "frame.cap_len"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        wait_for(self.loop, lambda: t.consumers or proc.poll() is not None, limit=60)
        self.feed(t, evs)
        wait_for(self.loop, lambda: proc.poll() is not None, limit=60)
        out, err = proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        rows = [line.split("\t") for line in out.decode().splitlines()]
        self.assertEqual(rows, [[e[3][1], str(len(e[3][2]))] for e in evs])

    def test_late_consumer_gets_known_interfaces_then_new_packets(self):
        t = self.make_tap()
        evs = events()
        self.feed(t, evs[:4])          # nobody listening: nothing queued
        late = self.consumer(t)
        self.feed(t, evs[4:])
        self.drain(t, [late])
        pkts, idbs = parse_stream(bytes(late.data))
        self.assertEqual(len(idbs), 4)
        self.assertEqual([p[:3] for p in pkts], [e[3] for e in evs[4:]])

    def test_single_client_tap(self):
        t = self.make_tap(only="bsc")
        c = self.consumer(t)
        evs = events()
        self.feed(t, evs)
        self.drain(t, [c])
        pkts, idbs = parse_stream(bytes(c.data))
        self.assertEqual([i.name for i in idbs], ["bsc:eth0", "bsc:tun0"])
        self.assertEqual([p[:3] for p in pkts], [e[3] for e in evs if e[0] == "bsc"])

    def test_stuck_consumer_is_bounded_and_does_not_hold_back_others(self):
        t = self.make_tap(queue_max=64 * 1024)
        stuck = self.consumer(t, rcvbuf=4096)
        fast = self.consumer(t)
        t.link_header("bts1", PCAP_US)
        d = ether(b"x" * 1000)
        rec = pcapfile.encode_record(1, 0, d)
        stuck_s = [s for s in t.consumers if s.sock.getpeername()[1] ==
                   stuck.sock.getsockname()[1]][0]
        n = 0
        while stuck_s.dropped < 100 and n < 50000:
            t.data("bts1", PCAP_US, rec)
            n += 1
            self.loop.run_once(0)
            fast.pump()
        self.assertGreaterEqual(stuck_s.dropped, 100)
        self.assertLessEqual(len(stuck_s.out), 64 * 1024)
        self.drain(t, [fast, stuck])
        fast_pkts, _ = parse_stream(bytes(fast.data))
        self.assertEqual(len(fast_pkts), n)
        stuck_pkts, _ = parse_stream(bytes(stuck.data))
        self.assertEqual(len(stuck_pkts), n - stuck_s.dropped)

    def test_consumer_limit_and_disconnect(self):
        t = self.make_tap(max_consumers=1)
        c = self.consumer(t)
        extra = Consumer(t.port)
        self.addCleanup(extra.close)
        wait_for(self.loop, lambda: extra.eof, also=extra.pump)
        c.close()
        wait_for(self.loop, lambda: not t.consumers)



def sections(data):
    """Split a pcapng stream into its sections: [(comments, idbs, packets)].

    packets are (interface label, data) in stream order."""
    out = []
    pos = 0
    while pos < len(data):
        bo = pcapng.shb_byteorder(data, pos)
        if bo is not None:
            _, total, opts = pcapng.parse_shb(data, pos)
            comments = [v.decode() for c, v in opts if c == pcapng.OPT_COMMENT]
            out.append((comments, [], []))
            pos += total
            continue
        btype, total = pcapng.check_block(data, pos, "<")
        idbs, pkts = out[-1][1], out[-1][2]
        if btype == pcapng.BT_IDB:
            idbs.append(pcapng.parse_idb(data, pos, "<", total))
        elif btype == pcapng.BT_EPB:
            if_id, _, caplen, _, off = pcapng.parse_epb(data, pos, "<", total)
            pkts.append((idbs[if_id].name, bytes(data[off:off + caplen])))
        pos += total
    return out


class TapRequestTest(unittest.TestCase):
    """CLIENTS and STREAM requests (doc/hooks.md#tap-requests)."""

    setUp = TapTest.setUp
    make_tap = TapTest.make_tap
    consumer = TapTest.consumer
    feed = TapTest.feed
    drain = TapTest.drain

    def ask(self, t, line, **kw):
        """Connect, send line and wait for the answer's section to arrive."""
        c = self.consumer(t, **kw)
        c.sock.sendall(line)
        wait_for(self.loop, lambda: b"osmo-pcap-tap/1 " in c.data or c.eof, also=c.pump)
        return c

    def test_clients_lists_the_configured_clients_then_closes(self):
        t = self.make_tap(clients=["bts1", "gw", "bsc", "idle"])
        t.client_connected("bts1", ("192.0.2.21", 40000))
        t.client_connected("gw", ("2001:db8::1", 40001))
        t.client_disconnected("gw")
        t.link_header("bts1", PCAP_US)
        c = self.ask(t, b"CLIENTS\n")
        wait_for(self.loop, lambda: c.eof, also=c.pump)
        secs = sections(bytes(c.data))
        self.assertEqual(len(secs), 2)
        self.assertEqual([i.name for i in secs[0][1]], ["bts1"])   # the ordinary start
        self.assertEqual(secs[1], (["osmo-pcap-tap/1 OK CLIENTS",
                                    "client bsc disconnected",
                                    "client bts1 connected 192.0.2.21:40000",
                                    "client gw disconnected",
                                    "client idle disconnected"], [], []))
        self.assertEqual(t.consumers, {})

    def test_stream_one_client_renumbers_its_interfaces(self):
        t = self.make_tap(clients=["bts1", "gw", "bsc"])
        evs = events()
        self.feed(t, evs[:4])           # every interface is known before the request
        c = self.ask(t, b"stream bsc\r\n")
        self.feed(t, evs[4:])
        self.drain(t, [c])
        secs = sections(bytes(c.data))
        self.assertEqual(len(secs), 2)
        comments, idbs, pkts = secs[1]
        self.assertEqual(comments, ["osmo-pcap-tap/1 OK STREAM bsc"])
        self.assertEqual([(i.name, i.linktype, i.tsresol) for i in idbs],
                         [("bsc:eth0", 1, 6), ("bsc:tun0", 101, 9)])
        self.assertEqual(pkts, [(e[3][1], e[3][2]) for e in evs[4:] if e[0] == "bsc"])
        # tshark reads the reply section as a capture of its own
        tshark = support.require_tool("tshark")
        start = bytes(c.data).index(tap.reply_shb("OK STREAM bsc"))
        p = subprocess.run([tshark, "-n", "-r", "-", "-T", "fields",
                            "-e", "frame.interface_name"], input=bytes(c.data)[start:],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode().split(), [e[3][1] for e in evs[4:] if e[0] == "bsc"])

    def test_stream_one_client_before_it_connects(self):
        t = self.make_tap(clients=["bts1", "gw", "bsc"])
        c = self.ask(t, b"STREAM gw\n")
        other = self.ask(t, b"STREAM *\n")
        evs = events()
        self.feed(t, evs)
        self.drain(t, [c, other])
        comments, idbs, pkts = sections(bytes(c.data))[-1]
        self.assertEqual([i.name for i in idbs], ["gw"])      # sent before its first packet
        self.assertEqual(pkts, [(e[3][1], e[3][2]) for e in evs if e[0] == "gw"])
        comments, idbs, pkts = sections(bytes(other.data))[-1]
        self.assertEqual(comments, ["osmo-pcap-tap/1 OK STREAM *"])
        self.assertEqual(len(idbs), 4)
        self.assertEqual(pkts, [(e[3][1], e[3][2]) for e in evs])

    def test_refusals_answer_and_close(self):
        t = self.make_tap(clients=["bts1"], only=None)
        single = self.make_tap(clients=["bts1", "gw"], only="gw")
        cases = [(t, b"STREAM nosuch\n", "ERROR no client nosuch in the server's configuration "
                  "(clients: bts1)"),
                 (t, b"DANCE\n", "ERROR unknown request 'DANCE' (expected CLIENTS, STREAM "
                  "NAME or STREAM *)"),
                 (t, b"x" * 300, "ERROR request line longer than 256 bytes"),
                 (t, b"\x16\x03\x01\x02\x00\x01\x00", "ERROR this tap speaks plain TCP "
                  "(tap_tls = no), the viewer started a TLS handshake"),
                 (single, b"STREAM bts1\n", "ERROR this listener streams client gw only")]
        for tp, line, want in cases:
            c = self.ask(tp, line)
            wait_for(self.loop, lambda: c.eof, also=c.pump)
            self.assertEqual(sections(bytes(c.data))[-1][0], ["osmo-pcap-tap/1 " + want])
        c = self.ask(single, b"CLIENTS\n")
        wait_for(self.loop, lambda: c.eof, also=c.pump)
        self.assertEqual(sections(bytes(c.data))[-1][0], ["osmo-pcap-tap/1 OK CLIENTS",
                                                          "client gw disconnected"])

    def test_tls_tap(self):
        import ssl
        from tests import pki
        support.require_tool("openssl")   # tests/pki.py makes the certificates
        certs = pki.shared_pki()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*certs["server"])
        ctx.load_verify_locations(certs["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        t = self.make_tap(clients=["bts1", "gw", "bsc"], tls_context=ctx)

        def viewer(cert):
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.load_verify_locations(certs["ca"])
            if cert:
                cctx.load_cert_chain(*certs[cert])
            raw = socket.create_connection(("127.0.0.1", t.port))
            raw.setblocking(False)
            s = cctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
            self.addCleanup(s.close)
            return s

        def talk(s, request, until):
            data = bytearray()
            state = {"hs": False, "sent": False, "eof": False}

            def step():
                try:
                    if not state["hs"]:
                        s.do_handshake()
                        state["hs"] = True
                    if not state["sent"]:
                        s.sendall(request)
                        state["sent"] = True
                    while True:
                        d = s.recv(65536)
                        if not d:
                            state["eof"] = True
                            return
                        data.extend(d)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except (ssl.SSLError, OSError):
                    state["eof"] = True
            wait_for(self.loop, lambda: state["eof"] or until(data), also=step)
            return data, state["eof"]

        data, _ = talk(viewer("client1"), b"STREAM bts1\n",
                       lambda d: b"OK STREAM bts1" in d)
        self.assertIn(b"OK STREAM bts1", data)
        data, eof = talk(viewer(None), b"CLIENTS\n", lambda d: False)
        self.assertTrue(eof)
        self.assertNotIn(b"OK CLIENTS", data)     # no certificate: no stream at all
        wait_for(self.loop, lambda: not t._pending)
        self.assertEqual(len(t.consumers), 1)


if __name__ == "__main__":
    unittest.main()
