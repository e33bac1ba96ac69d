"""Which objects are referenced: by the workspace's pointer files, by any git commit, or by
roots that higher layers name (pipeline lock file, registry, runs)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import CorruptObjectError, MissingObjectError, UnsafeNameError
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
        _root(parse_pointer(data, path, origin="in git history"), f"git:{path}")
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
            _root(parse_pointer(data, path, origin="in git history"), f"git:{path}")
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
    malformed: dict[str, tuple[str, str]] = field(default_factory=dict)  # digest -> (label, problem): verify only

    @property
    def all(self) -> set[str]:
        return set(self.files) | set(self.manifests)


LABEL_MAX = 300  # characters: a label names a file for a message; a deep tree must not cost depth² memory


def _child_label(label: str, name: str) -> str:
    joined = f"{label}/{name}"
    if len(joined) <= LABEL_MAX:
        return joined
    return f"{joined[:100]}/.../{joined[-(LABEL_MAX - 105) :]}"


def reachable(repo: Repo, roots: Iterable[Root], *, tolerate_corrupt: bool = False) -> Reachable:
    """Every object the roots reach, manifests included, read from the local cache.

    A corrupt or malformed manifest stops the walk (gc must not guess) unless
    ``tolerate_corrupt`` (verify, which reports it), where it is left unexpanded like a
    missing one and listed in ``malformed`` when its bytes are whole but its content is not
    a valid manifest. A loop over a stack: trees may be deeper than Python recurses.
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
            if digest in out.manifests or digest in out.malformed:
                continue
            try:
                data = store.read_bytes(digest)
            except MissingObjectError:
                out.unexpanded.append(Root(digest, True, label))
                continue
            except CorruptObjectError:
                if not tolerate_corrupt:
                    raise
                out.unexpanded.append(Root(digest, True, label))
                continue
            try:
                entries = decode_manifest(data, digest, where=f"tree {digest} of {root.label}")
            except (UnsafeNameError, CorruptObjectError) as exc:
                if not tolerate_corrupt:
                    raise
                out.malformed[digest] = (label, exc.message)
                continue
            out.manifests[digest] = label
            for entry in entries:
                child_label = _child_label(label, entry.name)
                if entry.kind == "t":
                    stack.append((entry.hash, child_label))
                else:
                    out.files.setdefault(entry.hash, child_label)
    return out
