"""The drift statistics, vectorised with numpy over values sorted once per column.

Every function takes what the column preparation made once (``NumericPair``: the finite
values of both sides, sorted; ``CountPair``: counts per category over the union of both
sides' categories) and returns plain floats. Definitions follow Evidently's stattests (the
binning of PSI, Jensen-Shannon and Hellinger included) so that its users' results carry
over; the numbers agree with scipy's (``ks_2samp``, ``chisquare``, ``wasserstein_distance``,
``jensenshannon``, ``anderson_ksamp``) to 1e-9, which tests/drift/test_stats_scipy.py holds.

Costs at n rows per side: one sort per side (done by the caller), then O(n) merges:
the two-sample ECDFs come from one stable merge of the sorted sides, shared by KS and
Wasserstein; histograms are ``searchsorted`` of the bin edges into the sorted values.
scipy is imported only where a p-value needs its distributions (KS, Anderson-Darling,
chi-square); Wasserstein, Jensen-Shannon, PSI, Hellinger and the z-test need only numpy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KS_EXACT_MAX = 10_000  # scipy's ks_2samp(method="auto") computes exact p-values up to this many values per side
STD_FLOOR = 0.001  # Evidently: Wasserstein is divided by max(std(reference), 0.001)
PSI_ZERO = 0.0001  # Evidently's stand-in share for an empty bin (PSI only)
VALUES_NOT_BINS = 20  # Evidently bins a numeric column for PSI/JS only above 20 distinct reference values


@dataclass
class NumericPair:
    """Finite values of one numeric column, each side sorted ascending."""

    ref: np.ndarray
    cur: np.ndarray
    integer: bool = False  # the column held integers (numpy's histogram rule widens bins to >= 1)
    _merged: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _distinct: tuple[int, int] | None = field(default=None, repr=False)
    _std: float | None = field(default=None, repr=False)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(all values sorted, count of reference values <= each, count of current values <= each),
        the counts exact at the last position of every run of equal values."""
        if self._merged is None:
            n = len(self.ref)
            both = np.concatenate((self.ref, self.cur))
            # a stable sort of two sorted runs is one linear merge (timsort finds the runs)
            order = np.argsort(both, kind="stable")
            values = both[order]
            cum_cur = np.cumsum(order >= n)
            cum_ref = np.arange(1, len(both) + 1) - cum_cur
            self._merged = (values, cum_ref, cum_cur)
        return self._merged

    def distinct_ref(self) -> int:
        if self._distinct is None:
            self._distinct = (_distinct_sorted(self.ref), _distinct_sorted(self.cur))
        return self._distinct[0]

    def distinct_cur(self) -> int:
        self.distinct_ref()
        return self._distinct[1]

    def ref_std(self) -> float:
        if self._std is None:
            self._std = safe_std(self.ref)
        return self._std

    def n_values(self, limit: int) -> int:
        """Distinct values of both sides together, exact up to ``limit`` (above it: a lower bound above ``limit``)."""
        dr, dc = self.distinct_ref(), self.distinct_cur()
        if dr > limit or dc > limit:
            return max(dr, dc)
        return len(self.union_values())

    def union_values(self) -> np.ndarray:
        return np.union1d(_unique_sorted(self.ref), _unique_sorted(self.cur))


@dataclass
class CountPair:
    """Counts per category over the union of both sides' categories (same order on both sides)."""

    labels: list[Any]
    ref: np.ndarray
    cur: np.ndarray

    @property
    def n_ref(self) -> int:
        return int(self.ref.sum())

    @property
    def n_cur(self) -> int:
        return int(self.cur.sum())


HUGE = 1e150  # beyond this, squares (std) or sums (mean) of float64 values can overflow


def _scale(sorted_values: np.ndarray) -> float:
    return max(abs(float(sorted_values[0])), abs(float(sorted_values[-1]))) if len(sorted_values) else 0.0


def safe_mean(sorted_values: np.ndarray) -> float:
    """The mean of sorted finite values, computed on scaled values when the sum could overflow."""
    scale = _scale(sorted_values)
    if scale > HUGE:
        return float(np.mean(sorted_values / scale) * scale)
    return float(np.mean(sorted_values))


def safe_std(sorted_values: np.ndarray) -> float:
    """The (population) standard deviation of sorted finite values, without overflow of the squares."""
    scale = _scale(sorted_values)
    if scale > HUGE:
        return float(np.std(sorted_values / scale) * scale)
    return float(np.std(sorted_values))


def _distinct_sorted(values: np.ndarray) -> int:
    return 0 if len(values) == 0 else int(np.count_nonzero(values[1:] != values[:-1])) + 1


def _unique_sorted(values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def value_counts(pair: NumericPair) -> CountPair:
    """A numeric column's values as categories (low-cardinality numeric columns)."""
    labels = pair.union_values()
    ref = np.diff(np.searchsorted(pair.ref, labels, side="right"), prepend=0)
    cur = np.diff(np.searchsorted(pair.cur, labels, side="right"), prepend=0)
    return CountPair([v.item() for v in labels], ref, cur)


# --- numeric: two-sample ECDF statistics -------------------------------------------------------


def ks(pair: NumericPair) -> tuple[float, float]:
    """Two-sided Kolmogorov-Smirnov: (D, p-value), as scipy.stats.ks_2samp(method="auto")."""
    n, m = len(pair.ref), len(pair.cur)
    if max(n, m) <= KS_EXACT_MAX:
        from scipy import stats

        result = stats.ks_2samp(pair.ref, pair.cur)  # exact p-values: scipy's own path
        return float(result.statistic), float(result.pvalue)
    values, cum_ref, cum_cur = pair.merged()
    last = _run_ends(values)
    diff = cum_ref[last] / n - cum_cur[last] / m
    d = float(max(np.clip(-diff.min(), 0, 1), diff.max()))
    from scipy import stats

    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def _run_ends(values: np.ndarray) -> np.ndarray:
    """Positions of the last of each run of equal values in a sorted array."""
    ends = np.empty(len(values), dtype=bool)
    np.not_equal(values[:-1], values[1:], out=ends[:-1])
    ends[-1] = True
    return ends


def wasserstein(pair: NumericPair) -> float:
    """First Wasserstein distance, as scipy.stats.wasserstein_distance, computed as the area
    between the quantile functions: no merge of the values, O(n + m) after the sorts.

    The quantile functions step at i/n (reference) and j/m (current). Between a step and the
    step before it (of either side) both quantile functions are constant; with the steps as
    integers over n*m the step before is known without merging: reference step i*m follows
    the (i*m - 1) // n current steps strictly below it, current step j*n the (j*n) // m
    reference steps at or below it (at a tie the reference step comes first, so the current
    one spans nothing).
    """
    u, v = pair.ref, pair.cur
    n, m = len(u), len(v)
    if float(n) * m >= 2.0**50:  # pragma: no cover - beyond ~10**15 the float floors below could round
        return _wasserstein_cdf(pair)
    # the steps i*m and j*n are integers below 2**50, exact in float64; so are the floors of
    # their quotients (a non-integer quotient is at least 1/n below the next integer)
    step_u = np.arange(1, n + 1, dtype=np.float64) * m
    below = np.floor((step_u - 1) / n)  # current steps strictly below each reference step
    gathered = v[below.astype(np.intp)]
    below *= n
    np.maximum(below, step_u - m, out=below)
    np.subtract(step_u, below, out=step_u)  # each reference step's width
    np.subtract(u, gathered, out=gathered)
    total = _dot(step_u, np.abs(gathered, out=gathered))
    step_v = np.arange(1, m + 1, dtype=np.float64) * n
    upto = np.floor(step_v / m)  # reference steps at or below each current step (a tie comes first)
    gathered = u[np.minimum(upto, n - 1).astype(np.intp)]
    upto *= m
    np.maximum(upto, step_v - n, out=upto)
    np.subtract(step_v, upto, out=step_v)
    np.subtract(gathered, v, out=gathered)
    total += _dot(step_v, np.abs(gathered, out=gathered))
    return float(total / (float(n) * m))


def _wasserstein_cdf(pair: NumericPair) -> float:
    """The same distance as scipy computes it: the area between the ECDFs over the merged values."""
    values, cum_ref, cum_cur = pair.merged()
    if len(values) < 2:
        return 0.0
    gaps = np.abs(cum_ref[:-1] / len(pair.ref) - cum_cur[:-1] / len(pair.cur))
    return float(_dot(gaps, np.diff(values)))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a * b) without BLAS: OpenBLAS' own threads fight the column workers (8x slower under load)."""
    return float(np.einsum("i,i->", a, b))


def reference_std(pair: NumericPair) -> float:
    return pair.ref_std()


def wasserstein_norm(pair: NumericPair) -> float:
    """Evidently's "Wasserstein distance (normed)": W1 / max(std(reference), 0.001)."""
    return wasserstein(pair) / max(reference_std(pair), STD_FLOOR)


def rank_scale(pair: NumericPair) -> NumericPair:
    """Both sides on the reference's rank scale: each value becomes its mid-rank share in the
    reference (the mean of the shares below and at or below it), in [0, 1], sorted as before."""
    n = len(pair.ref)

    def ranks(values: np.ndarray) -> np.ndarray:
        below = np.searchsorted(pair.ref, values, side="left")
        upto = np.searchsorted(pair.ref, values, side="right")
        return (below + upto) / (2.0 * n)

    return NumericPair(ranks(pair.ref), ranks(pair.cur))


def rank_effect(pair: NumericPair) -> float:
    """The numeric effect size: Wasserstein distance on the reference's rank scale, in that
    scale's standard deviations (1/sqrt(12) for a column without ties).

    A heavy tail inflates the raw standard deviation and hides a shift that is plain on the log
    or rank scale; the rank scale does not care how far the tail reaches, and any monotone
    transform of the column (log, sqrt) gives the same effect. For a normal column it is 0.977
    times the raw scale's (a shift of d standard deviations moves the ranks by d * E[phi(Z)] =
    d * 0.282, and sqrt(12) * 0.282 = 0.977), so the strict preset's floor keeps its meaning there."""
    if len(pair.ref) == 0 or len(pair.cur) == 0:
        return math.nan
    return wasserstein_norm(rank_scale(pair))


def anderson(pair: NumericPair) -> tuple[float, float, str | None]:
    """k-sample Anderson-Darling (scipy.stats.anderson_ksamp, midrank): statistic, p-value,
    and a note when scipy capped the p-value to its table's range [0.001, 0.25] (or when
    there was nothing to compute: one value on both sides; an input scipy refuses gives NaN)."""
    import inspect

    from scipy import stats

    # scipy 1.17 renamed midrank=True to variant="midrank"; both mean what Evidently computes
    if pair.ref[0] == pair.ref[-1] == pair.cur[0] == pair.cur[-1]:
        # one value on both sides: nothing can differ (scipy refuses "one distinct observation")
        return 0.0, 1.0, "one value on both sides: nothing to compare, p = 1"
    options = {"variant": "midrank"} if "variant" in inspect.signature(stats.anderson_ksamp).parameters else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = stats.anderson_ksamp([pair.ref, pair.cur], **options)
        except ValueError as exc:  # any other input scipy refuses: no result for this column, not a crash
            return math.nan, math.nan, f"scipy could not compute it: {exc}"
    note = next(("scipy: " + str(w.message).split(". ")[0] for w in caught if "p-value" in str(w.message)), None)
    p = getattr(result, "pvalue", None)
    if p is None:  # scipy < 1.10 named it significance_level
        p = result.significance_level
    return float(result.statistic), float(p), note


# --- binning (Evidently's get_binned_data) ------------------------------------------------------


def sturges_edges(lo: float, hi: float, count: int, *, integer: bool) -> np.ndarray:
    """numpy.histogram_bin_edges(x, "sturges") from x's min, max and size alone."""
    first, last = lo, hi
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (hi - lo) / (np.log2(count) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        bins = int(np.ceil((last - first) / width))
    else:
        bins = 1
    return np.linspace(first, last, bins + 1, endpoint=True)


def counts_in_bins(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """numpy.histogram's counts (bins closed on the left, the last also on the right) by searchsorted."""
    inner = np.searchsorted(sorted_values, edges[1:-1], side="left")
    bounds = np.concatenate(
        (
            [np.searchsorted(sorted_values, edges[0], side="left")],
            inner,
            [np.searchsorted(sorted_values, edges[-1], side="right")],
        )
    )
    return np.diff(bounds)


def binned_shares(pair: NumericPair, *, fill_zeros: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shares per bin (above 20 distinct reference values: Sturges bins over both sides' range)
    or per value (otherwise), each side divided by its own size; optionally Evidently's zero fill."""
    if pair.distinct_ref() > VALUES_NOT_BINS:
        lo = min(pair.ref[0], pair.cur[0])
        hi = max(pair.ref[-1], pair.cur[-1])
        edges = sturges_edges(lo, hi, len(pair.ref) + len(pair.cur), integer=pair.integer)
        ref = counts_in_bins(pair.ref, edges) / len(pair.ref)
        cur = counts_in_bins(pair.cur, edges) / len(pair.cur)
    else:
        counts = value_counts(pair)
        ref, cur = counts.ref / len(pair.ref), counts.cur / len(pair.cur)
    if fill_zeros:
        ref, cur = _fill_zeros(ref), _fill_zeros(cur)
    return ref, cur


def category_shares(counts: CountPair, *, fill_zeros: bool) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = counts.ref / counts.n_ref, counts.cur / counts.n_cur
    if fill_zeros:
        ref, cur = _fill_zeros(ref), _fill_zeros(cur)
    return ref, cur


def _fill_zeros(shares: np.ndarray) -> np.ndarray:
    """Evidently: an empty bin gets min(non-zero)/1e6 when that minimum is <= 0.0001, else 0.0001."""
    shares = shares.astype(np.float64, copy=True)
    nonzero = shares[shares != 0]
    if len(nonzero) == 0:
        return shares
    smallest = nonzero.min()
    shares[shares == 0] = smallest / 10**6 if smallest <= PSI_ZERO else PSI_ZERO
    return shares


# --- distances on shares ------------------------------------------------------------------------


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index: sum((r - c) * ln(r / c)) over zero-filled shares."""
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    pos = x > 0
    with np.errstate(divide="ignore"):
        out[pos] = x[pos] * np.log(x[pos] / y[pos])
    return out


def jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance, natural log, as scipy.spatial.distance.jensenshannon."""
    p = ref / np.sum(ref)
    q = cur / np.sum(cur)
    m = (p + q) / 2.0
    js = np.sum(_rel_entr(p, m)) + np.sum(_rel_entr(q, m))
    return float(np.sqrt(max(js, 0.0) / 2.0))


def hellinger_categories(counts: CountPair) -> float:
    """Evidently's Hellinger distance over category shares: sqrt(1 - sum(sqrt(p * q)))."""
    p, q = counts.ref / counts.n_ref, counts.cur / counts.n_cur
    coefficient = float(np.clip(np.sum(np.sqrt(p * q)), 0, 1))
    return math.sqrt(1 - coefficient)


def hellinger_numeric(pair: NumericPair) -> float:
    """Evidently's Hellinger distance for numeric columns: density histograms on Sturges bins
    drawn over the distinct values of both sides, Bhattacharyya coefficient times the bin width."""
    keys = pair.union_values()
    edges = sturges_edges(float(keys[0]), float(keys[-1]), len(keys), integer=pair.integer)
    widths = np.diff(edges)
    h1 = counts_in_bins(pair.ref, edges) / (len(pair.ref) * widths)
    h2 = counts_in_bins(pair.cur, edges) / (len(pair.cur) * widths)
    bin_width = (edges.max() - edges.min()) / (len(edges) - 1)
    coefficient = float(np.clip(np.sum(np.sqrt(h1 * h2)) * bin_width, 0, 1))
    return math.sqrt(1 - coefficient)


# --- categorical p-value tests ------------------------------------------------------------------


def chisquare(counts: CountPair) -> tuple[float, float]:
    """Pearson's chi-square of the current counts against the reference's, scaled to the current
    size (Evidently's chi-square): as scipy.stats.chisquare(f_obs, f_exp). A category that the
    reference lacks makes the statistic infinite (p = 0)."""
    k_norm = counts.n_cur / counts.n_ref
    expected = counts.ref * k_norm
    observed = counts.cur.astype(np.float64)
    if len(observed) < 2:
        return 0.0, 1.0  # one category on both sides: nothing can differ
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (observed - expected) ** 2 / expected
    stat = float(np.sum(terms))
    from scipy import special

    return stat, float(special.chdtrc(len(observed) - 1, stat))


def ztest(counts: CountPair) -> tuple[float, float]:
    """Two-proportion z-test on the first (sorted) category against the rest, two-sided:
    (z, p), Evidently's formula p = 2 * (1 - Phi(|z|))."""
    if len(counts.labels) == 1:
        return 0.0, 1.0
    order = sorted(range(len(counts.labels)), key=lambda i: _sort_key(counts.labels[i]))
    first = order[0]
    n1, n2 = counts.n_ref, counts.n_cur
    p1 = (n1 - counts.ref[first]) / n1
    p2 = (n2 - counts.cur[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denominator = math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    if denominator == 0:
        return 0.0, 1.0
    z = float((p1 - p2) / denominator)
    return z, 2 * (1 - _ndtr(abs(z)))


def _ndtr(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float, bool)) else (1, str(value))


# --- several columns at once ---------------------------------------------------------------------


def adjust(pvalues: list[float], correction: str) -> list[float]:
    """Adjusted p-values: Benjamini-Hochberg ("fdr") or Bonferroni, as statsmodels/scipy compute them.

    A NaN p-value (no test result) is left out of the correction: it stays NaN and does not
    count among the m tests (one NaN would otherwise make every BH-adjusted value NaN)."""
    if correction in ("none", "") or not pvalues:
        return list(pvalues)
    all_p = np.asarray(pvalues, dtype=np.float64)
    known = ~np.isnan(all_p)
    p = all_p[known]
    m = len(p)
    out_all = np.full(len(all_p), np.nan)
    if m == 0:
        return list(out_all)
    if correction == "bonferroni":
        out_all[known] = np.minimum(p * m, 1.0)
        return list(out_all)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    out_all[known] = out
    return list(out_all)


# --- pictures ------------------------------------------------------------------------------------


def histogram(pair: NumericPair, bins: int = 30) -> dict[str, Any]:
    """Shares per equal-width bin over both sides' 0.5-99.5 percentile range; values beyond it
    counted in the end bins (so an outlier does not squeeze the picture into one bar)."""

    def quantile(values: np.ndarray, q: float) -> float:
        return float(values[min(len(values) - 1, int(q * (len(values) - 1)))])

    lo = min(quantile(pair.ref, 0.005), quantile(pair.cur, 0.005))
    hi = max(quantile(pair.ref, 0.995), quantile(pair.cur, 0.995))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def shares(values: np.ndarray) -> list[float]:
        inner = np.searchsorted(values, edges[1:-1], side="left")
        bounds = np.concatenate(([0], inner, [len(values)]))
        return [float(x) for x in np.diff(bounds) / len(values)]

    return {
        "kind": "histogram",
        "edges": [float(e) for e in edges],
        "reference": shares(pair.ref),
        "current": shares(pair.cur),
    }


def bars(counts: CountPair, top: int = 20) -> dict[str, Any]:
    """Shares of the most frequent categories (both sides together), the rest as one "(other)" bar."""
    total = counts.ref / max(counts.n_ref, 1) + counts.cur / max(counts.n_cur, 1)
    order = np.argsort(-total, kind="stable")
    shown = order[:top]
    labels = [str(counts.labels[i]) for i in shown]
    ref = [float(counts.ref[i] / max(counts.n_ref, 1)) for i in shown]
    cur = [float(counts.cur[i] / max(counts.n_cur, 1)) for i in shown]
    if len(order) > top:
        labels.append(f"(other: {len(order) - top})")
        ref.append(max(0.0, 1.0 - sum(ref)))
        cur.append(max(0.0, 1.0 - sum(cur)))
    return {"kind": "bars", "labels": labels, "reference": ref, "current": cur}
