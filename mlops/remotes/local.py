"""A remote in a local (or mounted network) directory, laid out like the cache itself.

Refs live in ``<remote>/refs/<name>``, each replaced whole by ``fsio.atomic_write`` (temp
file in the same folder, fsync, rename); the object store's listing skips that folder, as it
only reads two-hex-digit shards. ``create_ref`` writes the same complete temp file and then
hard-links it to the final name, which fails with EEXIST when the name exists (also on NFS):
the one exclusive create that never shows a partial file, and that a killed writer cannot
half-do (it leaves at most a temp file, which listings skip).

Whoever else writes to the folder may plant anything, so what is read from it must be a
regular file reached without a symlink: an object or a ref that is a FIFO (whose open or
read would wait forever), a device (an endless or side-effecting read), or a symlink (even
one pointing inside the remote), or that sits in a folder that is a symlink, is refused.
The check cannot be raced: the entry is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink
fails, a FIFO opens at once) and what was opened is checked with ``fstat``; an ``lstat``
before the open keeps a device from being opened at all in the common case.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from ..errors import CorruptObjectError, RemoteError
from ..fsio import TMP_PREFIX, atomic_write, fsync_dir, storage_error
from ..store.objects import ObjectBatch, ObjectStore, size_problem
from .base import MAX_REF_SIZE, REFS, Remote, check_ref_name, is_ref_name

# errors of writing the cache, not of reading the remote
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# read-only, never following a final symlink, never waiting on a FIFO's writer
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class _NotAFile(Exception):
    """An entry of the remote that is not a regular file reached without a symlink; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @classmethod
    def of(cls, mode: int) -> _NotAFile:
        return cls(f"it is {_kind(mode)}, not a regular file")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "of an unknown kind"


def _open_regular(path: str, *, dir_fd: int | None = None) -> tuple[int, int]:
    """An fd of the regular file at ``path`` (not followed if a symlink) and its size; _NotAFile otherwise."""
    mode = os.lstat(path, dir_fd=dir_fd).st_mode
    if not stat.S_ISREG(mode):
        raise _NotAFile.of(mode)
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since the lstat
            raise _NotAFile.of(stat.S_IFLNK) from None
        raise
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):  # swapped since the lstat: what was opened is what counts
        os.close(fd)
        raise _NotAFile.of(opened.st_mode)
    return fd, opened.st_size


class LocalRemote(Remote):
    local_io = True

    def __init__(self, name: str, url: str, path: Path) -> None:
        super().__init__(name, url)
        self.path = path
        self.store = ObjectStore(path)
        self._batch: ObjectBatch | None = None
        self._mutex = threading.Lock()
        self._real_shards: set[str] = set()  # shard folders seen to be real folders, not symlinks
        self._root_seen = False  # check_root found the remote's folder

    def _check_reachable(self) -> None:
        """The folder that holds the remote's root must exist: a push creates the root, never its parents."""
        if not self.path.parent.exists():
            raise self.absent(self.path)

    def check_root(self) -> None:
        """Checked once per remote opened (one command): the root seen once stays seen."""
        if not self._root_seen:
            if not self.path.is_dir():
                raise self.absent(self.path)
            self._root_seen = True

    def parallelism(self, jobs: int | None, local_store: Path) -> int | None:
        """One stream when the remote shares a disk with the cache: copies between two folders
        of one disk gain nothing from threads, and measured here they lose (20,000 small
        objects: 3.2 s with one thread, 5.4 s with eight, from lock and journal contention).
        A remote on another device (a mount) gets the threads asked for, and run_parallel's
        adaptive mode still measures whether they pay. (Leaving the same-disk case to that
        measurement too was tried: a pull of 20,000 objects took 7.5-8.0 s against 5.6-6.5 s
        in one series of alternating runs, and no better in another: the rule stays.)"""
        try:
            same_disk = os.stat(self._existing(self.path)).st_dev == os.stat(self._existing(local_store)).st_dev
        except OSError:
            return jobs
        return 1 if same_disk else jobs

    @staticmethod
    def _existing(path: Path) -> Path:
        while not path.exists() and path != path.parent:
            path = path.parent
        return path

    def missing(self, digests: Collection[str]) -> set[str]:
        self._check_reachable()
        return {d for d in digests if not self.store.exists(d)}

    def _uploads(self) -> ObjectBatch:
        with self._mutex:
            if self._batch is None:
                self._check_reachable()
                self.path.mkdir(parents=True, exist_ok=True)
                self._batch = self.store.batch().__enter__()
            return self._batch

    def upload(self, digest: str, source: str | os.PathLike[str]) -> int:
        try:
            return self._uploads().add_verified(source, digest)
        except CorruptObjectError:
            raise self.corrupt_local(digest) from None

    def download(
        self,
        digest: str,
        batch: ObjectBatch,
        *,
        size: int | None = None,
        max_size: int | None = None,
        last: bool = False,
        label: str | None = None,
    ) -> int:
        try:
            fd, length = self._open_object(digest)
        except (FileNotFoundError, NotADirectoryError):
            self.check_root()  # an absent remote is not one that lacks this object
            raise self.not_here(digest) from None
        except _NotAFile as exc:
            raise self.corrupt(digest, exc.reason, label) from None
        except OSError as exc:
            raise RemoteError(
                f"remote '{self.name}': cannot read object {digest}: {exc.strerror or exc}", object=digest
            ) from exc
        with open(fd, "rb", buffering=0) as source:
            # the length is known before a byte is read: a wrong one is refused at once
            reason = size_problem(length, size=size, max_size=max_size)
            if reason is None:
                try:
                    return batch.add_stream(source, digest, size=size, max_size=max_size, last=last)
                except CorruptObjectError as exc:
                    reason = exc.fields.get("reason") or "its bytes do not match its name"
                except OSError as exc:
                    if exc.errno in _WRITE_ERRNOS:  # the cache's disk
                        raise storage_error(exc, batch.store.root) from exc
                    raise RemoteError(
                        f"remote '{self.name}': cannot read object {digest}: {exc.strerror or exc}", object=digest
                    ) from exc
        raise self.corrupt(digest, reason, label)

    def _open_object(self, digest: str) -> tuple[int, int]:
        shard = os.path.join(self.path, digest[:2])
        if shard not in self._real_shards:
            mode = os.lstat(shard).st_mode
            if not stat.S_ISDIR(mode):
                raise _NotAFile(f"its folder {digest[:2]} is {_kind(mode)}, not a real folder")
            self._real_shards.add(shard)
        return _open_regular(self.store.file(digest))

    def iter_digests(self) -> Iterator[str]:
        self._check_reachable()
        return self.store.iter_digests()

    # --- refs ------------------------------------------------------------------------------
    def _ref_path(self, name: str) -> Path:
        return self.path / REFS / check_ref_name(name)

    def _ref_folder(self, name: str, path: Path) -> None:
        """Make ``path``'s folder, refusing one that is a symlink: followed, a ref written by this
        machine would land wherever someone with access to the remote pointed it (reads refuse
        such folders too: ``_open_ref``)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, path.parent) from exc
        folder = self.path / REFS
        for part in [REFS, *name.split("/")[:-1]]:
            folder = self.path / part if part == REFS else folder / part
            if folder.is_symlink():
                raise RemoteError(
                    f"remote '{self.name}': ref {name} is refused: its folder {folder.name} is a symlink, "
                    "not a real folder; not written",
                    hint="the folder was not made by mlops: check who writes to the remote",
                    ref=name,
                )

    def put_ref(self, name: str, data: bytes) -> None:
        path = self._ref_path(name)
        self._check_reachable()
        self._ref_folder(name, path)
        atomic_write(path, data)

    def create_ref(self, name: str, data: bytes) -> bool:
        import tempfile  # only writers need it

        path = self._ref_path(name)
        self._check_reachable()
        self._ref_folder(name, path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
        except OSError as exc:
            raise storage_error(exc, path.parent) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK):
                    raise RemoteError(
                        f"remote '{self.name}': {self.path} does not support hard links, "
                        f"so a ref cannot be created exclusively ({exc.strerror or exc})",
                        hint="put the remote on a file system with hard links (ext4, xfs, NFS), or use S3",
                    ) from exc
                raise
            fsync_dir(path.parent)
            return True
        except OSError as exc:
            raise storage_error(exc, path) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def delete_ref(self, name: str) -> None:
        path = self._ref_path(name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):  # the probe's folder, once empty
            path.parent.rmdir()

    def probe_conditional_create(self) -> bool:
        """As every remote's, leaving no folder the probe created (a remote added, never pushed to, stays absent)."""
        created = [p for p in (self.path, self.path / REFS) if not p.exists()]
        try:
            return super().probe_conditional_create()
        finally:
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty

    def get_ref(self, name: str) -> bytes | None:
        check_ref_name(name)
        try:
            fd, _length = self._open_ref(name)
        except (FileNotFoundError, NotADirectoryError):
            self._check_reachable()
            return None
        except _NotAFile as exc:
            raise RemoteError(
                f"remote '{self.name}': ref {name} is refused: {exc.reason}; not read",
                hint="the ref was not written by mlops: check who writes to the remote",
                ref=name,
            ) from None
        except OSError as exc:
            raise RemoteError(f"remote '{self.name}': cannot read ref {name}: {exc.strerror or exc}") from exc
        try:
            with open(fd, "rb", buffering=0) as handle:
                data = handle.read(MAX_REF_SIZE + 1)
        except OSError as exc:
            raise RemoteError(f"remote '{self.name}': cannot read ref {name}: {exc.strerror or exc}") from exc
        if len(data) > MAX_REF_SIZE:
            raise self.ref_too_large(name)
        return data

    def _open_ref(self, name: str) -> tuple[int, int]:
        """Open ``refs/<name>`` one folder at a time, each opened without following a symlink."""
        *folders, file = [REFS, *name.split("/")]
        dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            for folder in folders:
                try:
                    inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise _NotAFile(f"its folder {folder} is a symlink, not a real folder") from None
                    raise
                os.close(dir_fd)
                dir_fd = inner
            return _open_regular(file, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def list_refs(self, prefix: str = "") -> list[str]:
        check_ref_name(prefix, prefix=True)
        self._check_reachable()
        base = self.path / REFS
        start = base / prefix.rpartition("/")[0] if "/" in prefix else base
        names: list[str] = []
        try:
            for folder, dirs, files in os.walk(start):
                dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
                rel = Path(folder).relative_to(base).as_posix()
                for file in files:
                    if file.startswith(TMP_PREFIX):
                        continue  # an interrupted writer's temp file
                    ref = file if rel == "." else f"{rel}/{file}"
                    # a name that is not a valid ref name was not written by mlops: skipped
                    if ref.startswith(prefix) and is_ref_name(ref):
                        names.append(ref)
        except OSError as exc:
            raise RemoteError(f"remote '{self.name}': cannot list refs: {exc.strerror or exc}") from exc
        return sorted(names)

    def finish(self) -> None:
        with self._mutex:
            batch, self._batch = self._batch, None
        if batch is not None:
            batch.commit()

    def abort(self) -> None:
        with self._mutex:
            batch, self._batch = self._batch, None
        if batch is not None:
            batch.abort()
