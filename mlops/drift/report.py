"""The drift check: every column tested on its own (in parallel), then the dataset's verdict.

``check_drift(reference, current, settings)`` takes two ``Source``s (files or tables; where
they came from is the caller's business) and returns a ``DriftReport``; it never prints.

Per column (a worker thread each; numpy and pyarrow release the GIL while they work):
read the column from both sides, sort the finite values once (numeric) or count the
categories (categorical), decide its kind and its test (columns.py), compute the score, the
effect size and a small picture of both distributions for the HTML report. Then across
columns: p-values adjusted (``--correction``), the effect floor applied, and the verdict:
drifted when the share of drifted columns reaches ``drift_share`` or a key column drifted.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from ..progress import NO_PROGRESS, Progress
from . import stats
from .columns import (
    CATEGORICAL,
    DATETIME,
    INTEGER_CATEGORIES,
    METHODS,
    NUMERIC,
    TEXT,
    UNSUPPORTED,
    Choice,
    choose,
    detect_kind,
)
from .config import DriftSettings
from .io import Source, family

REPORT_FORMAT = 1
NUMERIC_FAMILIES = ("integer", "float")
MANY_CATEGORIES = 100  # a note says how many categories a column has above this
COCHRAN_SHARE = 0.2  # chi-square is rough when more than 20% of expected counts are below 5

# statuses: tested (a score), type_changed / empty_current (counted as drifted),
# skipped / empty_reference / no_score (the test gave NaN: not counted, so it lowers no share)
COUNTED = ("tested", "type_changed", "empty_current")


@dataclass(frozen=True)
class ColumnResult:
    name: str
    role: str  # feature | target | prediction
    kind: str  # numeric | categorical | text | datetime | unsupported | empty
    status: str
    drifted: bool
    method: str | None = None
    method_title: str | None = None
    score: float | None = None  # what is compared with the threshold: a p-value or a distance
    threshold: float | None = None
    rule: str | None = None
    statistic: float | None = None  # the test statistic behind a p-value (D, chi-square, z, A2)
    p_value: float | None = None
    adjusted_p: float | None = None
    effect: float | None = None
    effect_name: str | None = None
    min_effect: float | None = None
    by_values: bool = False
    reason: str = ""
    notes: tuple[str, ...] = ()
    reference: dict[str, Any] = field(default_factory=dict)
    current: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, Any] | None = None

    @property
    def counted(self) -> bool:
        return self.status in COUNTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.name,
            "role": self.role,
            "type": self.kind,
            "status": self.status,
            "drifted": self.drifted,
            "method": self.method,
            "method_title": self.method_title,
            "score": _num(self.score),
            "threshold": self.threshold,
            "rule": self.rule,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "adjusted_p_value": _num(self.adjusted_p),
            "effect": _num(self.effect),
            "effect_name": self.effect_name,
            "min_effect": self.min_effect,
            "tested_by_values": self.by_values,
            "reason": self.reason,
            "notes": list(self.notes),
            "reference": self.reference,
            "current": self.current,
            "distribution": self.distribution,
        }


@dataclass(frozen=True)
class Verdict:
    drifted: bool
    drifted_columns: int
    tested_columns: int
    share: float
    drift_share: float
    reasons: tuple[str, ...]
    key_columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "tested_columns": self.tested_columns,
            "share": self.share,
            "drift_share": self.drift_share,
            "reasons": list(self.reasons),
            "key_columns": list(self.key_columns),
        }


@dataclass(frozen=True)
class DriftReport:
    reference: dict[str, Any]
    current: dict[str, Any]
    settings: DriftSettings
    columns: tuple[ColumnResult, ...]
    verdict: Verdict
    only_in_reference: tuple[str, ...] = ()
    only_in_current: tuple[str, ...] = ()
    quality: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    def column(self, name: str) -> ColumnResult:
        return next(c for c in self.columns if c.name == name)

    def sorted_columns(self) -> list[ColumnResult]:
        """Drifted first, then the other tested columns, then what was not tested; by name within."""
        order = {True: 0, False: 1}
        return sorted(self.columns, key=lambda c: (order[c.drifted], 0 if c.counted else 1, c.name))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: every non-finite number as the string "inf", "-inf" or "nan"."""
        role = {c.role: c for c in self.columns if c.role != "feature"}
        return _finite(
            {
                "format": REPORT_FORMAT,
                "verdict": self.verdict.to_dict(),
                "reference": self.reference,
                "current": self.current,
                "settings": self.settings.to_dict(),
                "columns": [c.to_dict() for c in self.sorted_columns()],
                "only_in_reference": list(self.only_in_reference),
                "only_in_current": list(self.only_in_current),
                "target_drift": _role_summary(role.get("target")),
                "prediction_drift": _role_summary(role.get("prediction")),
                "quality": self.quality,
                "warnings": list(self.warnings),
                "seconds": round(self.seconds, 3),
            }
        )


def _finite(value: Any) -> Any:
    """Non-finite floats anywhere in nested dicts/lists as the strings JSON can carry."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _num(float(value))
    return value


def _role_summary(result: ColumnResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "column": result.name,
        "drifted": result.drifted,
        "method": result.method,
        "score": _num(result.score),
        "threshold": result.threshold,
    }


def _num(value: float | None) -> float | str | None:
    """JSON has no inf/NaN: say them as strings."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def cpu_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --- the check ------------------------------------------------------------------------------


def plan_columns(
    reference: Source, current: Source, settings: DriftSettings
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(columns in both sets to test, only in reference, only in current, warnings)."""
    ref_cols, cur_cols = reference.columns, current.columns
    everywhere = list(dict.fromkeys([*ref_cols, *cur_cols]))
    warnings: list[str] = []
    for label, names in (("--columns", settings.columns or ()), ("--key-columns", settings.key_columns)):
        unknown = [n for n in names if n not in everywhere]
        if unknown:
            raise UsageError(
                f"{label}: column '{unknown[0]}' is in neither data set", hint="columns: " + _few(everywhere, 12)
            )
    for label, name in (("--target", settings.target), ("--prediction", settings.prediction)):
        if name and name not in everywhere:
            raise UsageError(
                f"{label}: column '{name}' is in neither data set", hint="columns: " + _few(everywhere, 12)
            )
    missing_excluded = [n for n in settings.exclude if n not in everywhere]
    if missing_excluded:
        warnings.append(f"--exclude: no column named {', '.join(repr(n) for n in missing_excluded)}")
    if settings.columns is not None:
        wanted = list(dict.fromkeys([*settings.columns, *(c for c in (settings.target, settings.prediction) if c)]))
    else:
        wanted = everywhere
    wanted = [c for c in wanted if c not in settings.exclude]
    common = [c for c in wanted if c in ref_cols and c in cur_cols]
    only_ref = [c for c in wanted if c in ref_cols and c not in cur_cols]
    only_cur = [c for c in wanted if c in cur_cols and c not in ref_cols]
    if only_ref:
        warnings.append(f"{len(only_ref)} column(s) only in the reference, not checked: {_few(only_ref)}")
    if only_cur:
        warnings.append(f"{len(only_cur)} column(s) only in the current data, not checked: {_few(only_cur)}")
    return common, only_ref, only_cur, warnings


def check_drift(
    reference: Source,
    current: Source,
    settings: DriftSettings,
    *,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> DriftReport:
    """Test every column shared by both sets and judge the dataset."""
    from ..parallel import run_parallel

    started = time.perf_counter()
    common, only_ref, only_cur, warnings = plan_columns(reference, current, settings)
    for source in (reference, current):
        source.want(common)
        source.load()  # CSV files are parsed here, once, with pyarrow's own threads
    results: dict[str, ColumnResult] = {}
    # the costly (numeric) columns first, so that the workers finish together
    ordered = sorted(common, key=lambda c: 0 if family(reference.column_type(c)) in NUMERIC_FAMILIES else 1)
    # model quality reads the target and the prediction after the tests: keep them until then
    keep = (
        {c for c in (settings.target, settings.prediction) if c} if settings.target and settings.prediction else set()
    )
    with progress.task("testing columns", total=len(ordered)) as task:

        def work(name: str) -> ColumnResult:
            result = _test_column(name, reference, current, settings)
            if name not in keep:
                reference.release(name)
                current.release(name)
            return result

        with run_parallel(work, ordered, jobs=min(jobs or cpu_jobs(), max(1, len(ordered)))) as done:
            for result in done:
                results[result.name] = result
                task.advance()
    columns = _finish([results[c] for c in common], settings)
    verdict = judge(columns, settings, only_ref, only_cur)
    quality = None
    if settings.target and settings.prediction:
        both = [c for c in (settings.target, settings.prediction) if c in reference.columns and c in current.columns]
        if len(both) == 2:
            from .quality import model_quality

            quality = model_quality(reference, current, settings, columns={c.name: c for c in columns})
        else:
            warnings.append("model quality needs --target and --prediction in both data sets: skipped")
    for name in keep:
        reference.release(name)
        current.release(name)
    warnings = [*reference.warnings, *current.warnings, *warnings]
    for result in columns:
        if result.status == "type_changed":
            warnings.append(f"column '{result.name}': {result.reason}")
    return DriftReport(
        reference=reference.describe(),
        current=current.describe(),
        settings=settings,
        columns=tuple(columns),
        verdict=verdict,
        only_in_reference=tuple(only_ref),
        only_in_current=tuple(only_cur),
        quality=quality,
        warnings=tuple(dict.fromkeys(warnings)),
        seconds=time.perf_counter() - started,
    )


def judge(columns: list[ColumnResult], settings: DriftSettings, only_ref: list[str], only_cur: list[str]) -> Verdict:
    counted = [c for c in columns if c.counted]
    drifted = [c for c in counted if c.drifted]
    share = len(drifted) / len(counted) if counted else 0.0
    reasons: list[str] = []
    if not counted:
        skipped = "; ".join(f"{c.name}: {c.reason}" for c in columns[:5]) or "no column is in both data sets"
        raise DataError(
            f"no column could be tested ({skipped})", hint="check --columns/--exclude and that both sets share columns"
        )
    if share >= settings.drift_share:
        reasons.append(
            f"{len(drifted)} of {len(counted)} columns drifted ({share:.0%} >= drift share {settings.drift_share:.0%})"
        )
    by_name = {c.name: c for c in columns}
    for key in settings.key_columns:
        if key in by_name and by_name[key].drifted:
            reasons.append(f"key column '{key}' drifted")
        elif key in only_ref or key in only_cur:
            reasons.append(
                f"key column '{key}' is missing from the {'current' if key in only_ref else 'reference'} data"
            )
    return Verdict(
        bool(reasons),
        len(drifted),
        len(counted),
        share,
        settings.drift_share,
        tuple(reasons),
        tuple(settings.key_columns),
    )


def _finish(columns: list[ColumnResult], settings: DriftSettings) -> list[ColumnResult]:
    """Adjust p-values over the tested columns, apply the effect floors, decide each column."""
    tested = [c for c in columns if c.status == "tested"]
    # a NaN p-value is no test result: it is left out of the correction (and of the m it divides by)
    with_p = [c for c in tested if c.p_value is not None and not math.isnan(c.p_value)]
    adjusted = {
        c.name: float(p)
        for c, p in zip(with_p, stats.adjust([c.p_value for c in with_p], settings.correction), strict=True)
    }
    out: list[ColumnResult] = []
    for c in columns:
        if c.status != "tested":
            out.append(c)
            continue
        if c.score is None or math.isnan(c.score):
            # a NaN score is neither "drifted" nor "not drifted": its own status, not counted
            notes = c.notes
            if c.p_value is not None and settings.correction != "none":
                notes = (*notes, f"left out of the {settings.correction} correction")
            out.append(
                replace(
                    c,
                    status="no_score",
                    drifted=False,
                    adjusted_p=None,
                    notes=notes,
                    reason=f"{METHODS[c.method].title} is NaN: no test result, not counted in the drift share",
                )
            )
            continue
        method = METHODS[c.method]
        score = c.score
        adjusted_p = None
        if c.p_value is not None and settings.correction != "none":
            adjusted_p = adjusted[c.name]
            score = adjusted_p
        drifted = method.drifted(score, c.threshold)
        reason = f"{method.title} {_fmt(score)} {'meets' if drifted else 'does not meet'} {method.rule(c.threshold)}"
        if adjusted_p is not None:
            reason += f" (p {_fmt(c.p_value)} before the {settings.correction} correction over {len(with_p)} tests)"
        if drifted and c.min_effect is not None and c.effect is not None and c.effect < c.min_effect:
            drifted = False
            reason += f"; but the effect {_fmt(c.effect)} is below the floor {c.min_effect:g}: not drifted"
        out.append(replace(c, drifted=drifted, score=score, adjusted_p=adjusted_p, reason=reason))
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.4g}"


def _few(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- one column --------------------------------------------------------------------------------


@dataclass
class _Side:
    family: str
    rows: int
    nulls: int = 0
    nan: int = 0
    inf: int = 0
    values: np.ndarray | None = None  # numeric: finite values, sorted
    labels: list[Any] | None = None  # categorical: categories and their counts
    counts: np.ndarray | None = None

    @property
    def valid(self) -> int:
        return self.rows - self.nulls - self.nan - self.inf

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows": self.rows,
            "values": self.valid,
            "missing": self.nulls + self.nan,
            "nan": self.nan,
            "inf": self.inf,
            "missing_share": (self.nulls + self.nan) / self.rows if self.rows else 0.0,
        }
        if self.values is not None and len(self.values):
            v = self.values
            out.update(
                mean=stats.safe_mean(v),
                std=stats.safe_std(v),
                min=float(v[0]),
                median=float(v[len(v) // 2]),
                max=float(v[-1]),
                distinct=stats._distinct_sorted(v),
            )
        elif self.labels is not None and self.counts is not None and len(self.labels):
            order = np.argsort(-self.counts, kind="stable")[:5]
            total = max(int(self.counts.sum()), 1)
            out.update(
                distinct=int(np.count_nonzero(self.counts)),
                top=[[_label(self.labels[i]), float(self.counts[i] / total)] for i in order if self.counts[i]],
            )
        return out


def _label(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _side(array: Any) -> _Side:
    import pyarrow as pa
    import pyarrow.compute as pc

    fam = family(array.type)
    side = _Side(fam, len(array), nulls=array.null_count)
    if fam in NUMERIC_FAMILIES:
        # unsafe: integers beyond 2**53 round to the nearest float64 (a relative error below 1e-16,
        # nothing to a distribution test) instead of failing the safe cast
        floats = array if array.type == pa.float64() else pc.cast(array, pa.float64(), safe=False)
        parts = [_float_values(chunk) for chunk in floats.chunks]
        x = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0)
        finite = np.isfinite(x)
        bad = len(x) - int(np.count_nonzero(finite))
        if bad:
            nan_total = int(np.count_nonzero(np.isnan(x)))
            side.nan = nan_total - side.nulls
            side.inf = bad - nan_total
            x = x[finite]
        else:
            if x.base is not None or not x.flags.writeable:  # a view of Arrow's buffers (perhaps a caller's table):
                x = x.copy()  # the sort below is in place
        x.sort()
        side.values = x
    elif fam in ("string", "boolean"):
        counted = pc.value_counts(array)
        labels = counted.field("values").to_pylist()
        counts = _plain_values(counted.field("counts"), np.int64)
        keep = [i for i, v in enumerate(labels) if v is not None]
        side.labels = [labels[i] for i in keep]
        side.counts = counts[keep].astype(np.int64) if keep else np.zeros(0, dtype=np.int64)
    return side


def _plain_values(array: Any, dtype: Any) -> np.ndarray:
    """A primitive Arrow array's values as a read-only numpy view of its data buffer.

    pyarrow's own to_numpy and scalar conversions import pandas (0.3-0.4 s of start-up):
    reading the buffer directly keeps `mlops drift` free of it."""
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * np.dtype(dtype).itemsize
    )


def _float_values(chunk: Any) -> np.ndarray:
    """A float64 Arrow array as numpy, nulls as NaN."""
    values = _plain_values(chunk, np.float64)
    if chunk.null_count:
        validity = np.unpackbits(np.frombuffer(chunk.buffers()[0], dtype=np.uint8), bitorder="little")
        values = values.copy()
        values[validity[chunk.offset : chunk.offset + len(chunk)] == 0] = np.nan
    return values


def _align(ref: _Side, cur: _Side) -> stats.CountPair:
    index = {label: i for i, label in enumerate(ref.labels or [])}
    labels = list(ref.labels or [])
    for label in cur.labels or []:
        if label not in index:
            index[label] = len(labels)
            labels.append(label)
    r = np.zeros(len(labels), dtype=np.int64)
    c = np.zeros(len(labels), dtype=np.int64)
    r[: len(ref.labels or [])] = ref.counts if ref.counts is not None else 0
    if cur.labels:
        c[[index[label] for label in cur.labels]] = cur.counts
    return stats.CountPair(labels, r, c)


def _compatible(a: str, b: str) -> bool:
    if "null" in (a, b):
        return True
    if a in NUMERIC_FAMILIES and b in NUMERIC_FAMILIES:
        return True
    return a == b


def _not_numbers(array: Any, limit: int = 3) -> list[str]:
    """A few distinct values of a text column that do not read as numbers."""
    import pyarrow.compute as pc

    out: list[str] = []
    for value in pc.value_counts(array.slice(0, min(len(array), 100_000))).field("values").to_pylist():
        if value is None:
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            out.append(str(value))
            if len(out) >= limit:
                break
    return out


def _role(name: str, settings: DriftSettings) -> str:
    if name == settings.target:
        return "target"
    if name == settings.prediction:
        return "prediction"
    return "feature"


def _kind(name: str, role: str, ref: _Side, cur: _Side, pair_distinct: int | None, settings: DriftSettings) -> str:
    override = settings.kind_override(name)
    if override:
        return override
    fam = ref.family if ref.family != "null" else cur.family
    distinct = pair_distinct if pair_distinct is not None else len(ref.labels or [])
    if role != "feature" and fam in NUMERIC_FAMILIES:
        # Evidently's rule for targets and predictions: regression when numeric with more than 5 values;
        # a prediction of floats within [0, 1] is a probability: numeric
        if settings.task == "regression" or (settings.task != "classification" and distinct > 5):
            return NUMERIC
        if (
            role == "prediction"
            and fam == "float"
            and ref.values is not None
            and len(ref.values)
            and ref.values[0] >= 0
            and ref.values[-1] <= 1
        ):
            return NUMERIC
        return CATEGORICAL
    return detect_kind(fam, distinct, ref.valid)


def _test_column(name: str, reference: Source, current: Source, settings: DriftSettings) -> ColumnResult:
    role = _role(name, settings)
    if settings.kind_override(name) == "skip":
        return ColumnResult(name, role, "-", "skipped", False, reason="skipped by the config file")
    ref_array, cur_array = reference.column(name), current.column(name)
    rf, cf = family(ref_array.type), family(cur_array.type)
    if not _compatible(rf, cf):
        text_side = ref_array if rf == "string" else cur_array if cf == "string" else None
        reason = f"type changed: reference {rf}, current {cf}"
        if text_side is not None and {rf, cf} & set(NUMERIC_FAMILIES):
            examples = _not_numbers(text_side)
            if examples:
                reason += " (values such as " + ", ".join(repr(e) for e in examples) + ")"
        return ColumnResult(
            name, role, f"{rf}/{cf}", "type_changed", True, method="type", method_title="type check", reason=reason
        )
    ref, cur = _side(ref_array), _side(cur_array)
    del ref_array, cur_array
    base = dict(reference=ref.summary(), current=cur.summary())
    fam = rf if rf != "null" else cf
    if ref.valid == 0:
        return ColumnResult(
            name,
            role,
            "empty",
            "empty_reference",
            False,
            reason="no values in the reference (all missing): nothing to compare with",
            **base,
        )
    if cur.valid == 0:
        return ColumnResult(
            name,
            role,
            "empty",
            "empty_current",
            True,
            method="missing",
            method_title="all missing",
            reason=f"no values in the current data (all missing); the reference has {ref.valid}",
            **base,
        )
    if fam not in (*NUMERIC_FAMILIES, "string", "boolean"):
        kind = DATETIME if fam == "datetime" else UNSUPPORTED
        return ColumnResult(name, role, kind, "skipped", False, reason=f"{kind} columns are not tested", **base)
    pair: stats.NumericPair | None = None
    counts: stats.CountPair | None = None
    if fam in NUMERIC_FAMILIES:
        pair = stats.NumericPair(ref.values, cur.values, integer="integer" in (rf, cf) and "float" not in (rf, cf))
        n_values = pair.n_values(INTEGER_CATEGORIES)
        ref_distinct = pair.distinct_ref()
    else:
        counts = _align(ref, cur)
        n_values = len(counts.labels)
        ref_distinct = len(ref.labels or [])
    kind = _kind(name, role, ref, cur, ref_distinct, settings)
    if kind == TEXT:
        return ColumnResult(
            name,
            role,
            TEXT,
            "skipped",
            False,
            reason=f"free text or identifiers ({ref_distinct} distinct of {ref.valid} values): not tested; "
            "declare it categorical in a config file to test it",
            **base,
        )
    if kind == NUMERIC and pair is None:
        from ..errors import ConfigError

        raise ConfigError(
            f"column '{name}' holds {fam} values: it cannot be tested as numeric",
            hint="remove its 'type: numeric' from the config file",
        )
    asked, where = settings.asked_method(name, kind)
    choice: Choice = choose(kind, ref.valid, n_values, settings.preset, asked, asked_where=where)
    rule_explicit = bool(settings.per_column.get(name) and settings.per_column[name].method)
    if choice.note and rule_explicit:
        raise UsageError(
            f"column '{name}': {choice.note.split(': used')[0]}", hint="pick another method for it in the config file"
        )
    method = choice.method
    by_counts = kind == CATEGORICAL or choice.by_values  # categories, or a numeric column's values as categories
    by_values = by_counts and pair is not None
    if by_counts and counts is None:
        counts = stats.value_counts(pair)
    notes: list[str] = [choice.note] if choice.note else []
    if choice.note:  # a fallback: a threshold meant for the asked method is on another scale
        threshold = settings.threshold_for_fallback(name, kind)
        meant = settings.threshold_for(name, kind)
        if threshold is None and meant is not None:
            notes.append(
                f"the threshold {meant:g} was given for {asked}: "
                f"{method.name} uses its default {method.default_threshold:g}"
            )
    else:
        threshold = settings.threshold_for(name, kind)
    threshold = method.default_threshold if threshold is None else threshold
    statistic = p_value = None
    if method.name == "ks":
        statistic, p_value = stats.ks(pair)
        score = p_value
    elif method.name == "anderson":
        statistic, p_value, note = stats.anderson(pair)
        score = p_value
        if note:
            notes.append(note)
    elif method.name == "chisquare":
        statistic, p_value = stats.chisquare(counts)
        score = p_value
        expected = counts.ref * (counts.n_cur / counts.n_ref)
        small = float(np.mean(expected < 5)) if len(expected) else 0.0
        if small > COCHRAN_SHARE:
            notes.append(f"{small:.0%} of the expected counts are below 5: the chi-square p-value is rough")
    elif method.name == "z":
        statistic, p_value = stats.ztest(counts)
        score = p_value
    elif method.name == "wasserstein":
        score = stats.wasserstein_norm(pair)
    elif method.name in ("jensenshannon", "psi"):
        fill = method.name == "psi"
        shares = (
            stats.category_shares(counts, fill_zeros=fill) if by_counts else stats.binned_shares(pair, fill_zeros=fill)
        )
        score = stats.psi(*shares) if fill else stats.jensenshannon(*shares)
    elif method.name == "hellinger":
        score = stats.hellinger_categories(counts) if by_counts else stats.hellinger_numeric(pair)
    else:  # pragma: no cover - METHODS and this switch list the same names
        raise AssertionError(method.name)
    if by_counts:
        effect_name = "Jensen-Shannon distance"
        effect = (
            score
            if method.name == "jensenshannon"
            else stats.jensenshannon(*stats.category_shares(counts, fill_zeros=False))
        )
        floor_kind = CATEGORICAL
        distribution = stats.bars(counts)
    else:
        effect_name = "Wasserstein distance on the reference's rank scale (normed)"
        effect = stats.rank_effect(pair)
        floor_kind = NUMERIC
        distribution = stats.histogram(pair)
    if counts is not None and len(counts.labels) > MANY_CATEGORIES:
        notes.append(f"{len(counts.labels)} categories; the picture shows the 20 most frequent")
    if ref.nan or ref.inf or cur.nan or cur.inf:
        notes.append("NaN and infinite values are left out of the test, as missing values are")
    return ColumnResult(
        name,
        role,
        kind,
        "tested",
        False,
        method=method.name,
        method_title=method.title,
        score=float(score),
        threshold=float(threshold),
        rule=method.rule(threshold),
        statistic=None if statistic is None else float(statistic),
        p_value=None if p_value is None else float(p_value),
        effect=float(effect),
        effect_name=effect_name,
        min_effect=settings.min_effect_for(name, floor_kind),
        by_values=by_values,
        notes=tuple(notes),
        distribution=distribution,
        **base,
    )
