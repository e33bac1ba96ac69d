"""Drift distances between two profiles of one basis, and a drift report made from them.

Per column, from the counts alone:

- shares per bin (numeric: the basis's quantile bins with under- and overflow; categorical: the
  basis's categories and "other"), each side divided by its own count of values;
- ``psi``: the population stability index over those shares, empty bins filled as Evidently
  does; ``jensenshannon``: the Jensen-Shannon distance (natural log) over the same shares;
- ``chisquare`` (categorical): Pearson's chi-square p-value of the current counts against the
  reference's, as ``mlops.drift.stats.chisquare`` on raw data (same counts: the same value);
- ``wasserstein`` (numeric): the area between the two CDFs, each known exactly at the bin edges
  and taken as linear inside a bin (a bin of one value: a step at the value), divided by
  max(reference std, 0.001) like drift's "Wasserstein distance (normed)". Its error against
  the raw-data value is at most ``bound``: the sum over bins of the bin's width times the share
  of both sides' values inside it (the true CDFs stay within a bin's end values), normed the
  same way; bins of one value contribute nothing. The report carries the bound beside the score.

On the same bins the profile's PSI and Jensen-Shannon are the raw values; ``mlops drift`` on raw
data bins numeric columns differently (Sturges bins over both sides' range, Evidently's rule),
so the two PSI/JS numbers of a numeric column differ by the binning, not by the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..drift import stats
from ..drift.columns import METHODS
from .profile import CATEGORICAL, NUMERIC, Basis, CategoricalProfile, ColumnBasis, NumericProfile, Profile

PROFILE_METHODS = {NUMERIC: ("wasserstein", "psi", "jensenshannon"), CATEGORICAL: ("jensenshannon", "psi", "chisquare")}
DEFAULT_METHOD = {NUMERIC: "wasserstein", CATEGORICAL: "jensenshannon"}


@dataclass(frozen=True)
class Distances:
    column: str
    kind: str
    values: dict[str, float]  # method -> score
    wasserstein_bound: float | None = None  # numeric: |profile W - raw W| (normed) is at most this
    reference_rows: int = 0
    current_rows: int = 0


def shares(ref: Any, cur: Any) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cur, dtype=np.float64)
    return r / max(r.sum(), 1.0), c / max(c.sum(), 1.0)


def _counts(p: NumericProfile | CategoricalProfile) -> tuple[int, ...]:
    return p.bins if isinstance(p, NumericProfile) else (*p.counts, p.other)


def distances(
    column: ColumnBasis,
    ref: NumericProfile | CategoricalProfile,
    cur: NumericProfile | CategoricalProfile,
    *,
    chisquare: bool = True,
) -> Distances:
    """The distances of one column; ``chisquare=False`` leaves out the one that needs scipy."""
    r_counts, c_counts = _counts(ref), _counts(cur)
    values: dict[str, float] = {}
    bound = None
    if sum(r_counts) == 0 or sum(c_counts) == 0:
        return Distances(column.name, column.kind, {}, None, sum(r_counts), sum(c_counts))
    r, c = shares(r_counts, c_counts)
    filled_r = _fill(r)
    filled_c = _fill(c)
    values["psi"] = stats.psi(filled_r, filled_c)
    values["jensenshannon"] = stats.jensenshannon(r, c)
    if column.kind == NUMERIC:
        assert isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile)
        w, b = wasserstein(column, ref, cur)
        scale = max(ref.std() or 0.0, stats.STD_FLOOR)
        values["wasserstein"] = w / scale
        bound = b / scale
    elif chisquare:
        pair = stats.CountPair(
            [*column.categories, "(other)"], np.asarray(r_counts, dtype=np.int64), np.asarray(c_counts, dtype=np.int64)
        )
        keep = (pair.ref + pair.cur) > 0  # categories neither side has are no categories of this pair
        pair = stats.CountPair([x for x, k in zip(pair.labels, keep, strict=True) if k], pair.ref[keep], pair.cur[keep])
        values["chisquare"] = stats.chisquare(pair)[1]
    return Distances(column.name, column.kind, values, bound, sum(r_counts), sum(c_counts))


def _fill(s: np.ndarray) -> np.ndarray:
    return stats._fill_zeros(s)  # Evidently's rule, the one raw PSI uses


class _Cdf:
    """One side's CDF from its bins: a bin's share spread evenly over it, or (a bin of one
    reference value) all at its start. The underflow bin spans the side's own minimum to the
    first edge, the overflow bin the last edge to its own maximum."""

    def __init__(self, column: ColumnBasis, p: NumericProfile) -> None:
        edges = np.asarray(column.edges, dtype=np.float64)
        share = np.asarray(p.bins, dtype=np.float64) / max(p.count, 1)
        self.lo = min(p.min, float(edges[0])) if p.min is not None else float(edges[0])
        self.hi = max(p.max, float(edges[-1])) if p.max is not None else float(edges[-1])
        self.values = column.values
        self.edges = edges
        self.share = share
        if self.values:  # spread: under- and overflow only; points: the inner bins at their starts
            self.points_at = edges[:-1]
            self.points_cum = np.concatenate(([0.0], np.cumsum(share[1:-1])))
        else:
            self.knots = np.concatenate(([self.lo], edges, [self.hi]))
            self.cum = np.concatenate(([0.0], np.cumsum(share)))

    def knots_x(self) -> np.ndarray:
        return np.concatenate(([self.lo], self.edges, [self.hi]))

    def __call__(self, x: np.ndarray, *, at: bool) -> tuple[np.ndarray, np.ndarray]:
        """(F at each x, the part of F from spread shares); ``at``: a point at x counts."""
        if not self.values:
            f = np.interp(x, self.knots, self.cum)
            return f, f
        first, last = float(self.edges[0]), float(self.edges[-1])
        under = self.share[0] * (
            np.clip((x - self.lo) / (first - self.lo), 0.0, 1.0) if first > self.lo else (x >= first).astype(float)
        )
        over = self.share[-1] * (
            np.clip((x - last) / (self.hi - last), 0.0, 1.0) if self.hi > last else (x >= self.hi).astype(float)
        )
        index = np.searchsorted(self.points_at, x, side="right" if at else "left")
        points = self.points_cum[index]
        return under + points + over, under + over


def wasserstein(column: ColumnBasis, ref: NumericProfile, cur: NumericProfile) -> tuple[float, float]:
    """(W1 between the two sides' piecewise CDFs, the most it can differ from W1 of the raw
    values: per segment its width times how much the spread shares of both sides rise over it,
    the range the true CDFs keep to; shares of one value add nothing)."""
    a, b = _Cdf(column, ref), _Cdf(column, cur)
    grid = np.unique(np.concatenate((a.knots_x(), b.knots_x())))
    if len(grid) < 2:
        return 0.0, 0.0
    left, right = grid[:-1], grid[1:]
    fa0, sa0 = a(left, at=True)
    fb0, sb0 = b(left, at=True)
    fa1, sa1 = a(right, at=False)
    fb1, sb1 = b(right, at=False)
    w = right - left
    d0, d1 = fa0 - fb0, fa1 - fb1
    same = d0 * d1 >= 0
    denominator = np.where(same, 1.0, np.abs(d0) + np.abs(d1))
    area = np.where(same, (np.abs(d0) + np.abs(d1)) / 2, (d0 * d0 + d1 * d1) / (2 * denominator))
    total = float(np.sum(w * area))
    bound = float(np.sum(w * ((sa1 - sa0) + (sb1 - sb0))))
    return total, bound


def compare_profiles(
    basis: Basis, ref: Profile, cur: Profile, *, only: Any = None, chisquare: Any = None
) -> list[Distances]:
    """Distances of the columns both profiles have (``only``: of these names; ``chisquare``: the
    names whose chi-square p-value is wanted, None: all)."""
    out = []
    for column in basis.profiled():
        if only is not None and column.name not in only:
            continue
        a, b = ref.columns.get(column.name), cur.columns.get(column.name)
        if a is None or b is None:
            continue
        out.append(distances(column, a, b, chisquare=chisquare is None or column.name in chisquare))
    return out


def drift_report(basis: Basis, ref: Profile, cur: Profile, settings: Any, *, reference: str, current: str) -> Any:
    """A ``mlops.drift.report.DriftReport`` from two profiles: per column the method asked for
    (wasserstein/psi/jensenshannon for numeric, jensenshannon/psi/chisquare for categorical; default
    wasserstein and jensenshannon, Evidently's choice for large references), its threshold, and
    the dataset verdict by drift's own rule (drift share, key columns)."""
    from ..drift.report import ColumnResult, DriftReport, judge

    results = []
    wanted = [
        c.name
        for c in basis.profiled()
        if (settings.columns is None or c.name in settings.columns) and c.name not in settings.exclude
    ]
    by_chisquare = {n for n in wanted if settings.asked_method(n, CATEGORICAL)[0] == "chisquare"}
    for d in compare_profiles(basis, ref, cur, only=set(wanted), chisquare=by_chisquare):
        asked, _ = settings.asked_method(d.column, d.kind)
        name = asked if asked in PROFILE_METHODS[d.kind] else DEFAULT_METHOD[d.kind]
        notes: tuple[str, ...] = ()
        if asked and asked != name:
            notes = (f"{asked} needs the raw values; from profiles: {name}",)
        method = METHODS[name]
        threshold = settings.threshold_for(d.column, d.kind) if name == asked else None
        if threshold is None:
            threshold = method.default_threshold
        side = {"rows": d.reference_rows}
        if not d.values:
            results.append(
                ColumnResult(
                    d.column,
                    "feature",
                    d.kind,
                    "empty_current" if d.reference_rows else "empty_reference",
                    d.reference_rows > 0,
                    reason="no values on one side",
                    reference=side,
                )
            )
            continue
        score = d.values[name]
        drifted = method.drifted(score, threshold)
        reason = f"{method.title} {score:.4g} {'meets' if drifted else 'does not meet'} {method.rule(threshold)}"
        if name == "wasserstein" and d.wasserstein_bound is not None:
            notes = (*notes, f"from profiles: within {d.wasserstein_bound:.3g} of the raw-data value")
        results.append(
            ColumnResult(
                d.column,
                "feature",
                d.kind,
                "tested",
                drifted,
                method=name,
                method_title=method.title,
                score=score,
                threshold=threshold,
                rule=method.rule(threshold),
                p_value=score if method.p_value else None,
                reason=reason,
                notes=notes,
                reference={"rows": d.reference_rows},
                current={"rows": d.current_rows, **{k: _round(v) for k, v in d.values.items()}},
            )
        )
    verdict = judge(results, settings, [], [])
    return DriftReport(
        reference={"source": reference, "rows": ref.rows},
        current={"source": current, "rows": cur.rows},
        settings=settings,
        columns=tuple(results),
        verdict=verdict,
    )


def _round(value: float) -> float:
    return value if not math.isfinite(value) else float(f"{value:.6g}")


def profile_drift(
    reference_files: list[Any], current_files: list[Any], settings: Any, *, reference: str, current: str
) -> Any:
    """``mlops drift --profile``: both sides streamed into profiles of the reference's basis (bounded
    memory at any size), then compared. Columns the settings leave out are not profiled."""
    import time

    from .profile import make_basis, profile_files

    started = time.perf_counter()
    exclude = tuple(settings.exclude)
    basis = make_basis(reference_files, exclude=exclude, columns=settings.columns)
    ref_profile = profile_files(reference_files, basis)
    cur_profile = profile_files(current_files, basis)
    report = drift_report(basis, ref_profile, cur_profile, settings, reference=reference, current=current)
    from dataclasses import replace

    skipped = [f"column '{c.name}' not profiled: {c.why}" for c in basis.columns if c.why]
    return replace(report, warnings=tuple(skipped), seconds=time.perf_counter() - started)
