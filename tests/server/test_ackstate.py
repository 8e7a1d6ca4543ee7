# SPDX-License-Identifier: AGPL-3.0-or-later
"""The server's stream state (ackstate.StateFile) and start-up recovery (Recorder.recover).

The state survives a torn write (two slots with CRCs); a file left open by a crash
is cut back to what was acknowledged, removed when nothing of it was, kept when
complete, and moved to completed_path like any closed file.
"""

import os

from tests import support
from osmo_pcap.server import ackstate
from osmo_pcap.server.ackstate import StateFile, StreamState
from osmo_pcap.server.config import ServerConfig
from osmo_pcap.server.recorder import FileSettings, Recorder

SID = bytes(range(16))


class StateFileTest(support.TempDirTestCase):

    def test_round_trip_and_newest_slot_wins(self):
        sf = StateFile(self.tmp, "c1")
        self.assertIsNone(sf.load())
        sf.save(StreamState(SID, 5, "trace-c1-1.pcap", 500))
        sf.save(StreamState(SID, 9, "trace-c1-1.pcap", 900))
        sf.close()
        st = StateFile(self.tmp, "c1").load()
        self.assertEqual((st.stream_id, st.next_seq, st.file, st.offset),
                         (SID, 9, "trace-c1-1.pcap", 900))

    def test_a_torn_slot_leaves_the_previous_state(self):
        sf = StateFile(self.tmp, "c1")
        sf.save(StreamState(SID, 5, "a.pcap", 500))
        sf.save(StreamState(SID, 9, "a.pcap", 900))    # slot 0 (counter 2)
        sf.close()
        path = os.path.join(self.tmp, ackstate.STATE_DIR, "c1" + ackstate.SUFFIX)
        with open(path, "r+b") as f:                    # half of the newer slot
            f.seek(100)
            f.write(b"\xff" * 50)
        st = StateFile(self.tmp, "c1").load()
        self.assertEqual((st.next_seq, st.offset), (5, 500))


class RecoverTest(support.TempDirTestCase):

    def recorder(self, completed=False):
        cfg = ServerConfig()
        cfg.base_path = self.path("base")
        os.makedirs(cfg.base_path, exist_ok=True)
        if completed:
            cfg.completed_path = self.path("done")
            os.makedirs(cfg.completed_path, exist_ok=True)
        self.closed = []
        return Recorder("c1", True, FileSettings.from_config(cfg),
                        lambda n, p: self.closed.append(p))

    def left_open(self, size, offset, completed=False):
        rec = self.recorder(completed)
        path = os.path.join(rec.files.base_path, "trace-c1-20260101_000000.pcap")
        with open(path, "wb") as f:
            f.write(b"\xd4\xc3\xb2\xa1" + b"x" * (size - 4) if size else b"")
        rec.state_file.save(StreamState(SID, 77, os.path.basename(path), offset))
        rec.state_file.close()
        rec = self.recorder(completed)
        return rec, rec.recover(), path

    def test_cut_back_to_what_was_acknowledged(self):
        rec, line, path = self.left_open(1500, 1000)
        self.assertIn("cut it back from 1500 to 1000 bytes", line)
        self.assertEqual(os.path.getsize(path), 1000)
        self.assertEqual((rec.saved.next_seq, rec.counters["cut_back"]), (77, 1))
        self.assertEqual(self.closed, [path])
        self.assertEqual(StateFile(rec.files.base_path, "c1").load().file, "")

    def test_nothing_acknowledged_or_an_empty_file_is_removed(self):
        for size in (0, 500):
            rec, line, path = self.left_open(size, 0)
            self.assertIn("removed it", line)
            self.assertFalse(os.path.exists(path))
            self.assertEqual(self.closed, [])

    def test_a_complete_file_moves_to_completed_path(self):
        rec, line, path = self.left_open(800, 800, completed=True)
        self.assertIn("complete (800 bytes)", line)
        moved = os.path.join(self.path("done"), os.path.basename(path))
        self.assertEqual(self.closed, [moved])
        self.assertEqual(os.path.getsize(moved), 800)

    def test_fewer_bytes_than_acknowledged_is_reported(self):
        rec, line, path = self.left_open(600, 800)
        self.assertIn("fewer than the 800 acknowledged", line)
        self.assertEqual(os.path.getsize(path), 600)
