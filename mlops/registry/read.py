"""Reading the registry: a reference resolved to a version, a model's versions, every model in brief.

Read-only: no lock is taken (a model file is replaced atomically, so a reader sees a whole one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..repo.repo import Repo
from .refs import PRODUCTION, STAGING, check_name, parse_ref, parse_version
from .store import ModelVersion, find_record, load_model_doc, model_names, pick, require_model, version_view


def resolve(repo: Repo, ref: str) -> ModelVersion:
    """``churn:3``, ``churn@production``, ``churn@champion``, ``churn`` (latest) -> the version.

    Unknown model, version, stage or alias: ``UnknownModelError`` (exit 2) naming it and
    listing what exists.
    """
    parsed = parse_ref(ref)
    doc = require_model(repo, parsed.name)
    return version_view(doc, pick(doc, parsed))


def get_version(repo: Repo, name: str, version: int | str) -> ModelVersion:
    doc = require_model(repo, check_name(name))
    return version_view(doc, find_record(doc, parse_version(version)))


def versions(repo: Repo, name: str) -> list[ModelVersion]:
    doc = require_model(repo, check_name(name))
    return [version_view(doc, r) for r in sorted(doc["versions"], key=lambda r: r["version"])]


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: int
    latest: int | None
    staging: int | None
    production: int | None
    aliases: dict[str, int]
    description: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_models(repo: Repo) -> list[ModelSummary]:
    out = []
    for name in model_names(repo):
        doc = load_model_doc(repo, name)
        if doc is None:
            continue
        records = sorted(doc["versions"], key=lambda r: r["version"])
        holder = lambda stage, records=records: next(  # noqa: E731
            (r["version"] for r in records if r.get("stage") == stage), None
        )
        latest = records[-1] if records else None
        times = [h.get("at", "") for r in records for h in r.get("stage_history") or []] + [
            r.get("registered_at", "") for r in records
        ]
        out.append(
            ModelSummary(
                name,
                len(records),
                latest["version"] if latest else None,
                holder(STAGING),
                holder(PRODUCTION),
                dict(sorted((doc.get("aliases") or {}).items())),
                (latest or {}).get("description", ""),
                max(times, default=""),
            )
        )
    return out
