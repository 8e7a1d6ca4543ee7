# SPDX-License-Identifier: AGPL-3.0-or-later
"""Server hooks: the server's event interface and the hooks built from ini.

The interface the server calls on every hook object returned by create():

  client_connected(name, peer)      a client's connection took over with a valid LINK_HDR
                                    (doc/protocol.md#takeover; peer: (host, port))
  client_disconnected(name)         that connection ended
  link_header(name, link)           a LINK_HDR was accepted (validate.LinkInfo)
  data(name, link, payload)         one LINK_DATA; payload is only valid during the call
  file_closed(name, path)           a trace file was closed (after the move to completed_path)
  close()                           the server is shutting down (after the last file_closed)

Hooks (keys of [server], see doc/hooks.md): zmq_publish (ZeroMQ PUB with
upstream's topics, doc/hooks.md#zeromq), tap_listen and tap_listen_NAME (live pcapng
over TCP), on_complete (a command per closed file).
"""

import errno
import os
import shutil

from osmo_pcap import log
from osmo_pcap import ini
from osmo_pcap.server import oncomplete
from osmo_pcap.server import tap
from osmo_pcap.server import zmtp

DEFAULT_QUEUE_MAX = 4 << 20
MIN_QUEUE_MAX = 64 << 10
MAX_QUEUE_MAX = 1 << 30
TAP_PREFIX = "tap_listen_"

_log = log.get("hooks")


class HooksConfig(object):
    """The hook keys of [server], validated."""

    def __init__(self):
        self.path = None
        self.section = "server"
        self.zmq_publish = None             # (host, port)
        self.zmq_queue_max = DEFAULT_QUEUE_MAX
        self.tap_listen = None              # (host, port)
        self.tap_clients = {}               # client name -> (host, port)
        self.tap_queue_max = DEFAULT_QUEUE_MAX
        self.tap_tls = False                # tap listeners speak TLS (doc/hooks.md#tap-tls)
        self.tap_tls_context = None         # set by the config reader from tls_cert/tap_tls_ca
        self.on_complete = None             # argv template
        self.on_complete_max_running = oncomplete.DEFAULT_MAX_RUNNING
        self.on_complete_timeout = oncomplete.DEFAULT_TIMEOUT
        self.on_complete_shutdown_wait = oncomplete.DEFAULT_SHUTDOWN_WAIT

    def enabled(self):
        """Return True if any hook is configured."""
        return bool(self.zmq_publish or self.tap_listen or self.tap_clients or self.on_complete)


def _queue_size(text):
    n = ini.parse_size(text)
    if not MIN_QUEUE_MAX <= n <= MAX_QUEUE_MAX:
        raise ValueError("must be between 64K and 1G, got %r" % text)
    return n


def _positive_duration(text):
    v = ini.parse_duration(text)
    if not 0.1 <= v <= 7 * 86400:
        raise ValueError("must be between 100ms and 1w, got %r" % text)
    return v


def read_config(section):
    """Read the hook keys of the [server] config Section; return a HooksConfig."""
    c = HooksConfig()
    c.path, c.section = section.path, section.name
    c.zmq_publish = section.get("zmq_publish", zmtp.parse_endpoint)
    c.zmq_queue_max = section.get("zmq_queue_max", _queue_size, c.zmq_queue_max)
    c.tap_listen = section.get("tap_listen", ini.parse_host_port)
    c.tap_queue_max = section.get("tap_queue_max", _queue_size, c.tap_queue_max)
    c.tap_tls = section.get("tap_tls", ini.parse_bool, False)
    # tap_tls_ca is read with the certificate (tlsconfig.read_tap_tls); here only its use.
    if section.get("tap_tls_ca") is not None and not c.tap_tls:
        raise section.error("tap_tls_ca", "only used with tap_tls = yes")
    if c.tap_tls and not (c.tap_listen or any(k.startswith(TAP_PREFIX) for k in section.keys())):
        raise section.error("tap_tls", "no tap to protect: set tap_listen or tap_listen_NAME")
    for key in section.keys():
        if key.startswith(TAP_PREFIX):
            name = key[len(TAP_PREFIX):]
            try:
                ini.check_safe_name(name)
            except ValueError as e:
                raise section.error(key, "tap_listen_NAME needs a client name: %s" % e)
            addr = section.get(key, ini.parse_host_port)
            if addr is not None:
                c.tap_clients[name] = addr
    c.on_complete = section.get("on_complete", oncomplete.parse_command)
    c.on_complete_max_running = section.get(
        "on_complete_max_running", lambda t: ini.parse_int(t, 1, 64),
        c.on_complete_max_running)
    c.on_complete_timeout = section.get("on_complete_timeout", _positive_duration,
                                        c.on_complete_timeout)
    c.on_complete_shutdown_wait = section.get(
        "on_complete_shutdown_wait", lambda t: ini.parse_duration(t),
        c.on_complete_shutdown_wait)
    if c.on_complete:
        _check_program(section, c.on_complete[0])
    addrs = [("zmq_publish", c.zmq_publish), ("tap_listen", c.tap_listen)]
    addrs += [(TAP_PREFIX + n, a) for n, a in sorted(c.tap_clients.items())]
    seen = {}
    for key, addr in addrs:
        if addr is None:
            continue
        if addr in seen:
            raise section.error(key, "%s:%d is already used by %s" % (addr[0], addr[1],
                                                                       seen[addr]))
        seen[addr] = key
    return c


def _check_program(section, program):
    if os.sep in program:
        ok = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        ok = shutil.which(program) is not None
    if not ok:
        raise section.error("on_complete", "%s is not an executable program" % program)


def create(cfg, loop, server_name="osmo-pcap", clients=None):
    """Return the list of hook objects for config, registered with loop.

    clients: the configured client names (the tap lists them and streams one
    on request). A listening socket that cannot be opened raises OSError
    naming the key.
    """
    if cfg is None or not cfg.enabled():
        return []
    hooks = []
    try:
        if cfg.zmq_publish:
            host, port = cfg.zmq_publish
            pub = _listening("zmq_publish", host, port, zmtp.Publisher, loop, host, port,
                             queue_max=cfg.zmq_queue_max)
            _log.info("zmq: publishing on tcp://%s:%d", host, port)
            hooks.append(ZmqHook(pub))
        if cfg.tap_listen:
            host, port = cfg.tap_listen
            hooks.append(_listening("tap_listen", host, port, tap.Tap, loop, host, port,
                                    queue_max=cfg.tap_queue_max, clients=clients,
                                    tls_context=cfg.tap_tls_context))
        for name, (host, port) in sorted(cfg.tap_clients.items()):
            hooks.append(_listening(TAP_PREFIX + name, host, port, tap.Tap, loop, host, port,
                                    queue_max=cfg.tap_queue_max, only=name, clients=clients,
                                    tls_context=cfg.tap_tls_context))
    except OSError:
        for h in hooks:
            h.close()
        raise
    if cfg.on_complete:
        hooks.append(oncomplete.OnComplete(
            loop, cfg.on_complete, max_running=cfg.on_complete_max_running,
            timeout=cfg.on_complete_timeout,
            shutdown_wait=cfg.on_complete_shutdown_wait))
    return hooks


def _listening(key, host, port, factory, *args, **kw):
    try:
        return factory(*args, **kw)
    except OSError as e:
        raise OSError(e.errno or errno.EINVAL, "%s %s:%d: %s" % (key, host, port,
                                                                 e.strerror or e))


class ZmqHook(object):
    """Publish the server's events and data with upstream's topics (doc/hooks.md#zeromq)."""

    def __init__(self, publisher):
        self.pub = publisher
        self._data = {}     # client name -> (LinkInfo, topic, encoded topic + header frames)

    def _event(self, event, name, *parts):
        if self.pub.ready:
            topic = ("event.v1.%s.%s" % (event, name)).encode("utf-8")
            self.pub.publish([topic] + list(parts))

    def client_connected(self, name, peer):
        self._event("connect", name)

    def client_disconnected(self, name):
        self._event("disconnect", name)

    def link_header(self, name, link):
        self._data.pop(name, None)

    def data(self, name, link, payload):
        pub = self.pub
        if not pub.ready:
            return
        entry = self._data.get(name)
        if entry is None or entry[0] is not link:
            topic = ("data.v1.%s" % name).encode("utf-8")
            prefix = zmtp.encode_frame(topic, more=True) + zmtp.encode_frame(link.header,
                                                                              more=True)
            entry = self._data[name] = (link, topic, prefix)
        n = len(payload)
        head = zmtp.frame_header(n)
        pub.publish_frames(entry[1], (entry[2], head, payload), len(entry[2]) + len(head) + n)

    def file_closed(self, name, path):
        self._event("closingtracefile", name, os.fsencode(path))

    def close(self):
        self.pub.close()


def metric_samples(hooks):
    """Return the metrics samples of the running hooks (doc/operations.md#metrics)."""
    out = []

    def add(name, kind, text, labels, value):
        out.append(("osmo_pcap_server_" + name, kind, text, labels, value))
    for h in hooks:
        if isinstance(h, ZmqHook):
            pub = h.pub
            add("zmq_subscribers", "gauge", "ZeroMQ subscribers receiving messages", {},
                len(pub.ready))
            add("zmq_dropped_messages_total", "counter",
                "ZeroMQ messages not queued for a subscriber whose queue was full", {},
                pub.dropped)
        elif isinstance(h, tap.Tap):
            lab = {"key": TAP_PREFIX + h.only if h.only else "tap_listen"}
            add("tap_consumers", "gauge", "Connections reading the live tap", lab,
                len(h.consumers))
            add("tap_connections_total", "counter", "Connections accepted by the live tap",
                lab, h.connections)
            add("tap_dropped_packets_total", "counter",
                "Packets not queued for a tap connection whose queue was full", lab,
                h.dropped)
        elif isinstance(h, oncomplete.OnComplete):
            add("on_complete_runs_total", "counter",
                "on_complete commands finished (or not startable)", {}, h.runs)
            add("on_complete_failures_total", "counter",
                "on_complete commands not started, exiting non-zero or killed", {},
                h.failures)
            add("on_complete_timeouts_total", "counter",
                "on_complete commands killed after on_complete_timeout", {}, h.timeouts)
            add("on_complete_skipped_total", "counter",
                "Closed files for which no command ran: too many waiting", {}, h.skipped)
            add("on_complete_running", "gauge", "on_complete commands running", {},
                len(h.running))
            add("on_complete_queued", "gauge", "on_complete commands waiting to run", {},
                len(h.queue))
    return out
