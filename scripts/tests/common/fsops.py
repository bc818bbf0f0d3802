"""System calls that coreutils does not reach, for the numbered tests (imported by their inline
python3 snippets; common/rc puts this folder on PYTHONPATH): renameat2, fallocate modes,
SEEK_DATA/SEEK_HOLE, FS_IOC_FSGETXATTR/FSSETXATTR, utimensat with UTIME_OMIT, plus `attempt`, which
prints a call's outcome as "label: ok" or "label: ENAME" so that golden outputs name errnos, never
locale-dependent messages. Single-threaded; no state.
"""
import ctypes
import errno
import fcntl
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_MODES = {
    "default": 0,
    "keep_size": FALLOC_FL_KEEP_SIZE,
    "punch_hole": FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    "zero_range": FALLOC_FL_ZERO_RANGE,
    "zero_range_keep_size": FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
}

# struct fsxattr (include/uapi/linux/fs.h): xflags, extsize, nextents, projid, cowextsize, pad[8].
_FSXATTR = struct.Struct("=IIIII8x")
FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
FS_XFLAG_DAX = 0x00008000

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def errname(exc):
    """The symbolic name of an OSError's errno (EEXIST), or its text when it has none."""
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return str(exc)


def attempt(label, fn, *args, **kwargs):
    """Calls fn; prints "label: ok" (or "label: RESULT" when show_result) or "label: ENAME".
    Returns fn's result, or None when it raised OSError."""
    show = kwargs.pop("show_result", False)
    try:
        r = fn(*args, **kwargs)
    except OSError as e:
        print(f"{label}: {errname(e)}")
        return None
    print(f"{label}: {r}" if show else f"{label}: ok")
    return r


def renameat2(old, new, flags=0):
    f = _libc.renameat2
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _check(f(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags))


def fallocate(fd, mode, offset, length):
    """fallocate(2); mode is an int or a name from FALLOC_MODES."""
    if isinstance(mode, str):
        mode = FALLOC_MODES[mode]
    f = _libc.fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _check(f(fd, mode, offset, length))


def utimensat(path, atime, mtime, follow=True):
    """utimensat(2) with (sec, nsec) pairs; nsec may be UTIME_NOW or UTIME_OMIT."""

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    times = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    f = _libc.utimensat
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    _check(f(AT_FDCWD, os.fsencode(path), ctypes.addressof(times),
             0 if follow else AT_SYMLINK_NOFOLLOW))


def fsgetxattr(path):
    """(xflags, extsize, nextents, projid, cowextsize) of path (file or directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(_FSXATTR.size)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf, True)
        return _FSXATTR.unpack(bytes(buf))
    finally:
        os.close(fd)


def fssetxflags(path, set_bits=0, clear_bits=0):
    """Read-modify-write of fsx_xflags, as xfs_io's chattr does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(_FSXATTR.size)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf, True)
        fields = list(_FSXATTR.unpack(bytes(buf)))
        fields[0] = (fields[0] | set_bits) & ~clear_bits
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, _FSXATTR.pack(*fields))
    finally:
        os.close(fd)


def has_dax_flag(path):
    return bool(fsgetxattr(path)[0] & FS_XFLAG_DAX)


def seek(fd, offset, whence):
    """lseek returning the offset, or the errno name (ENXIO) as a string."""
    try:
        return os.lseek(fd, offset, whence)
    except OSError as e:
        return errname(e)


def data_map(fd):
    """The file's data segments as [(start, end)] from SEEK_DATA/SEEK_HOLE walks."""
    size = os.fstat(fd).st_size
    out, off = [], 0
    while off < size:
        start = seek(fd, off, os.SEEK_DATA)
        if isinstance(start, str):
            break
        end = seek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        off = end
    return out


def is_zero(fd, offset, length, chunk=1 << 20):
    """True when [offset, offset+length) reads as zeros (short reads count as a failure)."""
    while length > 0:
        n = min(chunk, length)
        b = os.pread(fd, n, offset)
        if len(b) != n or b.count(0) != n:
            return False
        offset += n
        length -= n
    return True


# --- probes used by the _require_* gates: they print "ok" or the reason ---------------------------

def _probe_file(directory):
    return os.path.join(directory, f".daxfs_probe.{os.getpid()}")


def probe_xattr(namespace, directory):
    p = _probe_file(directory)
    open(p, "w").close()
    try:
        os.setxattr(p, f"{namespace}.daxfs_probe", b"1")
        return "ok"
    except OSError as e:
        return errname(e)
    finally:
        os.unlink(p)


def probe_fallocate(mode, directory):
    p = _probe_file(directory)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 65536, 0)
        fallocate(fd, mode, 4096, 8192)
        return "ok"
    except OSError as e:
        return errname(e)
    finally:
        os.close(fd)
        os.unlink(p)


def probe_seek_hole(directory):
    p = _probe_file(directory)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 1 << 20)
        os.pwrite(fd, b"x", (1 << 20) - 1)
        r = seek(fd, 0, os.SEEK_HOLE)
        return "ok" if r == 0 else f"SEEK_HOLE(0) of a leading hole gave {r}"
    finally:
        os.close(fd)
        os.unlink(p)


def probe_fsxattr_dax(directory):
    p = _probe_file(directory)
    open(p, "w").close()
    try:
        fssetxflags(p, set_bits=FS_XFLAG_DAX)
        return "ok" if has_dax_flag(p) else "the flag did not stick"
    except OSError as e:
        return errname(e)
    finally:
        os.unlink(p)


# --- FIEMAP -------------------------------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_HEADER = struct.Struct("=QQIIII")  # start, length, flags, mapped, count, reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, rsv[2], flags, rsv[3]
_FIEMAP_FLAG_NAMES = {0x800: "unwritten", 0x2000: "shared", 0x4: "delalloc"}


def fiemap(path, max_extents=512):
    """The file's extents through FS_IOC_FIEMAP (synced first): [(logical, length, {flags})]."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(_FIEMAP_HEADER.size + max_extents * _FIEMAP_EXTENT.size)
        _FIEMAP_HEADER.pack_into(buf, 0, 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, max_extents, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        mapped = _FIEMAP_HEADER.unpack_from(buf, 0)[3]
        out = []
        for i in range(mapped):
            e = _FIEMAP_EXTENT.unpack_from(buf, _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size)
            flags = {name for bit, name in _FIEMAP_FLAG_NAMES.items() if e[5] & bit}
            out.append((e[0], e[2], flags))
        return out
    finally:
        os.close(fd)


def extent_kinds(extents):
    """Extents as merged [(start, end, kind)] with kind "unwritten" or "data", so that two
    filesystems that split the same mapping differently print the same thing."""
    out = []
    for logical, length, flags in sorted(extents, key=lambda e: e[0]):
        kind = "unwritten" if "unwritten" in flags else "data"
        if out and out[-1][1] == logical and out[-1][2] == kind:
            out[-1] = (out[-1][0], logical + length, kind)
        else:
            out.append((logical, logical + length, kind))
    return out


def daxfsctl_fiemap(path, daxfsctl):
    """The same list as fiemap(), from `daxfsctl fiemap PATH --json` (FUSE does not pass
    FS_IOC_FIEMAP through). Accepts a top-level list of extents or an object with "extents";
    flags as a list of names or one comma-separated string."""
    import json
    import subprocess
    doc = json.loads(subprocess.run([daxfsctl, "fiemap", path, "--json"], check=True,
                                    capture_output=True, text=True).stdout)
    extents = doc if isinstance(doc, list) else doc["extents"]
    out = []
    for e in extents:
        flags = e.get("flags", [])
        if isinstance(flags, str):
            flags = [f for f in flags.replace(" ", ",").split(",") if f]
        out.append((e["logical"], e["length"], set(flags)))
    return out
