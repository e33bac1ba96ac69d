"""Tree manifests: a directory stored as one manifest object per folder, like git trees.

A manifest lists its folder's entries sorted by name: name, kind (``f`` file or ``t``
tree), hash, size (bytes below, for a tree) and the executable bit; a tree entry also
counts the files below it. The top manifest's hash names the whole directory, so one
changed file changes only the manifests on its path: the rest are shared, stored and
transferred once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import CorruptObjectError, UnsafeNameError
from ..paths import check_name, check_unique, names_ok
from .hashing import HASH_NAME, hash_bytes, is_hash

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


def decode_manifest(data: bytes, digest: str, *, where: str | None = None) -> list[TreeEntry]:
    """The entries of a manifest, every one checked: a manifest may come from a remote someone
    else writes to, or from a cache whose disk lied, and its names become paths, its hashes
    object paths.

    ``where`` names the manifest for messages (default ``tree <digest>``; callers add the
    pointer and remote it came from). A name or hash that could not become a path safely is
    ``UnsafeNameError``, any other malformed content ``CorruptObjectError`` (both exit 3).
    """
    where = where or f"tree {digest}"
    try:
        doc = json.loads(data)
    except RecursionError:  # JSON nested deeper than Python recurses: a manifest is two levels deep
        raise _malformed(digest, where, "nested deeper than a manifest can be") from None
    except ValueError:
        raise _malformed(digest, where, "not JSON") from None
    if type(doc) is not dict or doc.get("format") != TREE_FORMAT:
        found = doc.get("format") if type(doc) is dict else type(doc).__name__
        raise _malformed(digest, where, f"unknown tree format {str(found)[:40]!r}")
    rows = doc.get("entries")
    if type(rows) is not list:
        raise _malformed(digest, where, "'entries' must be a list")
    out: list[TreeEntry] = []
    append = out.append
    for row in rows:
        # exact types: a bool is an int to Python, and 1.0 would pass a comparison
        if type(row) is not list or len(row) != 5:
            raise _malformed(digest, where, f"an entry must be [name, kind, hash, size, flag], found {_short(row)}")
        name, kind, child, size, extra = row
        if type(size) is not int or size < 0 or type(extra) is not int or extra < 0:
            raise _malformed(digest, where, f"entry {_short(name)}: size and count must be whole numbers >= 0")
        if kind == "f":
            if extra > 1:
                raise _malformed(digest, where, f"entry {_short(name)}: the executable flag must be 0 or 1")
            append(TreeEntry(name, "f", child, size, extra == 1, 1))
        elif kind == "t":
            append(TreeEntry(name, "t", child, size, False, extra))
        else:
            raise _malformed(digest, where, f"entry {_short(name)}: kind must be 'f' or 't', found {_short(kind)}")
    names = [e.name for e in out]
    if not names_ok(names):
        for name in names:
            check_name(name, where=where)
    if len(set(names)) != len(names):
        check_unique(names, where=where)
    hashes = [e.hash for e in out]
    if not _hashes_ok(hashes):
        for entry in out:
            if not is_hash(entry.hash):
                raise UnsafeNameError(
                    f"refused hash {_short(entry.hash)} of {_short(entry.name)} in {where}: not a {HASH_NAME} hash",
                    hint=_HINT,
                    entry=entry.name,
                    source=where,
                )
    return out


_HASHES = re.compile(r"(?:[0-9a-f]{32}/)*[0-9a-f]{32}")
_HINT = "the manifest came from a remote or a cache that holds content mlops did not write; check where it came from"


def _hashes_ok(hashes: list[str]) -> bool:
    if not hashes:
        return True
    try:
        joined = "/".join(hashes)
    except TypeError:
        return False
    return _HASHES.fullmatch(joined) is not None  # "/" is no hex digit: each one is exactly 32


def _malformed(digest: str, where: str, problem: str) -> CorruptObjectError:
    return CorruptObjectError(
        f"{where} is not a valid tree manifest: {problem}",
        hint=_HINT,
        object=digest,
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


#: More files than any real snapshot holds: a manifest that lists one sub-folder twice at each
#: of 40 levels names a trillion files, and its counts (checked below) cannot hide it.
MAX_TREE_FILES = 100_000_000


def walk_tree(
    read: Callable[[str], bytes], root: str, prefix: str = "", *, source: str = ""
) -> Iterator[tuple[str, TreeEntry]]:
    """Yield (relative path, entry) for every file below ``root``, depth first in name order;
    ``read`` fetches a manifest, ``source`` names where the tree came from for messages.

    A loop, not recursion: a tree may be nested deeper than Python recurses. Each folder's
    counts are checked against its manifest, and a manifest may not list itself below itself.
    """
    suffix = f" of {source}" if source else ""

    def entries(digest: str, size: int | None, files: int | None) -> list[TreeEntry]:
        listed = decode_manifest(read(digest), digest, where=f"tree {digest}{suffix}")
        if size is not None and (sum(e.size for e in listed), sum(e.files for e in listed)) != (size, files):
            raise _malformed(digest, f"tree {digest}{suffix}", "its size or file count differs from its parent's")
        return listed

    top = entries(root, None, None)
    total = sum(e.files for e in top)
    if total > MAX_TREE_FILES:
        raise _malformed(root, f"tree {root}{suffix}", f"it names {total} files, more than {MAX_TREE_FILES}")
    stack: list[tuple[Iterator[TreeEntry], str, str]] = [(iter(top), prefix, root)]
    on_path = {root}
    while stack:
        listing, base, digest = stack[-1]
        for entry in listing:
            path = base + entry.name
            if entry.kind == "t":
                if entry.hash in on_path:
                    raise _malformed(entry.hash, f"tree {digest}{suffix}", f"{path} lists a folder above it")
                stack.append((iter(entries(entry.hash, entry.size, entry.files)), path + "/", entry.hash))
                on_path.add(entry.hash)
                break
            yield path, entry
        else:
            stack.pop()
            on_path.discard(digest)


def flatten_tree(read: Callable[[str], bytes], root: str, *, source: str = "") -> dict[str, FileRecord]:
    return {path: FileRecord(e.hash, e.size, e.executable) for path, e in walk_tree(read, root, source=source)}


def tree_objects(read: Callable[[str], bytes], root: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, hash) of every object a tree references, the manifests included, each once."""
    yield "t", root
    seen = {root}
    stack = [root]
    while stack:
        digest = stack.pop()
        for entry in decode_manifest(read(digest), digest):
            if entry.kind == "t":
                if entry.hash not in seen:
                    seen.add(entry.hash)
                    yield "t", entry.hash
                    stack.append(entry.hash)
            else:
                yield "f", entry.hash
