# SPDX-License-Identifier: AGPL-3.0-or-later
"""Golden vectors: C client streams through a real socket give the C server's files."""

import json
import os
import threading
import unittest

from tests import peer, support

VECTORS = [
    ("c-0.4.1-client-stream.bin", "c-0.4.1-server-file.pcap", 18),
    ("c-0.8-pcap-client-stream.bin", "c-0.8-pcap-server-file.pcap", None),
    ("c-0.8-pcapng-client-stream.bin", "c-0.8-pcapng-server-file.pcapng", None),
    ("c-0.8-pcapng-nofilter-client-stream.bin", "c-0.8-pcapng-nofilter-server-file.pcapng", None),
]


class Golden(support.TempDirTestCase):
    def test_files_byte_identical_to_c_server(self):
        clients = [("v%d" % i, "127.0.0.%d" % (i + 2), "yes") for i in range(len(VECTORS))]
        srv = peer.ServerProcess(self.tmp, clients, completed=True).start()
        self.addCleanup(srv.kill)

        def send(i, stream):
            s = peer.connect(srv.port, "127.0.0.%d" % (i + 2))
            # odd-sized pieces: frames split across reads
            for k in range(0, len(stream), 4093):
                s.sendall(stream[k:k + 4093])
            s.close()
        threads = [threading.Thread(target=send, args=(i, support.data_file(v[0])))
                   for i, v in enumerate(VECTORS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        srv.wait_log("(disconnect;", len(VECTORS))
        self.assertEqual(srv.stop(), 0)
        self.assertEqual(srv.files(), [])
        for i, (stream, expected, count) in enumerate(VECTORS):
            files = [p for p in srv.files(srv.completed) if "-v%d-" % i in p]
            self.assertEqual(len(files), 1, files)
            path = files[0]
            self.assertTrue(path.endswith(os.path.splitext(expected)[1]))
            self.assertEqual(peer.read_file(path), support.data_file(expected), path)
            if count is None:
                sent = os.path.join(support.DATA, expected.split("-server-file")[0] + "-sent.json")
                with open(sent) as f:
                    plan = json.load(f)["sent"]
                count = len(plan)
            rows = support.tshark_packets(path, ("frame.cap_len",))
            self.assertEqual(len(rows), count, path)
            if count == 18:
                continue
            self.assertEqual([int(r[0]) for r in rows], [p["caplen"] for p in plan])


if __name__ == "__main__":
    unittest.main()
