"""The one interface every remote implements, and the factory that opens one from config.

A remote holds objects under the same names as the local cache. Its contract:
- ``missing`` says which of the given objects it lacks;
- ``upload`` checks the local object's bytes against its name while sending them, and
  publishes it atomically (a reader never sees a partial object);
- ``download`` streams an object into a local ``ObjectBatch``, which checks the hash on
  arrival and publishes nothing that does not match;
- ``finish`` makes what was uploaded durable (local remotes) and releases resources.
Methods are called from several worker threads at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.objects import ObjectBatch


class Remote(ABC):
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @abstractmethod
    def missing(self, digests: Collection[str]) -> set[str]: ...

    @abstractmethod
    def upload(self, digest: str, source: Path) -> int:
        """Send one local object; returns its size."""

    @abstractmethod
    def download(self, digest: str, batch: ObjectBatch, *, last: bool = False) -> int:
        """Fetch one object into ``batch`` (``last``: a manifest, published after the rest); returns its size."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]: ...

    def finish(self) -> None:
        """Make uploads durable; called once after a successful transfer."""

    def abort(self) -> None:
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
