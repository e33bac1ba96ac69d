"""Workspace links: put an object at a workspace path by reflink, hardlink, symlink or copy.

``cache.type`` lists the kinds to try in order. A kind a filesystem refuses (no
reflink on ext4, no hardlink across devices) is remembered for that filesystem for the
rest of the process, and the next kind is tried. Hardlinked and symlinked files share bytes with the cache,
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
import threading

from ..fsio import TMP_PREFIX
from .hashing import copy_and_hash, hash_file

LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINK_TYPES = ("reflink", "copy")
FICLONE = 0x40049409  # linux/fs.h
_REFUSED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM, errno.EMLINK}

_refused: set[tuple[str, int]] = set()  # (kind, st_dev of the destination) refused once
_folder_devices: dict[str, int] = {}


def _device(folder: str) -> int:
    device = _folder_devices.get(folder)
    if device is None:
        device = _folder_devices[folder] = os.stat(folder).st_dev
    return device


def try_reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone the bytes of one open file into another, sharing extents (nothing copied);
    False when this filesystem refuses reflinks (remembered for the process)."""
    device = os.fstat(dst_fd).st_dev
    if ("reflink", device) in _refused:
        return False
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _REFUSED:
            _refused.add(("reflink", device))
            return False
        raise
    return True


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
    device = _device(folder)
    last_error: OSError | None = None
    # an executable file cannot share the read-only, mode-less object: it gets its own copy
    candidates = [k for k in kinds if not (executable and k in ("hardlink", "symlink"))] or ["copy"]
    for kind in candidates:
        if (kind, device) in _refused:
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
                _refused.add((kind, device))
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
