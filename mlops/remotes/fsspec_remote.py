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
import os
import threading
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

from ..errors import ConfigError, CorruptObjectError, MissingObjectError, MlopsError, RemoteError
from ..fsio import storage_error
from ..parallel import default_jobs
from ..store.hashing import CHUNK, is_hash
from ..store.objects import ObjectBatch, size_problem
from .base import MAX_REF_SIZE, REFS, Remote, check_ref_name, is_ref_name

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: a store that is down fails fast
DEFAULT_TIMEOUT = 60.0  # seconds without an answer (settings: timeout)
LIST_THRESHOLD = 100  # from this many digests on, `missing` lists the root instead of asking per object
SMALL_OBJECT = 8 << 20  # read whole, hashed, then sent in one request (memory per thread bounded by it)


class NotFound(RemoteError):
    """The object or ref is not there: callers turn it into MissingObjectError, None or 'missing'."""


class FsspecRemote(Remote):
    """A remote on an fsspec file system; subclasses give the file system and its atomic writes."""

    scheme = ""  # 'gs', 'azure', 'ssh': for messages
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
            if not text.startswith(start):
                continue
            shard, _, rest = text[len(start) :].partition("/")
            if len(shard) == 2 and "/" not in rest and is_hash(shard + rest):
                yield shard + rest

    def upload(self, digest: str, source: str | os.PathLike[str]) -> int:
        key = self._key(digest)
        try:
            handle = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise MissingObjectError(
                f"object {digest} is not in the cache; not pushed",
                hint="run 'mlops verify' and re-add the data it belongs to",
                object=digest,
            ) from None
        with handle:
            hasher = xxhash.xxh3_128()
            size = 0

            def check() -> None:
                if hasher.hexdigest() != digest:
                    raise CorruptObjectError(
                        f"local object {digest} is corrupt; not pushed",
                        hint="run 'mlops verify' and re-add the data it belongs to",
                        object=digest,
                    )

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
            self._check_root()
            raise MissingObjectError(
                f"object {digest} is not on remote '{self.name}' ({self.url})",
                hint="run 'mlops push --full' from a clone that has it",
                object=digest,
            ) from None
        stream = _Reader(self, handle)
        try:
            length = getattr(handle, "size", None)
            # the store says the length first: a wrong one is refused before the body is read
            reason = size_problem(length, size=size, max_size=max_size) if isinstance(length, int) else None
            if reason is None:
                try:
                    return batch.add_stream(stream, digest, size=size, max_size=max_size, last=last)  # type: ignore[arg-type]
                except CorruptObjectError as exc:
                    reason = exc.fields.get("reason") or "its bytes do not match its name"
            raise self.corrupt(digest, reason, label)
        except OSError as exc:  # the reader maps the store's errors; an OSError here is the local disk
            raise storage_error(exc, batch.store.root) from exc
        finally:
            stream.close()

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


class _Reader:
    """``read(n)`` of exactly ``n`` bytes (fewer only at the end) and ``readinto`` over an fsspec file.

    Errors of the store become one RemoteError line (an OSError would read as the local disk's)."""

    def __init__(self, remote: FsspecRemote, handle: Any) -> None:
        self.remote = remote
        self.handle = handle

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("an unbounded read of a remote's answer")  # every caller says how much
        buffer = bytearray(size)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

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

    def first(kinds: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kinds)), None)

    if first(PermissionError):
        return RemoteError(
            f"remote '{remote.name}' refused access to {remote.url}: {one_line(str(first(PermissionError)))}",
            hint="check the remote's credentials and rights ('mlops remote list')",
        )
    if found := first((ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError)):
        return unreachable(remote, one_line(str(found)))
    if first((TimeoutError, FSTimeoutError)):
        return RemoteError(
            f"remote '{remote.name}' did not answer within {remote.timeout:g} s ({remote.url})",
            hint="try again, or raise the remote's timeout in .mlops/config.yaml",
        )
    if found := first(OSError):
        return RemoteError(
            f"remote '{remote.name}' failed ({remote.url}): {type(found).__name__}: {one_line(str(found))}",
            hint="try again",
        )
    return None


def unreachable(remote: FsspecRemote, reason: str, where: str | None = None) -> RemoteError:
    return RemoteError(
        f"remote '{remote.name}' is unreachable: could not connect to {where or remote.url} ({reason})",
        hint="check the network and the remote's URL or endpoint ('mlops remote list')",
    )


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def text_setting(name: str, settings: dict[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"remote '{name}': '{key}' must be a string, found {value!r}")
    return value


def number_setting(name: str, settings: dict[str, Any], key: str, default: float, *, integer: bool = False) -> float:
    value = settings.get(key)
    if value is None:
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0 or (integer and str(number) != str(value).strip()):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"remote '{name}': '{key}' must be {kind} above 0, found {value!r}")
    return number


def missing_extra(name: str, scheme: str, extra: str, exc: ImportError) -> ConfigError:
    return ConfigError(
        f"remote '{name}': {scheme}:// needs the optional package {exc.name or extra!r}, which is not installed",
        hint=f"pip install 'mlops[{extra}]'",
    )
