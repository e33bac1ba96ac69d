"""The run cache: (cmd, dependency hashes, parameter values, env) -> the outputs it produced.

When a stage's key was seen before, on any branch, its outputs are restored from the
object store and the command is not run. Entries live in `.mlops/runcache/` (not in
git; `mlops gc` keeps the objects they name), one small JSON file each, written
atomically: a torn or unreadable entry is simply a miss.

An entry also names the run that produced its outputs (``run_id``, when it was recorded by a
run): a later run that restores the stage from the cache, or skips it as up to date, names
that run in its stage record, so ``register --run`` finds the run that really made a model by
a lookup instead of a search through every run. Entries written before that field have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError
from ..formats import load_json
from ..fsio import atomic_write
from ..repo.repo import Repo
from ..tracking.store import RUN_ID
from .lock import LockedPath

RUNCACHE_FORMAT = 1


@dataclass(frozen=True)
class CacheHit:
    outs: tuple[LockedPath, ...]
    run_id: str | None  # the run whose stage produced the outputs; None for older entries


def _path(repo: Repo, key: str) -> Path:
    return repo.dot / "runcache" / key[:2] / f"{key[2:]}.json"


def lookup(repo: Repo, key: str) -> tuple[LockedPath, ...] | None:
    """The outputs recorded under ``key``, if every object they name is in the cache."""
    hit = lookup_entry(repo, key)
    return hit.outs if hit else None


def lookup_entry(repo: Repo, key: str, *, need_objects: bool = True) -> CacheHit | None:
    """The entry under ``key``: its outputs (every object in the cache, unless ``need_objects``
    is false) and the run that produced them."""
    try:
        doc = load_json(_path(repo, key))
        if doc.get("format") != RUNCACHE_FORMAT:
            return None
        outs = tuple(LockedPath(o["path"], o["hash"], o["kind"], o["size"], o.get("files", 1)) for o in doc["outs"])
    except (OSError, FormatError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a cache: a damaged entry is a miss
    if need_objects and any(o.hash is None or not repo.objects.exists(o.hash) for o in outs):
        return None
    run_id = doc.get("run_id")
    return CacheHit(outs, run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else None)


def record(repo: Repo, key: str, outs: tuple[LockedPath, ...], *, run_id: str | None = None) -> None:
    path = _path(repo, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, object] = {"format": RUNCACHE_FORMAT, "outs": [o.to_doc() for o in outs]}
    if run_id:
        doc["run_id"] = run_id
    atomic_write(path, json.dumps(doc, sort_keys=True))


def all_outputs(repo: Repo) -> list[LockedPath]:
    """Every output any run-cache entry names (gc keeps their objects)."""
    found: list[LockedPath] = []
    folder = repo.dot / "runcache"
    if not folder.is_dir():
        return found
    for entry in folder.glob("*/*.json"):
        try:
            doc = load_json(entry)
            found.extend(LockedPath(o["path"], o["hash"], o["kind"], o["size"], o.get("files", 1)) for o in doc["outs"])
        except (OSError, FormatError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found
