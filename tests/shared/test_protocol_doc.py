# SPDX-License-Identifier: AGPL-3.0-or-later
"""doc/protocol.md against the code: every error code both ways, and the worked
byte-level examples against the encoders and the server's own decoder."""

import glob
import os
import re
import unittest

from tests import support

from osmo_pcap import pcapfile, pcapng, validate, wire
from osmo_pcap.server import ingest

DOC = os.path.join(support.REPO, "doc", "protocol.md")
# The exception classes that carry a rule code (all ProtocolError subclasses).
CODE_CLASSES = ("ProtocolError", "FrameError", "ValidationError", "PcapFormatError",
                "PcapngFormatError")
# SomethingError("some-code", ...): a literal code as the first argument.
_RAISE = re.compile(r"\b(\w+Error)\(\s*\"([a-z0-9]+(?:-[a-z0-9]+)+)\"\s*,")

# The packet of the examples: a 42-byte ARP request at 2026-03-01 14:00:00.25 UTC.
ARP = bytes.fromhex("ffffffffffff020000000015" "0806" "0001080006040001" "020000000015"
                    "c0000215" "000000000000" "c000020a")
TS_SEC, TS_USEC = 1772373600, 250000


def read_doc():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def source_codes():
    """Return {code: [file:line, ...]} for every literal rule code raised in osmo_pcap/."""
    found = {}
    for path in sorted(glob.glob(os.path.join(support.REPO, "osmo_pcap", "**", "*.py"),
                                 recursive=True)):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        for m in _RAISE.finditer(src):
            where = "%s:%d" % (os.path.relpath(path, support.REPO),
                               src.count("\n", 0, m.start()) + 1)
            found.setdefault((m.group(1), m.group(2)), []).append(where)
    return found


def doc_codes(text):
    """Return the codes listed in the tables of the error-codes section."""
    start = text.index('<a id="error-codes"></a>')
    end = text.index('<a id="other-disconnects"></a>', start)
    return re.findall(r"^\| `([a-z0-9-]+)` \|", text[start:end], re.M)


def blocks(text, kind):
    """Return [(name, bytes)] for the ```text blocks marked <!-- KIND: NAME -->."""
    out = []
    for m in re.finditer(r"<!-- %s: (\S+) -->\n```text\n(.*?)```" % kind, text, re.S):
        data = bytearray()
        for line in m.group(2).splitlines():
            row = re.match(r"^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:  +\S.*)?$", line)
            assert row, "%s %s: bad row %r" % (kind, m.group(1), line)
            assert int(row.group(1), 16) == len(data), \
                "%s %s: offset %s, expected %04x" % (kind, m.group(1), row.group(1), len(data))
            data += bytes.fromhex(row.group(2))
        out.append((m.group(1), bytes(data)))
    return out


def serve(stream, max_snaplen=validate.DEFAULT_MAX_SNAPLEN):
    """Run stream through the server's decoder and validation, as one connection.

    Return (payloads accepted in order, the rule code that ended it or None).
    """
    parser = ingest.Parser(max_snaplen)
    mv = memoryview(stream)
    pos, end = 0, len(stream)
    payloads = []
    while True:
        out = []
        pos, _, event = parser.consume(mv, pos, end, out)
        payloads.extend(bytes(p) for p in out)
        if event is None:
            assert pos == end, "an incomplete frame at the end"
            return payloads, None
        if isinstance(event, wire.ProtocolError):
            return payloads, event.code
        payloads.append(event.header)   # a LINK_HDR the parser validated


class ErrorCodesTest(unittest.TestCase):

    def test_every_code_in_the_source_is_documented(self):
        listed = doc_codes(read_doc())
        self.assertEqual(len(listed), len(set(listed)), "a code is listed twice")
        found = source_codes()
        self.assertGreater(len(found), 30)
        for (cls, code), where in sorted(found.items()):
            self.assertIn(cls, CODE_CLASSES, "%s raises %s(%r): a new error class with rule "
                          "codes; add it to CODE_CLASSES" % (where[0], cls, code))
            self.assertIn(code, listed, "%s: code %r is not in the error code tables of "
                          "doc/protocol.md" % (", ".join(where), code))

    def test_every_documented_code_exists(self):
        codes = set(code for _, code in source_codes())
        for code in doc_codes(read_doc()):
            self.assertIn(code, codes, "doc/protocol.md lists %r, which no code raises" % code)

    def test_the_extraction_sees_multi_line_calls(self):
        # ingest.Parser builds its errors over two lines; they must be found.
        codes = source_codes()
        self.assertIn(("FrameError", "unknown-type"), codes)
        self.assertTrue(any(w.startswith("osmo_pcap/server/ingest.py")
                            for w in codes[("FrameError", "unknown-type")]))


class ExamplesTest(unittest.TestCase):

    def setUp(self):
        self.examples = dict(blocks(read_doc(), "example"))

    def test_pcap_examples_are_what_the_encoders_make(self):
        hdr = wire.encode_link_hdr(pcapfile.encode_global_header(9000, 1))
        data = wire.encode_link_data(pcapfile.encode_record(TS_SEC, TS_USEC, ARP))
        self.assertEqual(self.examples["pcap-link-hdr"], hdr)
        self.assertEqual(self.examples["pcap-link-data"], data)
        payloads, code = serve(hdr + data)
        self.assertIsNone(code)
        trace = b"".join(payloads)
        self.assertEqual(len(trace), 82)  # the size the text gives
        recs = list(pcapfile.iter_records(trace))
        self.assertEqual([(r.ts_sec, r.ts_frac, r.orig_len, r.data) for r in recs],
                         [(TS_SEC, TS_USEC, 42, ARP)])

    def test_pcapng_examples_are_what_the_encoders_make(self):
        hdr = wire.encode_link_hdr(pcapng.encode_shb() + pcapng.encode_idb(
            1, 9000, if_name="eth0", if_filter="udp port 23000"))
        data = wire.encode_link_data(pcapng.encode_epb(0, TS_SEC * 1000000 + TS_USEC, ARP))
        self.assertEqual(self.examples["pcapng-link-hdr"], hdr)
        self.assertEqual(self.examples["pcapng-link-data"], data)
        payloads, code = serve(hdr + data)
        self.assertIsNone(code)
        recs = list(pcapng.iter_packets(b"".join(payloads)))
        self.assertEqual([(r.ts_sec, r.ts_frac, r.interface, r.data) for r in recs],
                         [(TS_SEC, TS_USEC, 0, ARP)])

    def test_the_client_sends_the_example_shb(self):
        # The SHB of the example is the client's (88 bytes, upstream's options).
        self.assertEqual(len(pcapng.encode_shb()), 88)
        self.assertEqual(self.examples["pcapng-link-hdr"][4:92], pcapng.encode_shb())

    def test_rejected_streams_end_with_their_code(self):
        rejects = blocks(read_doc(), "reject")
        self.assertGreaterEqual(len(rejects), 5)
        listed = doc_codes(read_doc())
        for code, stream in rejects:
            self.assertIn(code, listed)
            payloads, got = serve(stream)
            self.assertEqual(got, code, stream.hex())
            # nothing after the offending frame was taken
            self.assertLessEqual(len(payloads), 1)


if __name__ == "__main__":
    unittest.main()
