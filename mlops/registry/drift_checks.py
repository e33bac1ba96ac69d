"""A drift check's verdict recorded on a version (the gate ``no_failed_drift_check`` reads them)."""

from __future__ import annotations

from typing import Any

from ..repo.repo import Repo
from . import audit
from .refs import check_name, parse_version
from .store import default_actor, find_record, transaction


def record_drift_check(
    repo: Repo, name: str, version: int, *, drifted: bool, summary: dict[str, Any], actor: str | None = None
) -> None:
    """Record a drift check's verdict on a version (the gate ``no_failed_drift_check`` reads them)."""
    check_name(name)
    number = parse_version(version)
    actor = actor or default_actor(repo.root)
    summary = audit.json_safe(summary)  # numpy numbers and the like become JSON values (or text)
    with transaction(repo) as txn:
        doc = txn.model(name)
        record = find_record(doc, number)
        record["drift_checks"] = [
            *record.get("drift_checks", []),
            {"at": audit.now_iso(), "drifted": bool(drifted), "summary": summary, "by": actor},
        ]
        txn.record("drift_check", model=name, version=number, drifted=bool(drifted), summary=summary, actor=actor)
