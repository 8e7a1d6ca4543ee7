# SPDX-License-Identifier: AGPL-3.0-or-later
"""Capture sources: live devices (reopened when they fail) and a replayed file.

A source turns every packet into one framed record appended to the client's
batch (a bytearray sent once per capture round): pcap records or pcapng EPBs
(doc/protocol.md#payloads) with the device's position as interface id. Frames
are always little-endian, as upstream x86/ARM clients send them (doc/protocol.md#byte-order).

libpcap writes the packets of a round as pcap records into memory
(libpcap.Handle.dispatch_records); a framer walks them once. On a
little-endian host a pcap record already is the LINK_DATA payload, so the
pcap framer only puts the 4-byte frame header in front of each. Where that
memory is not available, libpcap calls the per-packet sink instead.
"""

import os
import socket
import struct
import sys

from osmo_pcap import pcapfile, pcapng, runs, wire
from osmo_pcap.client import libpcap

PCAP_FRAME = wire.PCAP_DATA_FRAME
EPB_FRAME = wire.EPB_DATA_FRAME
U32 = struct.Struct("<I")
EPB_PAD = (b"\0\0\0\0", b"\0\0\0\0\0\0\0", b"\0\0\0\0\0\0", b"\0\0\0\0\0")
TYPE_CACHE_MAX = 2048                   # cached frame heads, EPB parts
RUN = runs.RUN
RUN2 = 2 * RUN
RECORD = libpcap.RECORD_HDR
CAPLEN_LEN = struct.Struct("=8xII")     # a record's caplen and len
EPB_TAIL = struct.Struct("<IIII")       # ts high, ts low, caplen, len
LITTLE_ENDIAN = sys.byteorder == "little"

# ARPHRD values (linux/if_arp.h) -> DLT libpcap reports, to predict the link
# type of a device that is absent at start-up.
ARPHRD_TO_DLT = {1: 1, 772: 1, 65534: 12, 778: 12, 776: 12, 519: 12}
DLT_LINUX_SLL = 113


def predict_dlt(device):
    """Guess the DLT of a device that cannot be opened now."""
    if device == "any":
        return DLT_LINUX_SLL
    try:
        with open("/sys/class/net/%s/type" % device) as f:
            return ARPHRD_TO_DLT.get(int(f.read().strip()), 1)
    except (OSError, ValueError):
        return 1


def is_loopback(device):
    try:
        with open("/sys/class/net/%s/type" % device) as f:
            return f.read().strip() == "772"
    except OSError:
        return device == "lo"


def make_sink(fmt, if_index, linktype, max_caplen, batch, acc, gprs, ipip):
    """Return the per-packet callback for one source.

    acc is a list [packets, bytes, truncated, cut to max_caplen] updated in place.
    """
    extend = batch.extend
    if fmt == "pcap":
        pack = PCAP_FRAME.pack

        def frame(sec, usec, caplen, length, data):
            n = caplen + 16
            extend(pack(1, 0, n >> 8, n & 255, sec & 0xFFFFFFFF, usec, caplen, length))
            extend(data)
    else:
        pack = EPB_FRAME.pack
        u32 = U32.pack
        bt = pcapng.BT_EPB

        def frame(sec, usec, caplen, length, data):
            total = 36 + ((caplen + 3) & ~3)
            if sec < 0:
                # A 32-bit time_t (or libpcap reading a savefile) gives times
                # past 2038 as negative values: they are unsigned on the wire.
                sec &= 0xFFFFFFFF
            ts = sec * 1000000 + usec
            extend(pack(1, 0, total >> 8, total & 255, bt, total, if_index,
                        (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF, caplen, length))
            extend(data)
            extend(EPB_PAD[caplen & 3])
            extend(u32(total))

    if gprs is None and not ipip:
        def sink(sec, usec, caplen, length, data):
            if caplen > max_caplen:
                # only from read_file: live captures never exceed snaplen
                acc[3] += 1
                data = memoryview(data)[:max_caplen]
                caplen = max_caplen
            frame(sec, usec, caplen, length, data)
            acc[0] += 1
            acc[1] += caplen
            if length > caplen:
                acc[2] += 1
        return sink

    def slow_sink(sec, usec, caplen, length, data):
        mv = memoryview(data).cast("B")
        if gprs is not None and gprs(linktype, mv, caplen):
            return
        if caplen > max_caplen:
            acc[3] += 1
            data = mv = mv[:max_caplen]
            caplen = max_caplen
        frame(sec, usec, caplen, length, data)
        acc[0] += 1
        acc[1] += caplen
        if length > caplen:
            acc[2] += 1
        for sender in ipip:
            sender.send_packet(linktype, mv, caplen)
    return slow_sink


def _frame_header(n):
    return bytes((1, 0, n >> 8, n & 255))


def _run_parts(caplen):
    """Return (check, split, frame header, bytes) for RUN records of caplen bytes.

    check(view, pos) gives the caplen and len of each of RUN records laid out
    back to back from pos, were they all of that caplen; split(view, pos)
    gives the RUN records (header and data) as bytes.
    """
    n = caplen + 16
    check = struct.Struct("=" + ("8xII%dx" % caplen) * RUN).unpack_from
    split = struct.Struct("=" + "%ds" % n * RUN).unpack_from
    return check, split, _frame_header(n), n * RUN


def _epb_parts(if_index):
    """Return a function of caplen giving (frame header + EPB type, length and
    interface, padding + trailing length)."""
    def parts(caplen):
        total = 36 + ((caplen + 3) & ~3)
        return (bytes((1, 0, total >> 8, total & 255)) + U32.pack(pcapng.BT_EPB)
                + U32.pack(total) + U32.pack(if_index), EPB_PAD[caplen & 3] + U32.pack(total))
    return parts


def make_framer(fmt, if_index, acc, sink, fast):
    """Return framer(view, count, end, out) for the count pcap records libpcap
    wrote into view[:end]; it appends their frames to out (the batch).

    With fast (no GPRS filter, no IPIP, no record longer than max_caplen
    possible) the records are framed here, else each goes through sink (which
    appends to the batch it was made with). The loops are the client's
    per-packet cost: every operation counts (the try statements sit outside
    them, which matters before CPython 3.11).
    """
    if not fast:
        unpack = RECORD.unpack_from

        def framer(view, count, end, out):
            pos = 0
            for _ in range(count):
                sec, usec, caplen, length = unpack(view, pos)
                start = pos + 16
                pos = start + caplen
                sink(sec, usec, caplen, length, view[start:pos])
        return framer
    if fmt == "pcap" and LITTLE_ENDIAN:
        # The record as libpcap wrote it (little-endian, 32-bit seconds) is
        # the LINK_DATA payload: put the frame header (cached per length) in
        # front of it.
        heads = {}
        bulk = {}
        unpack = CAPLEN_LEN.unpack_from
        state = [1]     # how many RUN spans to frame one by one after a failed try

        def framer(view, count, end, out):
            pos = cut = 0
            back = state[0]
            while pos < end:
                # RUN records of one length (a media stream, a flood) are checked
                # and framed by three calls into C; only where the lengths vary
                # does every record cost the Python loop below (osmo_pcap.runs).
                caplen = unpack(view, pos)[0]
                run = bulk.get(caplen)
                if run is None:
                    if len(bulk) >= runs.RUNS_MAX:
                        bulk.clear()
                    run = bulk[caplen] = _run_parts(caplen)
                check, split, head, span = run
                stop = pos + span
                limit = end
                if stop <= end:
                    lengths = check(view, pos)
                    if lengths.count(caplen) == RUN2:
                        ok = True
                    elif lengths[0::2].count(caplen) == RUN:
                        ok = True
                        cut += RUN - lengths[1::2].count(caplen)
                    else:
                        ok = False
                    if ok:
                        out += head
                        out += head.join(split(view, pos))
                        pos = stop
                        back = 1
                        continue
                    limit, back = runs.after_failure(pos, back, span, end)
                try:
                    while pos < limit:
                        caplen, length = unpack(view, pos)
                        n = caplen + 16
                        out += heads[n]
                        out += view[pos:pos + n]
                        pos += n
                        if length != caplen:
                            cut += 1
                except KeyError:
                    if len(heads) >= TYPE_CACHE_MAX:
                        heads.clear()
                    heads[n] = _frame_header(n)
            state[0] = back
            acc[0] += count
            acc[1] += end - 16 * count
            acc[2] += cut
        return framer
    if fmt == "pcapng":
        parts = {}
        make_parts = _epb_parts(if_index)
        unpack = RECORD.unpack_from
        pack = EPB_TAIL.pack

        def framer(view, count, end, out):
            pos = cut = 0
            while True:
                try:
                    while pos < end:
                        sec, usec, caplen, length = unpack(view, pos)
                        head, tail = parts[caplen]
                        ts = sec * 1000000 + usec
                        out += head
                        out += pack(ts >> 32, ts & 0xFFFFFFFF, caplen, length)
                        start = pos + 16
                        pos = start + caplen
                        out += view[start:pos]
                        out += tail
                        if length != caplen:
                            cut += 1
                    break
                except KeyError:
                    if len(parts) >= TYPE_CACHE_MAX:
                        parts.clear()
                    parts[caplen] = make_parts(caplen)
            acc[0] += count
            acc[1] += end - 16 * count
            acc[2] += cut
        return framer
    return make_framer(fmt, if_index, acc, sink, False)


def _complete_records(view, end):
    """Return (count, bytes) of the complete pcap records at the start of view[:end]."""
    pos = k = 0
    while pos + 16 <= end:
        stop = pos + 16 + RECORD.unpack_from(view, pos)[2]
        if stop > end:
            break
        pos = stop
        k += 1
    return k, pos


def new_device_counters():
    """Per-device counters (doc/client.md#counters)."""
    return {"pcap:err": 0, "pcap:recv": 0, "pcap:drop": 0, "pcap:ifdrop": 0,
            "captured:pkts": 0, "captured:bytes": 0, "bpf:too_big": 0, "up": 0}


class Source(object):
    """What live devices and a replayed file share: a handle, a sink, counters."""

    def __init__(self, client, name, index):
        self.client = client
        self.name = name
        self.index = index
        self.handle = None
        self.dlt = None
        self.framer = None
        self.sink_batch = None
        self.acc = [0, 0, 0, 0]
        self.counters = new_device_counters()
        self.prefix = "device %s" % name
        self.dispatch_max = client.cfg.dispatch_max
        self.opens = 0

    def linktype(self):
        return pcapfile.dlt_to_linktype(self.dlt)

    def _attach(self, handle):
        self.handle = handle
        self.dlt = handle.datalink()
        handle.use_records()
        self.attach_sink()

    def attach_sink(self):
        """(Re)build the record framer and the per-packet callback from the
        client's current settings."""
        c = self.client
        h = self.handle
        sink = make_sink(c.cfg.file_format, self.index, self.linktype(), c.max_caplen,
                         c.batch, self.acc, c.gprs, c.ipip)
        h.sink = sink
        self.sink_batch = c.batch
        self.framer = None
        if h.records is not None:
            fast = c.gprs is None and not c.ipip and h.snapshot() <= c.max_caplen
            self.framer = make_framer(c.cfg.file_format, self.index, self.acc, sink, fast)

    def dispatch(self):
        """Run one capture round; return the number of packets or a negative
        libpcap error code."""
        h = self.handle
        if h is None:
            return 0
        if self.sink_batch is not self.client.batch:
            # The per-packet sink appends to the batch it was made with; the
            # client may hand a batch over and start a new one.
            self.attach_sink()
        if self.framer is None:
            n = h.dispatch(self.dispatch_max)
        else:
            n, end = h.dispatch_records(self.dispatch_max)
            if end:
                rb = h.records
                if rb.failed():
                    self._lost_records(n, end)
                else:
                    # On an error (n < 0) the records written before it still count.
                    k, end = (n, end) if n >= 0 else _complete_records(rb.view, end)
                    self.framer(rb.view, k, end, self.client.batch)
                rb.reset()
        self._fold()
        return n

    def _lost_records(self, n, end):
        # Never expected: a record did not fit the buffer (libpcap handed out
        # more than its snapshot length), and pcap_dump skipped the rest.
        view = self.handle.records.view
        k, end = _complete_records(view, end)
        self.framer(view, k, end, self.client.batch)
        lost = max(n - k, 1)
        self.counters["pcap:err"] += 1
        self.client.counters["client:no_mem"] += lost
        self.client.log.error("%s: %d packet(s) did not fit the capture buffer", self.prefix, lost)

    def _fold(self):
        acc = self.acc
        if acc[0] or acc[3]:
            c, g = self.counters, self.client.counters
            c["captured:pkts"] += acc[0]
            g["captured:pkts"] += acc[0]
            c["captured:bytes"] += acc[1]
            g["captured:bytes"] += acc[1]
            c["bpf:too_big"] += acc[2]
            g["bpf:too_big"] += acc[2]
            g["client:too_large"] += acc[3]
            acc[0] = acc[1] = acc[2] = acc[3] = 0


class Device(Source):
    """A live capture device; absent or failing devices are retried."""

    def __init__(self, client, name, index):
        Source.__init__(self, client, name, index)
        self.predicted_dlt = predict_dlt(name)
        self.ifindex = None
        self.fd = None
        self.retry = None
        self.last_stats = None
        self.failures = 0
        self.last_why = None
        self.waiting_why = None    # why the device is not capturing now (STATUS=)
        self.refused_dlt = None

    def open(self, fatal=False):
        """Open and activate; return True. On failure log and schedule a retry,
        or raise LibpcapError when fatal."""
        c = self.client
        cfg = c.cfg
        self.retry = None
        try:
            h, warning = libpcap.Handle.open_live(
                c.library, self.name, cfg.snaplen, cfg.promisc,
                max(1, int(cfg.capture_timeout * 1000)), cfg.buffer_size, cfg.immediate_mode)
        except libpcap.LibpcapError as e:
            if fatal:
                raise
            self._failed("cannot open: %s" % e)
            return False
        try:
            if warning:
                c.log.warning("%s: %s", self.prefix, warning)
            if c.filter_expr:
                h.set_filter(c.filter_expr)
            dlt = h.datalink()
            if not c.accept_dlt(self, dlt):
                h.close()
                self.refused_dlt = dlt
                self.waiting_why = "link type %d differs from the stream's" % dlt
                self._schedule_retry()
                c.device_changed()
                return False
            self._ignore_outgoing(h)
        except libpcap.LibpcapError as e:
            h.close()
            if fatal:
                raise
            self._failed(str(e))
            return False
        self._attach(h)
        self.fd = h.selectable_fd()
        try:
            self.ifindex = None if self.name == "any" else _ifindex(self.name)
        except OSError:
            self.ifindex = None
        self.last_stats = None
        self.counters["up"] = 1
        self.opens += 1
        c.log.info("%s: capturing (%s, link type %d)", self.prefix, h.datalink_name(),
                   self.linktype())
        self.refused_dlt = None
        self.waiting_why = None
        if self.fd >= 0:
            c.loop.add_reader(self.fd, self.on_readable)
        self.poll_stats()
        c.device_changed()
        return True

    def _ignore_outgoing(self, h):
        # On loopback every packet is in the ring twice (outgoing and incoming)
        # and libpcap throws the outgoing copy away; the kernel can skip it.
        # Elsewhere outgoing frames are real traffic, so only with "yes".
        mode = self.client.cfg.ignore_outgoing
        if mode == "no" or (mode == "auto" and not is_loopback(self.name)):
            return
        try:
            h.set_ignore_outgoing()
        except OSError as e:
            self.client.log.debug("%s: PACKET_IGNORE_OUTGOING not available: %s",
                                  self.prefix, e)

    def _failed(self, why):
        # A device that stays broken (down, absent) logs its reason once, then
        # every 60th attempt; a new reason is logged at once.
        self.failures += 1
        self.waiting_why = why
        if why != self.last_why or self.failures % 60 == 0:
            self.last_why = why
            self.client.log.error("%s: %s; retrying every %gs", self.prefix, why,
                                  self.client.cfg.reopen_interval)
        self._schedule_retry()
        self.client.device_changed()

    def _schedule_retry(self):
        if self.retry is None and not self.client.stopping:
            self.retry = self.client.loop.call_later(self.client.cfg.reopen_interval, self.open)

    def close(self):
        if self.handle is not None:
            self._fold()
            self.poll_stats(quiet=True)
            if self.fd is not None and self.fd >= 0:
                self.client.loop.remove(self.fd)
            self.handle.close()
            self.handle = None
            self.fd = None
        self.counters["up"] = 0
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None

    def describe_state(self):
        """One line for the status report (SIGUSR1)."""
        c = self.counters
        if self.handle is not None:
            state = "capturing"
        else:
            state = "waiting: %s" % (self.waiting_why or "not open yet")
        return "%s: %s; captured %d, pcap recv %d drop %d ifdrop %d, errors %d, opened %d " \
            "time(s)" % (self.prefix, state, c["captured:pkts"], c["pcap:recv"], c["pcap:drop"],
                         c["pcap:ifdrop"], c["pcap:err"], self.opens)

    def fail(self, why):
        """The open handle broke: count, close, reopen later."""
        self.counters["pcap:err"] += 1
        self.client.counters["client:pcap_err"] += 1
        self.close()
        self._failed(why)

    def on_readable(self):
        self.run_round()
        self.client.flush_batch()

    def run_round(self):
        if self.handle is None:
            return
        n = self.dispatch()
        if n > 0 and self.failures:
            self.failures = 0          # healthy again: the next failure is news
            self.last_why = None
        if n < 0 and n != libpcap.PCAP_ERROR_BREAK:
            self.fail("capture error: %s" % (self.handle.last_error() if self.handle else n))

    def poll_stats(self, quiet=False):
        """Fold libpcap's cumulative counters into ours (u32 wrap handled)."""
        if self.handle is None:
            return
        try:
            now = self.handle.stats()
        except libpcap.LibpcapError as e:
            if quiet:
                return
            self.counters["pcap:err"] += 1
            self.client.counters["client:pcap_err"] += 1
            self.client.log.debug("%s", e)
            return
        old = self.last_stats or (0, 0, 0)
        for key, o, n in zip(("pcap:recv", "pcap:drop", "pcap:ifdrop"), old, now):
            d = libpcap.stat_delta(o, n)
            self.counters[key] += d
            self.client.counters[key] += d
        self.last_stats = now

    def check_present(self):
        """Reopen when the interface was removed and re-created under the same name."""
        if self.handle is None or self.ifindex is None:
            return
        try:
            idx = _ifindex(self.name)
        except OSError:
            idx = None
        if idx != self.ifindex:
            self.fail("the interface disappeared" if idx is None else
                      "the interface was re-created")


def _ifindex(name):
    return socket.if_nametoindex(name)


class FileSource(Source):
    """read_file: packets from a pcap/pcapng file or FIFO through the same path."""

    def __init__(self, client, path):
        Source.__init__(self, client, os.path.basename(path), 0)
        self.path = path
        self.finished = False
        self.prefix = "file %s" % path

    def open(self):
        h = libpcap.Handle.open_offline(self.client.library, self.path)
        if self.client.filter_expr:
            try:
                h.set_filter(self.client.filter_expr)
            except libpcap.LibpcapError:
                h.close()
                raise
        self._attach(h)
        self.counters["up"] = 1
        self.opens += 1
        return h

    def describe_state(self):
        return "%s: %s, %d packet(s) read" % (
            self.prefix, "finished" if self.finished else "replaying",
            self.counters["captured:pkts"])

    def run_round(self):
        if self.handle is None or self.finished:
            return
        n = self.dispatch()
        if n == 0:
            self.finished = True
        elif n < 0:
            self.client.counters["client:pcap_err"] += 1
            self.counters["pcap:err"] += 1
            self.client.log.error("%s: read error: %s", self.prefix, self.handle.last_error())
            self.finished = True

    def close(self):
        if self.handle is not None:
            self._fold()
            self.handle.close()
            self.handle = None
        self.counters["up"] = 0

