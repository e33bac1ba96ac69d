"""A remote in a local (or mounted network) directory, laid out like the cache itself."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from ..errors import CorruptObjectError, MissingObjectError, RemoteError
from ..store.objects import ObjectBatch, ObjectStore
from .base import Remote


class LocalRemote(Remote):
    def __init__(self, name: str, url: str, path: Path) -> None:
        super().__init__(name, url)
        self.path = path
        self.store = ObjectStore(path)
        self._batch: ObjectBatch | None = None
        self._mutex = threading.Lock()

    def _check_reachable(self) -> None:
        if not self.path.parent.exists():
            raise RemoteError(
                f"remote '{self.name}' is unreachable: {self.path.parent} does not exist",
                hint="mount it or fix the URL ('mlops remote list')",
            )

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

    def upload(self, digest: str, source: Path) -> int:
        try:
            return self._uploads().add_verified(source, digest)
        except CorruptObjectError:
            raise CorruptObjectError(
                f"local object {digest} is corrupt; not pushed",
                hint="run 'mlops verify' and re-add the data it belongs to",
                object=digest,
            ) from None

    def download(self, digest: str, batch: ObjectBatch, *, last: bool = False) -> int:
        try:
            with open(self.store.path(digest), "rb", buffering=0) as source:
                return batch.add_stream(source, digest, last=last)
        except FileNotFoundError:
            self._check_reachable()
            raise MissingObjectError(
                f"object {digest} is not on remote '{self.name}'",
                hint="run 'mlops push --full' from a clone that has it",
                object=digest,
            ) from None
        except CorruptObjectError:
            raise CorruptObjectError(
                f"object {digest} on remote '{self.name}' is corrupt; not taken", object=digest
            ) from None

    def iter_digests(self) -> Iterator[str]:
        self._check_reachable()
        return self.store.iter_digests()

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
