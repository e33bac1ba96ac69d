"""`mlops import dvc`: dvc.yaml -> pipeline.yaml, and dvc.lock -> pipeline.lock.

The stage vocabulary is the same, so dvc.yaml's `vars` and `stages` carry over as they
are (keys mlops does not know are dropped and named). dvc.lock's hashes are MD5, so a
stage is carried into pipeline.lock only when the workspace still matches it: every file
dependency and output re-hashed with MD5 and compared (directories by file count and
size, as DVC's .dir manifests are not in the workspace), then recorded with mlops'
own hashes and its outputs snapshotted into the cache. A stage that does not match is
left out and simply runs on the next `mlops run`.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..data.add import snapshot_path
from ..errors import UsageError
from ..formats import dump_yaml, load_yaml
from ..fsio import atomic_write
from ..repo.repo import Repo
from .lock import LOCK_FILE, LockedPath, LockEntry, write_lock
from .params import flatten
from .spec import OUT_FLAGS, PIPELINE_FILE, STAGE_KEYS, TEMPLATE_KEYS, Pipeline, load_pipeline
from .state import read_path

HEADER = "# mlops pipeline, imported from dvc.yaml by 'mlops import dvc'.\n"


@dataclass(frozen=True)
class ImportResult:
    stages: int
    lock_stages: int
    notes: tuple[str, ...] = field(default_factory=tuple)


def import_dvc(repo: Repo, *, force: bool = False) -> ImportResult:
    source = repo.root / "dvc.yaml"
    if not source.is_file():
        raise UsageError("no dvc.yaml in the repository root", hint="run this where dvc.yaml lives")
    target = repo.root / PIPELINE_FILE
    if target.exists() and not force:
        raise UsageError(f"{PIPELINE_FILE} already exists", hint="use --force to overwrite it")
    doc = load_yaml(source) or {}
    notes: list[str] = []
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("vars", "stages"):
            out[key] = value
        else:
            notes.append(f"dvc.yaml: top-level '{key}' is not imported")
    for name, body in (out.get("stages") or {}).items():
        if not isinstance(body, dict):
            continue
        allowed = STAGE_KEYS | TEMPLATE_KEYS
        definition = body.get("do") if isinstance(body.get("do"), dict) else body
        for key in list(definition):
            if key not in allowed:
                notes.append(f"stage '{name}': key '{key}' is not imported")
                del definition[key]
        for section in ("outs", "metrics", "plots"):
            _strip_output_options(name, definition.get(section), notes)
    # validate before anything is written: a pipeline.yaml mlops refuses is never left behind
    draft = repo.tmp / "import-pipeline.yaml"
    draft.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(draft, HEADER + dump_yaml(out))
    try:
        pipeline = load_pipeline(repo.root, draft)
    finally:
        draft.unlink(missing_ok=True)
    atomic_write(target, HEADER + dump_yaml(out))
    lock_stages = _import_lock(repo, pipeline, notes, force=force)
    return ImportResult(len(pipeline.stages), lock_stages, tuple(notes))


def _strip_output_options(stage: str, entries: Any, notes: list[str]) -> None:
    """Keep the output options mlops knows; DVC's plot options (x, y, template...) are dropped."""
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict) and len(entry) == 1:
            ((path, options),) = entry.items()
            if isinstance(options, dict):
                for option in [o for o in options if o not in OUT_FLAGS]:
                    notes.append(f"stage '{stage}': option '{option}' of {path} is not imported")
                    del options[option]


def _md5(path: Any) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _in_wdir(wdir: str, path: str) -> str:
    """dvc.lock writes paths relative to the stage's wdir."""
    return posixpath.normpath(posixpath.join(wdir, path)) if wdir else posixpath.normpath(path)


def _matches(repo: Repo, item: dict[str, Any], wdir: str) -> bool:
    path = repo.abs(_in_wdir(wdir, str(item.get("path", ""))))
    recorded = str(item.get("md5") or "")
    if recorded.endswith(".dir"):
        if not path.is_dir():
            return False
        files = [p for p in path.rglob("*") if p.is_file()]
        return len(files) == item.get("nfiles", len(files)) and sum(p.stat().st_size for p in files) == item.get("size")
    return path.is_file() and bool(recorded) and _md5(path) == recorded


def _flat(values: Any) -> dict[str, Any]:
    """dvc.lock keeps a section as a nested mapping; pipeline.lock compares key by key."""
    out: dict[str, Any] = {}
    for key, value in (values or {}).items():
        out.update(flatten(str(key), value))
    return out


def _import_lock(repo: Repo, pipeline: Pipeline, notes: list[str], *, force: bool) -> int:
    lock_path = repo.root / "dvc.lock"
    if not lock_path.is_file():
        return 0
    if (repo.root / LOCK_FILE).exists() and not force:
        notes.append(f"{LOCK_FILE} exists: dvc.lock not imported (use --force to replace it)")
        return 0
    stages = (load_yaml(lock_path) or {}).get("stages") or {}
    entries: dict[str, LockEntry] = {}
    for name, body in stages.items():
        stage = pipeline.stages.get(str(name))
        if stage is None:
            notes.append(f"stage '{name}' of dvc.lock is not in dvc.yaml; skipped")
            continue
        deps, outs = body.get("deps") or [], body.get("outs") or []
        if not all(_matches(repo, item, stage.wdir) for item in [*deps, *outs]):
            notes.append(f"stage '{name}': the workspace no longer matches dvc.lock; it will run")
            continue
        locked_outs = []
        for item in outs:
            pointer = snapshot_path(repo, _in_wdir(stage.wdir, str(item["path"]))).pointer
            locked_outs.append(LockedPath(pointer.target, pointer.hash, pointer.kind, pointer.size, pointer.files))
        entries[str(name)] = LockEntry(
            cmd=" && ".join(body["cmd"]) if isinstance(body.get("cmd"), list) else str(body.get("cmd", "")),
            deps=tuple(read_path(repo, _in_wdir(stage.wdir, str(item["path"]))) for item in deps),
            params={str(f): _flat(v) for f, v in (body.get("params") or {}).items()},
            outs=tuple(locked_outs),
        )
    if entries:
        write_lock(repo.root, entries, list(pipeline.stages))
    return len(entries)
