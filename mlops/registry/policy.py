"""Policy gates: `.mlops/policy.yaml`, the rules a version must meet to enter a stage.

```yaml
format: 1
stages:
  staging:
    metrics:
      - metrics.train_accuracy >= 0.7
  production:
    metrics:                      # every rule must hold; keys as the run logged them
      - metrics.eval_basic.test_accuracy >= 0.6
    was_in: staging               # must be, or have been, in staging
    no_failed_drift_check: true   # no drift check recorded for the version found drift
    approvals: 2                  # approvals for this stage by at least 2 distinct people
    approver_not_author: true     # who registered or promoted the version cannot approve it
    signed_approvals: true        # only approvals signed with an SSH key of .mlops/allowed_signers count
models:                           # optional: per model, replaces a stage's default rules
  churn:
    production: {...}
```

Every rule is checked (none stops the others), so a refusal lists them all, each with the
value seen. Problems in the file are reported as ``file:line:col``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FormatError, NewerFormatError
from ..formats import display_path, parse_yaml_positions
from .refs import NAME, SINGLE_STAGES, STAGES

POLICY_FILE = "policy.yaml"
POLICY_FORMAT = 1
STAGE_KEYS = ("metrics", "was_in", "no_failed_drift_check", "approvals", "approver_not_author", "signed_approvals")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
METRIC_RULE = re.compile(r"\s*(?:metrics\.)?([A-Za-z0-9_][\w.\-/]*?)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")


@dataclass(frozen=True)
class MetricRule:
    key: str
    op: str
    threshold: float
    text: str
    where: str  # file:line:col


@dataclass(frozen=True)
class StageRules:
    stage: str
    metrics: tuple[MetricRule, ...] = ()
    was_in: tuple[str, ...] = ()
    no_failed_drift_check: bool = False
    approvals: int = 0
    where: str = ""
    approver_not_author: bool = False
    signed_approvals: bool = False

    @property
    def empty(self) -> bool:
        return not (self.metrics or self.was_in or self.no_failed_drift_check or self.approvals)


@dataclass(frozen=True)
class Policy:
    source: str | None  # None: no policy file (no gates)
    stages: dict[str, StageRules] = field(default_factory=dict)
    models: dict[str, dict[str, StageRules]] = field(default_factory=dict)

    def rules_for(self, model: str, stage: str) -> StageRules:
        per_model = self.models.get(model, {})
        if stage in per_model:
            return per_model[stage]
        return self.stages.get(stage, StageRules(stage))


@dataclass(frozen=True)
class RuleResult:
    rule: str
    ok: bool
    seen: Any
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "ok": self.ok, "seen": self.seen, "detail": self.detail}


def policy_path(dot: Path) -> Path:
    return dot / POLICY_FILE


def load_policy(dot: Path) -> Policy:
    path = policy_path(dot)
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Policy(None)
    except IsADirectoryError:
        raise ConfigError(
            f"{shown}: is a folder, not a policy file",
            file=shown,
            hint="remove it, or replace it with a policy file (see docs/registry.md, 'Policy gates')",
        ) from None
    except UnicodeDecodeError:
        raise FormatError(f"{shown}: not a text file (not UTF-8)", file=shown) from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot be read: {exc.strerror or exc}", file=shown) from None
    return parse_policy(text, shown)


def parse_policy(text: str, source: str) -> Policy:
    data, positions = parse_yaml_positions(text, source)

    def at(*path: Any) -> str:
        for cut in range(len(path), -1, -1):
            if path[:cut] in positions:
                line, col = positions[path[:cut]]
                return f"{source}:{line}:{col}"
        return source

    def key_at(*path: Any) -> str:
        where = positions.get((*path[:-1], "<key>", path[-1]))
        return f"{source}:{where[0]}:{where[1]}" if where else at(*path)

    def fail(where: str, message: str) -> FormatError:
        return FormatError(f"{where}: {message}", file=source, hint="see docs/registry.md, 'Policy gates'")

    if data is None:
        return Policy(source)
    if not isinstance(data, dict):
        raise fail(at(), "expected a mapping with 'stages:' (and optionally 'models:')")
    version = data.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(at("format"), f"'format' must be a whole number, found {version!r}")
    if version > POLICY_FORMAT:
        raise NewerFormatError(f"{source}: written by a newer mlops (policy format {version})", hint="upgrade mlops")
    for key in data:
        if key not in ("format", "stages", "models"):
            raise fail(key_at(key), f"unknown key '{key}' (expected format, stages, models)")

    def stage_rules(doc: Any, path: tuple[Any, ...], stage: str) -> StageRules:
        if stage not in STAGES or stage == "none":
            raise fail(key_at(*path), f"unknown target stage '{stage}' (gates apply to: staging, production, archived)")
        if doc is None:
            return StageRules(stage, where=at(*path))
        if not isinstance(doc, dict):
            raise fail(at(*path), f"stage '{stage}': expected a mapping of rules ({', '.join(STAGE_KEYS)})")
        for key in doc:
            if key not in STAGE_KEYS:
                raise fail(key_at(*path, key), f"unknown rule '{key}' (expected {', '.join(STAGE_KEYS)})")
        metrics = doc.get("metrics") or []
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, list):
            raise fail(at(*path, "metrics"), "'metrics' must be a list of rules like 'metrics.test_accuracy >= 0.85'")
        parsed = []
        for index, rule in enumerate(metrics):
            where = at(*path, "metrics", index)
            match = METRIC_RULE.fullmatch(str(rule)) if isinstance(rule, str) else None
            if not match:
                raise fail(
                    where, f"not a metric rule: {rule!r} (write 'metrics.KEY OP NUMBER', OP one of {' '.join(OPS)})"
                )
            try:
                threshold = float(match.group(3))
            except ValueError:
                raise fail(where, f"not a number: {match.group(3)!r} in {rule!r}") from None
            if math.isnan(threshold):
                raise fail(where, f"a threshold cannot be NaN: {rule!r}")
            parsed.append(
                MetricRule(
                    match.group(1),
                    match.group(2),
                    threshold,
                    f"metrics.{match.group(1)} {match.group(2)} {match.group(3)}",
                    where,
                )
            )
        was_in = doc.get("was_in") or []
        if isinstance(was_in, str):
            was_in = [was_in]
        if not isinstance(was_in, list) or not all(isinstance(s, str) for s in was_in):
            raise fail(at(*path, "was_in"), "'was_in' must be a stage name or a list of them")
        for index, name in enumerate(was_in):
            if name not in SINGLE_STAGES and name != "archived":
                raise fail(
                    at(*path, "was_in", index) if isinstance(doc.get("was_in"), list) else at(*path, "was_in"),
                    f"'was_in': unknown stage '{name}' (staging, production, archived)",
                )
        drift = doc.get("no_failed_drift_check", False)
        if not isinstance(drift, bool):
            raise fail(
                at(*path, "no_failed_drift_check"), f"'no_failed_drift_check' must be true or false, found {drift!r}"
            )
        approvals = doc.get("approvals", 0)
        if not isinstance(approvals, int) or isinstance(approvals, bool) or approvals < 0:
            raise fail(at(*path, "approvals"), f"'approvals' must be a whole number >= 0, found {approvals!r}")
        flags = {}
        for flag in ("approver_not_author", "signed_approvals"):
            value = doc.get(flag, False)
            if not isinstance(value, bool):
                raise fail(at(*path, flag), f"'{flag}' must be true or false, found {value!r}")
            flags[flag] = value
        return StageRules(stage, tuple(parsed), tuple(was_in), drift, approvals, at(*path), **flags)

    stages_doc = data.get("stages") or {}
    if not isinstance(stages_doc, dict):
        raise fail(at("stages"), "'stages' must be a mapping of stage -> rules")
    stages = {str(s): stage_rules(doc, ("stages", s), str(s)) for s, doc in stages_doc.items()}
    models_doc = data.get("models") or {}
    if not isinstance(models_doc, dict):
        raise fail(at("models"), "'models' must be a mapping of model name -> stage -> rules")
    models: dict[str, dict[str, StageRules]] = {}
    for model, per in models_doc.items():
        if not isinstance(model, str) or not NAME.fullmatch(model):
            raise fail(key_at("models", model), f"not a model name: {model!r}")
        if not isinstance(per, dict):
            raise fail(at("models", model), f"model '{model}': expected a mapping of stage -> rules")
        models[model] = {str(s): stage_rules(doc, ("models", model, s), str(s)) for s, doc in per.items()}
    return Policy(source, stages, models)


def evaluate(
    rules: StageRules, record: Mapping[str, Any], *, signed: Callable[[Mapping[str, Any]], bool] | None = None
) -> list[RuleResult]:
    """Check every rule against a version record; each result carries the value seen.
    ``signed``: whether an approval's signature verifies (``signed_approvals``; None: none does)."""
    out: list[RuleResult] = []
    metrics = record.get("metrics") or {}
    for rule in rules.metrics:
        value = metrics.get(rule.key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            seen = "missing" if value is None else value
            known = ", ".join(sorted(metrics)[:8]) or "none"
            out.append(
                RuleResult(
                    rule.text, False, seen, f"the version has no number for metrics.{rule.key} (metrics: {known})"
                )
            )
            continue
        ok = not (isinstance(value, float) and math.isnan(value)) and OPS[rule.op](float(value), rule.threshold)
        out.append(RuleResult(rule.text, ok, value))
    history = [h.get("stage") for h in record.get("stage_history") or []]
    for stage in rules.was_in:
        been = stage in history or record.get("stage") == stage
        seen = " -> ".join(["none", *history]) if history else "never left 'none'"
        out.append(RuleResult(f"was in {stage}", been, seen))
    if rules.no_failed_drift_check:
        failed = [c for c in record.get("drift_checks") or [] if c.get("drifted")]
        seen = f"{len(failed)} failed of {len(record.get('drift_checks') or [])} check(s)" + (
            f", last at {failed[-1].get('at')}" if failed else ""
        )
        out.append(RuleResult("no failed drift check", not failed, seen))
    if rules.approvals:
        people = distinct_approvers(record, rules.stage)
        left_out: list[str] = []
        if rules.signed_approvals:
            good = distinct_approvers(record, rules.stage, only=lambda a: signed is not None and signed(a))
            left_out += [f"{p} (not signed, or not by a key of allowed_signers)" for p in people if p not in good]
            people = good
        if rules.approver_not_author:
            mine = authors(record)
            left_out += [f"{p} (registered or promoted it)" for p in people if p in mine]
            people = [p for p in people if p not in mine]
        detail = ("by " + ", ".join(people)) if people else "none yet"
        if left_out:
            detail += "; not counted: " + ", ".join(left_out)
        what = " signed" if rules.signed_approvals else ""
        what += ", none by an author" if rules.approver_not_author else ""
        out.append(
            RuleResult(
                f"approvals >= {rules.approvals} (distinct people{what})",
                len(people) >= rules.approvals,
                len(people),
                detail,
            )
        )
    return out


def authors(record: Mapping[str, Any]) -> set[str]:
    """Who registered the version or moved it between stages (a displacement by another's promotion aside)."""
    out = {str(record.get("registered_by") or "")}
    out |= {str(h.get("by") or "") for h in record.get("stage_history") or [] if h.get("via") != "displaced"}
    return out - {""}


def distinct_approvers(
    record: Mapping[str, Any], stage: str, *, only: Callable[[Mapping[str, Any]], bool] | None = None
) -> list[str]:
    """Who approved the version for ``stage``, each person once, in order of first approval
    (``only``: the approvals that pass it, e.g. a verified signature)."""
    return list(
        dict.fromkeys(
            a.get("by")
            for a in record.get("approvals") or []
            if a.get("stage") == stage and a.get("by") and (only is None or only(a))
        )
    )
