"""Stage transitions: a promotion through the policy gates (or forced, with a reason), and a
rollback to the previous production version. Each runs in one registry transaction, its
audit entries appended in the same step.

These change the registry only: ``mlops.workflows.production`` wraps them so that a model's
deployment file follows in the same locked step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PromotionRefused, UsageError
from ..repo.repo import Repo
from . import audit, policy
from .approvals import signature_check
from .refs import ARCHIVED, NONE, PRODUCTION, SINGLE_STAGES, check_stage, check_target, parse_ref
from .store import default_actor, find_record, in_stage, transaction


@dataclass(frozen=True)
class PromoteResult:
    name: str
    version: int
    from_stage: str
    to_stage: str
    changed: bool
    forced: bool
    reason: str
    actor: str
    checks: tuple[policy.RuleResult, ...]
    overridden: tuple[policy.RuleResult, ...] = ()
    displaced: int | None = None  # the version that held the stage before
    displaced_to: str | None = None
    audit_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "ref": f"{self.name}:{self.version}",
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "changed": self.changed,
            "forced": self.forced,
            "reason": self.reason,
            "actor": self.actor,
            "checks": [c.to_dict() for c in self.checks],
            "overridden": [c.to_dict() for c in self.overridden],
            "displaced": self.displaced,
            "displaced_to": self.displaced_to,
            "audit_seq": self.audit_seq,
        }


def _move(
    record: dict[str, Any], to_stage: str, *, actor: str, reason: str, forced: bool = False, via: str = "promote"
) -> None:
    record["stage_history"] = [
        *record.get("stage_history", []),
        {
            "stage": to_stage,
            "from": record.get("stage", NONE),
            "at": audit.now_iso(),
            "by": actor,
            "reason": reason,
            "forced": forced,
            "via": via,
        },
    ]
    record["stage"] = to_stage


def promote(
    repo: Repo,
    name: str,
    version: int | str | None,
    to_stage: str,
    *,
    reason: str = "",
    actor: str | None = None,
    force: bool = False,
) -> PromoteResult:
    """Move a version to a stage if every policy gate for that stage holds (checked under the lock).

    ``version`` None: ``name`` is a reference (``churn@staging``), resolved inside the lock.
    Refused: one ``promotion_refused`` audit entry, nothing else changes, and ``PromotionRefused``
    (exit 1) lists every failed rule with the value seen. ``force`` (with a reason) overrides
    and is recorded as forced. Production archives the version it replaces; staging sends it
    back to ``none``.
    """
    shown_target = check_target(name, version)
    check_stage(to_stage)
    actor = actor or default_actor(repo.root)
    reason = (reason or "").strip()
    if force and not reason:
        raise UsageError(
            "--force needs --reason: an override must say why",
            hint=f"mlops promote {shown_target} --to {to_stage} --force --reason TEXT",
        )
    refusal: PromotionRefused | None = None
    with transaction(repo) as txn:
        rules = policy.load_policy(repo.dot)  # read under the lock: the rules and the state are of one moment
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        from_stage = record.get("stage", NONE)
        gate = rules.rules_for(name, to_stage)
        signed = signature_check(repo, name, number) if gate.signed_approvals else None
        checks = tuple(policy.evaluate(gate, record, signed=signed)) if to_stage != NONE else ()
        if from_stage == to_stage:
            return PromoteResult(name, number, from_stage, to_stage, False, False, reason, actor, checks)
        failed = tuple(c for c in checks if not c.ok)
        if failed and not force:
            txn.record(
                "promotion_refused",
                model=name,
                version=number,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                failed=[c.to_dict() for c in failed],
            )
            entries = txn.commit()
            listed = "; ".join(f"{c.rule} (seen: {_seen(c)})" for c in failed)
            refusal = PromotionRefused(
                f"{name}:{number} -> {to_stage} refused by {len(failed)} of {len(checks)} rule(s): {listed}",
                hint=(
                    f"meet the rules, or override: mlops promote {name} {number} --to {to_stage} --force --reason TEXT"
                ),
                model=name,
                version=number,
                to_stage=to_stage,
                failed=[c.to_dict() for c in failed],
                checks=[c.to_dict() for c in checks],
                audit_seq=entries[-1]["seq"] if entries else None,
            )
        else:
            displaced, displaced_to = None, None
            if to_stage in SINGLE_STAGES:
                for other in in_stage(doc, to_stage):
                    if other is record:
                        continue
                    displaced, displaced_to = other["version"], (ARCHIVED if to_stage == PRODUCTION else NONE)
            _move(record, to_stage, actor=actor, reason=reason, forced=bool(failed))
            if to_stage == PRODUCTION:
                doc["production_history"] = [*doc.get("production_history", []), number]
            txn.record(
                "stage_changed",
                model=name,
                version=number,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                forced=bool(failed),
                overridden=[c.to_dict() for c in failed],
                checks=[c.to_dict() for c in checks],
            )
            if displaced is not None:
                other = find_record(doc, displaced)
                why = f"replaced in {to_stage} by {name}:{number}"
                _move(other, displaced_to or NONE, actor=actor, reason=why, via="displaced")
                txn.record(
                    "stage_changed",
                    model=name,
                    version=displaced,
                    from_stage=to_stage,
                    to_stage=displaced_to,
                    actor=actor,
                    reason=why,
                )
            entries = txn.commit()
            result = PromoteResult(
                name,
                number,
                from_stage,
                to_stage,
                True,
                bool(failed),
                reason,
                actor,
                checks,
                failed,
                displaced,
                displaced_to,
                entries[0]["seq"] if entries else None,
            )
    if refusal is not None:
        raise refusal
    return result


def _seen(check: policy.RuleResult) -> str:
    return f"{check.seen}" + (f"; {check.detail}" if check.detail else "")


@dataclass(frozen=True)
class RollbackResult:
    name: str
    from_version: int
    to_version: int
    to_version_was: str  # the stage the restored version left
    reason: str
    actor: str
    audit_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, model=self.name)


def rollback(repo: Repo, name: str, *, reason: str = "", actor: str | None = None) -> RollbackResult:
    """Put the previous production version back in production; the current one is archived.

    ``name``: a model name, or ``name@production`` (the only version a rollback acts on).
    "Previous" is the version that was in production before the current one (the model's
    production history is a stack: a rollback pops it, so a second rollback goes one further
    back). No gates: a rollback is the way out of a bad release. Recorded as ``rolled_back``.
    """
    ref = parse_ref(name)
    if ref.version is not None or ref.label not in (None, PRODUCTION) or ("@" in name and ref.label is None):
        raise UsageError(
            f"rollback acts on the production version: give a model name or {ref.name}@production, not {name}",
            hint=f"mlops rollback {ref.name}",
        )
    name = ref.name
    actor = actor or default_actor(repo.root)
    reason = (reason or "").strip()
    with transaction(repo) as txn:
        doc = txn.model(name)
        current = in_stage(doc, PRODUCTION)
        if not current:
            raise UsageError(
                f"model '{name}' has no version in production, so there is nothing to roll back",
                hint=f"promote one: mlops promote {name} VERSION --to production",
            )
        now = current[0]["version"]
        history = list(doc.get("production_history") or [])
        while history and history[-1] == now:
            history.pop()
        known = {r["version"] for r in doc["versions"]}
        while history and history[-1] not in known:
            history.pop()
        if not history:
            raise UsageError(
                f"model '{name}' has no earlier production version than v{now} to roll back to",
                hint=f"promote another version: mlops promote {name} VERSION --to production",
            )
        previous = find_record(doc, history[-1])
        was = previous.get("stage", NONE)
        why = reason or "rollback"
        _move(current[0], ARCHIVED, actor=actor, reason=why, via="rollback")
        _move(previous, PRODUCTION, actor=actor, reason=why, via="rollback")
        doc["production_history"] = history
        txn.record(
            "rolled_back",
            model=name,
            version=previous["version"],
            from_version=now,
            to_version=previous["version"],
            actor=actor,
            reason=reason,
            previous_stage_of_restored=was,
        )
        entries = txn.commit()
    return RollbackResult(name, now, previous["version"], was, reason, actor, entries[0]["seq"] if entries else None)
