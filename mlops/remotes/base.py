"""The one interface every remote implements, and the factory that opens one from config.

A remote holds objects under the same names as the local cache. Its contract:
- ``missing`` says which of the given objects it lacks;
- ``upload`` checks the local object's bytes against its name while sending them, and
  publishes it atomically (a reader never sees a partial object);
- ``download`` streams an object into a local ``ObjectBatch``, which checks the hash on
  arrival and publishes nothing that does not match;
- ``finish`` makes what was uploaded durable (local remotes) and releases resources.
Methods are called from several worker threads at once.

Beside the objects, a remote holds named **refs**: small documents under ``refs/<name>``
(e.g. ``refs/runs/<run_id>.json``, a shared experiment run). Their folder is distinct from
the objects' two-hex-digit shards, so listing objects never meets them. A ref name is
``[A-Za-z0-9._/-]`` only, with no ``..`` and no leading ``/`` (``check_ref_name``).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from ..store.objects import ObjectBatch

REFS = "refs"  # the folder (local) or key prefix (S3) of refs, beside the object shards
REF_NAME = re.compile(r"[A-Za-z0-9._/-]+")
MAX_REF_NAME = 512


def check_ref_name(name: str, *, prefix: bool = False) -> str:
    """``name`` if it is a valid ref name (``prefix``: a name's start, which may be empty or end with '/')."""
    ok = (
        isinstance(name, str)
        and len(name) <= MAX_REF_NAME
        and (REF_NAME.fullmatch(name) is not None or (prefix and name == ""))
        and ".." not in name
        and not name.startswith("/")
        and "//" not in name
        and (prefix or not name.endswith("/"))
    )
    if not ok:
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
    def download(self, digest: str, batch: ObjectBatch, *, last: bool = False) -> int:
        """Fetch one object into ``batch`` (``last``: a manifest, published after the rest); returns its size."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]: ...

    @abstractmethod
    def put_ref(self, name: str, data: bytes) -> None:
        """Write the ref ``name`` (``check_ref_name``) with ``data``, replacing any old value.

        Atomic: a reader sees the old value or the whole new one, never a part.
        """

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


def open_remote(name: str, settings: dict[str, Any], *, root: Path) -> Remote:
    """Open the remote that ``settings['url']`` names: a path or file:// URL, or s3://."""
    url = str(settings["url"])
    if url.startswith("s3://"):
        from .s3 import S3Remote  # fsspec/s3fs only when an S3 remote is used

        return S3Remote(name, url, settings)
    if "://" in url and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"remote '{name}': unsupported URL scheme '{scheme}://' in {url}",
            hint="use a local path, file:// or s3://",
        )
    from .local import LocalRemote

    path = Path(url.removeprefix("file://"))
    if not path.is_absolute():
        path = (root / path).resolve()
    return LocalRemote(name, url, path)
