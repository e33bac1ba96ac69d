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

from ..errors import FormatError, UnsafeNameError
from ..formats import check_format, display_path, dump_yaml, parse_yaml, read_text
from ..fsio import atomic_write
from ..paths import check_relpath
from ..store.hashing import HASH_NAME, is_hash

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
    image: str = ""  # the container image digest (sha256:...) the stage's key had; "" without one

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cmd": self.cmd}
        if self.image:  # only when set: a lock file without images stays byte for byte as it was
            doc["image"] = self.image
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
    """A lock file's deps or outs, every field checked: the file comes through git, and an
    output's hash becomes an object path, its path a place in the workspace."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise FormatError(f"{source}: stage {stage_label(stage)}: '{section}' must be a list")
    out = []
    where = f"{source} stage {stage_label(stage)}"
    for item in items:
        if not isinstance(item, dict) or "path" not in item:
            raise FormatError(f"{source}: stage {stage_label(stage)}: each '{section}' entry needs a 'path'")
        path, digest, kind = item["path"], item.get("hash"), item.get("kind", "file")
        size, files = item.get("size", 0), item.get("files", 1)
        if not isinstance(path, str):
            raise FormatError(f"{where}: a path in '{section}' must be text, found {_short(path)}")
        if section == "outs":
            check_relpath(path, where=where)
        if digest is not None and not is_hash(digest):
            raise UnsafeNameError(
                f"refused hash {_short(digest)} of {_short(path)} in {where}: not a {HASH_NAME} hash",
                hint="pipeline.lock holds content mlops did not write; check where it came from",
                entry=path,
                source=where,
            )
        if kind not in ("file", "dir"):
            raise FormatError(f"{where}: {_short(path)}: 'kind' must be file or dir, found {_short(kind)}")
        for field_name, value in (("size", size), ("files", files)):
            if type(value) is not int or value < 0:
                raise FormatError(f"{where}: {_short(path)}: '{field_name}' must be a whole number >= 0")
        out.append(LockedPath(path, digest, kind, size, files))
    return tuple(out)


def stage_label(name: Any) -> str:
    """A stage name as a message shows it: quoted, control characters escaped (a lock file may
    name a stage anything), bounded."""
    text = str(name)
    if text.isprintable() and len(text) <= 60:
        return f"'{text}'"
    return _short(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
                f"{source}: stage {stage_label(name)} lacks 'cmd'", hint="delete the block; the stage will run again"
            )
        params = doc.get("params") or {}
        env = doc.get("env") or {}
        if not isinstance(params, dict) or not all(v is None or isinstance(v, dict) for v in params.values()):
            raise FormatError(f"{source}: stage {stage_label(name)}: 'params' must map files to mappings")
        if not isinstance(env, dict) or not all(v is None or isinstance(v, str) for v in env.values()):
            raise FormatError(f"{source}: stage {stage_label(name)}: 'env' must map names to hashes")
        image = doc.get("image") or ""
        if not isinstance(image, str) or len(image) > 100:
            raise FormatError(f"{source}: stage {stage_label(name)}: 'image' must be an image digest")
        out[str(name)] = LockEntry(
            cmd=str(doc["cmd"]),
            deps=_paths(doc.get("deps"), source, name, "deps"),
            params={str(f): dict(v or {}) for f, v in params.items()},
            env={str(k): v for k, v in env.items()},
            outs=_paths(doc.get("outs"), source, name, "outs"),
            image=image,
        )
    return out


def read_lock(root: Path) -> dict[str, LockEntry]:
    path = root / LOCK_FILE
    try:
        text = read_text(path, what="lock file")
    except FileNotFoundError:
        return {}
    return parse_lock(text, display_path(path))


def decode_lock(data: bytes, source: str) -> dict[str, LockEntry]:
    """A lock file's bytes (from git) parsed; bytes that are not UTF-8 are a FormatError."""
    return parse_lock(_text(data, source), source)


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{source}: not a text file (not UTF-8)", file=source) from None


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
