"""Experiment records and the queue, under ``.mlops/experiments/``.

```
.mlops/experiments/
  <name>.json          one experiment: its sweep, base commit, changes, params, metrics,
                       outputs by hash, the files to apply (by hash), its run, its status
  queue/<seq>-<name>.json   an experiment queued with `mlops exp queue`, waiting for `exp run --queued`
  .lock, queue/.lock   writers of records, and the one runner of the queue
  .gitignore           "*": records are local to a checkout; `mlops push --runs` shares them
```
Every file is written by ``fsio.atomic_write``: a record is there whole or not at all, so an
interrupted experiment leaves nothing. A record is read as received content: its name must be
an experiment name, its hashes object names, its paths safe relative paths (``paths``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, NewerFormatError, UsageError
from ..fsio import FileLock, atomic_write
from ..paths import relpath_problem
from ..repo.repo import Repo
from ..store.hashing import is_hash

RECORD_FORMAT = 1
FOLDER = "experiments"
QUEUE = "queue"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,79}")
SUCCEEDED, FAILED = "succeeded", "failed"
MAX_RECORD_BYTES = 16 << 20  # a record names outputs and params: KiBs; bounds what a reader parses


@dataclass(frozen=True)
class Output:
    path: str
    hash: str
    kind: str  # file | dir
    size: int
    files: int = 1

    def to_doc(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash, "kind": self.kind, "size": self.size, "files": self.files}


@dataclass(frozen=True)
class Experiment:
    """One recorded experiment (``status`` succeeded or failed)."""

    name: str
    sweep: str
    status: str
    base: str  # the commit the user's HEAD was
    commit: str  # the commit the experiment ran: ``base``, or a snapshot of the uncommitted changes over it
    changes: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)  # every param the stages read, flattened
    metrics: dict[str, Any] = field(default_factory=dict)
    outs: tuple[Output, ...] = ()  # every cached stage output, by hash
    files: dict[str, str] = field(default_factory=dict)  # path -> hash: params files, pipeline.lock, git-kept outputs
    run_id: str | None = None
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran | restored | skipped | failed ...
    created: float = 0.0
    seconds: float = 0.0
    error: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "name": self.name,
            "sweep": self.sweep,
            "status": self.status,
            "base": self.base,
            "commit": self.commit,
            "changes": self.changes,
            "params": self.params,
            "metrics": self.metrics,
            "outs": [o.to_doc() for o in self.outs],
            "files": self.files,
            "run_id": self.run_id,
            "stages": self.stages,
            "created": self.created,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def folder(repo: Repo) -> Path:
    return repo.dot / FOLDER


def check_name(name: str, *, what: str = "experiment name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UsageError(
            f"not a valid {what}: {str(name)[:60]!r}",
            hint="letters, digits, '.', '_' and '-', starting with a letter or digit, at most 80 characters",
        )
    return name


def record_path(repo: Repo, name: str) -> Path:
    return folder(repo) / f"{check_name(name)}.json"


def ensure_folder(repo: Repo) -> Path:
    """The records' folder, made with a ``.gitignore`` of ``*``: records are local to a checkout,
    like runs, and shared with ``mlops push --runs`` / ``pull --runs`` (``experiments.share``)."""
    top = folder(repo)
    top.mkdir(parents=True, exist_ok=True)
    ignore = top / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, "# experiment records are local to this checkout: share them with mlops push --runs\n*\n")
    return top


def lock(repo: Repo) -> FileLock:
    ensure_folder(repo)
    return FileLock(folder(repo) / ".lock", what="the experiment records", timeout=60)


def write(repo: Repo, experiment: Experiment) -> None:
    ensure_folder(repo)
    atomic_write(record_path(repo, experiment.name), json.dumps(experiment.to_doc(), indent=1, default=str) + "\n")


def exists(repo: Repo, name: str) -> bool:
    return record_path(repo, name).exists()


def read(repo: Repo, name: str) -> Experiment:
    path = record_path(repo, name)
    if not path.is_file():
        known = ", ".join(sorted(e.name for e in read_all(repo))[:10]) or "none yet"
        raise UsageError(f"no experiment '{name}'", hint=f"see 'mlops exp show' (experiments: {known})")
    from ..formats import load_json  # here: `exp show` reads records without it (yaml comes with formats)

    return parse(load_json(path, what="experiment record"), str(path))


def read_all(repo: Repo, warnings: list[str] | None = None) -> list[Experiment]:
    """Every readable record, oldest first; an unreadable one is skipped with a warning."""
    top = folder(repo)
    found: list[Experiment] = []
    if not top.is_dir():
        return found
    with os.scandir(top) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".json") and e.is_file(follow_symlinks=False))
    for entry in names:
        path = os.path.join(top, entry)
        try:
            # read directly (no located-error machinery): `exp show` reads a thousand of these
            with open(path, "rb") as handle:
                data = handle.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                raise FormatError(f"larger than {MAX_RECORD_BYTES >> 20} MiB")
            try:
                doc = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise FormatError(f"not JSON ({exc})") from None
            found.append(parse(doc, path))
        except (FormatError, OSError) as exc:
            if warnings is not None:
                warnings.append(f"{path}: skipped: {getattr(exc, 'message', exc)}")
    found.sort(key=lambda e: (e.created, e.name))
    return found


def parse(doc: Any, source: str) -> Experiment:
    def bad(problem: str) -> FormatError:
        return FormatError(f"{source}: not an experiment record: {problem}")

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if isinstance(doc.get("format"), int) and doc["format"] > RECORD_FORMAT:
        raise NewerFormatError(f"{source}: written by a newer mlops (format {doc['format']})", hint="upgrade mlops")
    if doc.get("format") != RECORD_FORMAT:
        raise bad(f"format {doc.get('format')!r}")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name) or os.path.basename(source) != f"{name}.json":
        raise bad("its name does not match its file")
    outs = []
    for item in doc.get("outs") or []:
        if not isinstance(item, dict) or relpath_problem(item.get("path")) or not is_hash(item.get("hash")):
            raise bad("an output is not a safe path with an object hash")
        if item.get("kind") not in ("file", "dir"):
            raise bad("an output's kind is neither file nor dir")
        outs.append(
            Output(item["path"], item["hash"], item["kind"], int(item.get("size", 0)), int(item.get("files", 1)))
        )
    files = doc.get("files") or {}
    if not isinstance(files, dict) or any(relpath_problem(p) or not is_hash(h) for p, h in files.items()):
        raise bad("'files' must map safe paths to object hashes")
    dicts = {key: doc.get(key) or {} for key in ("changes", "params", "metrics", "stages")}
    if not all(isinstance(value, dict) for value in dicts.values()):
        raise bad("changes, params, metrics and stages must be objects")
    return Experiment(
        name=name,
        sweep=str(doc.get("sweep") or ""),
        status=str(doc.get("status") or ""),
        base=str(doc.get("base") or ""),
        commit=str(doc.get("commit") or ""),
        changes=dicts["changes"],
        params=dicts["params"],
        metrics=dicts["metrics"],
        outs=tuple(outs),
        files=dict(files),
        run_id=doc.get("run_id") if isinstance(doc.get("run_id"), str) else None,
        stages={str(k): str(v) for k, v in dicts["stages"].items()},
        created=float(doc.get("created") or 0.0),
        seconds=float(doc.get("seconds") or 0.0),
        error=str(doc.get("error") or ""),
    )


def remove(repo: Repo, name: str) -> None:
    path = record_path(repo, name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise UsageError(f"no experiment '{name}'", hint="see 'mlops exp show'") from None


# --- the queue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    name: str
    sweep: str
    changes: dict[str, Any]
    path: Path  # the entry's file: removed once the experiment is recorded


def queue_folder(repo: Repo) -> Path:
    return folder(repo) / QUEUE


def queue_lock(repo: Repo, *, timeout: float | None = 60) -> FileLock:
    queue_folder(repo).mkdir(parents=True, exist_ok=True)
    return FileLock(queue_folder(repo) / ".lock", what="the experiment queue", timeout=timeout)


def enqueue(repo: Repo, entries: list[tuple[str, str, dict[str, Any]]]) -> list[Queued]:
    """Append entries (name, sweep, changes) in order; names must be new."""
    queued = []
    with queue_lock(repo):
        existing = {q.name for q in read_queue(repo)}
        seq = int(time.time() * 1000)
        for offset, (name, sweep, changes) in enumerate(entries):
            if name in existing or exists(repo, name):
                raise UsageError(f"experiment '{name}' exists already", hint="choose another --name")
            path = queue_folder(repo) / f"{seq + offset:015d}-{check_name(name)}.json"
            doc = {"format": RECORD_FORMAT, "name": name, "sweep": sweep, "changes": changes}
            atomic_write(path, json.dumps(doc, default=str) + "\n")
            queued.append(Queued(name, sweep, changes, path))
    return queued


def read_queue(repo: Repo) -> list[Queued]:
    top = queue_folder(repo)
    if not top.is_dir():
        return []
    from ..formats import load_json

    found = []
    for path in sorted(top.glob("*.json")):
        try:
            doc = load_json(path, what="queue entry")
        except (FormatError, OSError):
            continue
        name, changes = doc.get("name") if isinstance(doc, dict) else None, (doc or {}).get("changes")
        if isinstance(name, str) and NAME.fullmatch(name) and isinstance(changes, dict):
            found.append(Queued(name, str(doc.get("sweep") or ""), changes, path))
    return found


def iter_names(repo: Repo) -> Iterator[str]:
    for experiment in read_all(repo):
        yield experiment.name
