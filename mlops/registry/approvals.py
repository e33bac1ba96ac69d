"""Approvals of a version for a stage (the gates count distinct people), optionally signed with
an SSH key and checked against ``.mlops/allowed_signers``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, UsageError
from ..repo.repo import Repo
from . import audit, policy
from .refs import NONE, check_stage, check_target, parse_ref
from .store import default_actor, transaction


@dataclass(frozen=True)
class ApproveResult:
    name: str
    version: int
    stage: str
    by: str
    comment: str
    approvers: tuple[str, ...]  # distinct people who approved the version for this stage
    repeated: bool  # this person had approved it already: counted once
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "model": self.name, "approvers": list(self.approvers), "count": len(self.approvers)}


def approve(
    repo: Repo,
    name: str,
    version: int | str | None,
    stage: str,
    *,
    by: str | None = None,
    comment: str = "",
    sign_key: Path | None = None,
) -> ApproveResult:
    """Record an approval of a version for a stage (gates count distinct people).
    ``version`` None: ``name`` is a reference, resolved inside the lock.
    ``by``: default the git identity (user.email). ``sign_key``: an SSH private key signing the
    approval (``ssh-keygen -Y sign``), checked by gates with ``signed_approvals`` and by ``verify_audit``.
    Refused (CheckFailed) when the stage's policy says ``approver_not_author`` and ``by`` registered
    or promoted the version."""
    check_target(name, version)
    check_stage(stage)
    if stage == NONE:
        raise UsageError("approvals are for a target stage: staging, production or archived")
    by = (by or default_actor(repo.root)).strip()
    if not by:
        raise UsageError("an approval needs a person (--by)")
    with transaction(repo) as txn:
        rules = policy.load_policy(repo.dot).rules_for(parse_ref(name).name, stage)
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        if rules.approver_not_author and by in policy.authors(record):
            raise CheckFailed(
                f"{name}:{number}: {by} registered or promoted it, so cannot approve it for {stage} "
                "(policy: approver_not_author)",
                hint="another person approves it",
                model=name,
                version=number,
            )
        repeated = by in policy.distinct_approvers(record, stage)
        approval: dict[str, Any] = {"stage": stage, "by": by, "at": audit.now_iso(), "comment": comment}
        if sign_key is not None:
            approval["signature"] = audit.sign_payload(audit.approval_payload(name, number, approval), sign_key)
        record["approvals"] = [*record.get("approvals", []), approval]
        signed = {"signature": approval["signature"], "signed_at": approval["at"]} if sign_key is not None else {}
        txn.record(
            "approved", model=name, version=number, stage=stage, actor=by, comment=comment, repeated=repeated, **signed
        )
    return ApproveResult(
        name,
        number,
        stage,
        by,
        comment,
        tuple(policy.distinct_approvers(record, stage)),
        repeated,
        sign_key is not None,
    )


def allowed_signers_path(repo: Repo) -> Path:
    return repo.dot / audit.ALLOWED_SIGNERS


def signature_check(repo: Repo, name: str, number: int) -> Callable[[Mapping[str, Any]], bool]:
    """Whether an approval of ``name:number`` carries a signature its approver made (allowed_signers)."""
    signers = allowed_signers_path(repo)

    def check(approval: Mapping[str, Any]) -> bool:
        signature = approval.get("signature")
        if not isinstance(signature, str) or not approval.get("by"):
            return False
        payload = audit.approval_payload(name, number, approval)
        return audit.verify_signature(payload, signature, str(approval["by"]), signers)[0]

    return check
