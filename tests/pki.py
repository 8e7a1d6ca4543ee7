# SPDX-License-Identifier: AGPL-3.0-or-later
"""Generate a throw-away test PKI with the `openssl` command.

make_pki(directory) writes, with EC P-256 keys (fast to generate):

  ca.pem                  the test CA
  server.pem/.key         CN=server.test, SAN DNS:server.test, DNS:localhost, IP:127.0.0.1
  client1.pem/.key        CN=client1, SAN DNS:client1.example
  client2.pem/.key        CN=client2
  revoked.pem/.key        CN=revoked, revoked in crl.pem
  crl.pem                 CRL of the test CA listing "revoked"
  expired.pem/.key        CN=expired, SAN DNS:localhost, IP:127.0.0.1, valid in 2020 only
  other-ca.pem            a second, unrelated CA
  other-client1.pem/.key  CN=client1 issued by the other CA
  other-server.pem/.key   like server.pem, issued by the other CA
  both.pem                client1 certificate and key in one file
  encrypted.key           client1's key, encrypted with a passphrase
  empty.pem, garbage.pem  files with no PEM object

and returns a dict mapping those names (without extension for pairs:
"server" -> (cert, key)) to paths. shared_pki() builds one per process.
"""

import atexit
import os
import shutil
import subprocess
import tempfile

_CA_CNF = """\
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = %(dir)s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/cert.pem
private_key = $dir/key.pem
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = any_policy
unique_subject = no
copy_extensions = none
[ any_policy ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_EXT = """\
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
%s
"""


class PKIError(Exception):
    pass


def _openssl(*args, **kw):
    p = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, **kw)
    if p.returncode:
        raise PKIError("openssl %s failed: %s" % (" ".join(args), p.stderr[-1000:]))
    return p.stdout


def _new_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)


def _make_ca(root, name, cn):
    d = os.path.join(root, name + "-db")
    os.makedirs(os.path.join(d, "newcerts"))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "crlnumber"), "w") as f:
        f.write("01\n")
    cnf = os.path.join(d, "ca.cnf")
    with open(cnf, "w") as f:
        f.write(_CA_CNF % {"dir": d})
    _new_key(os.path.join(d, "key.pem"))
    _openssl("req", "-config", cnf, "-new", "-x509", "-key", os.path.join(d, "key.pem"),
             "-subj", "/CN=" + cn, "-days", "3650", "-extensions", "v3_ca",
             "-out", os.path.join(d, "cert.pem"))
    shutil.copy(os.path.join(d, "cert.pem"), os.path.join(root, name + ".pem"))
    return cnf


def _issue(root, cnf, name, cn, san=None, dates=None):
    key = os.path.join(root, name + ".key")
    csr = os.path.join(root, name + ".csr")
    cert = os.path.join(root, name + ".pem")
    ext = os.path.join(root, name + ".ext")
    _new_key(key)
    _openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
    with open(ext, "w") as f:
        f.write(_LEAF_EXT % ("subjectAltName = " + san if san else ""))
    validity = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "3650"]
    _openssl("ca", "-batch", "-notext", "-config", cnf, "-in", csr, "-out", cert,
             "-extfile", ext, "-extensions", "leaf", *validity)
    return cert, key


def make_pki(root):
    """Create the test PKI in directory root; return the name -> path(s) dict."""
    out = {"dir": root}
    cnf = _make_ca(root, "ca", "osmo-pcap test CA")
    out["ca"] = os.path.join(root, "ca.pem")
    server_san = "DNS:server.test, DNS:localhost, IP:127.0.0.1"
    out["server"] = _issue(root, cnf, "server", "server.test", server_san)
    out["client1"] = _issue(root, cnf, "client1", "client1", "DNS:client1.example")
    out["client2"] = _issue(root, cnf, "client2", "client2")
    out["revoked"] = _issue(root, cnf, "revoked", "revoked")
    out["expired"] = _issue(root, cnf, "expired", "expired", "DNS:localhost, IP:127.0.0.1",
                            dates=("20200101000000Z", "20200201000000Z"))
    _openssl("ca", "-batch", "-config", cnf, "-revoke", out["revoked"][0])
    out["crl"] = os.path.join(root, "crl.pem")
    _openssl("ca", "-batch", "-config", cnf, "-gencrl", "-out", out["crl"])

    other = _make_ca(root, "other-ca", "unrelated test CA")
    out["other-ca"] = os.path.join(root, "other-ca.pem")
    out["other-client1"] = _issue(root, other, "other-client1", "client1")
    out["other-server"] = _issue(root, other, "other-server", "server.test", server_san)

    out["both"] = os.path.join(root, "both.pem")
    with open(out["both"], "w") as f:
        for p in out["client1"]:
            with open(p) as src:
                f.write(src.read())
    out["encrypted"] = os.path.join(root, "encrypted.key")
    _openssl("pkey", "-in", out["client1"][1], "-aes256", "-passout", "pass:secret",
             "-out", out["encrypted"])
    out["empty"] = os.path.join(root, "empty.pem")
    open(out["empty"], "w").close()
    out["garbage"] = os.path.join(root, "garbage.pem")
    with open(out["garbage"], "w") as f:
        f.write("this is not a certificate\n")
    return out


_SHARED = {}


def shared_pki():
    """Return one PKI per process (made on first use, removed at exit)."""
    if "pki" not in _SHARED:
        root = tempfile.mkdtemp(prefix="osmo-pcap-pki-")
        atexit.register(shutil.rmtree, root, True)
        _SHARED["pki"] = make_pki(root)
    return _SHARED["pki"]


if __name__ == "__main__":
    import sys
    import json
    print(json.dumps(make_pki(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()),
                     indent=1))
