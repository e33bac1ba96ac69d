"""The content-addressed object store: every object once, read-only, named by its hash.

Layout: ``<root>/<first 2 hex>/<other 30 hex>``; temp files in ``<root>/.tmp/``, on the
same filesystem, so that the rename into place is atomic.

Objects are written in batches: each object is hashed while it is copied into a temp
file; at commit the batch is made durable together (one ``syncfs`` for a large batch,
an ``fsync`` per file for a small one) and only then renamed into place. So an object
name never points at bytes that a crash could lose, and many small files do not pay
one disk flush each.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..errors import CorruptObjectError, MissingObjectError
from ..fsio import TMP_PREFIX, fsync_dir, storage_error
from .hashing import copy_and_hash, hash_bytes, hash_file, hash_stream, hash_stream_while, is_hash, write_all
from .links import lease_held, may_reflink, read_lease, try_reflink

T = TypeVar("T")
READ_ONLY = 0o444
_COUNTER = itertools.count()  # temp names: pid + batch + counter are unique (next() on a count is atomic)
_BATCHES = itertools.count()
SYNCFS_BATCH = 32  # from this many objects on, one syncfs beats an fsync per file
CLONE_FROM = 1 << 20  # smaller files are copied in: for them a copy costs about what a clone does

_libc = None


def _syncfs(fd: int) -> bool:
    """Flush every dirty page of the filesystem holding ``fd``; False where unsupported."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.syncfs  # noqa: B018 - probe
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    return _libc.syncfs(fd) == 0


def size_problem(got: int, *, size: int | None = None, max_size: int | None = None) -> str | None:
    """Why an object of ``got`` bytes is not the one expected (``size`` exactly, at most
    ``max_size``), or None. ``got`` above the bound may be a lower bound: reads stop there."""
    if size is not None and got > size:
        return f"larger than the {size} bytes expected"
    if size is not None and got < size:
        return f"{got} bytes where {size} were expected"
    if max_size is not None and got > max_size:
        return f"larger than the limit of {max_size} bytes"
    return None


class ObjectStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        self._prefix = f"{self.root}{os.sep}"
        self._shards: set[str] = set()  # shard folders known to exist (commit skips their stat)

    def path(self, digest: str) -> Path:
        return Path(self.file(digest))

    def file(self, digest: str) -> str:
        """The object's path as a string: hot loops over many objects (a push, a checkout)
        spend more on pathlib's joins than on the system calls themselves."""
        return f"{self._prefix}{digest[:2]}{os.sep}{digest[2:]}"

    def exists(self, digest: str) -> bool:
        return os.path.exists(f"{self._prefix}{digest[:2]}{os.sep}{digest[2:]}")

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def read_bytes(self, digest: str) -> bytes:
        """Read a (small) object and check it against its name."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise MissingObjectError(
                f"object {digest} is not in the cache", hint="run 'mlops pull' or 'mlops fetch'", object=digest
            ) from None
        if hash_bytes(data) != digest:
            raise CorruptObjectError(
                f"object {digest} in the cache is corrupt (its bytes no longer match its hash)",
                hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
                object=digest,
            )
        return data

    def check(self, digest: str) -> bool:
        """Rehash an object; True when its bytes still match its name."""
        try:
            return hash_file(self.path(digest))[0] == digest
        except FileNotFoundError:
            return False

    def iter_digests(self) -> Iterator[str]:
        """Every object in the store (temp files and stray names skipped)."""
        try:
            shards = os.scandir(self.root)
        except FileNotFoundError:
            return
        with shards:
            for shard in shards:
                if len(shard.name) != 2 or not shard.is_dir():
                    continue
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        digest = shard.name + entry.name
                        if is_hash(digest):
                            yield digest

    def remove(self, digest: str) -> int:
        """Delete an object; returns the bytes freed."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def clean_tmp(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by interrupted writers (only old ones: a live writer may own new ones)."""
        removed = 0
        cutoff = time.time() - older_than
        for folder, _dirs, names in os.walk(self.tmp):
            for name in names:
                if not name.startswith(TMP_PREFIX):
                    continue  # only our own temp files: the folder may be shared, or chosen by someone else
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if older_than <= 0 or os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
        return removed

    def batch(self) -> ObjectBatch:
        return ObjectBatch(self)


@dataclass
class ObjectBatch:
    """Objects staged as temp files, made durable together and renamed into place at commit.

    Use as a context manager: leaving the block normally commits; an exception (Ctrl-C
    included) removes every staged temp file and publishes nothing.
    """

    store: ObjectStore
    _staged: list[tuple[str, str]] = field(default_factory=list)  # (temp path, digest)
    _last: list[tuple[str, str]] = field(default_factory=list)  # published after the others, newest first
    _staged_digests: dict[str, str] = field(default_factory=dict)  # digest -> its temp file
    _mutex: threading.Lock = field(default_factory=threading.Lock)  # batches are filled from worker threads
    _folders: set[Path] = field(default_factory=set)
    _tag: str = ""  # the name prefix of this batch's temp files, so abort can find every one
    _linked: set[str] = field(default_factory=set)  # temps that are hard links (need a chmod at commit)

    def __post_init__(self) -> None:
        self._tag = f"{TMP_PREFIX}{os.getpid()}-{next(_BATCHES)}-"

    def __enter__(self) -> ObjectBatch:
        self.store.tmp.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _new_temp(self) -> tuple[int, str]:
        """A new temp file in a folder of this thread's own: writers on several threads do not
        queue on one directory's lock (ext4 serialises entries within a folder), and a
        counter names it without mkstemp's random retries."""
        folder = self.store.tmp / f"t{threading.get_ident() % 64}"
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        temp = f"{folder}/{self._tag}{next(_COUNTER)}"
        # created read-only (the fd still writes): commit then needs no chmod per object
        return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, READ_ONLY), temp

    def _fill_temp(
        self, fill: Callable[[int], T], *, source: str | None = None, own_errors: bool = True
    ) -> tuple[T, str]:
        """A new temp file, written by ``fill(fd)``; returns what ``fill`` returned and the
        temp's path. On any error the temp file is gone, and an OSError becomes a storage
        error of the cache (unless it names ``source``: reading the user's file failed; or
        ``own_errors`` is False: a stream's reader says what failed)."""
        fd, temp = self._new_temp()
        try:
            result = fill(fd)
        except BaseException as exc:
            os.close(fd)
            os.unlink(temp)
            if own_errors and isinstance(exc, OSError) and (source is None or exc.filename != source):
                raise storage_error(exc, self.store.root) from exc
            raise
        os.close(fd)
        return result, temp

    def add_file(self, source: str | os.PathLike[str], *, clone: bool = False) -> tuple[str, int]:
        """Copy a file in, hashing it on the way (one read); returns (digest, size).

        With ``clone`` (cache.type allows reflink), a large file is reflinked in instead and
        the clone hashed, where the filesystem can: its bytes are read once, written never."""
        if clone:
            cloned = self._clone_in(source)
            if cloned is not None:
                return cloned

        def copy_in(fd: int) -> tuple[str, int]:
            with open(source, "rb", buffering=0) as src:
                return copy_and_hash(src, fd)

        (digest, size), temp = self._fill_temp(copy_in, source=str(source))
        self._stage(temp, digest)
        return digest, size

    def _clone_in(self, source: str | os.PathLike[str]) -> tuple[str, int] | None:
        """Reflink a large file into a temp file, hashing exactly the bytes cloned; None when
        that is not worth it or not possible here (the caller copies the file in).

        The hash must be of the bytes the clone holds, whatever another process does to the
        file meanwhile (through a mapping, writes change no timestamp). Under a read lease
        (``links.read_lease``) nobody can write the file: it is hashed from the page cache,
        cloned, and the hash kept if the lease held throughout. Without a lease (a writer
        has the file open, another user's file, NFS), the clone itself is hashed: private
        and read-only, so right by construction, but its pages are not the file's in the
        page cache, so that read comes from the disk.
        """
        with open(source, "rb", buffering=0) as src:
            st = os.fstat(src.fileno())
            if st.st_size < CLONE_FROM or not may_reflink(st.st_dev, str(self.store.tmp)):
                return None
            with read_lease(src.fileno()) as steady:
                hashed = hash_stream_while(src, steady) if steady() else None
                cloned, temp = self._fill_temp(lambda fd: try_reflink(src.fileno(), fd))
                if cloned and hashed is not None and not steady():
                    hashed = None  # changed before the clone: hash the clone
        if not cloned:
            os.unlink(temp)
            return None
        if hashed is None:
            try:
                with open(temp, "rb", buffering=0) as clone:
                    hashed = hash_stream(clone)
            except BaseException as exc:
                os.unlink(temp)
                if isinstance(exc, OSError):
                    raise storage_error(exc, self.store.root) from exc
                raise
        self._stage(temp, hashed[0])
        return hashed

    def add_verified(self, source: str | os.PathLike[str], expected: str) -> int:
        """Copy a file in that must hash to ``expected`` (a download, a remote object)."""
        digest, size = self.add_file(source)
        if digest != expected:
            self._drop(digest)
            raise CorruptObjectError(
                f"{source} does not match its object name {expected} (got {digest})", object=expected
            )
        return size

    def add_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.store.exists(digest) or digest in self._staged_digests:
            return digest
        _, temp = self._fill_temp(lambda fd: write_all(fd, data))
        self._stage(temp, digest)
        return digest

    def adopt_file(self, source: str | os.PathLike[str]) -> tuple[str, int] | None:
        """Hash a file and hard-link it in as its own object (cache.type hardlink): no bytes
        copied; returns (digest, size), or None when the file could change meanwhile (no
        read lease, or it broke: see ``links.read_lease``) and the caller copies it in.
        OSError when the link is refused (another device)."""
        with open(source, "rb", buffering=0) as src, read_lease(src.fileno()) as steady:
            if not steady():
                return None
            hashed = hash_stream_while(src, steady)
            if hashed is None:
                return None
            if self.store.exists(hashed[0]) or hashed[0] in self._staged_digests:
                return hashed
            # a name of its own: two identical files adopted at once must not share (and unlink) one
            temp = os.path.join(self.store.tmp, f"{self._tag}link-{next(_COUNTER)}")
            if not steady():
                return None
            os.link(source, temp)  # changes the file's ctime: from here on the lease and size tell
            linked = os.stat(temp)
            mine = os.fstat(src.fileno())
            # the path may name another file by now (renamed over: that breaks no lease)
            if (linked.st_dev, linked.st_ino) != (mine.st_dev, mine.st_ino) or not (
                lease_held(src.fileno()) and mine.st_size == hashed[1]
            ):
                os.unlink(temp)
                return None
        self._linked.add(temp)
        self._stage(temp, hashed[0])
        return hashed

    def _stage(self, temp: str, digest: str, *, last: bool = False) -> None:
        published = self.store.exists(digest)  # a system call: kept outside the lock
        with self._mutex:
            if not published and digest not in self._staged_digests:
                (self._last if last else self._staged).append((temp, digest))
                self._staged_digests[digest] = temp
                return
        os.unlink(temp)  # identical content is stored once

    def staged_bytes(self, digest: str) -> bytes | None:
        """The bytes of an object staged in this batch and not yet published (a fetched manifest)."""
        with self._mutex:
            temp = self._staged_digests.get(digest)  # a lookup: fetch asks once per manifest
        return None if temp is None else Path(temp).read_bytes()

    def add_stream(
        self,
        source: BinaryIO,
        expected: str,
        *,
        size: int | None = None,
        max_size: int | None = None,
        last: bool = False,
    ) -> int:
        """Copy a stream in (a download) that must hash to ``expected``; nothing is kept otherwise.

        ``size``: the exact length the object must have (from a manifest or pointer file);
        ``max_size``: the most it may have when its length is not known (a manifest). Either
        way at most one byte more is read: a stream longer than that is cut off and refused,
        so a hostile source can fill neither the disk nor the time. A refusal is a
        ``CorruptObjectError`` whose ``reason`` field says what was wrong, for the caller's
        message (which knows the remote and the path).

        ``last`` objects (manifests) are published after all others, the last staged first:
        fetched level by level from the top, they land children before parents."""
        limit = size if size is not None else max_size
        (digest, got), temp = self._fill_temp(lambda fd: copy_and_hash(source, fd, limit), own_errors=False)
        reason = size_problem(got, size=size, max_size=max_size)
        if reason is None and digest != expected:
            reason = f"its bytes hash to {digest}"
        if reason is not None:
            os.unlink(temp)
            raise CorruptObjectError(f"object {expected} arrived corrupt: {reason}", object=expected, reason=reason)
        self._stage(temp, digest, last=last)
        return got

    def _drop(self, digest: str) -> None:
        for index, (temp, staged) in enumerate(self._staged):
            if staged == digest:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                del self._staged[index]
                self._staged_digests.pop(digest, None)
                return

    def commit(self) -> int:
        """Make every staged object durable, then publish it under its name; returns the count."""
        staged, self._staged = [*self._staged, *reversed(self._last)], []
        self._last = []
        self._staged_digests = {}
        if not staged:
            return 0
        try:
            self._make_durable([temp for temp, _ in staged])
            touched: set[str] = set()
            known = self.store._shards
            for temp, digest in staged:
                target = self.store.file(digest)
                shard = os.path.dirname(target)
                if shard not in known:
                    if not os.path.isdir(shard):
                        os.makedirs(shard, exist_ok=True)
                        touched.add(str(self.store.root))
                    known.add(shard)
                if temp in self._linked:
                    os.chmod(temp, READ_ONLY)  # one object may serve executable and plain files alike
                try:
                    os.replace(temp, target)
                except FileNotFoundError:  # the shard went (an empty one removed meanwhile)
                    if not os.path.exists(temp):
                        raise
                    os.makedirs(shard, exist_ok=True)
                    os.replace(temp, target)
                touched.add(shard)
            self._linked = set()
            for folder in touched:
                fsync_dir(folder)
        except BaseException as exc:
            for temp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            if isinstance(exc, OSError):
                raise storage_error(exc, self.store.root) from exc
            raise
        return len(staged)

    def _make_durable(self, temps: list[str]) -> None:
        if len(temps) >= SYNCFS_BATCH:
            fd = os.open(self.store.tmp, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs(fd):
                    return
            finally:
                os.close(fd)
        for temp in temps:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def abort(self) -> None:
        staged, self._staged = [*self._staged, *self._last], []
        self._last = []
        self._staged_digests = {}
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self._sweep()

    def _sweep(self) -> None:
        """Remove any temp file of this batch that never reached the staged list: Ctrl-C can
        land between a temp file's creation and its staging (on the main thread, anywhere)."""
        for folder in (self.store.tmp, *self._folders):
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(self._tag):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
