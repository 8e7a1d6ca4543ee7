# SPDX-License-Identifier: AGPL-3.0-or-later
"""An independent oracle for libpcap's struct pcap_pkthdr layout.

Runs on any host and inside the 32-bit chroots of `make test-32bit`: it asks
libpcap itself (ctypes, pcap_open_offline + pcap_next_ex on a crafted file) where
caplen and len lie in the header it hands out. 16 bytes (32-bit time_t: i386,
also Debian trixie's i386) or 24 bytes (64-bit time_t: amd64, armhf trixie). The
package name does not tell, nor does the pointer size. OSMO_PCAP_EXPECT_PKTHDR
(set by tools/test-32bit.sh per chroot) makes the size an assertion.
"""

import ctypes
import ctypes.util
import os
import struct
import sys
import unittest

from tests import support

TS_SEC = 2 ** 31 + 5          # past 2038: libpcap hands it out negative
TS_USEC = 123456
CAPLEN = 10
ORIG_LEN = 1000


def load_libpcap():
    for name in (ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8",
                 "libpcap.so"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def header_of_first_record(lib, path):
    """Return the raw 24 bytes at the pcap_pkthdr pointer of the file's first record."""
    lib.pcap_open_offline.restype = ctypes.c_void_p
    lib.pcap_open_offline.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.pcap_next_ex.restype = ctypes.c_int
    lib.pcap_next_ex.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                 ctypes.POINTER(ctypes.c_void_p)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    err = ctypes.create_string_buffer(512)
    handle = lib.pcap_open_offline(path.encode(), err)
    if not handle:
        raise AssertionError("pcap_open_offline: " + err.value.decode("utf-8", "replace"))
    try:
        hdr = ctypes.c_void_p()
        data = ctypes.c_void_p()
        rc = lib.pcap_next_ex(handle, ctypes.byref(hdr), ctypes.byref(data))
        if rc != 1:
            raise AssertionError("pcap_next_ex returned %d" % rc)
        # 24 bytes are readable either way: libpcap keeps the header inside pcap_t.
        return ctypes.string_at(hdr.value, 24), ctypes.string_at(data.value, CAPLEN)
    finally:
        lib.pcap_close(handle)


class PkthdrLayout(support.TempDirTestCase):

    def test_layout_from_libpcap(self):
        lib = load_libpcap()
        support.need(lib is not None, "libpcap is not installed")
        payload = bytes(range(CAPLEN))
        path = self.path("one.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
            f.write(struct.pack("<IIII", TS_SEC, TS_USEC, CAPLEN, ORIG_LEN) + payload)
        raw, data = header_of_first_record(lib, path)
        self.assertEqual(data, payload)
        lay16 = struct.unpack_from("=iiII", raw, 0)        # tv_sec, tv_usec: 32-bit
        lay24 = struct.unpack_from("=qqII", raw, 0)        # tv_sec, tv_usec: 64-bit
        if lay24[2:] == (CAPLEN, ORIG_LEN):
            size = 24
            # libpcap's file reader takes ts_sec as a signed 32-bit number
            # (bpf_int32) even with a 64-bit time_t: 2^31+5 arrives negative.
            self.assertEqual(lay24[0] & 0xffffffff, TS_SEC)
            self.assertEqual(lay24[1], TS_USEC)
        elif lay16[2:] == (CAPLEN, ORIG_LEN):
            size = 16
            # The 2038+ second count comes back as the same 32 bits, negative.
            self.assertEqual(lay16[0] & 0xffffffff, TS_SEC)
            self.assertEqual(lay16[1], TS_USEC)
            self.assertEqual(struct.calcsize("P"), 4, "a 16-byte pcap_pkthdr on a 64-bit build")
        else:
            self.fail("caplen/len found at neither offset 8 nor 16: %s" % raw.hex())
        sys.stderr.write("\n[libpcap pcap_pkthdr: %d bytes, %d-bit build]\n"
                         % (size, 8 * struct.calcsize("P")))
        expect = os.environ.get("OSMO_PCAP_EXPECT_PKTHDR")
        if expect:
            self.assertEqual(size, int(expect))


if __name__ == "__main__":
    unittest.main()
