# SPDX-License-Identifier: AGPL-3.0-or-later
"""Fuzzing the receive path with a fixed seed.

1. ingest.Parser (the server's specialised decode+validate loop) against the
   reference wire.Decoder + validate on 100,000 random and mutated streams fed
   in random splits: same accepted messages, same rule at the same offset,
   no exception. bench/fuzz_decoder.py runs more cases.
2. A live server process gets mutated streams from one address while a
   neighbour streams: no traceback, the neighbour's file is complete, memory
   stays flat.
"""

import os
import random
import signal
import struct
import unittest

from tests import peer, support
from osmo_pcap import pcapfile, pcapng, validate, wire
from osmo_pcap.server import ingest

SEED = 20260226
CASES = int(os.environ.get("FUZZ_CASES", "100000"))
MAX_SNAPLEN = 200


# ---------------------------------------------------------------- streams
def base_stream(rnd):
    """Return a valid stream: a pcap or pcapng header and a few records."""
    kind = rnd.randrange(4)
    frames = []
    if kind < 2:
        bo = "<" if kind == 0 else ">"
        snap = rnd.choice((MAX_SNAPLEN, 64, 100))
        frames.append(wire.encode_link_hdr(pcapfile.encode_global_header(snap, 1, byteorder=bo)))
        for i in range(rnd.randrange(6)):
            # now and then one byte or two over the snaplen, consistently framed
            n = rnd.randrange(0, snap + 1) if rnd.random() < 0.97 else snap + rnd.randrange(1, 3)
            frames.append(wire.encode_link_data(pcapfile.encode_record(i, i, b"\xab" * n,
                                                                       byteorder=bo)))
        if rnd.random() < 0.3:
            # a run of one length, around the server's bulk size (ingest.RUN)
            n = rnd.randrange(0, snap + 1)
            for i in range(rnd.choice((1, ingest.RUN - 1, ingest.RUN, ingest.RUN + 1,
                                       2 * ingest.RUN + 3, 5 * ingest.RUN))):
                frames.append(wire.encode_link_data(pcapfile.encode_record(
                    i, i, bytes((i + j) & 255 for j in range(n)), byteorder=bo)))
    else:
        bo = "<" if kind == 2 else ">"
        nif = rnd.randrange(0, 3)
        hdr = pcapng.encode_shb(byteorder=bo) + b"".join(
            pcapng.encode_idb(1, rnd.choice((0, 100, MAX_SNAPLEN)), if_name="e%d" % k,
                              byteorder=bo) for k in range(nif))
        frames.append(wire.encode_link_hdr(hdr))
        for i in range(rnd.randrange(5)):
            if nif and rnd.random() < 0.8:
                data = b"\xcd" * rnd.randrange(0, 120)
                frames.append(wire.encode_link_data(pcapng.encode_epb(
                    rnd.randrange(nif), i, data, byteorder=bo)))
            else:
                frames.append(wire.encode_link_data(pcapng.encode_isb(0, i, byteorder=bo)))
    if rnd.random() < 0.1:
        frames.insert(rnd.randrange(len(frames) + 1), frames[0])
    return frames


def mutate(rnd, frames):
    """Return stream bytes with one or a few mutations of frames."""
    frames = list(frames)
    for _ in range(rnd.randrange(1, 3)):
        what = rnd.randrange(7)
        k = rnd.randrange(len(frames))
        f = bytearray(frames[k])
        if what == 0 and f:  # bit flips anywhere in one frame
            for _ in range(rnd.randrange(1, 4)):
                i = rnd.randrange(len(f))
                f[i] ^= 1 << rnd.randrange(8)
        elif what == 1:  # a wrong frame length
            f[2:4] = struct.pack("!H", rnd.choice((0, 1, 15, 16, 23, 24, 65531, 65532, 65535,
                                                   max(0, len(f) - 4 + rnd.randrange(-5, 6)))))
        elif what == 2 and f:  # a wrong type
            f[0] = rnd.choice((0, 1, 2, 3, 0x16, 255))
        elif what == 3 and len(f) >= 4:  # truncated payload with the length fixed up
            cut = rnd.randrange(4, len(f) + 1)
            f = f[:cut]
            f[2:4] = struct.pack("!H", cut - 4)
        elif what == 4:  # random bytes
            f = bytearray(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 40)))
        elif what == 5:  # a field inside the payload set to a boundary value
            if len(f) >= 8:
                i = 4 + rnd.randrange((len(f) - 4) // 4) * 4
                f[i:i + 4] = struct.pack("<I", rnd.choice((0, 1, 12, 16, 32, 100, MAX_SNAPLEN,
                                                           MAX_SNAPLEN + 1, 0xFFFFFFFF)))
        else:  # drop a frame
            f = bytearray()
        frames[k] = bytes(f)
    data = b"".join(frames)
    if rnd.random() < 0.2:  # cut the stream anywhere
        data = data[:rnd.randrange(len(data) + 1)]
    return data


# ---------------------------------------------------------------- both decoders
def parse_fast(data, chunks, scratch):
    """Run ingest.Parser over data split at chunks; return (events, error, err_pos, tail)."""
    p = ingest.Parser(MAX_SNAPLEN)
    mv = memoryview(scratch)
    events = []
    offset = 0  # stream offset of mv[0]
    prev = 0
    for cut in chunks + [len(data)]:
        piece = data[prev:cut]
        prev = cut
        start = len(p.tail)
        mv[:start] = p.tail
        mv[start:start + len(piece)] = piece
        end = start + len(piece)
        base = offset - start  # stream offset of mv[0]
        pos = 0
        while True:
            out = []
            pos, nbytes, ev = p.consume(mv, pos, end, out)
            if sum(len(x) for x in out) != nbytes:
                raise AssertionError("nbytes mismatch")
            events.extend(("data", bytes(x)) for x in out)
            if ev is None:
                break
            if isinstance(ev, wire.ProtocolError):
                return events, ev.code, base + pos, None
            events.append(("hdr", ev.header))
        p.tail = bytes(mv[pos:end])
        offset += len(piece)
    return events, None, None, len(p.tail)


def reference(data, link=None):
    """wire.Decoder + validate over data in one feed; return (events, error, link, buffered)."""
    dec = wire.Decoder()
    events = []
    try:
        frames = dec.feed(data)
    except wire.ProtocolError as e:
        return events, e.code, link, None
    for t, payload in frames:
        try:
            if t == wire.LINK_HDR:
                link = validate.check_link_hdr(payload, MAX_SNAPLEN)
                events.append(("hdr", bytes(payload)))
            elif link is None:
                return events, "data-before-header", link, None
            else:
                link.check_data(payload)
                events.append(("data", bytes(payload)))
        except validate.ValidationError as e:
            return events, e.code, link, None
    return events, None, link, dec.buffered


class DecoderEquivalence(unittest.TestCase):
    def test_fast_parser_equals_reference(self):
        rnd = random.Random(SEED)
        scratch = bytearray(1 << 17)
        seen = {}
        for case in range(CASES):
            frames = base_stream(rnd)
            data = b"".join(frames) if case % 10 == 0 else mutate(rnd, frames)
            nchunks = rnd.randrange(4)
            chunks = sorted(rnd.randrange(len(data) + 1) for _ in range(nchunks))
            events, err, err_pos, tail = parse_fast(data, chunks, scratch)
            seen[err] = seen.get(err, 0) + 1
            if err is None:
                r_events, r_err, _, r_buf = reference(data)
                self.assertEqual((r_err, r_buf), (None, tail), (case, data.hex()))
                self.assertEqual(r_events, events, case)
                continue
            # The reference must accept exactly the part before the offending
            # frame, then find the same rule in that frame alone.
            r_events, r_err, link, _ = reference(data[:err_pos])
            self.assertEqual((r_err, r_events), (None, events), (case, data.hex()))
            rest = data[err_pos:]
            if len(rest) >= 4:
                rest = rest[:4 + struct.unpack_from("!H", rest, 2)[0]]
            _, r_err, _, _ = reference(rest, link)
            self.assertEqual(r_err, err, (case, err_pos, data.hex()))
        # the generator reaches the rules it is meant to reach
        for code in ("unknown-type", "frame-too-long", "pcap-caplen-mismatch",
                     "pcap-caplen-too-big", "pcapng-block-length", "pcapng-epb-caplen",
                     "data-before-header", "hdr-unknown-format", None):
            self.assertIn(code, seen)


class LiveServer(support.TempDirTestCase):
    def rss_kb(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def test_mutated_streams_against_live_server(self):
        srv = peer.ServerProcess(self.tmp, [("good", "127.0.0.2", "yes"),
                                            ("fuzz", "127.0.0.9", "yes")],
                                 "max_snaplen = %d\nmax_file_size = 64K" % MAX_SNAPLEN)
        srv.start()
        self.addCleanup(srv.kill)
        rnd = random.Random(SEED + 1)
        neighbour = peer.connect(srv.port, "127.0.0.2")
        self.addCleanup(neighbour.close)
        neighbour.sendall(peer.pcap_hdr(snaplen=MAX_SNAPLEN))
        seq = 0
        rss = []
        for round_ in range(4):
            for _ in range(60):
                data = mutate(rnd, base_stream(rnd))
                self.assertTrue(peer.send_all_then_wait_closed(srv.port, data, "127.0.0.9", True))
                neighbour.sendall(peer.pcap_data(seq, 150))
                seq += 1
            rss.append(self.rss_kb(srv.proc.pid))
        neighbour.close()
        srv.wait_log("client good (127.0.0.2")
        self.assertEqual(srv.stop(), 0)
        log = srv.log()
        self.assertNotIn("Traceback", log)
        self.assertLess(rss[-1] - rss[0], 8 * 1024, rss)
        good = [p for p in srv.files() if "-good-" in p]
        got = [struct.unpack("<I", r.data[:4])[0] for p in good for r in peer.file_records(p)]
        self.assertEqual(got, list(range(seq)))
        self.assertEqual(sum(len(support.tshark_packets(p)) for p in good), seq)


if __name__ == "__main__":
    unittest.main()
