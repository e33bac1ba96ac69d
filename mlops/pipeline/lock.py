"""`pipeline.lock`: what each stage ran with and produced, meant for git.

Stable order, one block per stage separated by a blank line, so that changes to
different stages on two branches merge without conflict. It is rewritten after each
stage that succeeds (read, update one block, atomic write, under a lock), so a later
failure never loses what finished, and two runs of disjoint stages both land.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import check_format, display_path, dump_yaml, parse_yaml, read_text
from ..fsio import atomic_write

LOCK_FILE = "pipeline.lock"
LOCK_FORMAT = 1
HEADER = "# mlops pipeline lock: what each stage ran with and produced. Written by 'mlops run'; commit it.\n"


@dataclass(frozen=True)
class LockedPath:
    path: str
    hash: str | None  # None: missing when recorded
    kind: str = "file"  # file | dir
    size: int = 0
    files: int = 1

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "hash": self.hash, "kind": self.kind, "size": self.size}
        if self.kind == "dir":
            doc["files"] = self.files
        return doc


@dataclass(frozen=True)
class LockEntry:
    cmd: str
    deps: tuple[LockedPath, ...] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> {key: value}
    env: dict[str, str | None] = field(default_factory=dict)  # name -> hash of the value
    outs: tuple[LockedPath, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cmd": self.cmd}
        if self.deps:
            doc["deps"] = [d.to_doc() for d in self.deps]
        if self.params:
            doc["params"] = {f: dict(sorted(v.items())) for f, v in sorted(self.params.items())}
        if self.env:
            doc["env"] = dict(sorted(self.env.items()))
        if self.outs:
            doc["outs"] = [o.to_doc() for o in self.outs]
        return doc


def _paths(items: Any, source: str, stage: str, section: str) -> tuple[LockedPath, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise FormatError(f"{source}: stage '{stage}': '{section}' must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or "path" not in item:
            raise FormatError(f"{source}: stage '{stage}': each '{section}' entry needs a 'path'")
        out.append(
            LockedPath(
                str(item["path"]),
                item.get("hash"),
                item.get("kind", "file"),
                int(item.get("size", 0)),
                int(item.get("files", 1)),
            )
        )
    return tuple(out)


def parse_lock(text: str, source: str) -> dict[str, LockEntry]:
    data = parse_yaml(text, source)
    if data is None:
        return {}
    check_format(data, source, supported=LOCK_FORMAT, kind="pipeline lock")
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise FormatError(f"{source}: 'stages' must be a mapping")
    out = {}
    for name, doc in stages.items():
        if not isinstance(doc, dict) or "cmd" not in doc:
            raise FormatError(
                f"{source}: stage '{name}' lacks 'cmd'", hint="delete the block; the stage will run again"
            )
        out[str(name)] = LockEntry(
            cmd=str(doc["cmd"]),
            deps=_paths(doc.get("deps"), source, name, "deps"),
            params={str(f): dict(v or {}) for f, v in (doc.get("params") or {}).items()},
            env=dict(doc.get("env") or {}),
            outs=_paths(doc.get("outs"), source, name, "outs"),
        )
    return out


def read_lock(root: Path) -> dict[str, LockEntry]:
    path = root / LOCK_FILE
    try:
        text = read_text(path, what="lock file")
    except FileNotFoundError:
        return {}
    return parse_lock(text, display_path(path))


def render_lock(entries: dict[str, LockEntry], order: list[str]) -> str:
    """Stages in pipeline order, a blank line between blocks. Blocks of stages the pipeline
    no longer has (renamed, removed) are dropped: their outputs are nobody's any more."""
    known = [n for n in order if n in entries]
    parts = [HEADER + dump_yaml({"format": LOCK_FORMAT}) + "stages:\n"]
    for name in known:
        block = dump_yaml({name: entries[name].to_doc()})
        parts.append("".join("  " + line + "\n" for line in block.splitlines()))
    return "\n".join(parts)


def write_lock(root: Path, entries: dict[str, LockEntry], order: list[str]) -> None:
    atomic_write(root / LOCK_FILE, render_lock(entries, order))
