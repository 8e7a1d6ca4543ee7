# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo_pcap_extcap.py: a server's capture clients as Wireshark interfaces.

Wireshark runs every program in its extcap folder (doc/wireshark.md#install)
with --extcap-interfaces: this one asks the server's live tap for its
configured clients (CLIENTS, doc/hooks.md#tap-requests) and lists one
interface per client plus one for all of them. Capturing on an interface runs
it with --capture --fifo PATH: it asks the tap for that client's packets
(STREAM NAME) and copies the pcapng stream into the FIFO until Wireshark stops
it (SIGTERM) or the server ends the stream. Where the tap is comes from the
config file (config.py) or the capture dialog (--extcap-config).
"""

import argparse
import signal
import sys

from osmo_pcap import __version__, COPYRIGHT, ini, pcapng
from osmo_pcap.extcap import config as extcapconfig
from osmo_pcap.extcap.tapclient import TapError, fifo_writer, list_clients, stream

PROG = "osmo_pcap_extcap.py"
IFACE = "osmo-pcap"                 # all clients
IFACE_PREFIX = "osmo-pcap-"         # osmo-pcap-NAME: client NAME
# Wireshark learns each packet's link type from the IDBs of the pcapng stream; this
# placeholder (LINKTYPE_USER0) only answers --extcap-dlts, as other remote extcaps do.
DLT_PLACEHOLDER = 147
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class Stopped(Exception):
    """Wireshark (SIGTERM) or the user (SIGINT) stopped the capture."""


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Show an osmo-pcap server's capture clients as Wireshark interfaces "
        "(an extcap: install it in Wireshark's extcap folder, see doc/wireshark.md).")
    ap.add_argument("-V", "--version", action="version",
                    version="%s %s\n%s" % (PROG, __version__, COPYRIGHT))
    ap.add_argument("-c", "--config-file", metavar="FILE",
                    help="INI file naming the server's tap (default: $%s, else %s, else %s)"
                    % (extcapconfig.ENV, extcapconfig.user_file(), extcapconfig.SYSTEM_FILE))
    ap.add_argument("--check-config", action="store_true",
                    help="check the configuration file, print the tap address, exit")
    ap.add_argument("--list", action="store_true",
                    help="print the interfaces this program would offer Wireshark, with the "
                    "clients' connection state, and exit")
    g = ap.add_argument_group("extcap interface (used by Wireshark)")
    g.add_argument("--extcap-interfaces", action="store_true",
                   help="list the interfaces: all clients, and one per configured client")
    g.add_argument("--extcap-version", metavar="VERSION", nargs="?", const="",
                   help="the Wireshark version asking (ignored)")
    g.add_argument("--extcap-interface", metavar="IFACE",
                   help="the interface: %s (all clients) or %sNAME" % (IFACE, IFACE_PREFIX))
    g.add_argument("--extcap-dlts", action="store_true", help="list the interface's link types")
    g.add_argument("--extcap-config", action="store_true",
                   help="list the settings of the capture dialog")
    g.add_argument("--capture", action="store_true", help="capture into --fifo")
    g.add_argument("--fifo", metavar="PATH", help="where to write the pcapng stream")
    g.add_argument("--extcap-capture-filter", metavar="FILTER",
                   help="a capture filter: not supported (use a display filter)")
    s = ap.add_argument_group("tap settings (override the config file; the capture dialog "
                              "passes them)")
    s.add_argument("--tap", metavar="HOST:PORT",
                   help="the server's tap_listen address (default %s)" % extcapconfig.DEFAULT_TAP)
    s.add_argument("--tls", action="store_true", help="the tap speaks TLS (tap_tls = yes)")
    s.add_argument("--tls-ca", metavar="FILE",
                   help="CA that issued the server certificate (default: the system's)")
    s.add_argument("--tls-cert", metavar="FILE",
                   help="our certificate, when the server sets tap_tls_ca")
    s.add_argument("--tls-key", metavar="FILE", help="its private key (if not in --tls-cert)")
    s.add_argument("--tls-hostname", metavar="NAME",
                   help="the name in the server certificate (default: the tap's host)")
    args, unknown = ap.parse_known_args(argv)
    # Newer Wireshark versions may pass options of their own: ignore those.
    bad = [a for a in unknown if not a.startswith(("--extcap-", "--debug"))]
    if bad:
        ap.error("unrecognized arguments: %s" % " ".join(bad))
    return args


def load_config(args):
    """Return the ExtcapConfig of the file and the options; raise ini.ConfigError."""
    cfg = extcapconfig.read(args.config_file or extcapconfig.find())
    if args.tap:
        try:
            cfg.tap = ini.parse_host_port(args.tap)
        except ValueError as e:
            raise ini.ConfigError("--tap: %s" % e)
    if args.tls:
        cfg.tls = True
    for name in ("tls_ca", "tls_cert", "tls_key", "tls_hostname"):
        value = getattr(args, name)
        if value:
            setattr(cfg, name, value)
    return cfg


def interface_client(iface):
    """Return None for the all-clients interface or the client name; raise ValueError."""
    if iface == IFACE:
        return None
    if iface and iface.startswith(IFACE_PREFIX):
        return ini.check_safe_name(iface[len(IFACE_PREFIX):])
    raise ValueError("unknown interface %r (this extcap offers %s and %sNAME)"
                     % (iface, IFACE, IFACE_PREFIX))


def _clean(text):
    """Keep a value inside the extcap grammar's {...}."""
    return text.replace("{", "(").replace("}", ")")


def interfaces(cfg, error=None):
    """Return the interface list: [(value, display)], and a problem or None."""
    where = cfg.describe()
    clients = []
    if error is None:
        try:
            clients = list_clients(cfg)
        except TapError as e:
            error = str(e)
    if error is not None:
        return [(IFACE, "osmo-pcap: all clients of %s (%s)" % (where, error))], error
    out = [(IFACE, "osmo-pcap: all clients of %s" % where)]
    for name, peer in clients:
        state = "connected from %s" % peer.rsplit(":", 1)[0].strip("[]") if peer \
            else "not connected"
        out.append((IFACE_PREFIX + name, "osmo-pcap: client %s of %s (%s)" % (name, where, state)))
    return out, None


def print_interfaces(cfg, error, out):
    out.write("extcap {version=%s}{display=osmo-pcap live tap}\n" % __version__)
    for value, display in interfaces(cfg, error)[0]:
        out.write("interface {value=%s}{display=%s}\n" % (_clean(value), _clean(display)))


def print_dlts(iface, out):
    out.write("dlt {number=%d}{name=%s}{display=link type of the client (from its stream)}\n"
              % (DLT_PLACEHOLDER, _clean(iface)))


def print_config(cfg, out):
    """The capture dialog: the tap address and TLS, defaults from the config file."""
    host, port = cfg.tap
    tap = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    args = [
        ("--tap", "Tap address", "string", tap,
         "HOST:PORT of the server's tap_listen (its osmo-pcap-server.ini)", "Server",
         "{required=true}"),
        ("--tls", "TLS", "boolflag", "true" if cfg.tls else "false",
         "the tap speaks TLS (tap_tls = yes on the server)", "TLS", ""),
        ("--tls-ca", "Server CA", "fileselect", cfg.tls_ca or "",
         "CA certificate that issued the server certificate (empty: the system's CAs)", "TLS",
         "{mustexist=true}"),
        ("--tls-cert", "Viewer certificate", "fileselect", cfg.tls_cert or "",
         "our certificate, needed when the server sets tap_tls_ca", "TLS", "{mustexist=true}"),
        ("--tls-key", "Viewer key", "fileselect", cfg.tls_key or "",
         "the certificate's private key, if not in the certificate file", "TLS",
         "{mustexist=true}"),
        ("--tls-hostname", "Server name", "string", cfg.tls_hostname or "",
         "the name the server certificate must carry (empty: the tap's host)", "TLS", ""),
    ]
    for n, (call, display, kind, default, tip, group, extra) in enumerate(args):
        out.write("arg {number=%d}{call=%s}{display=%s}{type=%s}%s{tooltip=%s}%s{group=%s}\n"
                  % (n, call, display, kind,
                     "{default=%s}" % _clean(default) if default else "", _clean(tip), extra,
                     group))


def capture(cfg, client, fifo):
    """Copy the tap's stream of client (None: all) into fifo until stopped."""
    what = "all clients" if client is None else "client " + client
    header = pcapng.encode_shb(options=(
        (pcapng.SHB_USERAPPL, ("%s %s" % (PROG, __version__)).encode()),
        (pcapng.OPT_COMMENT, ("osmo-pcap live tap %s: %s" % (cfg.describe(), what)).encode())))
    write, close = fifo_writer(fifo)
    try:
        stream(cfg, client, write, header)
    except BrokenPipeError:
        return EXIT_OK            # Wireshark closed its end: the capture is over
    finally:
        try:
            close()
        except OSError:
            pass
    sys.stderr.write("%s: the server closed the live tap stream of %s (it stopped or "
                     "restarted)\n" % (PROG, what))
    return EXIT_ERROR


def _stop(signum, frame):
    raise Stopped()


def main(argv=None):
    """Run the program; return the exit status."""
    args = parse_args(argv)
    problem = None
    try:
        cfg = load_config(args)
    except ini.ConfigError as e:
        if not (args.extcap_interfaces or args.list):
            sys.stderr.write("%s: config error: %s\n" % (PROG, e))
            return EXIT_USAGE
        # Wireshark asks at every start: still offer the interface, naming the problem.
        cfg, problem = extcapconfig.ExtcapConfig(), "config error: %s" % e
    if args.check_config:
        print("config OK: %s: tap %s" % (cfg.path or "(no file: defaults)", cfg.describe()))
        return EXIT_OK
    if args.extcap_interfaces:
        print_interfaces(cfg, problem, sys.stdout)
        return EXIT_OK
    if args.list:
        rows, error = interfaces(cfg, problem)
        for value, display in rows:
            print("%-24s %s" % (value, display))
        return EXIT_ERROR if error else EXIT_OK
    if not (args.extcap_dlts or args.extcap_config or args.capture):
        sys.stderr.write("%s: nothing to do: Wireshark runs this program with --capture; "
                         "try --list or --help\n" % PROG)
        return EXIT_USAGE
    try:
        client = interface_client(args.extcap_interface)
    except ValueError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return EXIT_USAGE
    if args.extcap_dlts:
        print_dlts(args.extcap_interface, sys.stdout)
        return EXIT_OK
    if args.extcap_config:
        print_config(cfg, sys.stdout)
        return EXIT_OK
    if not args.fifo:
        sys.stderr.write("%s: --capture needs --fifo PATH\n" % PROG)
        return EXIT_USAGE
    if args.extcap_capture_filter and args.extcap_capture_filter.strip():
        sys.stderr.write("%s: capture filters are not supported by the osmo-pcap tap; leave "
                         "the capture filter empty and use a display filter\n" % PROG)
        return EXIT_USAGE
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        return capture(cfg, client, args.fifo)
    except Stopped:
        return EXIT_OK
    except TapError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return EXIT_ERROR
    except OSError as e:
        sys.stderr.write("%s: %s: %s\n" % (PROG, args.fifo, e.strerror or e))
        return EXIT_ERROR
