"""What the remotes reached through a generic fsspec file system share: GCS, Azure Blob Storage, SSH/SFTP.

Each remote is a folder of that file system (``<bucket>/<prefix>``, ``<container>/<prefix>``,
``/srv/path``) laid out like the local cache: ``<root>/<first 2 hex>/<other 30 hex>`` for
objects, ``<root>/refs/<name>`` for refs. A subclass says how to build its file system, how
to publish a file atomically, how to create a ref only if absent, and how its library's errors
read as one line; the rest is here:

- ``missing``: under ``LIST_THRESHOLD`` digests one existence check each (``jobs`` at once);
  from there on one listing of the root diffed against them.
- ``upload`` reads the local object once and hashes it while sending; the object is made
  visible (``_publish``) only after the hash matched, never a part of it (a single PUT or a
  resumable/staged upload finalised last on GCS and Azure, a temp file renamed into place
  over SFTP).
- ``download`` opens the object, compares the size the store reports with the one expected
  before a byte is read, and streams it into ``ObjectBatch.add_stream`` (hash checked on
  arrival, at most one byte more than expected read). ``get_ref`` reads at most
  ``MAX_REF_SIZE`` bytes.
- What the store lists is received content: only exact object names and valid ref names are
  taken, anything else is skipped and never becomes a path.

The backends' libraries are imported when a remote of that kind is opened, never at start-up.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

from ..errors import MlopsError, RemoteError
from ..parallel import default_jobs
from ..store.hashing import CHUNK
from ..store.objects import ObjectBatch
from .base import (
    MAX_REF_SIZE,
    REFS,
    ExactReader,
    Remote,
    check_ref_name,
    digest_of_key,
    error_chain,
    first_in,
    is_ref_name,
    one_line,
)
from .settings import missing_extra, number_setting, split_bucket_url

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: a store that is down fails fast
DEFAULT_TIMEOUT = 60.0  # seconds without an answer (settings: timeout)
LIST_THRESHOLD = 100  # from this many digests on, `missing` lists the root instead of asking per object
SMALL_OBJECT = 8 << 20  # read whole, hashed, then sent in one request (memory per thread bounded by it)


class NotFound(RemoteError):
    """The object or ref is not there: callers turn it into MissingObjectError, None or 'missing'."""


class FsspecRemote(Remote):
    """A remote on an fsspec file system; subclasses give the file system and its atomic writes."""

    scheme = ""  # 'gs', 'azure', 'ssh': for messages
    extra = ""  # the optional extra that installs the backend's library: pip install 'mlops[EXTRA]'
    list_threshold = LIST_THRESHOLD
    small_object = SMALL_OBJECT

    def __init__(self, name: str, url: str, settings: dict[str, Any], root: str) -> None:
        super().__init__(name, url)
        self.settings = settings
        self.root = root.rstrip("/")
        self.jobs = int(number_setting(name, settings, "jobs", default_jobs(), integer=True))
        self.timeout = number_setting(name, settings, "timeout", DEFAULT_TIMEOUT)
        self._fs: Any = None
        self._fs_lock = threading.Lock()

    # --- names -----------------------------------------------------------------------------
    @staticmethod
    def bucket_root(name: str, url: str, kind: str) -> tuple[str, str]:
        """(``<bucket>``, the remote's root ``<bucket>/<prefix>``) of ``SCHEME://<bucket>/<prefix>``."""
        bucket, prefix = split_bucket_url(name, url, kind)
        return bucket, f"{bucket}/{prefix}" if prefix else bucket

    def library(self, module: str) -> Any:
        """The backend's library ``module``, imported now (a remote of this kind is in use), or how to install it."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise missing_extra(self.name, self.scheme, self.extra, exc) from None

    def _key(self, digest: str) -> str:
        return f"{self.root}/{digest[:2]}/{digest[2:]}"

    def _ref_key(self, name: str) -> str:
        return f"{self.root}/{REFS}/{check_ref_name(name)}"

    # --- what a backend gives --------------------------------------------------------------
    @abstractmethod
    def _make_filesystem(self) -> Any:
        """The fsspec file system, built on first use (its library imported here)."""

    @abstractmethod
    def _publish(self, key: str, chunks: Iterator[bytes], check: Callable[[], None], small: bytes | None) -> None:
        """Write ``key`` from ``chunks`` (or the whole ``small`` bytes), visible only when complete.

        ``check`` is called once every chunk has been sent and before the object becomes visible;
        when it raises, nothing is published."""

    @abstractmethod
    def _create(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if absent: True when created, False when it was there."""

    @abstractmethod
    def _translate(self, exc: BaseException) -> MlopsError | None:
        """One clear line for a library error (None: not one of the store's, a bug of ours)."""

    def _check_root(self) -> None:  # noqa: B027 - optional: a backend that can tell 'no container' says it
        """Raise a clear RemoteError when what holds the root (bucket, container) does not exist."""

    def check_root(self) -> None:
        self._check_root()

    # --- the file system ---------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        with self._fs_lock:
            if self._fs is None:
                self._fs = self._call(self._make_filesystem)
            return self._fs

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func``; a store's error becomes one MlopsError line."""
        try:
            return func(*args, **kwargs)
        except MlopsError:
            raise
        except FileNotFoundError as exc:
            raise NotFound(f"remote '{self.name}': not found: {exc}") from exc
        except Exception as exc:
            translated = self._translate(exc) or generic_error(self, exc)
            if translated is None:
                raise
            raise translated from exc

    # --- Remote ------------------------------------------------------------------------------
    def missing(self, digests: Collection[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        if len(wanted) < self.list_threshold:
            ordered = sorted(wanted)
            fs = self.fs
            with ThreadPoolExecutor(max_workers=max(1, min(self.jobs, len(ordered)))) as pool:
                found = list(pool.map(lambda d: self._call(fs.exists, self._key(d)), ordered))
            absent = {d for d, there in zip(ordered, found, strict=True) if not there}
        else:
            absent = wanted - set(self.iter_digests())
        if absent:
            self._check_root()
        return absent

    def iter_digests(self) -> Iterator[str]:
        start = f"{self.root}/"
        try:
            paths = self._call(self.fs.find, self.root)
        except NotFound:
            self._check_root()
            return
        for path in paths:
            text = str(path)
            if text.startswith(start) and (digest := digest_of_key(text[len(start) :])):
                yield digest

    def upload(self, digest: str, source: str | os.PathLike[str]) -> int:
        key = self._key(digest)
        with self.open_local_object(digest, source) as handle:
            hasher = xxhash.xxh3_128()
            size = 0

            def check() -> None:
                if hasher.hexdigest() != digest:
                    raise self.corrupt_local(digest)

            if os.fstat(handle.fileno()).st_size < self.small_object:
                data = handle.readall()
                hasher.update(data)
                check()
                self._call(self._publish, key, iter(()), check, data)
                return len(data)

            def chunks() -> Iterator[bytes]:
                nonlocal size
                while chunk := handle.read(CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
                    yield chunk

            self._call(self._publish, key, chunks(), check, None)
            return size

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
            handle = self._call(self._open_read, self._key(digest))
        except NotFound:
            self.check_root()  # a read: an absent root is an outage, not a missing object
            raise self.not_here(digest, self.url) from None
        stream = _Reader(self, handle)
        length = getattr(handle, "size", None)
        return self.receive(batch, stream, length, digest, size=size, max_size=max_size, last=last, label=label)

    def _open_read(self, key: str) -> BinaryIO:
        # no read-ahead cache: every read asks for exactly what add_stream wants, never more
        return self.fs.open(key, "rb", block_size=CHUNK, cache_type="none")  # type: ignore[no-any-return]

    # --- refs ------------------------------------------------------------------------------
    def put_ref(self, name: str, data: bytes) -> None:
        body = bytes(data)
        self._call(self._publish, self._ref_key(name), iter(()), lambda: None, body)

    def create_ref(self, name: str, data: bytes) -> bool:
        return bool(self._call(self._create, self._ref_key(name), bytes(data)))

    def delete_ref(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(self.fs.rm_file, self._ref_key(name))

    def get_ref(self, name: str) -> bytes | None:
        key = self._ref_key(name)
        try:
            handle = self._call(self._open_read, key)
        except NotFound:
            self._check_root()
            return None
        stream = _Reader(self, handle)
        try:
            length = getattr(handle, "size", None)
            if isinstance(length, int) and length > MAX_REF_SIZE:
                raise self.ref_too_large(name)
            data = stream.read(MAX_REF_SIZE + 1)  # one byte more tells a ref larger than allowed
            if len(data) > MAX_REF_SIZE:
                raise self.ref_too_large(name)
            return data
        finally:
            stream.close()

    def list_refs(self, prefix: str = "") -> list[str]:
        check_ref_name(prefix, prefix=True)
        base = f"{self.root}/{REFS}/"
        folder = base + prefix.rpartition("/")[0] if "/" in prefix else base.rstrip("/")
        try:
            paths = self._call(self.fs.find, folder)
        except NotFound:
            paths = []
        if not paths:
            self._check_root()  # no refs, or no bucket or container (some stores list one as empty)
            return []
        names: list[str] = []
        for path in paths:
            text = str(path)
            ref = text[len(base) :] if text.startswith(base) else ""
            # a name that is not a valid ref name (or a writer's temp file) was not written by mlops: skipped
            if ref.startswith(prefix) and is_ref_name(ref) and not ref.rpartition("/")[2].startswith(".tmp-"):
                names.append(ref)
        return sorted(names)

    def describe(self) -> str:
        return f"{self.name} ({self.url})"


class _Reader(ExactReader):
    """``read(n)`` of exactly ``n`` bytes (fewer only at the end) and ``readinto`` over an fsspec file.

    Errors of the store become one RemoteError line (an OSError would read as the local disk's)."""

    def __init__(self, remote: FsspecRemote, handle: Any) -> None:
        self.remote = remote
        self.handle = handle

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        count = 0
        while count < len(view):
            chunk = self.remote._call(self.handle.read, min(len(view) - count, CHUNK))
            if not chunk:
                break
            view[count : count + len(chunk)] = chunk
            count += len(chunk)
        return count

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.handle.close()


def generic_error(remote: FsspecRemote, exc: BaseException) -> MlopsError | None:
    """The errors every backend shares: refused permissions, connections that fail or break, time-outs."""
    from fsspec.exceptions import FSTimeoutError

    chain = list(error_chain(exc))

    def first(kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
        return first_in(chain, kinds)

    if first(PermissionError):
        return RemoteError(
            f"remote '{remote.name}' refused access to {remote.url}: {one_line(str(first(PermissionError)))}",
            hint="check the remote's credentials and rights ('mlops remote list')",
        )
    if found := first((ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError)):
        return remote.unreachable(remote.url, one_line(str(found)))
    if first((TimeoutError, FSTimeoutError)):
        return remote.timed_out(remote.timeout, remote.url)
    if found := first(OSError):
        return RemoteError(
            f"remote '{remote.name}' failed ({remote.url}): {type(found).__name__}: {one_line(str(found))}",
            hint="try again",
        )
    return None
