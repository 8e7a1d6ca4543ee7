# SPDX-License-Identifier: AGPL-3.0-or-later
"""Read the TLS keys of the configuration and build ssl contexts from them.

read_client_tls()        a client's [server NAME] section -> ClientTLS or None
read_server_tls()        the server's [server] section    -> ServerTLS or None
read_client_entry_tls()  a server's client entry          -> ClientEntryTLS
read_tap_tls()           the server's [server] section    -> ssl context of the live tap

The results are plain values (an ssl.SSLContext holds the loaded files);
the programs build their tls.TLSTransport objects from them. The config
readers import this module only when a section sets a tls* key, so a
configuration without TLS never loads ssl.

Every problem a user can cause (missing or unreadable file, no certificate in
it, key not matching the certificate, encrypted key, empty CA or CRL file)
is a ConfigError naming the key and the file. Relative paths are taken from
the directory of the config file.
"""

import os
import re
import ssl

from osmo_pcap import log
from osmo_pcap.ini import parse_bool, parse_duration, resolve_path

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
MIN_VERSIONS = ("1.2", "1.3")
CLIENT_AUTH_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                     "required": ssl.CERT_REQUIRED}
ENTRY_MODES = ("no", "yes", "required")
MAX_PEM_FILE = 16 << 20  # read no more of a configured file (a CA bundle is < 1 MiB)

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_CRL = b"-----BEGIN X509 CRL-----"
_PEM_KEY_RE = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_PEM_ENCRYPTED_RE = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")
_HASHED_NAME_RE = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")  # names made by `openssl rehash`


class ClientTLS(object):
    """TLS settings of one [server NAME] section of the client."""

    def __init__(self, context, hostname, verify):
        self.context = context
        self.hostname = hostname  # SNI, and the name checked when verify is on
        self.verify = verify


class ServerTLS(object):
    """TLS settings of the server's [server] section."""

    def __init__(self, context, client_auth, handshake_timeout):
        self.context = context
        self.client_auth = client_auth  # "none", "optional" or "required"
        self.handshake_timeout = handshake_timeout


class ClientEntryTLS(object):
    """TLS rules of one client entry of the server."""

    def __init__(self, name, mode, identity, any_ip, certificates):
        self.name = name
        self.mode = mode                  # "no", "yes" (TLS or plain) or "required"
        self.identity = identity          # name the certificate must carry
        self.any_ip = any_ip              # the entry matches every source address
        self.certificates = certificates  # the server asks clients for certificates


# ------------------------------------------------------------------ value parsers
def _choice(values):
    def parse(text):
        t = text.strip().lower()
        if t not in values:
            raise ValueError("expected one of %s, got %r" % (", ".join(values), text))
        return t
    return parse


def _path_parser(section):
    base = os.path.dirname(os.path.abspath(section.path)) if section.path else os.getcwd()
    return lambda text: resolve_path(base, text)


def _positive_duration(text):
    v = parse_duration(text)
    if v <= 0:
        raise ValueError("must be more than 0 seconds: %r" % text)
    return v


# ------------------------------------------------------------------ context helpers
def _read_file(section, key, path):
    try:
        with open(path, "rb") as f:
            return f.read(MAX_PEM_FILE)
    except OSError as e:
        raise section.error(key, "cannot read %s: %s" % (path, e.strerror or e))


def _set_min_version(section, ctx, version):
    if version == "1.3" and not getattr(ssl, "HAS_TLSv1_3", hasattr(ssl, "OP_NO_TLSv1_3")):
        raise section.error("tls_min_version", "this Python/OpenSSL has no TLS 1.3")
    if hasattr(ssl, "TLSVersion") and hasattr(ctx, "minimum_version"):
        ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if version == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
    else:  # Python 3.6: switch the older versions off instead
        ctx.options |= ssl.OP_NO_SSLv3 | ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
        if version == "1.3":
            ctx.options |= ssl.OP_NO_TLSv1_2


def _set_ciphers(section, ctx, ciphers):
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise section.error("tls_ciphers", "no usable cipher in %r (OpenSSL cipher "
                                "list syntax; it applies to TLS 1.2)" % ciphers)


def _load_ca(section, key, ctx, path):
    """Load trust anchors from a PEM file or an `openssl rehash` directory."""
    if os.path.isdir(path):
        try:
            names = os.listdir(path)
        except OSError as e:
            raise section.error(key, "cannot read directory %s: %s" % (path, e.strerror))
        if not any(_HASHED_NAME_RE.match(n) for n in names):
            raise section.error(key, "directory %s has no hashed certificate names "
                                "(run `openssl rehash %s`)" % (path, path))
        ctx.load_verify_locations(capath=path)
        return
    if _PEM_CERT not in _read_file(section, key, path):
        raise section.error(key, "no PEM certificate in %s (empty or not PEM)" % path)
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        raise section.error(key, "cannot load CA certificates from %s: %s"
                            % (path, e.reason or e))


def _load_crl(section, key, ctx, path):
    if _PEM_CRL not in _read_file(section, key, path):
        raise section.error(key, "no PEM CRL in %s (empty or not PEM)" % path)
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        raise section.error(key, "cannot load the CRL from %s: %s" % (path, e.reason or e))
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


class _Encrypted(Exception):
    pass


def _no_password():
    raise _Encrypted()  # without this callback OpenSSL would prompt on the terminal


def _load_cert_chain(section, ctx, cert, key, cert_key="tls_cert", key_key="tls_key"):
    """Load our certificate and key; key None means it is in the certificate file."""
    key_file_key = key_key if key else cert_key
    key = key or cert
    if _PEM_CERT not in _read_file(section, cert_key, cert):
        raise section.error(cert_key, "no PEM certificate in %s" % cert)
    key_pem = _read_file(section, key_file_key, key)
    if _PEM_ENCRYPTED_RE.search(key_pem):
        raise section.error(key_file_key, "the private key in %s is encrypted; "
                            "passphrase-protected keys are not supported" % key)
    if not _PEM_KEY_RE.search(key_pem):
        raise section.error(key_file_key, "no PEM private key in %s%s" % (
            key, " (set tls_key)" if key == cert else ""))
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except _Encrypted:
        raise section.error(key_file_key, "the private key in %s is encrypted; "
                            "passphrase-protected keys are not supported" % key)
    except ssl.SSLError as e:
        if getattr(e, "reason", None) == "KEY_VALUES_MISMATCH":
            raise section.error(key_file_key, "the private key in %s does not match the "
                                "certificate in %s" % (key, cert))
        raise section.error(key_file_key, "cannot load certificate %s with key %s: %s"
                            % (cert, key, getattr(e, "reason", None) or e))
    except OSError as e:
        raise section.error(key_file_key, "cannot read %s: %s" % (key, e.strerror or e))


# ------------------------------------------------------------------ readers
def read_client_tls(section, default_hostname=None):
    """Read the tls keys of a client's [server NAME] section; ClientTLS or None (off).

    default_hostname (the section's host) is what tls_hostname defaults to.
    """
    path = _path_parser(section)
    enabled = section.get("tls", parse_bool, False)
    ca = section.get("tls_ca", path)
    verify = section.get("tls_verify", parse_bool, True)
    hostname = section.get("tls_hostname", None, default_hostname)
    cert = section.get("tls_cert", path)
    key = section.get("tls_key", path)
    ciphers = section.get("tls_ciphers")
    min_version = section.get("tls_min_version", _choice(MIN_VERSIONS), "1.2")
    if not enabled:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _set_min_version(section, ctx, min_version)
    _set_ciphers(section, ctx, ciphers)
    if verify:
        if not hostname:
            raise section.error("tls_hostname", "needed to verify the server certificate "
                                "(or set tls_verify = no)")
        ctx.check_hostname = True
        if ca:
            _load_ca(section, "tls_ca", ctx, ca)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.get("tls").warning(
            "%s [%s]: tls_verify = no: the server certificate is not checked; the "
            "traffic is encrypted, but anyone on the path can pose as the server",
            section.path, section.name)
    if key and not cert:
        raise section.error("tls_key", "set tls_cert too (the client certificate)")
    if cert:
        _load_cert_chain(section, ctx, cert, key)
    return ClientTLS(ctx, hostname, verify)


def read_server_tls(section):
    """Read the tls keys of the server's [server] section; ServerTLS or None (no TLS)."""
    path = _path_parser(section)
    cert = section.get("tls_cert", path)
    key = section.get("tls_key", path)
    ca = section.get("tls_ca", path)
    crl = section.get("tls_crl", path)
    client_auth = section.get("tls_client_auth", _choice(tuple(CLIENT_AUTH_MODES)), "none")
    ciphers = section.get("tls_ciphers")
    min_version = section.get("tls_min_version", _choice(MIN_VERSIONS), "1.2")
    timeout = section.get("tls_handshake_timeout", _positive_duration,
                          DEFAULT_HANDSHAKE_TIMEOUT)
    if not cert:
        for k in ("tls_key", "tls_ca", "tls_crl", "tls_client_auth", "tls_ciphers",
                  "tls_min_version", "tls_handshake_timeout"):
            if section.has(k):
                raise section.error("tls_cert", "missing: TLS needs the server certificate "
                                    "(%s is set)" % k)
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_min_version(section, ctx, min_version)
    _set_ciphers(section, ctx, ciphers)
    if hasattr(ctx, "num_tickets"):
        ctx.num_tickets = 0  # clients never resume; unread tickets only risk a reset
    _load_cert_chain(section, ctx, cert, key)
    if client_auth != "none":
        if not ca:
            raise section.error("tls_client_auth", "needs tls_ca (the CA that issues the "
                                "client certificates)")
        _load_ca(section, "tls_ca", ctx, ca)
        if crl:
            _load_crl(section, "tls_crl", ctx, crl)
        ctx.verify_mode = CLIENT_AUTH_MODES[client_auth]
    else:
        for k in ("tls_ca", "tls_crl"):
            if section.has(k):
                raise section.error(k, "only used with tls_client_auth = optional or "
                                    "required")
    return ServerTLS(ctx, client_auth, timeout)


def read_tap_tls(section):
    """Return the server-side ssl context of the live tap (tap_tls = yes).

    The tap presents the [server] certificate (tls_cert, tls_key) with the same
    tls_min_version and tls_ciphers; with tap_tls_ca every viewer must present a
    certificate issued by that CA (doc/hooks.md#tap-tls).
    """
    path = _path_parser(section)
    cert = section.get("tls_cert", path)
    key = section.get("tls_key", path)
    ca = section.get("tap_tls_ca", path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_min_version(section, ctx, section.get("tls_min_version", _choice(MIN_VERSIONS), "1.2"))
    _set_ciphers(section, ctx, section.get("tls_ciphers"))
    if hasattr(ctx, "num_tickets"):
        ctx.num_tickets = 0
    _load_cert_chain(section, ctx, cert, key)
    if ca:
        _load_ca(section, "tap_tls_ca", ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def read_client_entry_tls(section, client_name, server_tls=None, any_ip=False):
    """Read tls and tls_identity of a server's client entry; return ClientEntryTLS.

    server_tls is read_server_tls()'s result; any_ip says the entry has ip = any,
    which is allowed only when the entry demands a certificate identity.
    """
    mode = section.get("tls", _choice(ENTRY_MODES), "no")
    identity = section.get("tls_identity", None, client_name)
    certificates = server_tls is not None and server_tls.client_auth != "none"
    if mode != "no" and server_tls is None:
        raise section.error("tls", "the server has no TLS: set tls_cert and tls_key in "
                            "[server]")
    if section.has("tls_identity") and not (mode != "no" and certificates):
        raise section.error("tls_identity", "only checked with tls = yes or required here "
                            "and tls_client_auth = optional or required in [server]")
    if any_ip and not (mode == "required" and certificates):
        raise section.error("ip", "ip = any needs a certificate identity: set tls = "
                            "required here and tls_client_auth = optional or required "
                            "in [server]")
    return ClientEntryTLS(client_name, mode, identity, any_ip, certificates)
