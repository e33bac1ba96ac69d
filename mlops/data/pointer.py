"""Pointer files: `<path>.mlops`, the small YAML file git tracks in place of the data.

```yaml
# mlops: tracks raw.csv; the bytes are in the mlops cache. Commit this file.
format: 1
path: raw.csv          # the data's name, beside this file
kind: file             # file | dir
hash: 3f0c...          # xxh3-128: of the bytes (file) or of the top tree manifest (dir)
size: 1048576          # bytes (all files below, for a dir)
files: 20000           # dir only
```
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError
from ..formats import check_format, dump_yaml, parse_yaml
from ..fsio import atomic_write
from ..paths import check_name, check_relpath, check_tracked_path
from ..store.hashing import HASH_NAME, is_hash

POINTER_SUFFIX = ".mlops"
POINTER_FORMAT = 1
PRUNED_DIRS = {".git", ".mlops", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"}


@dataclass(frozen=True)
class Pointer:
    """What a pointer file says. ``target`` is the tracked path relative to the repo root."""

    target: str
    kind: str
    hash: str
    size: int
    files: int = 1
    # the pointer file it was read from, when its 'path:' names another target than its own name
    file: str | None = field(default=None, compare=False)

    @property
    def pointer_path(self) -> str:
        return self.file or self.target + POINTER_SUFFIX

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    def to_yaml(self) -> str:
        name = self.target.rpartition("/")[2]
        doc: dict[str, object] = {"format": POINTER_FORMAT, "path": name, "kind": self.kind, "hash": self.hash}
        doc["size"] = self.size
        if self.is_dir:
            doc["files"] = self.files
        head = f"# mlops: tracks {name}; its bytes are in the mlops cache ({HASH_NAME}). Commit this file.\n"
        return head + dump_yaml(doc)


def parse_pointer(text: str | bytes, pointer_rel: str, *, origin: str = "") -> Pointer:
    """Parse a pointer file; every problem names the file and the field. ``origin`` says where
    the file came from when not the workspace (``at revision v1``, ``in git history``).

    The pointer's own path and its ``path:`` field become a path that checkout writes: they go
    through ``paths`` (a git tree can hold any name, and the file any text).
    """
    where = f"pointer file {pointer_rel}{' ' + origin if origin else ''}"
    check_relpath(pointer_rel, where=f"pointer files{' ' + origin if origin else ''}")
    if not pointer_rel.endswith(POINTER_SUFFIX):
        raise FormatError(f"{pointer_rel}: a pointer file's name ends in {POINTER_SUFFIX}", file=pointer_rel)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{pointer_rel}: pointer file is not UTF-8 text", file=pointer_rel) from None
    data = parse_yaml(text, pointer_rel)
    data = check_format(data, pointer_rel, supported=POINTER_FORMAT, kind="pointer file")
    hint = "restore it with 'git checkout -- FILE', or re-create it with 'mlops add'"
    for key, types in (("hash", str), ("size", int), ("kind", str)):
        if key not in data:
            raise FormatError(f"{pointer_rel}: missing field '{key}'", hint=hint, file=pointer_rel, field=key)
        if not isinstance(data[key], types) or isinstance(data[key], bool):
            raise FormatError(
                f"{pointer_rel}: field '{key}' must be {types.__name__}, found {data[key]!r}",
                hint=hint,
                file=pointer_rel,
                field=key,
            )
    if not is_hash(data["hash"]):
        raise FormatError(
            f"{pointer_rel}: field 'hash' is not a {HASH_NAME} hash: {data['hash']!r}", hint=hint, file=pointer_rel
        )
    if data["kind"] not in ("file", "dir"):
        raise FormatError(f"{pointer_rel}: field 'kind' must be file or dir, found {data['kind']!r}", file=pointer_rel)
    if data["size"] < 0:
        raise FormatError(f"{pointer_rel}: field 'size' must not be negative", file=pointer_rel)
    target = pointer_rel[: -len(POINTER_SUFFIX)]
    name = check_name(data.get("path", target.rpartition("/")[2]), where=f"field 'path' of {where}")
    if name != target.rpartition("/")[2]:
        target = (target.rpartition("/")[0] + "/" + name).lstrip("/")
    check_tracked_path(target, where=where)
    files = data.get("files", 1)
    if not isinstance(files, int) or isinstance(files, bool) or files < 0:
        raise FormatError(f"{pointer_rel}: field 'files' must be a whole number, found {files!r}", file=pointer_rel)
    renamed = pointer_rel if target + POINTER_SUFFIX != pointer_rel else None
    return Pointer(target=target, kind=data["kind"], hash=data["hash"], size=data["size"], files=files, file=renamed)


def read_pointer(root: Path, pointer_rel: str) -> Pointer:
    return parse_pointer((root / pointer_rel).read_bytes(), pointer_rel)


def write_pointer(root: Path, pointer: Pointer) -> None:
    atomic_write(root / pointer.pointer_path, pointer.to_yaml())


def find_pointer_files(root: Path, under: str = "") -> Iterator[str]:
    """Every pointer file in the workspace (relative posix paths), sorted.

    Tracked directories are not descended into (their pointer sits beside them), nor are
    .git, .mlops, virtual environments and caches that never hold pointer files.
    """
    start = root / under if under else root
    stack = [start]
    found: list[str] = []
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        names = {e.name for e in entries}
        if folder != root and "pyvenv.cfg" in names:
            continue
        for entry in entries:
            if entry.name.endswith(POINTER_SUFFIX) and entry.is_file():
                found.append(Path(entry.path).relative_to(root).as_posix())
            elif (
                entry.name not in PRUNED_DIRS
                and entry.is_dir(follow_symlinks=False)
                and entry.name + POINTER_SUFFIX not in names
            ):
                stack.append(Path(entry.path))
    return iter(sorted(found))
