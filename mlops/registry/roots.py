"""What the registry keeps alive: every artifact and data snapshot its model files name, for push,
fetch and gc (the working tree's files, or those of any commit)."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..repo.repo import Repo
from .store import load_model_doc, model_names


def _version_roots(doc: dict[str, Any], where: str) -> list[Any]:
    """The artifact and data snapshots of each version in one model file. A "hash" that is not
    one names no object: it is left out, never made into a path in the cache (a model file can
    come from anyone's commit)."""
    from ..data.references import Root
    from ..store.hashing import is_hash

    def named(item: Any) -> bool:
        return isinstance(item, dict) and isinstance(item.get("hash"), str) and is_hash(item["hash"])

    out = []
    for record in doc.get("versions") or []:
        art = record.get("artifact") or {}
        label = f"{where}{doc.get('name')}:{record.get('version')}"
        if named(art):
            out.append(Root(art["hash"], art.get("kind") == "dir", label))
        for snap in record.get("data") or []:
            if named(snap):
                out.append(Root(snap["hash"], snap.get("kind") == "dir", f"{label} data {snap.get('path')}"))
    return out


def registry_roots(repo: Repo, *, all_commits: bool = False) -> list[Any]:
    """Every artifact and data snapshot the registry names (``mlops.data.references.Root``):
    pushed, fetched and kept by gc like tracked data. ``all_commits``: also every committed
    version of the model files."""
    roots: list[Any] = []
    for name in model_names(repo):
        doc = load_model_doc(repo, name)
        if doc is not None:
            roots.extend(_version_roots(doc, "registry "))
    if all_commits:
        roots += commit_registry_roots(repo, ["--all"])
    return roots


def commit_registry_roots(repo: Repo, revs: list[str]) -> list[Any]:
    """What the model files that `git rev-list --objects REVS` lists name (``["--all"]``: any
    commit; ``["--no-walk", tip]``: the tip's own; ``[tip, "^old"]``: what the commits between
    added): pre-push sends these with the commits that reference them."""
    from ..repo.git import git_repo
    from .store import parse_model

    prefix = f"{repo.dot.name}/registry/models/"
    roots: list[Any] = []
    for path, blob in git_repo(repo.root).blobs_in(revs, lambda p: p.startswith(prefix) and p.endswith(".json")):
        try:
            roots.extend(_version_roots(parse_model(blob, f"git:{path}"), "git registry "))
        except UsageError:
            continue  # a broken old model file must not stop gc or a push
    return roots
