"""Drift check settings: presets, command-line options and the config file, merged into one value.

Resolution for one column, most specific first (docs/drift.md, "Choosing the test"):
method: the column's entry in the config file > the column type's (``--numeric-method``,
``numeric: {method: ...}``) > all columns' (``--method``, ``method:``) > the preset's choice.
Thresholds and effect floors resolve the same way, independently of where the method came
from (as Evidently's ``stattest_threshold`` options do). The command line replaces the config
file at the same level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from ..formats import check_format, display_path, load_yaml
from .columns import CATEGORICAL, NUMERIC, PRESETS, TESTED_KINDS, method_named

CONFIG_FORMAT = 1
CORRECTIONS = ("none", "fdr", "bonferroni")
TASKS = ("auto", "classification", "regression")
COLUMN_KINDS = (NUMERIC, CATEGORICAL, "skip")

#: strict: p-value tests at every size, Benjamini-Hochberg over the tested columns, and a floor on
#: the effect (numeric: Wasserstein distance in reference standard deviations; categorical:
#: Jensen-Shannon distance) so that a huge sample does not flag a trivial shift
STRICT_MIN_EFFECT = {NUMERIC: 0.05, CATEGORICAL: 0.03}


@dataclass(frozen=True)
class ColumnRule:
    """Per-column settings from the config file."""

    method: str | None = None
    threshold: float | None = None
    kind: str | None = None  # numeric | categorical | skip
    min_effect: float | None = None


@dataclass(frozen=True)
class DriftSettings:
    preset: str = "default"
    method: str | None = None  # every column
    methods: dict[str, str] = field(default_factory=dict)  # by kind
    threshold: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    min_effect: dict[str, float] = field(default_factory=dict)  # by kind; empty: no floor
    per_column: dict[str, ColumnRule] = field(default_factory=dict)
    correction: str = "none"
    drift_share: float = 0.5
    key_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    target: str | None = None
    prediction: str | None = None
    task: str = "auto"
    pos_label: str | None = None

    # --- resolution -----------------------------------------------------------------------
    def asked_method(self, column: str, kind: str) -> tuple[str | None, str]:
        """The method asked for a column (None: the preset chooses) and where it was asked."""
        rule = self.per_column.get(column)
        if rule and rule.method:
            return rule.method, " (config file, per column)"
        if kind in self.methods:
            return self.methods[kind], f" (asked for {kind} columns)"
        if self.method:
            return self.method, " (asked for all columns)"
        return None, ""

    def threshold_for(self, column: str, kind: str) -> float | None:
        rule = self.per_column.get(column)
        if rule and rule.threshold is not None:
            return rule.threshold
        if kind in self.thresholds:
            return self.thresholds[kind]
        return self.threshold

    def threshold_for_fallback(self, column: str, kind: str) -> float | None:
        """The threshold for a column whose asked method did not fit (another method tests it):
        only one given for this column, or for its type when the type's method was not what
        was asked (a threshold given for the asked method does not fit the fallback's scale)."""
        rule = self.per_column.get(column)
        if rule and rule.threshold is not None and not rule.method:
            return rule.threshold
        if kind in self.thresholds and kind not in self.methods:
            return self.thresholds[kind]
        return None

    def min_effect_for(self, column: str, kind: str) -> float | None:
        rule = self.per_column.get(column)
        if rule and rule.min_effect is not None:
            return rule.min_effect
        return self.min_effect.get(kind)

    def kind_override(self, column: str) -> str | None:
        rule = self.per_column.get(column)
        return rule.kind if rule else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "method": self.method,
            "methods": dict(self.methods),
            "threshold": self.threshold,
            "thresholds": dict(self.thresholds),
            "min_effect": dict(self.min_effect),
            "per_column": {k: {f: v for f, v in vars(r).items() if v is not None} for k, r in self.per_column.items()},
            "correction": self.correction,
            "drift_share": self.drift_share,
            "key_columns": list(self.key_columns),
            "columns": list(self.columns) if self.columns is not None else None,
            "exclude": list(self.exclude),
            "target": self.target,
            "prediction": self.prediction,
            "task": self.task,
        }


def preset_settings(name: str) -> DriftSettings:
    if name not in PRESETS:
        raise UsageError(f"unknown preset '{name}'", hint="presets: " + ", ".join(PRESETS))
    if name == "strict":
        return DriftSettings(preset="strict", correction="fdr", min_effect=dict(STRICT_MIN_EFFECT))
    return DriftSettings()


def check_method(name: str, where: str) -> str:
    method = method_named(name)
    if method is None:
        from .columns import METHODS

        raise UsageError(f"{where}: unknown method '{name}'", hint="methods: " + ", ".join(METHODS))
    return method.name


def check_fraction(value: Any, where: str, *, low: float = 0.0, high: float | None = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where} must be a number, found {value!r}")  # NaN would compare false with everything
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise UsageError(f"{where} must be {bound}, found {value!r}")
    return float(value)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return tuple(str(v) for v in value)
    raise ConfigError(f"{where} must be a list of column names, found {value!r}")


CONFIG_KEYS = {
    "format",
    "preset",
    "method",
    "threshold",
    "min_effect",
    "numeric",
    "categorical",
    "per_column",
    "correction",
    "drift_share",
    "key_columns",
    "columns",
    "exclude",
    "target",
    "prediction",
    "task",
    "pos_label",
}


def load_config(path: str | Path, preset: str | None = None) -> DriftSettings:
    """Read a drift config file (YAML, ``format: 1``) over a preset: ``preset`` when given
    (the command line's), else the file's ``preset:``, else default."""
    source = display_path(path)
    if not Path(path).is_file():
        raise ConfigError(f"{source}: no such config file", file=source)
    data = load_yaml(path)
    if data is None:
        data = {}
    data = check_format(data, source, supported=CONFIG_FORMAT, kind="drift config")
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{unknown[0]}'",
            hint="keys: " + ", ".join(sorted(CONFIG_KEYS - {"format"})),
            file=source,
        )
    try:
        settings = preset_settings(preset or str(data.get("preset") or "default"))
        changes: dict[str, Any] = {}
        if "method" in data:
            changes["method"] = check_method(str(data["method"]), f"{source}: method")
        if "threshold" in data:
            changes["threshold"] = check_fraction(data["threshold"], f"{source}: threshold", high=None)
        methods, thresholds, floors = dict(settings.methods), dict(settings.thresholds), dict(settings.min_effect)
        if "min_effect" in data:
            value = check_fraction(data["min_effect"], f"{source}: min_effect", high=None)
            floors = {NUMERIC: value, CATEGORICAL: value}
        for kind in TESTED_KINDS:
            block = data.get(kind)
            if block is None:
                continue
            if not isinstance(block, dict) or set(block) - {"method", "threshold", "min_effect"}:
                raise ConfigError(f"{source}: '{kind}' takes method, threshold and min_effect", file=source)
            if "method" in block:
                methods[kind] = check_method(str(block["method"]), f"{source}: {kind}.method")
            if "threshold" in block:
                thresholds[kind] = check_fraction(block["threshold"], f"{source}: {kind}.threshold", high=None)
            if "min_effect" in block:
                floors[kind] = check_fraction(block["min_effect"], f"{source}: {kind}.min_effect", high=None)
        changes.update(methods=methods, thresholds=thresholds, min_effect=floors)
        per_column = dict(settings.per_column)
        for name, block in (data.get("per_column") or {}).items():
            where = f"{source}: per_column.{name}"
            if not isinstance(block, dict) or set(block) - {"method", "threshold", "type", "min_effect"}:
                raise ConfigError(f"{where} takes method, threshold, type and min_effect", file=source)
            kind = block.get("type")
            if kind is not None and kind not in COLUMN_KINDS:
                raise ConfigError(f"{where}.type must be one of {', '.join(COLUMN_KINDS)}, found {kind!r}", file=source)
            per_column[str(name)] = ColumnRule(
                method=check_method(str(block["method"]), f"{where}.method") if "method" in block else None,
                threshold=check_fraction(block["threshold"], f"{where}.threshold", high=None)
                if "threshold" in block
                else None,
                kind=kind,
                min_effect=check_fraction(block["min_effect"], f"{where}.min_effect", high=None)
                if "min_effect" in block
                else None,
            )
        changes["per_column"] = per_column
        if "correction" in data:
            if data["correction"] not in CORRECTIONS:
                raise ConfigError(f"{source}: correction must be one of {', '.join(CORRECTIONS)}", file=source)
            changes["correction"] = data["correction"]
        if "drift_share" in data:
            changes["drift_share"] = check_fraction(data["drift_share"], f"{source}: drift_share")
        for key in ("key_columns", "columns", "exclude"):
            if key in data and data[key] is not None:
                changes[key] = _names(data[key], f"{source}: {key}")
        for key in ("target", "prediction", "pos_label"):
            if data.get(key) is not None:
                changes[key] = str(data[key])
        if "task" in data:
            if data["task"] not in TASKS:
                raise ConfigError(f"{source}: task must be one of {', '.join(TASKS)}", file=source)
            changes["task"] = data["task"]
    except UsageError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(exc.message, hint=exc.hint, file=source) from None
    return replace(settings, **changes)
