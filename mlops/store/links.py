"""Workspace links: put an object at a workspace path by reflink, hardlink, symlink or copy.

``cache.type`` lists the kinds to try in order. A kind refused between two filesystems
(no reflink on ext4, no hardlink across devices) is remembered for that pair of devices
for the rest of the process, and the next kind is tried. Hardlinked and symlinked files share bytes with the cache,
so they are read-only: an in-place edit would otherwise corrupt the object.
Every placement goes through a temp name and a rename: a reader sees the old file or
the whole new one, never half of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator

from ..fsio import TMP_PREFIX
from .hashing import copy_and_hash, hash_file

LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINK_TYPES = ("reflink", "copy")
FICLONE = 0x40049409  # linux/fs.h
_REFUSED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM, errno.EMLINK}

# (kind, source device, destination device) refused once; a refusal of one file (a btrfs
# nodatacow file, say) so costs the rest a copy instead of a failed attempt each: slower, never wrong
_refused: set[tuple[str, int, int]] = set()
_folder_devices: dict[str, int] = {}  # folder -> st_dev, so that a placement costs no extra stat


def _device(folder: str) -> int:
    device = _folder_devices.get(folder)
    if device is None:
        if len(_folder_devices) > 4096:  # a long-lived process must not grow this without end
            _folder_devices.clear()
        device = _folder_devices[folder] = os.stat(folder).st_dev
    return device


def may_reflink(src_device: int, dst_folder: str) -> bool:
    """False when reflinks from ``src_device`` into ``dst_folder``'s filesystem were refused before."""
    return ("reflink", src_device, _device(dst_folder)) not in _refused


def try_reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone the bytes of one open file into another, sharing extents (nothing copied);
    False when that fails: a refusal of the filesystems is remembered for the pair of
    devices, any other error (a busy file, an I/O error flushing the source) only fails
    this file, which the caller then copies (and a real I/O error surfaces there)."""
    key = ("reflink", os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
    if key in _refused:
        return False
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _REFUSED:
            _refused.add(key)
        return False
    return True


def lease_held(fd: int) -> bool:
    """Whether our read lease on ``fd`` still holds (not broken, no break pending)."""
    return fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK


@contextlib.contextmanager
def read_lease(fd: int) -> Iterator[Callable[[], bool]]:
    """Hold a read lease on an open (read-only) file while the block runs; yields a check that
    says whether the file's bytes are still those it had when the lease was taken.

    The kernel grants the lease only when nobody has the file open for writing (a writable
    shared mapping counts), and breaks it when someone opens the file for writing or calls
    truncate(2); that process then waits until the block ends or
    /proc/sys/fs/lease-break-time passes. So while the check says yes, nothing can have
    written the file. One change gets past a lease: an open with O_TRUNC in read-only mode
    empties the file without breaking it, so the check also compares the file's size and
    ctime with those at the start. No lease is had (the check says no from the start) when
    the file is open for writing, belongs to another user, or the filesystem has no leases
    (NFS). Keep the block short and stop early when the check says no.

    The break is announced by a signal, SIGIO by default, which would end the process: it
    is set to SIGURG, which is ignored unless handled."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        start = os.fstat(fd)
        granted = True
    except (OSError, AttributeError):  # EAGAIN: a writer; EACCES: not ours; EINVAL: no leases here
        granted = False
    if not granted:
        yield lambda: False
        return

    def steady() -> bool:
        if not lease_held(fd):
            return False
        now = os.fstat(fd)
        return (now.st_size, now.st_ctime_ns) == (start.st_size, start.st_ctime_ns)

    try:
        yield steady
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)


def _reflink(src: str, dst: str) -> None:
    with open(src, "rb") as s, open(dst, "wb") as d:
        fcntl.ioctl(d.fileno(), FICLONE, s.fileno())


def _copy(src: str, dst: str) -> None:
    shutil.copyfile(src, dst)  # sendfile / copy_file_range in the kernel


def _place(kind: str, src: str, tmp: str) -> None:
    if kind == "reflink":
        _reflink(src, tmp)
    elif kind == "hardlink":
        os.link(src, tmp)
    elif kind == "symlink":
        os.symlink(src, tmp)
    else:
        _copy(src, tmp)


def stage(
    obj_path: str, dest: str, kinds: tuple[str, ...], *, executable: bool = False, expect: str | None = None
) -> tuple[str, str]:
    """Put the object at a temp name beside ``dest``; returns (temp path, kind used).

    With ``expect``, the object's bytes are hashed on the way (while copied, for a copy)
    and a mismatch raises ``ValueError`` with no temp file left behind. The caller
    renames the temp file over ``dest`` (see ``place``).
    """
    folder = os.path.dirname(dest) or "."
    tmp = f"{folder}/{TMP_PREFIX}{os.path.basename(dest)}.{os.getpid()}.{threading.get_ident()}"
    devices = (_device(os.path.dirname(obj_path) or "."), _device(folder))
    last_error: OSError | None = None
    # an executable file cannot share the read-only, mode-less object: it gets its own copy
    candidates = [k for k in kinds if not (executable and k in ("hardlink", "symlink"))] or ["copy"]
    for kind in candidates:
        if (kind, *devices) in _refused:
            continue
        try:
            if kind == "copy" and expect is not None:
                # the common case, kept to the fewest system calls: a temp file created with
                # its final mode (O_TRUNC overwrites a stale one), one read and one write for a
                # small object, the hash of exactly the bytes written
                with open(obj_path, "rb", buffering=0) as src:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755 if executable else 0o644)
                    try:
                        digest, _ = copy_and_hash(src, fd)
                    finally:
                        os.close(fd)
                if digest != expect:
                    raise ValueError(digest)
                return tmp, kind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if expect is not None:
                digest = hash_file(obj_path)[0]
                if digest != expect:
                    raise ValueError(digest)
            _place(kind, os.path.abspath(obj_path) if kind == "symlink" else obj_path, tmp)
            if kind in ("reflink", "copy"):
                os.chmod(tmp, 0o755 if executable else 0o644)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if kind != "copy" and exc.errno in _REFUSED:
                _refused.add((kind, *devices))
                last_error = exc
                continue
            raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp, kind
    if "copy" not in candidates:  # every kind asked for was refused: a copy always works
        return stage(obj_path, dest, ("copy",), executable=executable, expect=expect)
    raise last_error or OSError(errno.EOPNOTSUPP, f"no link type of {kinds} works here")


def place(obj_path: str, dest: str, kinds: tuple[str, ...], *, executable: bool = False) -> str:
    """Put the object at ``dest``, replacing what is there; returns the kind used."""
    tmp, kind = stage(obj_path, dest, kinds, executable=executable)
    try:
        if kind == "hardlink" and os.path.lexists(dest) and os.path.samefile(tmp, dest):
            os.unlink(tmp)  # already that very file; rename() of a file onto itself would leave tmp behind
            return kind
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return kind


def is_link_kind_shared(kind: str) -> bool:
    """True for kinds whose workspace file shares its bytes with the cache object."""
    return kind in ("hardlink", "symlink")
