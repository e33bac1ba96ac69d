"""The run cache: (cmd, dependency hashes, parameter values, env) -> the outputs it produced.

When a stage's key was seen before, on any branch, its outputs are restored from the
object store and the command is not run. Entries live in `.mlops/runcache/` (not in
git; `mlops gc` keeps the objects they name), one small JSON file each, written
atomically: a torn or unreadable entry is simply a miss.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import FormatError
from ..formats import load_json
from ..fsio import atomic_write
from ..repo.repo import Repo
from .lock import LockedPath

RUNCACHE_FORMAT = 1


def _path(repo: Repo, key: str) -> Path:
    return repo.dot / "runcache" / key[:2] / f"{key[2:]}.json"


def lookup(repo: Repo, key: str) -> tuple[LockedPath, ...] | None:
    """The outputs recorded under ``key``, if every object they name is in the cache."""
    try:
        doc = load_json(_path(repo, key))
        if doc.get("format") != RUNCACHE_FORMAT:
            return None
        outs = tuple(LockedPath(o["path"], o["hash"], o["kind"], o["size"], o.get("files", 1)) for o in doc["outs"])
    except (OSError, FormatError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a cache: a damaged entry is a miss
    if any(o.hash is None or not repo.objects.exists(o.hash) for o in outs):
        return None
    return outs


def record(repo: Repo, key: str, outs: tuple[LockedPath, ...]) -> None:
    path = _path(repo, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"format": RUNCACHE_FORMAT, "outs": [o.to_doc() for o in outs]}, sort_keys=True))


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
