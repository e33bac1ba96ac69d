"""Which objects are referenced: by the workspace's pointer files, by any git commit, or by
roots that higher layers name (pipeline lock file, registry, runs)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import CorruptObjectError, MissingObjectError
from ..repo.git import git_repo
from ..repo.repo import Repo
from ..store.tree import decode_manifest
from .pointer import POINTER_SUFFIX, Pointer, find_pointer_files, parse_pointer, read_pointer


@dataclass(frozen=True)
class Root:
    """An object something refers to by name: a file's bytes, or a directory's top manifest."""

    hash: str
    is_dir: bool
    label: str  # who refers to it, for messages (a path, "git abc123:data.mlops", "run 42")
    size: int | None = None  # a file's length where the referrer records it: a download must match it


def workspace_roots(repo: Repo) -> list[Root]:
    pointers = [read_pointer(repo.root, rel) for rel in find_pointer_files(repo.root)]
    return [_root(p, p.target) for p in pointers]


def all_commit_roots(repo: Repo) -> list[Root]:
    return [
        _root(parse_pointer(data, path), f"git:{path}")
        for path, data in git_repo(repo.root).pointer_blobs_all_commits()
    ]


def commit_roots(repo: Repo, tips: list[str], exclude: list[str]) -> list[Root]:
    """What the commits from ``tips`` back to what ``exclude`` names (rev-list arguments such
    as ``^sha`` or ``--not --remotes=origin``) reference: every pointer file in each tip's
    tree, and every pointer blob the commits in between added (what a `git push` sends)."""
    git = git_repo(repo.root)
    roots = []
    for revs in (["--no-walk", *tips], [*tips, *exclude]):
        roots += [
            _root(parse_pointer(data, path), f"git:{path}")
            for path, data in git.blobs_in(revs, lambda p: p.endswith(POINTER_SUFFIX))
        ]
    return roots


def _root(pointer: Pointer, label: str) -> Root:
    return Root(pointer.hash, pointer.is_dir, label, None if pointer.is_dir else pointer.size)


@dataclass
class Reachable:
    files: dict[str, str] = field(default_factory=dict)  # digest -> first label that reaches it
    manifests: dict[str, str] = field(default_factory=dict)
    unexpanded: list[Root] = field(default_factory=list)  # directory roots whose manifests are missing locally

    @property
    def all(self) -> set[str]:
        return set(self.files) | set(self.manifests)


def reachable(repo: Repo, roots: Iterable[Root], *, tolerate_corrupt: bool = False) -> Reachable:
    """Every object the roots reach, manifests included, read from the local cache.

    A corrupt manifest stops the walk (gc must not guess) unless ``tolerate_corrupt``
    (verify, which reports it), where it is left unexpanded like a missing one.
    """
    out = Reachable()
    store = repo.objects
    for root in roots:
        if not root.is_dir:
            out.files.setdefault(root.hash, root.label)
            continue
        stack = [(root.hash, root.label)]
        while stack:
            digest, label = stack.pop()
            if digest in out.manifests:
                continue
            try:
                entries = decode_manifest(store.read_bytes(digest), digest)
            except MissingObjectError:
                out.unexpanded.append(Root(digest, True, label))
                continue
            except CorruptObjectError:
                if not tolerate_corrupt:
                    raise
                out.unexpanded.append(Root(digest, True, label))
                continue
            out.manifests[digest] = label
            for entry in entries:
                child_label = f"{label}/{entry.name}"
                if entry.kind == "t":
                    stack.append((entry.hash, child_label))
                else:
                    out.files.setdefault(entry.hash, child_label)
    return out
