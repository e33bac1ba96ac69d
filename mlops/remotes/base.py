"""The one interface every remote implements, and the factory that opens one from config.

A remote holds objects under the same names as the local cache. Its contract:
- ``missing`` says which of the given objects it lacks;
- ``upload`` checks the local object's bytes against its name while sending them, and
  publishes it atomically (a reader never sees a partial object);
- ``download`` streams an object into a local ``ObjectBatch``, which checks the hash on
  arrival and publishes nothing that does not match; given the size the manifest or pointer
  file records (or, for a manifest, the most it may be), it reads at most one byte more and
  refuses an object of another length (``CorruptObjectError``, exit 3);
- ``finish`` makes what was uploaded durable (local remotes) and releases resources.
Methods are called from several worker threads at once.

Beside the objects, a remote holds named **refs**: small documents under ``refs/<name>``
(e.g. ``refs/runs/<run_id>.json``, a shared experiment run). Their folder is distinct from
the objects' two-hex-digit shards, so listing objects never meets them. A ref name is
``[A-Za-z0-9._/-]`` only, with no ``..`` and no leading ``/`` (``check_ref_name``).

A ref may also be created **only if absent** (``create_ref``): exclusive create on a local
remote (a hard link of a complete temp file, which fails when the name exists), ``If-None-Match:
*`` on S3 and Azure, ``ifGenerationMatch=0`` on GCS, a hard link over SFTP. Two machines creating
the same ref leave exactly one, the first; the other learns it
lost (False) and reads the winner. That is what lets machines share one run cache without a lock
across them. ``probe_conditional_create`` checks that a store honours it (some S3-compatible
stores ignore the header and overwrite).

What a remote lists is received content: ``iter_digests`` yields only keys that are exactly
an object name, ``list_refs`` only valid ref names (anything else is skipped, never turned
into a path), and ``get_ref`` reads at most ``MAX_REF_SIZE`` bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ConfigError, CorruptObjectError, MissingObjectError, RemoteError, UsageError
from ..fsio import storage_error
from ..store.hashing import is_hash
from ..store.objects import ObjectBatch, size_problem

REFS = "refs"  # the folder (local) or key prefix (S3) of refs, beside the object shards
REF_NAME = re.compile(r"[A-Za-z0-9._/-]+")
MAX_REF_NAME = 512
# A ref is a small document (a run bundle: run.json, params, metrics): 16 MiB is far above any
# real one, and bounds what a hostile remote can make a reader hold in memory.
MAX_REF_SIZE = 16 << 20
PROBE_PREFIX = ".probe/"  # refs/.probe/<random>: written and removed by probe_conditional_create


def is_ref_name(name: object, *, prefix: bool = False) -> bool:
    """Whether ``name`` is a valid ref name (``prefix``: a name's start, which may be empty or end with '/')."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_REF_NAME
        and (REF_NAME.fullmatch(name) is not None or (prefix and name == ""))
        and ".." not in name
        and not name.startswith("/")
        and "//" not in name
        and (prefix or not name.endswith("/"))
    )


def digest_of_key(rel: str) -> str | None:
    """The object name that a key below a remote's root spells (``<2 hex>/<30 hex>``), or None.

    A listing is received content: any other key (a ref, a stranger's file) is never an object."""
    shard, _, rest = rel.partition("/")
    return shard + rest if len(shard) == 2 and "/" not in rest and is_hash(shard + rest) else None


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, each once (libraries wrap each other's)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def first_in(chain: list[BaseException], kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The first exception of ``chain`` (``error_chain``) that is one of ``kinds``, or None."""
    return next((e for e in chain if isinstance(e, kinds)), None)


def one_line(text: str) -> str:
    """A library's message as one line of a sensible length."""
    return " ".join(text.split())[:300]


def check_ref_name(name: str, *, prefix: bool = False) -> str:
    """``name`` if it is a valid ref name (``prefix``: a name's start, which may be empty or end with '/')."""
    if not is_ref_name(name, prefix=prefix):
        raise UsageError(
            f"not a valid ref name: {name!r}",
            hint="letters, digits, '.', '_', '-' and '/' only; no '..', no leading '/'",
        )
    return name


class ExactReader(ABC):
    """A remote object's body read for ``ObjectBatch.add_stream``: ``read(n)`` returns exactly ``n``
    bytes unless the body ends (``copy_and_hash`` relies on it), and never reads without a bound."""

    @abstractmethod
    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` whole, or up to the end of the body; the number of bytes read."""

    @abstractmethod
    def close(self) -> None:
        """Let the body go (best effort: never raises)."""

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("an unbounded read of a remote's answer")  # every caller says how much
        buffer = bytearray(size)
        count = self.readinto(buffer)
        return bytes(buffer[:count])


class Remote(ABC):
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @abstractmethod
    def missing(self, digests: Collection[str]) -> set[str]: ...

    @abstractmethod
    def upload(self, digest: str, source: str | os.PathLike[str]) -> int:
        """Send one local object; returns its size."""

    @abstractmethod
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
        """Fetch one object into ``batch``; returns its size.

        ``size``: the length it must have; ``max_size``: the most it may have when that is not
        known (a manifest); ``last``: a manifest, published after the rest; ``label``: where
        the snapshot names it (a path), for messages."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]: ...

    @abstractmethod
    def put_ref(self, name: str, data: bytes) -> None:
        """Write the ref ``name`` (``check_ref_name``) with ``data``, replacing any old value.

        Atomic: a reader sees the old value or the whole new one, never a part.
        """

    @abstractmethod
    def create_ref(self, name: str, data: bytes) -> bool:
        """Create the ref ``name`` with ``data`` only if it does not exist.

        True when this call created it; False when one was already there (left untouched). Atomic
        like ``put_ref``: a reader, and a racing creator, sees no ref or the whole winner's bytes.
        """

    def delete_ref(self, name: str) -> None:  # noqa: B027 - optional: only the probe uses it
        """Remove the ref ``name`` if the store allows it (best effort; absent is fine)."""

    def probe_conditional_create(self) -> bool:
        """Whether the store honours ``create_ref``: a probe ref created twice, the second refused.

        Removes the probe afterwards as far as the store allows. Errors reaching the store raise
        (``RemoteError``); the caller decides whether that is fatal.
        """
        name = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        try:
            first = self.create_ref(name, b"first")
            second = self.create_ref(name, b"second")
            return first and not second and self.get_ref(name) == b"first"
        finally:
            with contextlib.suppress(Exception):
                self.delete_ref(name)

    @abstractmethod
    def get_ref(self, name: str) -> bytes | None:
        """The value of the ref ``name``; None when the remote has no such ref."""

    @abstractmethod
    def list_refs(self, prefix: str = "") -> list[str]:
        """The names of the refs whose name starts with ``prefix`` (e.g. ``'runs/'``), sorted."""

    def check_root(self) -> None:  # noqa: B027 - a no-op unless the backend needs it
        """Raise when the remote's root is not there: a folder (``absent``), a bucket or a container
        (``no_root``); the answer is kept, so a command asks at most once.

        Read-only flows (a pull of run-cache entries or records, ``run --dry-run --remote``) call it
        first, so an absent remote is never read as an empty one."""

    def parallelism(self, jobs: int | None, local_store: Path) -> int | None:
        """How many transfers to run at once for ``-j jobs`` (None: the default)."""
        return jobs

    # transfers are local file copies, where threads help only while items wait on a disk:
    # run_parallel then measures whether they do (see parallel.run_parallel's ``adaptive``)
    local_io = False

    def finish(self) -> None:  # noqa: B027 - optional hook: a no-op unless the remote needs it
        """Make uploads durable; called once after a successful transfer."""

    def abort(self) -> None:  # noqa: B027 - optional hook: a no-op unless the remote needs it
        """Drop what was staged and not finished (Ctrl-C, an error)."""

    def describe(self) -> str:
        return f"{self.name} ({self.url})"

    def corrupt(self, digest: str, reason: str, label: str | None = None) -> CorruptObjectError:
        """The one line for an object this remote holds in a form that is refused."""
        named = f" ({label})" if label else ""
        return CorruptObjectError(
            f"object {digest}{named} on remote '{self.name}' is corrupt: {reason}; not taken",
            hint="push a good copy from a clone that has it ('mlops push --full')",
            object=digest,
            reason=reason,
            **({"path": label} if label else {}),
        )

    def receive(
        self,
        batch: ObjectBatch,
        stream: ExactReader,
        length: object,
        digest: str,
        *,
        size: int | None,
        max_size: int | None,
        last: bool,
        label: str | None,
    ) -> int:
        """Stream one object's body into ``batch`` (``download``'s contract), then close the stream.

        ``length``: the length the store announced, if it did: a wrong one is refused before the
        body is read."""
        try:
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

    # --- the messages every backend gives alike: one wording, whatever the store ---------------
    def open_local_object(self, digest: str, source: str | os.PathLike[str]) -> BinaryIO:
        """The local object to send, unbuffered (every caller reads it once, in large chunks)."""
        try:
            return open(source, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise MissingObjectError(
                f"object {digest} is not in the cache; not pushed",
                hint="run 'mlops verify' and re-add the data it belongs to",
                object=digest,
            ) from None

    def corrupt_local(self, digest: str) -> CorruptObjectError:
        """A local object whose bytes do not match its name: never sent."""
        return CorruptObjectError(
            f"local object {digest} is corrupt; not pushed",
            hint="run 'mlops verify' and re-add the data it belongs to",
            object=digest,
        )

    def not_here(self, digest: str, where: str | None = None) -> MissingObjectError:
        """An object this remote does not hold (``where``: its location, for the message)."""
        return MissingObjectError(
            f"object {digest} is not on remote '{self.name}'" + (f" ({where})" if where else ""),
            hint="run 'mlops push --full' from a clone that has it",
            object=digest,
        )

    def unreachable(self, where: str, reason: str = "") -> RemoteError:
        """No connection could be opened to ``where`` (refused, no route, a connect time-out, TLS)."""
        return RemoteError(
            f"remote '{self.name}' is unreachable: could not connect to {where}" + (f" ({reason})" if reason else ""),
            hint="check the network and the remote's URL or endpoint ('mlops remote list')",
        )

    def timed_out(self, seconds: float, where: str) -> RemoteError:
        return RemoteError(
            f"remote '{self.name}' did not answer within {seconds:g} s ({where})",
            hint="try again, or raise the remote's timeout in .mlops/config.yaml",
        )

    def broke_off(self, where: str, reason: str) -> RemoteError:
        """A connection lost after it was open (not one that could not be opened)."""
        return RemoteError(f"remote '{self.name}': the connection to {where} broke off ({reason})", hint="try again")

    def absent(self, where: object) -> RemoteError:
        """The remote's root (a folder) is not there: moved, unmounted, or never pushed to."""
        return RemoteError(
            f"remote '{self.name}' at {where} does not exist (or is not reachable)",
            hint="mount or restore it, or fix its URL ('mlops remote list', 'mlops remote modify'); "
            "a first 'mlops push' creates it",
        )

    def no_root(self, kind: str, name: str, where: str) -> RemoteError:
        """What holds the remote's folder (a bucket, a container) does not exist."""
        return RemoteError(
            f"remote '{self.name}': {kind} '{name}' does not exist at {where}",
            hint=f"create the {kind}, or fix the remote's URL ('mlops remote list')",
        )

    def ref_too_large(self, name: str) -> RemoteError:
        return RemoteError(
            f"remote '{self.name}': ref {name} is larger than {MAX_REF_SIZE >> 20} MiB; not read",
            hint="the ref was not written by mlops: check who writes to the remote",
            ref=name,
        )


def url_scheme(url: str) -> str:
    """The scheme of a remote's URL, lower case ("" for a plain path)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_folder_url(url: str) -> bool:
    """Whether a remote's URL names a folder on this machine (a path or file://): one that only
    processes seeing this file system reach (not a pod, unless it is mounted there)."""
    return url_scheme(url) in ("", "file")


def open_remote(name: str, settings: dict[str, Any], *, root: Path) -> Remote:
    """Open the remote that ``settings['url']`` names: a path or file:// URL, s3://, gs://, azure:// or ssh://.

    Each backend's module (and its library) is imported only when a remote of that kind is used."""
    url = str(settings["url"])
    scheme = url_scheme(url)
    if scheme == "s3":
        from .s3 import S3Remote  # fsspec/s3fs only when an S3 remote is used

        return S3Remote(name, url, settings)
    if scheme in ("gs", "gcs"):
        from .gcs import GCSRemote

        return GCSRemote(name, url, settings)
    if scheme in ("azure", "az"):
        from .azure import AzureRemote

        return AzureRemote(name, url, settings)
    if scheme in ("ssh", "sftp"):
        from .ssh import SSHRemote

        return SSHRemote(name, url, settings)
    if scheme and scheme != "file":
        raise ConfigError(
            f"remote '{name}': unsupported URL scheme '{scheme}://' in {url}",
            hint="use a local path, file://, s3://, gs://, azure:// or ssh://",
        )
    from .local import LocalRemote

    path = Path(url.removeprefix("file://"))
    if not path.is_absolute():
        path = (root / path).resolve()
    return LocalRemote(name, url, path)
