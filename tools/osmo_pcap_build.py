# SPDX-License-Identifier: AGPL-3.0-or-later
"""The in-tree PEP 517 build backend of osmo-pcap for Python (standard library only).

pyproject.toml names this module with `backend-path = ["tools"]` and no build
requirements, so `pip install .` and `pipx install .` build without
downloading anything (setuptools or another backend would have to be fetched
into pip's isolated build environment, which fails offline). It makes:

- a pure wheel: the osmo_pcap package, console commands osmo-pcap-client,
  osmo-pcap-server, osmo-pcap-clean and osmo-pcap-extcap calling each
  program's main(), the man pages as data (share/man), the licence;
- an sdist: the package, this backend, pyproject.toml, README.md, LICENSE,
  doc/, man/ and contrib/;
- an editable wheel (PEP 660) whose .pth file puts the source tree on sys.path.

Metadata lives here, not in pyproject.toml's [project] table: CPython before
3.11 has no TOML reader. Archives are reproducible: sorted entries, fixed
times (SOURCE_DATE_EPOCH when set), normalised modes.
"""

import ast
import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "osmo-pcap-python"
DIST = "osmo_pcap_python"           # the normalised name in file names
SUMMARY = ("osmo-pcap in pure Python: distributed packet capture over TCP/TLS "
           "(capture client, central server, cleanup, Wireshark extcap)")
ENTRY_POINTS = (
    ("osmo-pcap-client", "osmo_pcap.client.main:main"),
    ("osmo-pcap-server", "osmo_pcap.server.main:main"),
    ("osmo-pcap-clean", "osmo_pcap.clean.main:main"),
    ("osmo-pcap-extcap", "osmo_pcap.extcap.main:main"),
)
CLASSIFIERS = (
    "Development Status :: 4 - Beta",
    "Environment :: No Input/Output (Daemon)",
    "Intended Audience :: System Administrators",
    "Intended Audience :: Telecommunications Industry",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3 :: Only",
    "Topic :: System :: Networking :: Monitoring",
)
SDIST_PARTS = ("pyproject.toml", "README.md", "LICENSE", "osmo_pcap", "tools/osmo_pcap_build.py",
               "doc", "man", "contrib")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def version():
    """Return __version__ of osmo_pcap/__init__.py, read without importing it."""
    with open(os.path.join(ROOT, "osmo_pcap", "__init__.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__version__":
            return ast.literal_eval(node.value)
    raise RuntimeError("no __version__ in osmo_pcap/__init__.py")


def _source_date():
    """The time stamp of archive members: SOURCE_DATE_EPOCH, else 1980-01-01."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return max(int(epoch), 315532800)
    return 315532800


def metadata():
    """Return the core metadata (PKG-INFO / METADATA) text."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    lines = ["Metadata-Version: 2.1", "Name: " + NAME, "Version: " + version(),
             "Summary: " + SUMMARY,
             "License: AGPL-3.0-or-later", "Requires-Python: >=3.6",
             "Keywords: pcap,pcapng,packet capture,osmocom,telecom,wireshark,extcap"]
    lines += ["Classifier: " + c for c in CLASSIFIERS]
    lines += ["Description-Content-Type: text/markdown", "", readme]
    return "\n".join(lines)


def package_files():
    """Return the package's files, relative to ROOT, sorted ('/' separators)."""
    out = []
    for base, dirs, files in os.walk(os.path.join(ROOT, "osmo_pcap")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                out.append(os.path.relpath(os.path.join(base, name), ROOT).replace(os.sep, "/"))
    return sorted(out)


def man_pages():
    """Return [(relative path, share/man/manN/NAME.N)] of the generated man pages."""
    out = []
    mandir = os.path.join(ROOT, "man")
    if os.path.isdir(mandir):
        for name in sorted(os.listdir(mandir)):
            m = re.match(r"^.+\.([1-8])$", name)
            if m:
                out.append(("man/" + name, "share/man/man%s/%s" % (m.group(1), name)))
    return out


def _read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def _dist_info(tag="py3-none-any"):
    """Return {name: bytes} of the .dist-info files other than RECORD."""
    eps = "[console_scripts]\n" + "".join("%s = %s\n" % e for e in ENTRY_POINTS)
    wheel = ("Wheel-Version: 1.0\nGenerator: osmo_pcap_build %s\nRoot-Is-Purelib: true\n"
             "Tag: %s\n" % (version(), tag))
    return {"METADATA": metadata().encode("utf-8"), "WHEEL": wheel.encode("ascii"),
            "entry_points.txt": eps.encode("ascii"), "top_level.txt": b"osmo_pcap\n",
            "LICENSE": _read("LICENSE")}


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(path, members):
    """Write a reproducible zip of [(name, bytes)] (RECORD is added last)."""
    info_dir = "%s-%s.dist-info" % (DIST, version())
    record = [_record_line(n, d) for n, d in members] + ["%s/RECORD,," % info_dir]
    members = list(members) + [("%s/RECORD" % info_dir,
                                ("\n".join(record) + "\n").encode("utf-8"))]
    date = time.gmtime(_source_date())[:6] if os.environ.get("SOURCE_DATE_EPOCH") else ZIP_EPOCH
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=date)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    os.replace(path + ".tmp", path)


def _wheel_members(editable=False):
    info_dir = "%s-%s.dist-info" % (DIST, version())
    data_dir = "%s-%s.data/data" % (DIST, version())
    if editable:
        members = [("%s.pth" % DIST, (ROOT + "\n").encode("utf-8"))]
    else:
        members = [(rel, _read(rel)) for rel in package_files()]
        members += [("%s/%s" % (data_dir, dest), _read(src)) for src, dest in man_pages()]
    members += [("%s/%s" % (info_dir, n), d) for n, d in sorted(_dist_info().items())]
    return members


def _wheel_name():
    return "%s-%s-py3-none-any.whl" % (DIST, version())


# ------------------------------------------------------------------ PEP 517 / 660 hooks
def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info_dir = "%s-%s.dist-info" % (DIST, version())
    target = os.path.join(metadata_directory, info_dir)
    os.makedirs(target, exist_ok=True)
    for name, data in _dist_info().items():
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)
    return info_dir


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = _wheel_name()
    _write_wheel(os.path.join(wheel_directory, name), _wheel_members())
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _wheel_name()
    _write_wheel(os.path.join(wheel_directory, name), _wheel_members(editable=True))
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (DIST, version())
    name = base + ".tar.gz"
    files = []
    for part in SDIST_PARTS:
        full = os.path.join(ROOT, part)
        if os.path.isfile(full):
            files.append(part)
            continue
        for d, dirs, names in os.walk(full):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for n in names:
                if not n.endswith((".pyc", ".tmp")):
                    files.append(os.path.relpath(os.path.join(d, n), ROOT).replace(os.sep, "/"))
    mtime = _source_date()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [("PKG-INFO", metadata().encode("utf-8"), 0o644)]
        entries += [(rel, _read(rel), 0o755 if os.access(os.path.join(ROOT, rel), os.X_OK)
                     else 0o644) for rel in sorted(set(files))]
        for rel, data, mode in entries:
            ti = tarfile.TarInfo("%s/%s" % (base, rel))
            ti.size, ti.mtime, ti.mode = len(data), mtime, mode
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            tar.addfile(ti, io.BytesIO(data))
    path = os.path.join(sdist_directory, name)
    with open(path + ".tmp", "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=mtime) as gz:
            gz.write(raw.getvalue())
    os.replace(path + ".tmp", path)
    return name
