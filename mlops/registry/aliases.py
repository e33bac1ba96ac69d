"""Aliases: a name (champion) pointing at one version of a model, moved or removed in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnknownModelError
from ..repo.repo import Repo
from .refs import check_alias, check_name, check_target
from .store import default_actor, transaction


@dataclass(frozen=True)
class AliasResult:
    name: str
    alias: str
    version: int | None  # None: removed
    previous: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "model": self.name}


def set_alias(repo: Repo, name: str, version: int | str | None, alias: str, *, actor: str | None = None) -> AliasResult:
    """Point an alias at a version (moving it from another version, as MLflow does).
    ``version`` None: ``name`` is a reference (``churn@production``), resolved inside the lock."""
    check_target(name, version)
    check_alias(alias)
    actor = actor or default_actor(repo.root)
    with transaction(repo) as txn:
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        previous = (doc.get("aliases") or {}).get(alias)
        if previous == number:
            return AliasResult(name, alias, number, previous)
        doc["aliases"] = {**(doc.get("aliases") or {}), alias: number}
        txn.record("alias_set", model=name, version=number, alias=alias, previous=previous, actor=actor)
    return AliasResult(name, alias, number, previous)


def delete_alias(repo: Repo, name: str, alias: str, *, actor: str | None = None) -> AliasResult:
    check_name(name)
    actor = actor or default_actor(repo.root)
    with transaction(repo) as txn:
        doc = txn.model(name)
        aliases = dict(doc.get("aliases") or {})
        if alias not in aliases:
            raise UnknownModelError(
                f"model '{name}' has no alias '{alias}'",
                hint=("aliases: " + ", ".join(sorted(aliases))) if aliases else "it has no aliases",
                model=name,
                alias=alias,
            )
        previous = aliases.pop(alias)
        doc["aliases"] = aliases
        txn.record("alias_removed", model=name, version=previous, alias=alias, actor=actor)
    return AliasResult(name, alias, None, previous)
