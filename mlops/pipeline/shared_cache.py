"""The run cache shared through a remote: ``remote_lookup`` and ``publish`` (design 14, contract 2).

TRANSITIONAL: contract 2 puts these two in ``runcache.py`` (owned by the p14-cache branch).
When that module has them, they are used as they are; until then this module holds an
implementation written to the same contract, so ``stage exec`` can be built and tested.
The integrator removes the fallback once both branches are merged.

Layout: the entry for key K is the ref ``runcache/<K[:2]>/<K[2:]>.json`` whose bytes are exactly
the local entry document. Created with ``Remote.create_ref`` (a conditional create): when two
machines publish one key, one entry stands and both adopt it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import FormatError, MlopsError, RemoteError
from ..formats import parse_json
from ..paths import check_tracked_path
from ..remotes.base import Remote
from ..repo.repo import Repo
from ..store.hashing import is_hash
from ..tracking.store import RUN_ID
from . import runcache
from .lock import LockedPath

MAX_ENTRY_SIZE = 1 << 20  # an entry lists a stage's outputs by hash: a few KiB


def entry_ref(key: str) -> str:
    return f"runcache/{key[:2]}/{key[2:]}.json"


def entry_bytes(outs: tuple[LockedPath, ...], run_id: str | None) -> bytes:
    """The local entry document, byte for byte (``runcache.record``)."""
    doc: dict[str, object] = {"format": runcache.RUNCACHE_FORMAT, "outs": [o.to_doc() for o in outs]}
    if run_id:
        doc["run_id"] = run_id
    return json.dumps(doc, sort_keys=True).encode()


def parse_entry(data: bytes, source: str) -> runcache.CacheHit | None:
    """A received entry, every field checked; anything malformed is a miss (None), never a path."""
    if len(data) > MAX_ENTRY_SIZE:
        return None
    try:
        doc = parse_json(data, source)
        if not isinstance(doc, dict) or doc.get("format") != runcache.RUNCACHE_FORMAT:
            return None
        items = doc["outs"]
        if not isinstance(items, list):
            return None
        outs = []
        for item in items:
            path, digest, kind = item["path"], item["hash"], item.get("kind", "file")
            size, files = item.get("size", 0), item.get("files", 1)
            check_tracked_path(path, where=source)
            if not is_hash(digest) or kind not in ("file", "dir"):
                return None
            if type(size) is not int or type(files) is not int or size < 0 or files < 0:
                return None
            outs.append(LockedPath(path, digest, kind, size, files))
    except (MlopsError, FormatError, KeyError, TypeError, AttributeError):
        return None
    run_id = doc.get("run_id")
    return runcache.CacheHit(tuple(outs), run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else None)


def _remote_lookup(remote: Remote, key: str) -> runcache.CacheHit | None:
    data = remote.get_ref(entry_ref(key))
    return None if data is None else parse_entry(data, f"remote '{remote.name}' run-cache entry {key}")


@dataclass(frozen=True)
class _Published:
    hit: runcache.CacheHit
    created: bool  # False: another machine's entry stood; ``hit`` is that one


def _publish(
    repo: Repo, remote: Remote, key: str, outs: tuple[LockedPath, ...], *, run_id: str | None = None
) -> _Published:
    """Create the entry for ``key`` unless one is there (the objects are already on the remote);
    the entry that stands is recorded in the local run cache too."""
    created = remote.create_ref(entry_ref(key), entry_bytes(outs, run_id))
    if created:
        hit = runcache.CacheHit(outs, run_id)
    else:
        winner = _remote_lookup(remote, key)
        if winner is None:
            raise RemoteError(
                f"remote '{remote.name}': the run-cache entry for key {key} exists but cannot be used",
                hint="the entry was not written by mlops: check who writes to the remote",
                key=key,
            )
        hit = winner
    runcache.record(repo, key, hit.outs, run_id=hit.run_id)
    return _Published(hit, created)


remote_lookup = getattr(runcache, "remote_lookup", _remote_lookup)
publish = getattr(runcache, "publish", _publish)
