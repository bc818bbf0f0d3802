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


# --- reflink, dedupe, unshare, extent map and reverse map --------------------------------------
# One interface for every FSTYP: on daxfs these go through daxfsctl (the FUSE kernel forwards none
# of FICLONERANGE, FIDEDUPERANGE, FALLOC_FL_UNSHARE_RANGE, FS_IOC_FIEMAP, FS_IOC_GETFSMAP), elsewhere
# straight to the kernel. Failures raise OSError with the errno (daxfsctl's error line is mapped
# back from its strerror text), so `attempt` prints the same name on both.

FICLONERANGE = 0x4020940D   # _IOW(0x94, 13, struct file_clone_range)
FIDEDUPERANGE = 0xC0189436  # _IOWR(0x94, 54, struct file_dedupe_range)
FALLOC_FL_UNSHARE_RANGE = 0x40
FILE_DEDUPE_RANGE_DIFFERS = 1
_CLONE_RANGE = struct.Struct("=qQQQ")           # src_fd, src_offset, src_length, dest_offset
_DEDUPE_HEADER = struct.Struct("=QQHHI")        # src_offset, src_length, dest_count, rsv1, rsv2
_DEDUPE_INFO = struct.Struct("=qQQiI")          # dest_fd, dest_offset, bytes_deduped, status, rsv


def on_daxfs():
    return os.environ.get("FSTYP") == "daxfs"


def daxfsctl_path():
    return os.path.join(os.environ["DAXFS_BIN"], "daxfsctl")


# daxfsctl lines that name their error in words rather than by strerror text.
_DAXFSCTL_PHRASES = {"not on the same filesystem": errno.EXDEV}


def _errno_in(message):
    """The errno whose strerror text follows a ": " in message (the longest such text), or one of
    _DAXFSCTL_PHRASES, or None."""
    for phrase, code in _DAXFSCTL_PHRASES.items():
        if phrase in message:
            return code
    best, best_len = None, 0
    for code in errno.errorcode:
        text = os.strerror(code)
        if ": " + text in message and len(text) > best_len:
            best, best_len = code, len(text)
    return best


def daxfsctl(*args, ok=(0,)):
    """Runs daxfsctl ARGS; returns the CompletedProcess when its exit status is in ok, else raises
    OSError (errno from the error line) or RuntimeError (a line naming no errno)."""
    import subprocess
    r = subprocess.run([daxfsctl_path(), *map(str, args)], capture_output=True, text=True)
    if r.returncode in ok:
        return r
    msg = (r.stderr or r.stdout).strip()
    code = _errno_in(msg)
    if code is None:
        raise RuntimeError(f"daxfsctl {args[0]} exited {r.returncode}: {msg}")
    raise OSError(code, msg)


def reflink(src, dst, src_offset=0, dst_offset=0, length=0):
    """FICLONERANGE of src[src_offset, +length) to dst at dst_offset (length 0: to src's EOF);
    dst is created when missing. Returns nothing; raises OSError."""
    if on_daxfs():
        daxfsctl("reflink", src, dst, "--src-offset", src_offset, "--dst-offset", dst_offset,
                 "--length", length)
        return
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.ioctl(dfd, FICLONERANGE, _CLONE_RANGE.pack(sfd, src_offset, length, dst_offset))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def dedupe(src, dst, src_offset=0, dst_offset=0, length=0):
    """FIDEDUPERANGE (repeated until the range is done, as xfs_io does). length 0 means "to src's
    EOF" (daxfsctl's documented default) and is turned into that length here on every filesystem,
    so that tests of dedupe itself do not depend on the command's default (test 036 checks it).
    Returns the bytes deduped, or "differs"; raises OSError."""
    if length == 0:
        length = max(os.stat(src).st_size - src_offset, 0)
    if on_daxfs():
        r = daxfsctl("dedupe", src, dst, "--src-offset", src_offset, "--dst-offset", dst_offset,
                     "--length", length, ok=(0, 3))
        if r.returncode == 3:
            return "differs" if r.stdout.strip() == "differs" else f"exit 3: {r.stdout.strip()}"
        words = r.stdout.split()
        return int(words[1]) if len(words) > 1 and words[0] == "deduped" else r.stdout.strip()
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR)
    done = 0
    try:
        while length > 0:
            buf = bytearray(_DEDUPE_HEADER.size + _DEDUPE_INFO.size)
            _DEDUPE_HEADER.pack_into(buf, 0, src_offset, length, 1, 0, 0)
            _DEDUPE_INFO.pack_into(buf, _DEDUPE_HEADER.size, dfd, dst_offset, 0, 0, 0)
            fcntl.ioctl(sfd, FIDEDUPERANGE, buf, True)
            _, _, n, status, _ = _DEDUPE_INFO.unpack_from(buf, _DEDUPE_HEADER.size)
            if status == FILE_DEDUPE_RANGE_DIFFERS:
                return "differs"
            if status < 0:
                raise OSError(-status, os.strerror(-status))
            if n == 0:
                break
            done += n
            src_offset += n
            dst_offset += n
            length -= n
        return done
    finally:
        os.close(sfd)
        os.close(dfd)


def unshare(path, offset=0, length=None):
    """FALLOC_FL_UNSHARE_RANGE of [offset, +length) (default: to EOF); raises OSError."""
    if on_daxfs():
        args = ["unshare", path, "--offset", offset]
        if length is not None:
            args += ["--length", length]
        daxfsctl(*args)
        return
    fd = os.open(path, os.O_RDWR)
    try:
        if length is None:
            length = os.fstat(fd).st_size - offset
        fallocate(fd, FALLOC_FL_UNSHARE_RANGE, offset, length)
    finally:
        os.close(fd)


def extents(path):
    """The file's extents, [(logical, physical, length, {flags})], flags among "shared",
    "unwritten" (and "poisoned" on daxfs); from daxfsctl fiemap --json or FS_IOC_FIEMAP (synced).
    Holes are absent."""
    import json
    if on_daxfs():
        doc = json.loads(daxfsctl("fiemap", path, "--json").stdout)
        return [(e["logical"], e["physical"], e["length"], set(e.get("flags", [])))
                for e in doc["extents"]]
    out, start, batch = [], 0, 256
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            buf = bytearray(_FIEMAP_HEADER.size + batch * _FIEMAP_EXTENT.size)
            _FIEMAP_HEADER.pack_into(buf, 0, start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC, 0, batch, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = _FIEMAP_HEADER.unpack_from(buf, 0)[3]
            last = False
            for i in range(mapped):
                e = _FIEMAP_EXTENT.unpack_from(buf, _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size)
                flags = {name for bit, name in _FIEMAP_FLAG_NAMES.items() if e[5] & bit}
                out.append((e[0], e[1], e[2], flags))
                last = last or bool(e[5] & 0x1)  # FIEMAP_EXTENT_LAST
            if mapped < batch or last:
                return out
            start = out[-1][0] + out[-1][2]
    finally:
        os.close(fd)


def layout(path_or_extents, unwritten_sharing=True):
    """The extents merged into [(start, end, kind, shared)], kind "data" or "unwritten": adjacent
    extents of the same kind and sharing are one, however a filesystem splits or places them.
    unwritten_sharing=False ignores whether unwritten extents are shared (XFS never shares them:
    a clone skips them; daxfs shares them)."""
    exts = extents(path_or_extents) if isinstance(path_or_extents, str) else path_or_extents
    out = []
    for logical, _, length, flags in sorted(exts, key=lambda e: e[0]):
        kind = "unwritten" if "unwritten" in flags else "data"
        shared = "shared" in flags and (unwritten_sharing or kind == "data")
        if out and out[-1][1] == logical and out[-1][2:] == (kind, shared):
            out[-1] = (out[-1][0], logical + length, kind, shared)
        else:
            out.append((logical, logical + length, kind, shared))
    return out


def print_layout(path, indent="  ", unwritten_sharing=True, data_only=False):
    """Prints the file's layout, one line per run: "  0K..64K data shared"; "(no extents)".
    data_only leaves out unwritten runs (where a filesystem may keep either a hole or unwritten
    blocks, which read the same)."""
    runs = [r for r in layout(path, unwritten_sharing) if not data_only or r[2] == "data"]
    for start, end, kind, shared in runs:
        print(f"{indent}{start // 1024}K..{end // 1024}K {kind}{' shared' if shared else ''}")
    if not runs:
        print(f"{indent}(no extents)")


def physical_blocks(path, block=4096):
    """{file block: device block} of the file's mapped blocks (data and unwritten)."""
    out = {}
    for logical, physical, length, _ in extents(path):
        for i in range(length // block):
            out[logical // block + i] = physical // block + i
    return out


def same_physical(a, b, a_offset=0, b_offset=0, length=None, block=4096):
    """"yes" when every block of a[a_offset, +length) is mapped to the same device block as the
    matching block of b (holes must match holes), "no" when none is, "partly" otherwise."""
    pa, pb = physical_blocks(a, block), physical_blocks(b, block)
    if length is None:
        length = os.stat(a).st_size - a_offset
    same = differ = 0
    for i in range((length + block - 1) // block):
        x, y = pa.get(a_offset // block + i), pb.get(b_offset // block + i)
        if x is None and y is None:
            continue
        if x == y:
            same += 1
        else:
            differ += 1
    return "yes" if differ == 0 and same > 0 else "no" if same == 0 else "partly"


def shared_data(a, b, block=4096):
    """The ranges [(start, end)] (same offsets in both files) where a and b map the same device
    blocks and neither maps them unwritten: where both read the same written blocks. (A
    filesystem may also keep blocks shared under another file's unwritten range, as daxfs does
    after a zero-range; that is no data sharing.)"""
    def written(path):
        out = {}
        for logical, physical, length, flags in extents(path):
            if "unwritten" not in flags:
                for i in range(length // block):
                    out[logical // block + i] = physical // block + i
        return out
    pa, pb = written(a), written(b)
    runs = []
    for i in sorted(i for i in pa if pb.get(i) == pa[i]):
        if runs and runs[-1][1] == i * block:
            runs[-1][1] += block
        else:
            runs.append([i * block, (i + 1) * block])
    return [tuple(r) for r in runs]


def file_digest(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def free_bytes(mnt, settle=True):
    """statfs free bytes after a sync; with settle, once two readings 0.2 s apart agree (XFS frees
    the blocks of unlinked files in the background), for at most 10 s."""
    import time
    os.sync()
    v = os.statvfs(mnt)
    last = v.f_bfree * v.f_frsize
    for _ in range(50 if settle else 0):
        time.sleep(0.2)
        os.sync()
        v = os.statvfs(mnt)
        now = v.f_bfree * v.f_frsize
        if now == last:
            break
        last = now
    return last


# --- the reverse map ---------------------------------------------------------------------------

FS_IOC_GETFSMAP = 0xC0C0583B  # _IOWR('X', 59, struct fsmap_head)
_FSMAP_HEAD = struct.Struct("=IIII48x")         # iflags, oflags, count, entries, reserved[6]
_FSMAP_REC = struct.Struct("=IIQQQQ24x")        # device, flags, physical, owner, offset, length
FMR_OF_PREALLOC, FMR_OF_ATTR_FORK, FMR_OF_EXTENT_MAP = 0x1, 0x2, 0x4
FMR_OF_SHARED, FMR_OF_SPECIAL_OWNER, FMR_OF_LAST = 0x8, 0x10, 0x20
_XFS_OWNERS = {(0, 1): "free", (0, 2): "unknown", (0, 3): "metadata",
               (ord("X"), 1): "superblock", (ord("X"), 2): "journal", (ord("X"), 3): "ag-metadata",
               (ord("X"), 4): "inode-btree", (ord("X"), 5): "inodes", (ord("X"), 6): "refcount",
               (ord("X"), 7): "cow", (ord("X"), 8): "defective"}


def _paths_by_inode(mnt):
    out = {}
    for root, dirs, files in os.walk(mnt):
        for name in dirs + files:
            p = os.path.join(root, name)
            out.setdefault(os.lstat(p).st_ino, "/" + os.path.relpath(p, mnt))
    out[os.stat(mnt).st_ino] = "/"
    return out


def fsmap(target, offset=None, length=None):
    """The reverse map as rows {physical, length, kind, inode, path, offset, flags}: kind "data"
    once per owner of a range, "free", or a metadata kind. From daxfsctl fsmap --json (a mount point
    or an unmounted device) or FS_IOC_GETFSMAP (XFS with rmapbt=1; paths by walking the mount)."""
    import json
    if on_daxfs():
        args = ["fsmap", target, "--json"]
        if offset is not None:
            args += ["--offset", offset]
        if length is not None:
            args += ["--length", length]
        rows = json.loads(daxfsctl(*args).stdout)["rows"]
        for r in rows:
            r["flags"] = set(r.get("flags") or [])
        return rows
    lo = offset or 0
    hi = 2**64 - 1 if length is None else lo + length - 1
    # XFS applies a key's physical offset only when the key names the device (0 and ~0 mean
    # "from the first device" and "to the last").
    dev = os.stat(target).st_dev
    paths = _paths_by_inode(target)
    rows, batch = [], 128
    fd = os.open(target, os.O_RDONLY)
    try:
        keys = [(dev if lo else 0, 0, lo, 0, 0, 0),
                (dev if length is not None else 0xFFFFFFFF, 0xFFFFFFFF, hi, 2**64 - 1,
                 2**64 - 1, 0)]
        while True:
            buf = bytearray(_FSMAP_HEAD.size + (2 + batch) * _FSMAP_REC.size)
            _FSMAP_HEAD.pack_into(buf, 0, 0, 0, batch, 0)
            for i, k in enumerate(keys):
                _FSMAP_REC.pack_into(buf, _FSMAP_HEAD.size + i * _FSMAP_REC.size, *k)
            fcntl.ioctl(fd, FS_IOC_GETFSMAP, buf, True)
            n = _FSMAP_HEAD.unpack_from(buf, 0)[3]
            last = None
            for i in range(n):
                rec = _FSMAP_REC.unpack_from(buf, _FSMAP_HEAD.size + (2 + i) * _FSMAP_REC.size)
                dev, flags, physical, owner, off, ln = rec
                last = rec
                row = {"physical": physical, "length": ln, "inode": 0, "path": None,
                       "offset": 0, "flags": set()}
                if flags & FMR_OF_SPECIAL_OWNER:
                    row["kind"] = _XFS_OWNERS.get((owner >> 32, owner & 0xFFFFFFFF), "metadata")
                else:
                    row["kind"] = ("extent-map" if flags & FMR_OF_EXTENT_MAP else
                                   "xattr" if flags & FMR_OF_ATTR_FORK else "data")
                    row.update(inode=owner, path=paths.get(owner), offset=off)
                    if flags & FMR_OF_SHARED:
                        row["flags"].add("shared")
                    if flags & FMR_OF_PREALLOC:
                        row["flags"].add("unwritten")
                rows.append(row)
            if n < batch or (last and last[1] & FMR_OF_LAST):
                return rows
            keys[0] = last
    finally:
        os.close(fd)


def owners_of(rows, physical, length):
    """Sorted paths of the data rows overlapping device range [physical, +length)."""
    return sorted({r["path"] or f"inode {r['inode']}" for r in rows if r["kind"] == "data"
                   and r["physical"] < physical + length and physical < r["physical"] + r["length"]})


def probe_reflink(directory):
    """ "ok" when a 2-block file in directory can be cloned and its clone's extents show "shared"."""
    a, b = _probe_file(directory), _probe_file(directory) + ".clone"
    try:
        with open(a, "wb") as f:
            f.write(b"r" * 8192)
        reflink(a, b)
        flags = set().union(*[e[3] for e in extents(b)] or [set()])
        return "ok" if "shared" in flags else f"the clone's extents are not shared ({flags})"
    except (OSError, RuntimeError) as e:
        return errname(e)
    finally:
        for p in (a, b):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def probe_fsmap(directory):
    """ "ok" when the reverse map of directory's filesystem can be read."""
    try:
        rows = fsmap(directory, 0, 1 << 20)
        return "ok" if rows else "no rows"
    except (OSError, RuntimeError) as e:
        return errname(e)
