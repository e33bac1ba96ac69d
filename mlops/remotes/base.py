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
from typing import Any

from ..errors import ConfigError, CorruptObjectError, RemoteError, UsageError
from ..store.objects import ObjectBatch

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


def check_ref_name(name: str, *, prefix: bool = False) -> str:
    """``name`` if it is a valid ref name (``prefix``: a name's start, which may be empty or end with '/')."""
    if not is_ref_name(name, prefix=prefix):
        raise UsageError(
            f"not a valid ref name: {name!r}",
            hint="letters, digits, '.', '_', '-' and '/' only; no '..', no leading '/'",
        )
    return name


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

    def ref_too_large(self, name: str) -> RemoteError:
        return RemoteError(
            f"remote '{self.name}': ref {name} is larger than {MAX_REF_SIZE >> 20} MiB; not read",
            hint="the ref was not written by mlops: check who writes to the remote",
            ref=name,
        )


def open_remote(name: str, settings: dict[str, Any], *, root: Path) -> Remote:
    """Open the remote that ``settings['url']`` names: a path or file:// URL, s3://, gs://, azure:// or ssh://.

    Each backend's module (and its library) is imported only when a remote of that kind is used."""
    url = str(settings["url"])
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
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
