"""Tree manifests: a directory stored as one manifest object per folder, like git trees.

A manifest lists its folder's entries sorted by name: name, kind (``f`` file or ``t``
tree), hash, size (bytes below, for a tree) and the executable bit; a tree entry also
counts the files below it. The top manifest's hash names the whole directory, so one
changed file changes only the manifests on its path: the rest are shared, stored and
transferred once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import FormatError
from ..formats import parse_json
from .hashing import hash_bytes

TREE_FORMAT = "mlops-tree/1"


class FileRecord(NamedTuple):
    """One file of a directory snapshot (a NamedTuple: directories hold millions of them)."""

    hash: str
    size: int
    executable: bool = False


class TreeEntry(NamedTuple):
    name: str
    kind: str  # "f" or "t"
    hash: str
    size: int
    executable: bool = False
    files: int = 1


@dataclass(frozen=True)
class BuiltTree:
    hash: str
    size: int
    files: int
    manifests: dict[str, bytes]  # hash -> manifest bytes, every folder's


def encode_manifest(entries: list[TreeEntry]) -> bytes:
    entries = sorted(entries)  # by name first: names are unique within a folder
    rows = [[e.name, e.kind, e.hash, e.size, (1 if e.executable else 0) if e.kind == "f" else e.files] for e in entries]
    return json.dumps({"format": TREE_FORMAT, "entries": rows}, separators=(",", ":"), ensure_ascii=False).encode()


def decode_manifest(data: bytes, digest: str) -> list[TreeEntry]:
    try:
        doc = parse_json(data, f"object {digest}")  # bounded: the bytes may come from a remote
        if doc.get("format") != TREE_FORMAT:
            raise ValueError(f"unknown tree format {doc.get('format')!r}")
        out = []
        for name, kind, child, size, extra in doc["entries"]:
            if kind == "f":
                out.append(TreeEntry(name, "f", child, size, bool(extra), 1))
            else:
                out.append(TreeEntry(name, "t", child, size, False, int(extra)))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"object {digest} is not a tree manifest: {exc}", object=digest) from None


def build_tree(files: dict[str, FileRecord]) -> BuiltTree:
    """Build every folder's manifest bottom-up from a flat map of relative paths."""
    folders: dict[str, list[TreeEntry]] = {"": []}
    for rel, record in files.items():
        parent, _, name = rel.rpartition("/")
        bucket = folders.get(parent)
        if bucket is None:  # first file in this folder: make sure every ancestor gets a manifest
            folders[parent] = bucket = []
            ancestor = parent
            while ancestor:
                ancestor = ancestor.rpartition("/")[0]
                if ancestor in folders:
                    break
                folders[ancestor] = []
        bucket.append(TreeEntry(name, "f", record.hash, record.size, record.executable))
    manifests: dict[str, bytes] = {}
    summary: dict[str, tuple[str, int, int]] = {}
    # deepest folders first, so children are built before their parents
    for folder in sorted(folders, key=lambda f: f.count("/") + (1 if f else 0), reverse=True):
        entries = folders[folder]
        data = encode_manifest(entries)
        digest = hash_bytes(data)
        manifests[digest] = data
        size = sum(e.size for e in entries)
        count = sum(e.files for e in entries)
        summary[folder] = (digest, size, count)
        if folder:
            parent, _, name = folder.rpartition("/")
            folders[parent].append(TreeEntry(name, "t", digest, size, False, count))
    digest, size, count = summary[""]
    return BuiltTree(digest, size, count, manifests)


def walk_tree(read: Callable[[str], bytes], root: str, prefix: str = "") -> Iterator[tuple[str, TreeEntry]]:
    """Yield (relative path, entry) for every file below ``root``; ``read`` fetches a manifest."""
    for entry in decode_manifest(read(root), root):
        path = f"{prefix}{entry.name}"
        if entry.kind == "t":
            yield from walk_tree(read, entry.hash, path + "/")
        else:
            yield path, entry


def flatten_tree(read: Callable[[str], bytes], root: str) -> dict[str, FileRecord]:
    return {path: FileRecord(e.hash, e.size, e.executable) for path, e in walk_tree(read, root)}


def tree_objects(read: Callable[[str], bytes], root: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, hash) of every object a tree references, the manifests included."""
    yield "t", root
    for entry in decode_manifest(read(root), root):
        if entry.kind == "t":
            yield from tree_objects(read, entry.hash)
        else:
            yield "f", entry.hash
