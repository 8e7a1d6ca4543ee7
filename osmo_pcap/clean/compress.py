# SPDX-License-Identifier: AGPL-3.0-or-later
"""Atomic, streaming compression of one file into NAME.gz, NAME.bz2, NAME.xz or NAME.zst.

The compressed data goes into a hidden temporary file in the same directory,
which is fsynced and then renamed to the final name; only then is the
original removed. So the final name only ever holds a complete file, and an
interrupted run leaves the original plus, at worst, a temporary file that
is_temp_name() recognises and the next run removes. Memory use is bounded by
CHUNK, whatever the file size. zstd uses compression.zstd (CPython 3.14+);
config.parse_method() refuses it on an older interpreter.
"""

import errno
import os

SUFFIX = {"gzip": "gz", "bz2": "bz2", "xz": "xz", "zstd": "zst"}
TMP_PREFIX = ".osmo-pcap-clean."
TMP_SUFFIX = ".tmp"
CHUNK = 1 << 20


class CompressError(Exception):
    """Compression could not be done; the message says why (path included)."""


def temp_name(final_name):
    """Return the temporary file name used while writing final_name."""
    return TMP_PREFIX + final_name + TMP_SUFFIX


def is_temp_name(name):
    """Tell whether name is a temporary file left by an interrupted compression."""
    return (name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)
            and len(name) > len(TMP_PREFIX) + len(TMP_SUFFIX))


def final_path(path, method):
    """Return the compressed file's path for path and method."""
    return path + "." + SUFFIX[method]


def _writer(method, raw, level, name, mtime):
    if method == "gzip":
        import gzip
        # name and mtime go into the gzip header (gzip -N restores them)
        return gzip.GzipFile(filename=name, mode="wb", compresslevel=level, fileobj=raw,
                             mtime=int(mtime))
    if method == "bz2":
        import bz2
        return bz2.BZ2File(raw, "wb", compresslevel=level)
    if method == "xz":
        import lzma
        return lzma.LZMAFile(raw, "wb", preset=level)
    if method == "zstd":
        from compression import zstd
        return zstd.ZstdFile(raw, "wb", level=level)
    raise ValueError("unknown compression method %r" % method)


def open_reader(path, method):
    """Return a binary file object that decompresses the file at path."""
    if method == "gzip":
        import gzip
        return gzip.open(path, "rb")
    if method == "bz2":
        import bz2
        return bz2.open(path, "rb")
    if method == "xz":
        import lzma
        return lzma.open(path, "rb")
    if method == "zstd":
        from compression import zstd
        return zstd.open(path, "rb")
    raise ValueError("unknown compression method %r" % method)


def same_content(src, compressed_path, method):
    """Tell whether compressed_path decompresses to exactly the bytes of src (a file object)."""
    src.seek(0)
    try:
        with open_reader(compressed_path, method) as z:
            while True:
                a = src.read(CHUNK)
                b = z.read(len(a)) if a else z.read(1)
                if a != b:
                    return False
                if not a:
                    return True
    except Exception as e:
        # corrupt or truncated data raises EOFError, OSError without errno,
        # lzma.LZMAError, zstd.ZstdError...: all mean "not the same"; a real I/O
        # error propagates
        if isinstance(e, OSError) and e.errno is not None:
            raise
        return False
    finally:
        src.seek(0)


def fsync_dir(path):
    """Make the directory entry changes in path durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def compress_file(path, method, level, src=None):
    """Compress path into path.SUFFIX atomically; remove path; return (final, in, out) sizes.

    src: an already open binary file object for path (the caller may hold a
    lock through it); opened here if None. Keeps mode, owner (when allowed),
    and atime/mtime. If the final name exists already, the original is only
    removed when the existing file holds the same data; otherwise CompressError.
    """
    directory, name = os.path.split(path)
    final = final_path(path, method)
    tmp = os.path.join(directory, temp_name(os.path.basename(final)))
    own = src is None
    if own:
        src = open(path, "rb")
    try:
        st = os.fstat(src.fileno())
        if os.path.lexists(final):
            if not same_content(src, final, method):
                raise CompressError("%s exists already and holds other data; left both alone"
                                    % final)
            os.unlink(path)
            fsync_dir(directory or ".")
            return final, st.st_size, os.lstat(final).st_size
        _remove(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                w = _writer(method, raw, level, name, st.st_mtime)
                try:
                    while True:
                        chunk = src.read(CHUNK)
                        if not chunk:
                            break
                        w.write(chunk)
                finally:
                    w.close()
                raw.flush()
                try:
                    os.fchown(raw.fileno(), st.st_uid, st.st_gid)
                except OSError:
                    pass  # not permitted for non-root: the file stays ours
                os.fchmod(raw.fileno(), st.st_mode & 0o7777)
                os.fsync(raw.fileno())
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            if os.path.lexists(final):
                raise CompressError("%s appeared while compressing; left it alone" % final)
            os.rename(tmp, final)
        except BaseException:
            try:
                _remove(tmp)
            except OSError:
                pass
            raise
        fsync_dir(directory or ".")
        os.unlink(path)
        out_size = os.lstat(final).st_size
    finally:
        if own:
            src.close()
    return final, st.st_size, out_size
