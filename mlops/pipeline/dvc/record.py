"""``.mlops/dvc-import.json``: what `mlops import dvc` carried, and which data is still to come.

A pointer file needs the data's mlops hash, which only the data itself gives. So the import
writes pointer files for data that is here (in the workspace, or brought by ``--data``), and
records every DVC-tracked path with its md5 here; ``status``, ``dag`` and ``run --dry-run``
read this record to say which of them is still missing. Pointer-file validation is untouched:
nothing but a real mlops hash ever goes into a pointer file. The record is committed with the
project (``.mlops/`` keeps only caches out of git), so a fresh clone knows the same.

It also keeps, for the record, dvc.yaml's top-level ``params``, ``metrics``, ``plots`` and
``artifacts`` sections as written (pipeline.yaml carries them, rebased, and the commands read
them from there) and the plot/artifact options of outputs, each with the folder (``base``)
its paths are relative to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import FormatError, NewerFormatError
from ...formats import parse_json, read_bytes
from ...fsio import atomic_write
from ...repo.repo import Repo

RECORD_NAME = "dvc-import.json"
RECORD_FORMAT = 1
HINT = "run 'mlops import dvc --data' to bring it from DVC's cache or remote"


@dataclass(frozen=True)
class MissingData:
    path: str
    where: str  # the .dvc file (or dvc.lock) entry that names it, file:line
    kind: str  # "data" (a .dvc file) or "out" (a stage output recorded in dvc.lock)

    @property
    def message(self) -> str:
        what = "tracked by DVC" if self.kind == "data" else "a stage output DVC recorded"
        return f"{self.path}: {what} ({self.where}), not in the workspace: {HINT}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "where": self.where, "kind": self.kind, "hint": HINT}


def record_path(repo: Repo) -> Path:
    return repo.dot / RECORD_NAME


def read_record(repo: Repo) -> dict[str, Any] | None:
    path = record_path(repo)
    if not path.is_file():
        return None
    source = f".mlops/{RECORD_NAME}"
    try:
        # bounded: a record nested past the depth limit is refused, not a RecursionError
        doc = parse_json(read_bytes(path, source=source), source)
    except FileNotFoundError:  # removed since the check above
        return None
    except FormatError as exc:
        raise FormatError(exc.message, hint="run 'mlops import dvc' again", file=source) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), int):
        raise FormatError(f".mlops/{RECORD_NAME}: no format number", hint="run 'mlops import dvc' again")
    if doc["format"] > RECORD_FORMAT:
        raise NewerFormatError(
            f".mlops/{RECORD_NAME} has format {doc['format']}; this mlops reads up to {RECORD_FORMAT}",
            hint="upgrade mlops",
        )
    return doc


def render_record(doc: dict[str, Any]) -> str:
    return json.dumps({"format": RECORD_FORMAT, **doc}, indent=2, sort_keys=False) + "\n"


def write_record(repo: Repo, doc: dict[str, Any]) -> None:
    atomic_write(record_path(repo), render_record(doc))


def missing_data(repo: Repo) -> list[MissingData]:
    """DVC-tracked paths the import recorded that are neither in the workspace nor tracked by mlops yet.

    Read-only and cheap (one stat per path); no record, nothing missing.
    """
    doc = read_record(repo)
    if doc is None:
        return []
    out = []
    for entry in doc.get("data") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        rel = entry["path"]
        if entry.get("carried") or (repo.root / rel).exists() or (repo.root / (rel + ".mlops")).exists():
            continue  # here, or tracked by mlops (then status and pull speak for it)
        out.append(MissingData(rel, str(entry.get("where", "")), str(entry.get("kind", "data"))))
    return out


def recorded_paths(root: Path) -> list[str]:
    """Every DVC-tracked path the import recorded (for the pipeline graph: data that will come)."""
    source = f".mlops/{RECORD_NAME}"
    try:
        doc = parse_json(read_bytes(root / ".mlops" / RECORD_NAME, source=source), source)
    except (OSError, FormatError):  # the graph only draws what will come; status and import name the damage
        return []
    entries = doc.get("data") if isinstance(doc, dict) else None
    return [e["path"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("path"), str)]
