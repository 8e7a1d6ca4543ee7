# SPDX-License-Identifier: AGPL-3.0-or-later
"""libpcap through ctypes: loading, the pcap_pkthdr layout, capture handles.

The library is found by an explicit path, the environment, ctypes.util and
then a list of sonames (find_library fails on musl/OpenWrt). The layout of
struct pcap_pkthdr depends on the platform's time_t and long (16 bytes on
classic 32-bit, 24 on 64-bit and on 32-bit with 64-bit time_t); it is
measured at run time by letting libpcap dump a crafted header.

Packets normally reach Python without any Python code per packet:
pcap_dispatch() runs with libpcap's own pcap_dump() as the callback, writing
each packet as a pcap record into a memory buffer (an fmemopen() stream), and
the caller walks the records of a whole round. A Python callback per packet
costs about three times as much (the ctypes callback trampoline); it remains
for where that buffer cannot be set up. It makes no ctypes foreign call per
packet: it reads the header through a cached from_address() view and the
packet through a cached c_char array type per caplen.
"""

import ctypes
import ctypes.util
import mmap
import os
import socket
import struct
import tempfile

ENV_LIBRARY = "OSMO_PCAP_LIBPCAP"
SONAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so", "libpcap.dylib")
INSTALL_HINT = ("install libpcap (Debian/Ubuntu: apt-get install libpcap0.8; Fedora: dnf "
                "install libpcap; Alpine: apk add libpcap; OpenWrt: opkg install libpcap) "
                "or name the library with [client] libpcap = PATH or %s" % ENV_LIBRARY)

PCAP_ERRBUF_SIZE = 256
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
PCAP_ERROR_BREAK = -2
DLT_EN10MB = 1

# Linux packet socket option (linux/if_packet.h): skip outgoing frames in the ring
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23

HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)

# pcap_dump() writes this record header (struct pcap_sf_pkthdr: 32-bit
# seconds and microseconds, caplen, len) in host byte order, then the data.
RECORD_HDR = struct.Struct("=IIII")
RECORDS_SIZE = 8 << 20          # memory buffer per handle: address space, touched as used
SEEK_SET = 0
FSETLOCKING_BYCALLER = 2


class LibpcapError(Exception):
    """libpcap is missing or reported an error; str() is the user message."""


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class PcapStat(ctypes.Structure):
    _fields_ = [("ps_recv", ctypes.c_uint), ("ps_drop", ctypes.c_uint),
                ("ps_ifdrop", ctypes.c_uint)]


# ---------------------------------------------------------------- pkthdr layout

class PktHdrLayout(object):
    """Where struct pcap_pkthdr keeps its fields on this platform.

    size: 16 or 24; caplen_offset: 8 or 16. ts fields are signed integers of
    caplen_offset/2 bytes each, then u32 caplen and u32 len, native order.
    """

    __slots__ = ("size", "caplen_offset", "struct")

    def __init__(self, size, caplen_offset):
        if (size, caplen_offset) not in ((16, 8), (24, 16)):
            raise ValueError("unsupported pcap_pkthdr layout: %d bytes, caplen at %d"
                             % (size, caplen_offset))
        self.size = size
        self.caplen_offset = caplen_offset
        ts = "i" if caplen_offset == 8 else "q"
        self.struct = struct.Struct("=" + ts + ts + "II")

    def unpack(self, buf):
        """Return (ts_sec, ts_usec, caplen, len) from a header image."""
        return self.struct.unpack_from(buf, 0)

    def describe(self):
        return "pcap_pkthdr: %d bytes, caplen at offset %d" % (self.size, self.caplen_offset)

    def __repr__(self):
        return "PktHdrLayout(%d, %d)" % (self.size, self.caplen_offset)


# The crafted header: u32 words whose position tells which one libpcap took as
# caplen. With caplen at offset 8 it reads 12, at offset 16 it reads 20.
PROBE_WORDS = (1, 2, 12, 13, 20, 21, 0, 0)
PROBE_DATA_SIZE = 64


def layout_from_dumped_caplen(caplen):
    """Return the PktHdrLayout implied by the caplen libpcap wrote for the probe."""
    if caplen == PROBE_WORDS[2]:
        return PktHdrLayout(16, 8)
    if caplen == PROBE_WORDS[4]:
        return PktHdrLayout(24, 16)
    raise LibpcapError("cannot determine the pcap_pkthdr layout: libpcap dumped caplen %d"
                       % caplen)


def probe_image():
    """Return the bytes of the crafted header (native u32 words)."""
    return struct.pack("=8I", *PROBE_WORDS)


# ---------------------------------------------------------------- the library

def _declare(lib):
    """Declare argtypes/restype of every function used; optional ones may be absent."""
    p, i, u, s, v = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p, None
    protos = {
        "pcap_lib_version": (s, []),
        "pcap_create": (p, [s, s]),
        "pcap_set_snaplen": (i, [p, i]),
        "pcap_set_promisc": (i, [p, i]),
        "pcap_set_timeout": (i, [p, i]),
        "pcap_set_buffer_size": (i, [p, i]),
        "pcap_activate": (i, [p]),
        "pcap_statustostr": (s, [i]),
        "pcap_geterr": (s, [p]),
        "pcap_setnonblock": (i, [p, i, s]),
        "pcap_get_selectable_fd": (i, [p]),
        "pcap_compile": (i, [p, ctypes.POINTER(BpfProgram), s, i, ctypes.c_uint32]),
        "pcap_setfilter": (i, [p, ctypes.POINTER(BpfProgram)]),
        "pcap_freecode": (v, [ctypes.POINTER(BpfProgram)]),
        "pcap_datalink": (i, [p]),
        "pcap_datalink_val_to_name": (s, [i]),
        "pcap_snapshot": (i, [p]),
        "pcap_stats": (i, [p, ctypes.POINTER(PcapStat)]),
        "pcap_dispatch": (i, [p, i, HANDLER, p]),
        "pcap_breakloop": (v, [p]),
        "pcap_close": (v, [p]),
        "pcap_open_offline": (p, [s, s]),
        "pcap_open_dead": (p, [i, i]),
        "pcap_dump_open": (p, [p, s]),
        "pcap_dump": (v, [p, p, p]),
        "pcap_dump_close": (v, [p]),
    }
    optional = {
        "pcap_set_immediate_mode": (i, [p, i]),
        "pcap_get_required_select_timeout": (p, [p]),
    }
    for name, (res, args) in protos.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise LibpcapError("the libpcap found lacks %s(); it is too old: %s"
                               % (name, INSTALL_HINT))
        fn.restype, fn.argtypes = res, args
    for name, (res, args) in optional.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype, fn.argtypes = res, args
    del u


class Library(object):
    """A loaded libpcap with its path, version string and pkthdr layout."""

    def __init__(self, lib, path):
        self.lib = lib
        self.path = path
        _declare(lib)
        self.version = lib.pcap_lib_version().decode("utf-8", "replace")
        self.has_immediate = hasattr(lib, "pcap_set_immediate_mode")
        self.has_required_timeout = hasattr(lib, "pcap_get_required_select_timeout")
        self.layout = self._measure_layout()
        self.checks = {}

    def _measure_layout(self):
        """Dump the probe header with libpcap and see where it read caplen."""
        lib = self.lib
        dead = lib.pcap_open_dead(DLT_EN10MB, 65535)
        if not dead:
            raise LibpcapError("pcap_open_dead failed")
        fd, tmp = tempfile.mkstemp(prefix="osmo-pcap-probe-", suffix=".pcap")
        os.close(fd)
        try:
            dumper = lib.pcap_dump_open(dead, tmp.encode())
            if not dumper:
                raise LibpcapError("pcap_dump_open(%s): %s" % (tmp, _text(lib.pcap_geterr(dead))))
            hdr = ctypes.create_string_buffer(probe_image(), 32)
            data = ctypes.create_string_buffer(PROBE_DATA_SIZE)
            lib.pcap_dump(dumper, ctypes.addressof(hdr), ctypes.addressof(data))
            lib.pcap_dump_close(dumper)
            with open(tmp, "rb") as f:
                image = f.read()
        finally:
            lib.pcap_close(dead)
            os.unlink(tmp)
        if len(image) < 24 + 16:
            raise LibpcapError("libpcap wrote no record for the pcap_pkthdr probe")
        bo = "<" if struct.unpack_from("<I", image, 0)[0] == 0xA1B2C3D4 else ">"
        caplen = struct.unpack_from(bo + "I", image, 24 + 8)[0]
        return layout_from_dumped_caplen(caplen)

    def info_lines(self):
        """Return the lines printed by --libpcap-info."""
        return ["library: %s" % self.path, "version: %s" % self.version,
                self.layout.describe()]


_loaded = {}


def candidates(explicit=None, environ=os.environ):
    """Return the library names/paths to try, in order."""
    names = []
    if explicit:
        names.append(explicit)
    if environ.get(ENV_LIBRARY):
        names.append(environ[ENV_LIBRARY])
    found = ctypes.util.find_library("pcap")
    if found:
        names.append(found)
    names.extend(SONAMES)
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def load(explicit=None):
    """Return the Library (loaded once per path); raise LibpcapError with a hint."""
    tried = []
    names = [explicit] if explicit else candidates()
    for name in names:
        if name in _loaded:
            return _loaded[name]
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            tried.append("%s (%s)" % (name, e))
            continue
        path = _library_path(lib, name)
        library = Library(lib, path)
        _loaded[name] = library
        return library
    raise LibpcapError("libpcap not found (tried %s): %s" % ("; ".join(tried), INSTALL_HINT))


def _library_path(lib, name):
    """Return the file the dynamic linker chose for name (Linux), else name."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "libpcap" in os.path.basename(parts[-1]):
                    return parts[-1]
    except OSError:
        pass
    return name


def _text(b):
    return b.decode("utf-8", "replace") if b else ""


# ---------------------------------------------------------------- records in memory

_libc = []


def _stdio():
    """Return the C library with the stdio calls RecordBuffer needs, or None."""
    if not _libc:
        lib = None
        try:
            lib = ctypes.CDLL(None)
            p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
            for name, res, args in (("fmemopen", p, [p, ctypes.c_size_t, s]),
                                    ("fflush", i, [p]), ("ftell", ctypes.c_long, [p]),
                                    ("fseek", i, [p, ctypes.c_long, i]), ("ferror", i, [p]),
                                    ("clearerr", None, [p]), ("fclose", i, [p])):
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
        except (OSError, AttributeError):
            lib = None
        if lib is not None:
            fn = getattr(lib, "__fsetlocking", None)   # glibc, musl: optional
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]
        _libc.append(lib)
    return _libc[0]


class RecordBuffer(object):
    """A stdio stream writing into our own memory, for libpcap's pcap_dump().

    view[:end] holds the records written since the last reset(). The memory
    is an anonymous mapping: its pages become resident only when written.
    """

    def __init__(self, size=RECORDS_SIZE):
        libc = _stdio()
        if libc is None:
            raise OSError("fmemopen() is not available")
        self.libc = libc
        self.size = size
        self.mm = mmap.mmap(-1, size)
        self._pin = ctypes.c_char.from_buffer(self.mm)  # the address; forbids resizing
        self.file = libc.fmemopen(ctypes.addressof(self._pin), size, b"w")
        if not self.file:
            self._release()
            raise OSError("fmemopen() failed")
        setlocking = getattr(libc, "__fsetlocking", None)
        if setlocking is not None:
            # Only this thread writes the stream: stdio may skip its lock
            # (three lock round trips per packet in pcap_dump).
            setlocking(self.file, FSETLOCKING_BYCALLER)
        self.view = memoryview(self.mm)

    def end(self):
        """Flush the stream; return how many bytes of view hold records."""
        self.libc.fflush(self.file)
        return self.libc.ftell(self.file)

    def failed(self):
        """True when a write did not fit (pcap_dump then skips the rest); clears it."""
        if self.libc.ferror(self.file):
            self.libc.clearerr(self.file)
            return True
        return False

    def reset(self):
        """Start writing at the beginning again."""
        self.libc.fseek(self.file, 0, SEEK_SET)

    def close(self):
        if self.file:
            self.libc.fclose(self.file)
            self.file = None
            self._release()

    def _release(self):
        view = getattr(self, "view", None)
        if view is not None:
            view.release()
            self.view = None
        self._pin = None
        self.mm.close()


def records_supported(library):
    """Check once that pcap_dump() into a RecordBuffer gives the expected record."""
    if "records" not in library.checks:
        library.checks["records"] = _check_records(library)
    return library.checks["records"]


def _check_records(library):
    lib = library.lib
    try:
        rb = RecordBuffer(4096)
    except (OSError, ValueError):
        return False
    dead = lib.pcap_open_dead(DLT_EN10MB, 65535)
    try:
        hdr = ctypes.create_string_buffer(32)
        library.layout.struct.pack_into(hdr, 0, 1700000000, 654321, 5, 60)
        data = ctypes.create_string_buffer(b"abcde", 8)
        for _ in range(2):
            lib.pcap_dump(rb.file, ctypes.addressof(hdr), ctypes.addressof(data))
        end = rb.end()
        image = rb.view[:end].tobytes()
        rb.reset()
        again = rb.end()
    finally:
        lib.pcap_close(dead)
        rb.close()
    one = RECORD_HDR.pack(1700000000, 654321, 5, 60) + b"abcde"
    return image == one * 2 and again == 0


# ---------------------------------------------------------------- handles
TYPE_CACHE_MAX = 2048

class Handle(object):
    """One open pcap_t (live or offline) delivering packets to a sink.

    sink(ts_sec, ts_usec, caplen, orig_len, data) gets data as a c_char array
    (a buffer valid only during the call).
    """

    def __init__(self, library, pcap, name, offline=False):
        self.library = library
        self.lib = library.lib
        self.pcap = pcap
        self.name = name
        self.offline = offline
        self.sink = None
        self._hdr_addr = None
        self._hdr_view = None
        self._hdr_type = ctypes.c_char * library.layout.size
        self._unpack = library.layout.struct.unpack_from
        self._types = {}
        self._callback = None      # made on first use, then kept alive with the handle
        self._last_stats = None
        self.records = None
        self._bound = 0
        self._dump = HANDLER(ctypes.cast(self.lib.pcap_dump, ctypes.c_void_p).value)

    # -------------------------------------------------------------- opening
    @classmethod
    def open_live(cls, library, device, snaplen, promisc=False, timeout_ms=100,
                  buffer_size=0, immediate=False):
        """Create, configure and activate a live capture; return (handle, warning)."""
        lib = library.lib
        err = ctypes.create_string_buffer(PCAP_ERRBUF_SIZE)
        p = lib.pcap_create(device.encode(), err)
        if not p:
            raise LibpcapError("%s: %s" % (device, _text(err.value)))
        h = cls(library, p, device)
        try:
            h._check(lib.pcap_set_snaplen(p, snaplen), "pcap_set_snaplen")
            h._check(lib.pcap_set_promisc(p, 1 if promisc else 0), "pcap_set_promisc")
            h._check(lib.pcap_set_timeout(p, timeout_ms), "pcap_set_timeout")
            if buffer_size:
                h._check(lib.pcap_set_buffer_size(p, buffer_size), "pcap_set_buffer_size")
            if immediate and library.has_immediate:
                h._check(lib.pcap_set_immediate_mode(p, 1), "pcap_set_immediate_mode")
            status = lib.pcap_activate(p)
            warning = None
            if status < 0:
                raise LibpcapError("%s: %s%s" % (device, _text(lib.pcap_statustostr(status)),
                                                 h._detail(status)))
            if status > 0:
                warning = "%s: %s%s" % (device, _text(lib.pcap_statustostr(status)),
                                        h._detail(status))
            if lib.pcap_setnonblock(p, 1, err) < 0:
                raise LibpcapError("%s: pcap_setnonblock: %s" % (device, _text(err.value)))
        except BaseException:
            h.close()
            raise
        return h, warning

    @classmethod
    def open_offline(cls, library, path):
        """Open a pcap/pcapng file or FIFO for reading."""
        err = ctypes.create_string_buffer(PCAP_ERRBUF_SIZE)
        p = library.lib.pcap_open_offline(path.encode(), err)
        if not p:
            raise LibpcapError("%s: %s" % (path, _text(err.value)))
        return cls(library, p, path, offline=True)

    @classmethod
    def open_dead(cls, library, dlt, snaplen):
        """Return a handle that only compiles filters."""
        p = library.lib.pcap_open_dead(dlt, snaplen)
        if not p:
            raise LibpcapError("pcap_open_dead failed")
        return cls(library, p, "(dead)")

    def _detail(self, status):
        # pcap_geterr often has the specific text (e.g. which ioctl failed).
        msg = _text(self.lib.pcap_geterr(self.pcap))
        if msg and msg != _text(self.lib.pcap_statustostr(status)):
            return " (%s)" % msg
        return ""

    def _check(self, rc, what):
        if rc != 0:
            raise LibpcapError("%s: %s: %s" % (self.name, what,
                                               _text(self.lib.pcap_statustostr(rc))))

    def close(self):
        if self.pcap:
            self.lib.pcap_close(self.pcap)
            self.pcap = None
        if self.records is not None:
            self.records.close()
            self.records = None

    def use_records(self, size=RECORDS_SIZE):
        """Switch to dispatch_records(); return False where it cannot be used.

        Every record must fit the buffer: libpcap never hands out more than
        the snapshot length (it cuts live and saved packets to it).
        """
        if self.records is not None:
            return True
        bound = RECORD_HDR.size + max(self.snapshot(), 1)
        if bound > size or not records_supported(self.library):
            return False
        try:
            self.records = RecordBuffer(size)
        except (OSError, ValueError):
            return False
        self._bound = bound
        return True

    # -------------------------------------------------------------- queries
    def datalink(self):
        return self.lib.pcap_datalink(self.pcap)

    def datalink_name(self, dlt=None):
        return _text(self.lib.pcap_datalink_val_to_name(self.datalink() if dlt is None else dlt))

    def snapshot(self):
        return self.lib.pcap_snapshot(self.pcap)

    def selectable_fd(self):
        return self.lib.pcap_get_selectable_fd(self.pcap)

    def required_timeout(self):
        """Return the poll timeout libpcap requires in seconds, or None."""
        if not self.library.has_required_timeout:
            return None
        addr = self.lib.pcap_get_required_select_timeout(self.pcap)
        if not addr:
            return None
        # struct timeval has the same two fields as the start of pcap_pkthdr.
        half = self.library.layout.caplen_offset
        raw = ctypes.string_at(addr, half)
        fmt = "=ii" if half == 8 else "=qq"
        sec, usec = struct.unpack(fmt, raw)
        return sec + usec / 1e6

    def set_ignore_outgoing(self):
        """Ask the kernel not to put outgoing frames into the ring (Linux >= 4.20)."""
        fd = self.selectable_fd()
        if fd < 0:
            raise OSError("no selectable fd")
        s = socket.socket(fileno=os.dup(fd))
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        finally:
            s.close()

    def set_filter(self, expression):
        """Compile (optimised, netmask unknown) and install a filter expression."""
        prog = self.compile(expression)
        try:
            if self.lib.pcap_setfilter(self.pcap, ctypes.byref(prog)) != 0:
                raise LibpcapError("%s: cannot install filter: %s"
                                   % (self.name, _text(self.lib.pcap_geterr(self.pcap))))
        finally:
            self.lib.pcap_freecode(ctypes.byref(prog))

    def check_filter(self, expression):
        """Compile expression and free it again: raise LibpcapError if it is invalid."""
        self.lib.pcap_freecode(ctypes.byref(self.compile(expression)))

    def compile(self, expression):
        """Return the compiled BpfProgram (free it with pcap_freecode); raise LibpcapError."""
        prog = BpfProgram()
        if self.lib.pcap_compile(self.pcap, ctypes.byref(prog), expression.encode(), 1,
                                 PCAP_NETMASK_UNKNOWN) != 0:
            raise LibpcapError("invalid filter %r: %s"
                               % (expression, _text(self.lib.pcap_geterr(self.pcap))))
        return prog

    def stats(self):
        """Return (recv, drop, ifdrop) as libpcap's cumulative u32 counters."""
        st = PcapStat()
        if self.lib.pcap_stats(self.pcap, ctypes.byref(st)) != 0:
            raise LibpcapError("%s: pcap_stats: %s"
                               % (self.name, _text(self.lib.pcap_geterr(self.pcap))))
        return st.ps_recv, st.ps_drop, st.ps_ifdrop

    def last_error(self):
        return _text(self.lib.pcap_geterr(self.pcap))

    # -------------------------------------------------------------- packets
    def dispatch(self, count):
        """Process up to count packets (-1: what is there); return libpcap's result."""
        if self._callback is None:
            # A ctypes closure: libffi needs writable and executable memory for it.
            self._callback = HANDLER(self._on_packet)
        if len(self._types) > TYPE_CACHE_MAX:
            self._types.clear()  # one ctypes array type per distinct caplen: keep it bounded
        return self.lib.pcap_dispatch(self.pcap, count, self._callback, None)

    def dispatch_records(self, count):
        """Like dispatch(), but libpcap writes the packets into records.view.

        Return (result, end): result is the number of packets or libpcap's
        negative error code; records.view[:end] holds one pcap record per
        packet (RECORD_HDR, then caplen bytes), also when result is an error.
        Call records.reset() once they are consumed.
        """
        rb = self.records
        dispatch, p, cb, f = self.lib.pcap_dispatch, self.pcap, self._dump, rb.file
        bound = self._bound
        done = end = 0
        while True:
            # As many packets as surely fit what is left of the buffer; with
            # small packets a second call takes more.
            room = (rb.size - end) // bound
            want = room if count < 0 else min(room, count - done)
            if want <= 0:
                return done, end
            n = dispatch(p, want, cb, f)
            end = rb.end()
            if n < 0:
                return n, end
            done += n
            if n < want:
                return done, end

    def _on_packet(self, user, hdr, data):
        if hdr != self._hdr_addr:
            # libpcap reuses one header address per handle: re-view only on change.
            self._hdr_addr = hdr
            self._hdr_view = self._hdr_type.from_address(hdr)
        sec, usec, caplen, length = self._unpack(self._hdr_view)
        t = self._types.get(caplen)
        if t is None:
            t = self._types[caplen] = ctypes.c_char * caplen
        self.sink(sec, usec, caplen, length, t.from_address(data))


def stat_delta(old, new):
    """Return new - old for libpcap's u32 counters, assuming at most one wrap."""
    if new >= old:
        return new - old
    return (1 << 32) - old + new
