"""The audit log's verbs: append an event, a model's history, and verify the chain with every
signed approval in it. The chain itself (hashing, the head, settling) is ``audit.py``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import UsageError
from ..repo.repo import Repo
from . import audit
from .approvals import allowed_signers_path
from .read import resolve
from .refs import parse_ref
from .store import (
    audit_path,
    default_actor,
    head_path,
    load_model_doc,
    model_names,
    model_path,
    require_model,
    shown,
    transaction,
)


def audit_append(repo: Repo, event: str, **fields: Any) -> None:
    """Append an event to the audit log (e.g. serve's automatic canary rollback), under the lock."""
    if "state" in fields:
        raise UsageError("audit field 'state' is reserved for model-file changes")
    fields.setdefault("actor", default_actor(repo.root))
    with transaction(repo) as txn:
        txn.record(event, **fields)


def history(repo: Repo, name: str) -> list[dict[str, Any]]:
    """Every audit entry about a model, oldest first. ``name`` may be a reference
    (``churn@production``): it must resolve, and the history is its model's."""
    ref = parse_ref(name)
    if ref.version is not None or ref.label is not None:
        resolve(repo, name)  # an unknown stage, alias or version is exit 2, listing what exists
    entries = [e for e in audit.read_entries(audit_path(repo)) if e.get("model") == ref.name]
    if not entries:
        require_model(repo, ref.name)
    return entries


def verify_audit(repo: Repo) -> audit.VerifyReport:
    """Check the audit chain, its head and every model file's anchor (read-only: no lock;
    ``verify_chain`` reads the files in the reverse of the order writers write them)."""

    def read_models() -> dict[str, tuple[str, dict[str, Any] | None]]:
        docs: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for name in model_names(repo):
            path = model_path(repo, name)
            try:
                docs[name] = (shown(repo, path), load_model_doc(repo, name))
            except UsageError:
                docs[name] = (shown(repo, path), None)
        return docs

    report = audit.verify_chain(audit_path(repo), head_path(repo), read_models)
    return _verify_signatures(repo, report)


def _verify_signatures(repo: Repo, report: audit.VerifyReport) -> audit.VerifyReport:
    """Every signed approval of the log checked against .mlops/allowed_signers (ssh-keygen -Y verify)."""
    signers = allowed_signers_path(repo)
    problems: list[audit.Problem] = []
    for entry in audit.read_entries(audit_path(repo)):
        if entry.get("event") != "approved" or "signature" not in entry:
            continue
        approval = {
            "stage": entry.get("stage"),
            "by": entry.get("actor"),
            "at": entry.get("signed_at"),
            "comment": entry.get("comment"),
        }
        payload = audit.approval_payload(str(entry.get("model")), entry.get("version"), approval)
        ok, said = audit.verify_signature(payload, str(entry.get("signature")), str(entry.get("actor")), signers)
        if not ok:
            problems.append(
                audit.Problem(
                    "signature",
                    entry.get("seq"),
                    None,
                    f"seq {entry.get('seq')}: the approval of {entry.get('model')}:{entry.get('version')} by "
                    f"{entry.get('actor')} does not verify against {shown(repo, signers)}: {said}",
                )
            )
    if not problems:
        return report
    return replace(report, problems=(*report.problems, *problems))
