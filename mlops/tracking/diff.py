"""Metrics and params files compared between git revisions (or the workspace), and --fail-if rules.

The caller names the files (the CLI takes them from pipeline.yaml: stage ``metrics:``
entries, and the params files stages use). A file is JSON when it ends in ``.json`` and
YAML otherwise; nested keys are flattened with dots (``{"test": {"acc": 0.9}}`` ->
``test.acc``).

``--fail-if`` rules, ``KEY OP NUMBER`` or ``KEY OP NUMBER%``:

- ``test_accuracy < -0.01``: fails when new - old of ``test_accuracy`` is below -0.01;
- ``latency_ms > 5%``: fails when ``latency_ms`` grew by more than 5 % of its old value;
- OP is one of ``<``, ``<=``, ``>``, ``>=``; KEY may be qualified as ``FILE:KEY``;
- a metric present in A and missing in B fails every rule that names it; a metric new in B
  (no baseline) passes; a rule naming a metric in neither is a usage error (a typo).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError, UsageError
from ..formats import parse_json, parse_params
from ..repo.repo import Repo
from .store import flatten

WORKSPACE = "workspace"


def parse_values(data: bytes, rel: str) -> dict[str, Any]:
    """A metrics/params file's flattened values."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{rel}: not a text file (not UTF-8)", file=rel) from None
    if rel.endswith(".json"):
        value = parse_json(text, rel) if text.strip() else {}
    else:  # YAML, TOML or Python (read, never run), by the name as the pipeline reads params
        value = parse_params(text, rel, rel) or {}
    if not isinstance(value, dict):
        return {"": value}
    return flatten(value)


def read_at(repo: Repo, rel: str, rev: str | None) -> bytes | None:
    """A file's bytes at a git revision, or in the workspace (``rev`` None); None when absent."""
    if rev is None:
        path = repo.root / rel
        return path.read_bytes() if path.is_file() else None
    from ..repo.git import git_repo

    return git_repo(repo.root).read_file_at(rev, rel)


def values_at(repo: Repo, files: Sequence[str], rev: str | None) -> dict[str, dict[str, Any]]:
    """{file: {key: value}} for each file that exists at ``rev``."""
    out: dict[str, dict[str, Any]] = {}
    for rel in dict.fromkeys(files):
        data = read_at(repo, rel, rev)
        if data is not None:
            out[rel] = parse_values(data, rel)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Change:
    file: str
    key: str
    old: Any
    new: Any
    in_old: bool
    in_new: bool

    @property
    def changed(self) -> bool:
        return self.in_old != self.in_new or self.old != self.new

    @property
    def delta(self) -> float | int | None:
        if self.in_old and self.in_new and _is_number(self.old) and _is_number(self.new):
            return self.new - self.old
        return None

    @property
    def pct(self) -> float | None:
        delta = self.delta
        if delta is None:
            return None
        if self.old == 0:
            return 0.0 if delta == 0 else math.copysign(math.inf, delta)
        return delta / abs(self.old) * 100.0

    def to_dict(self) -> dict[str, Any]:
        pct = self.pct
        return {
            "file": self.file,
            "key": self.key,
            "old": self.old if self.in_old else None,
            "new": self.new if self.in_new else None,
            "delta": self.delta,
            "pct": None if pct is None or math.isinf(pct) else pct,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class DiffResult:
    a: str  # as typed (or "workspace")
    b: str
    a_commit: str | None
    b_commit: str | None
    files: tuple[str, ...]
    changes: tuple[Change, ...]  # every key on either side, changed or not

    def shown(self, all_keys: bool) -> list[Change]:
        return [c for c in self.changes if all_keys or c.changed]


def diff_files(repo: Repo, files: Sequence[str], a_rev: str | None = "HEAD", b_rev: str | None = None) -> DiffResult:
    """Compare the files at ``a_rev`` and ``b_rev`` (None: the workspace)."""
    a_commit = b_commit = None
    if a_rev is not None or b_rev is not None:
        from ..repo.git import git_repo

        git = git_repo(repo.root)
        a_commit = git.resolve(a_rev) if a_rev is not None else None
        b_commit = git.resolve(b_rev) if b_rev is not None else None
    old = values_at(repo, files, a_commit)
    new = values_at(repo, files, b_commit)
    changes = []
    for rel in dict.fromkeys(files):
        before, after = old.get(rel, {}), new.get(rel, {})
        for key in dict.fromkeys([*before, *after]):
            changes.append(Change(rel, key, before.get(key), after.get(key), key in before, key in after))
    return DiffResult(
        a_rev or WORKSPACE, b_rev or WORKSPACE, a_commit, b_commit, tuple(dict.fromkeys(files)), tuple(changes)
    )


# --- --fail-if -------------------------------------------------------------------------------

_RULE = re.compile(
    r"^\s*(?P<key>.+?)\s*(?P<op><=|>=|<|>)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class Rule:
    text: str
    key: str
    op: str
    threshold: float
    relative: bool

    def applies_to(self, change: Change) -> bool:
        return self.key == change.key or self.key == f"{change.file}:{change.key}"

    def holds(self, value: float) -> bool:
        return {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
        }[self.op]


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text)
    if not match:
        raise UsageError(
            f"bad --fail-if '{text}': expected KEY OP NUMBER or KEY OP NUMBER%",
            hint='e.g. --fail-if "test_accuracy < -0.01" --fail-if "latency_ms > 5%"',
        )
    return Rule(text.strip(), match["key"], match["op"], float(match["num"]), bool(match["pct"]))


@dataclass(frozen=True)
class Regression:
    rule: Rule
    change: Change
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.text,
            "file": self.change.file,
            "key": self.change.key,
            "reason": self.reason,
            "old": self.change.old if self.change.in_old else None,
            "new": self.change.new if self.change.in_new else None,
            "delta": self.change.delta,
            "pct": self.change.to_dict()["pct"],
        }


def _fmt(value: float) -> str:
    return f"{value:+.6g}"


def check_rules(result: DiffResult, rules: Sequence[Rule]) -> list[Regression]:
    """The regressions the rules find; a rule naming no metric on either side is a UsageError."""
    found: list[Regression] = []
    for rule in rules:
        matching = [c for c in result.changes if rule.applies_to(c)]
        if not matching:
            known = ", ".join(sorted({c.key for c in result.changes})[:12]) or "none"
            raise UsageError(
                f"--fail-if '{rule.text}': no metric '{rule.key}' in {result.a} or {result.b}", hint=f"metrics: {known}"
            )
        for change in matching:
            if not change.in_old:
                continue  # new metric: no baseline to regress from
            if not change.in_new:
                found.append(Regression(rule, change, f"{change.key}: missing in {result.b} (was {change.old})"))
                continue
            if change.delta is None:
                continue  # not numbers
            if rule.relative:
                pct = change.pct
                assert pct is not None
                if rule.holds(pct):
                    shown = f"{pct:+.2f}%" if not math.isinf(pct) else ("+inf%" if pct > 0 else "-inf%")
                    found.append(
                        Regression(
                            rule, change, f"{change.key}: {change.old} -> {change.new} ({shown}, rule {rule.text})"
                        )
                    )
            elif rule.holds(change.delta):
                found.append(
                    Regression(
                        rule,
                        change,
                        f"{change.key}: {change.old} -> {change.new} (delta {_fmt(change.delta)}, rule {rule.text})",
                    )
                )
    return found
