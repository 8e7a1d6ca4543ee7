# SPDX-License-Identifier: AGPL-3.0-or-later
"""Framing: encoders, the incremental decoder and the golden client streams."""

import random
import unittest

from tests import support
from osmo_pcap import wire

STREAMS = [("c-0.4.1-client-stream.bin", "c-0.4.1-server-file.pcap", 19),
           ("c-0.8-pcap-client-stream.bin", "c-0.8-pcap-server-file.pcap", 24),
           ("c-0.8-pcapng-client-stream.bin", "c-0.8-pcapng-server-file.pcapng", 24),
           ("c-0.8-pcapng-nofilter-client-stream.bin", "c-0.8-pcapng-nofilter-server-file.pcapng", 3)]


def decode_all(data, chunks):
    d = wire.Decoder()
    out = []
    pos = 0
    for n in chunks:
        out.extend((t, bytes(p)) for t, p in d.feed(data[pos:pos + n]))
        pos += n
    assert pos >= len(data)
    return out, d


class EncodeTest(unittest.TestCase):
    def test_header_is_type_spare_big_endian_length(self):
        self.assertEqual(wire.encode_link_hdr(b"x" * 24)[:4], b"\x00\x00\x00\x18")
        self.assertEqual(wire.encode_link_data(b"y" * 76)[:4], b"\x01\x00\x00\x4c")
        self.assertEqual(wire.encode_frame(1, b"ab"), b"\x01\x00\x00\x02ab")
        self.assertEqual(wire.frame_header(1, 300), b"\x01\x00\x01\x2c")

    def test_limits(self):
        wire.encode_frame(1, b"\0" * wire.MAX_PAYLOAD)
        self.assertEqual(wire.MAX_PAYLOAD, 65531)
        with self.assertRaises(ValueError):
            wire.encode_frame(1, b"\0" * (wire.MAX_PAYLOAD + 1))
        with self.assertRaises(ValueError):
            wire.encode_frame(2, b"")


class DecoderTest(unittest.TestCase):
    def test_golden_streams_decode_to_the_c_server_files(self):
        for stream, filename, count in STREAMS:
            data = support.data_file(stream)
            msgs, d = decode_all(data, [len(data)])
            self.assertEqual(len(msgs), count, stream)
            self.assertEqual(msgs[0][0], wire.LINK_HDR)
            self.assertTrue(all(t == wire.LINK_DATA for t, _ in msgs[1:]))
            self.assertEqual(b"".join(p for _, p in msgs), support.data_file(filename), stream)
            self.assertEqual(d.buffered, 0)
            # and re-encoding gives the very same stream
            self.assertEqual(b"".join(wire.encode_frame(t, p) for t, p in msgs), data, stream)

    def test_any_split_gives_the_same_messages(self):
        data = support.data_file("c-0.4.1-client-stream.bin")
        whole, _ = decode_all(data, [len(data)])
        one_by_one, _ = decode_all(data, [1] * len(data))
        self.assertEqual(one_by_one, whole)
        rnd = random.Random(42)
        for _ in range(20):
            chunks = []
            while sum(chunks) < len(data):
                chunks.append(rnd.choice([1, 2, 3, 4, 5, 7, 100, 4096, 20000]))
            self.assertEqual(decode_all(data, chunks)[0], whole)

    def test_payload_views_point_into_the_input_without_copy(self):
        frame = wire.encode_frame(1, b"hello")
        buf = bytearray(frame * 2)
        msgs = wire.Decoder().feed(buf)
        self.assertEqual(len(msgs), 2)
        buf[4] = ord("J")  # the first payload is a view on buf
        self.assertEqual(bytes(msgs[0][1]), b"Jello")

    def test_empty_payload(self):
        msgs = wire.Decoder().feed(b"\x01\x00\x00\x00\x00\x00\x00\x01z")
        self.assertEqual([(t, bytes(p)) for t, p in msgs], [(1, b""), (0, b"z")])

    def test_unknown_type_is_a_typed_error_as_soon_as_the_header_arrives(self):
        d = wire.Decoder()
        with self.assertRaises(wire.FrameError) as cm:
            d.feed(b"\x16\x03\x01\x02")  # a TLS ClientHello is not a frame
        self.assertEqual(cm.exception.code, "unknown-type")
        d = wire.Decoder()
        d.feed(b"\x02\x00")
        with self.assertRaises(wire.FrameError) as cm:
            d.feed(b"\x00\x10")
        self.assertEqual(cm.exception.code, "unknown-type")
        self.assertIsInstance(cm.exception, wire.ProtocolError)

    def test_too_long_frame_is_rejected_before_buffering(self):
        d = wire.Decoder()
        with self.assertRaises(wire.FrameError) as cm:
            d.feed(b"\x01\x00\xff\xfc")  # 65532 > 65531
        self.assertEqual(cm.exception.code, "frame-too-long")
        d = wire.Decoder(max_payload=100)
        d.feed(b"\x01\x00\x00\x64" + b"x" * 50)
        with self.assertRaises(wire.FrameError):
            wire.Decoder(max_payload=100).feed(b"\x01\x00\x00\x65")

    def test_memory_is_bounded_by_one_frame(self):
        d = wire.Decoder()
        frame = wire.encode_frame(1, b"\xab" * wire.MAX_PAYLOAD)
        for i in range(0, len(frame) - 1, 1000):
            self.assertEqual(d.feed(frame[i:min(i + 1000, len(frame) - 1)]), [])
            self.assertLessEqual(d.buffered, wire.MAX_FRAME)
        msgs = d.feed(frame[-1:])
        self.assertEqual(len(msgs), 1)
        self.assertEqual(len(msgs[0][1]), wire.MAX_PAYLOAD)
        self.assertEqual(d.buffered, 0)

    def test_fuzzed_streams_raise_only_protocol_errors(self):
        data = support.data_file("c-0.8-pcap-client-stream.bin")
        rnd = random.Random(7)
        for _ in range(3000):
            b = bytearray(data[:rnd.randint(0, 3000)])
            for _ in range(rnd.randint(1, 8)):
                if b:
                    b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            d = wire.Decoder()
            try:
                pos = 0
                while pos < len(b):
                    n = rnd.randint(1, 700)
                    for t, p in d.feed(b[pos:pos + n]):
                        self.assertIn(t, (0, 1))
                        self.assertLessEqual(len(p), wire.MAX_PAYLOAD)
                    pos += n
            except wire.ProtocolError:
                pass
            self.assertLessEqual(d.buffered, wire.MAX_FRAME)


if __name__ == "__main__":
    unittest.main()
