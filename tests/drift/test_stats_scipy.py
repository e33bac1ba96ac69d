"""Every statistic against scipy (or numpy, or Evidently's own formula) on the same inputs, to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from mlops.drift import stats

RTOL = 1e-9


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12)


def pairs():
    rng = np.random.default_rng(2024)
    yield "small-unequal", rng.normal(0, 1, 80), rng.normal(0.3, 1.2, 95)
    yield "ties", np.round(rng.normal(0, 1, 700), 1), np.round(rng.normal(0.1, 1, 650), 1)
    yield "integers", rng.integers(0, 40, 3000).astype(float), rng.integers(2, 45, 2500).astype(float)
    yield "exact-limit", rng.exponential(1, 10_000), rng.exponential(1.05, 10_000)
    yield "asymptotic", rng.lognormal(0, 1, 30_000), rng.lognormal(0.02, 1, 25_000)
    yield "equal-sizes-large", rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)
    yield "one-value", np.array([3.0]), rng.normal(3, 1, 50)
    yield "constant-moved", np.full(60, 2.0), np.full(70, 3.0)


@pytest.mark.filterwarnings("ignore:p-value")
@pytest.mark.parametrize("name,a,b", list(pairs()), ids=[p[0] for p in pairs()])
def test_numeric_statistics_agree_with_scipy(name, a, b) -> None:
    pair = stats.NumericPair(np.sort(a), np.sort(b))
    d, p = stats.ks(pair)
    expected = sps.ks_2samp(a, b)
    assert close(d, expected.statistic) and close(p, expected.pvalue), (d, p, expected)
    assert close(stats.wasserstein(pair), sps.wasserstein_distance(a, b))
    assert close(stats.wasserstein_norm(pair), sps.wasserstein_distance(a, b) / max(np.std(a), 0.001))
    if len(a) > 1:
        a2, p2, _ = stats.anderson(pair)
        expected_ad = sps.anderson_ksamp([a, b], variant="midrank")
        assert close(a2, expected_ad.statistic) and close(p2, expected_ad.pvalue)


def test_ks_merge_path_is_the_asymptotic_scipy_path() -> None:
    """Above 10,000 values per side the statistic comes from our merge, the p-value from kstwo."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 40_000), rng.normal(0.01, 1, 12_345)
    d, p = stats.ks(stats.NumericPair(np.sort(a), np.sort(b)))
    expected = sps.ks_2samp(a, b, method="asymp")
    assert close(d, expected.statistic) and close(p, expected.pvalue)


def test_binning_is_numpys_sturges_histogram() -> None:
    rng = np.random.default_rng(1)
    for a, b, integer in [
        (rng.normal(0, 1, 5000), rng.normal(0.5, 2, 4000), False),
        (rng.integers(0, 7, 900).astype(float), rng.integers(0, 9, 800).astype(float), True),
        (np.full(100, 2.0), np.full(50, 2.0), False),
    ]:
        combined = np.concatenate([a, b])
        if integer:
            expected_edges = np.histogram_bin_edges(combined.astype(np.int64), bins="sturges")
        else:
            expected_edges = np.histogram_bin_edges(combined, bins="sturges")
        edges = stats.sturges_edges(float(combined.min()), float(combined.max()), len(combined), integer=integer)
        assert np.allclose(edges, expected_edges, rtol=RTOL, atol=0)
        assert (stats.counts_in_bins(np.sort(a), edges) == np.histogram(a, edges)[0]).all()


def test_jensenshannon_agrees_with_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = rng.random(12)
        q = rng.random(12)
        q[3] = 0.0
        assert close(stats.jensenshannon(p, q), float(distance.jensenshannon(p, q)))
    a, b = np.sort(rng.normal(0, 1, 4000)), np.sort(rng.normal(0.2, 1, 3000))
    ref, cur = stats.binned_shares(stats.NumericPair(a, b), fill_zeros=False)
    assert close(stats.jensenshannon(ref, cur), float(distance.jensenshannon(ref, cur)))


def test_chisquare_agrees_with_scipy() -> None:
    counts = stats.CountPair(["a", "b", "c", "d"], np.array([300, 250, 120, 30]), np.array([280, 260, 150, 10]))
    stat, p = stats.chisquare(counts)
    expected = sps.chisquare(counts.cur, counts.ref * counts.n_cur / counts.n_ref)
    assert close(stat, expected.statistic) and close(p, expected.pvalue)


def test_new_category_makes_chisquare_infinite() -> None:
    stat, p = stats.chisquare(stats.CountPair(["a", "b", "new"], np.array([50, 50, 0]), np.array([40, 50, 10])))
    assert math.isinf(stat) and p == 0.0


def _evidently_z(ref: list, cur: list) -> float:
    """Evidently's z_stattest, written out: first sorted category against the rest."""
    keys = sorted(set(ref) | set(cur))
    r = np.array([0 if x == keys[0] else 1 for x in ref])
    c = np.array([0 if x == keys[0] else 1 for x in cur])
    n1, n2 = len(r), len(c)
    p1, p2 = r.sum() / n1, c.sum() / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * (1 - sps.norm.cdf(abs(z))))


def test_ztest_is_evidentlys_two_proportion_test() -> None:
    ref = ["no"] * 700 + ["yes"] * 300
    cur = ["no"] * 640 + ["yes"] * 360
    counts = stats.CountPair(["no", "yes"], np.array([700, 300]), np.array([640, 360]))
    _, p = stats.ztest(counts)
    assert close(p, _evidently_z(ref, cur))


def test_psi_and_hellinger_are_evidentlys_formulas() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 1, 3000), rng.normal(0.3, 1.1, 2000)
    pair = stats.NumericPair(np.sort(a), np.sort(b))
    # Evidently's get_binned_data + psi, written out with numpy
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    r = np.histogram(a, edges)[0] / len(a)
    c = np.histogram(b, edges)[0] / len(b)
    for shares in (r, c):
        nonzero = shares[shares != 0].min()
        shares[shares == 0] = nonzero / 10**6 if nonzero <= 0.0001 else 0.0001
    assert close(stats.psi(*stats.binned_shares(pair, fill_zeros=True)), float(np.sum((r - c) * np.log(r / c))))
    # Hellinger, numeric: bins over the distinct values, density histograms, times the bin width
    keys = np.unique(np.concatenate([a, b]))
    bins = np.histogram_bin_edges(keys, bins="sturges")
    h1 = np.histogram(a, bins=bins, density=True)[0]
    h2 = np.histogram(b, bins=bins, density=True)[0]
    width = (bins.max() - bins.min()) / (len(bins) - 1)
    expected = math.sqrt(1 - float(np.clip(np.sum(np.sqrt(h1 * h2)) * width, 0, 1)))
    assert close(stats.hellinger_numeric(pair), expected)
    counts = stats.CountPair(["x", "y", "z"], np.array([50, 30, 20]), np.array([40, 30, 30]))
    p, q = counts.ref / 100, counts.cur / 100
    assert close(stats.hellinger_categories(counts), math.sqrt(1 - float(np.sum(np.sqrt(p * q)))))


def test_corrections_agree_with_scipy() -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.049, 0.5, 0.0001]
    assert np.allclose(stats.adjust(p, "fdr"), sps.false_discovery_control(p, method="bh"), rtol=RTOL)
    assert np.allclose(stats.adjust(p, "bonferroni"), np.minimum(np.array(p) * len(p), 1), rtol=RTOL)
    assert stats.adjust(p, "none") == p


@pytest.mark.parametrize("correction", ["fdr", "bonferroni"])
def test_a_nan_p_value_is_left_out_of_the_correction(correction) -> None:
    p = [0.001, float("nan"), 0.04, 0.03, 0.2, float("nan"), 0.0001]
    known = [x for x in p if not math.isnan(x)]
    expected = (
        sps.false_discovery_control(known, method="bh")
        if correction == "fdr"
        else np.minimum(np.array(known) * len(known), 1)
    )
    out = stats.adjust(p, correction)
    assert math.isnan(out[1]) and math.isnan(out[5])
    assert np.allclose([x for x in out if not math.isnan(x)], expected, rtol=RTOL)
    assert all(math.isnan(x) for x in stats.adjust([float("nan")] * 3, correction))


def test_a_nan_score_is_its_own_status_and_lowers_no_drift_share() -> None:
    from mlops.drift.config import DriftSettings
    from mlops.drift.report import ColumnResult, _finish, judge

    def col(name: str, p: float) -> ColumnResult:
        return ColumnResult(
            name,
            "feature",
            "numeric",
            "tested",
            False,
            method="ks",
            method_title="K-S p-value",
            score=p,
            threshold=0.05,
            p_value=p,
        )

    columns = [col("a", 0.001), col("b", 0.002), col("c", float("nan")), col("d", 0.9)]
    settings = DriftSettings(correction="fdr")
    done = {c.name: c for c in _finish(columns, settings)}
    assert (
        done["c"].status == "no_score" and not done["c"].counted and "left out of the fdr correction" in done["c"].notes
    )
    # BH over the three known p-values only
    expected = sps.false_discovery_control([0.001, 0.002, 0.9], method="bh")
    assert np.allclose([done[n].adjusted_p for n in "abd"], expected, rtol=RTOL)
    verdict = judge(list(done.values()), settings, [], [])
    assert verdict.tested_columns == 3 and verdict.drifted_columns == 2 and verdict.drifted


def test_anderson_on_one_value_on_both_sides_is_p_one_not_a_crash() -> None:
    with pytest.raises(ValueError):  # what scipy itself does with it
        sps.anderson_ksamp([np.full(50, 2.0), np.full(40, 2.0)])
    statistic, p, note = stats.anderson(stats.NumericPair(np.full(50, 2.0), np.full(40, 2.0)))
    assert (statistic, p) == (0.0, 1.0) and "one value on both sides" in note


def test_anderson_on_constant_columns_through_the_command(tmp_path, drift_json) -> None:
    from driftkit import write_parquet

    rows = 300
    ref = {"same": np.full(rows, 7.0), "moved": np.full(rows, 1.0), "x": np.random.default_rng(1).normal(size=rows)}
    cur = {"same": np.full(rows, 7.0), "moved": np.full(rows, 2.0), "x": np.random.default_rng(2).normal(size=rows)}
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)),
        str(write_parquet(tmp_path / "c.parquet", cur)),
        "--numeric-method",
        "anderson",
        "--columns",
        "same,moved,x",
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["same"]["method"] == "anderson" and by["same"]["p_value"] == 1.0 and by["same"]["drifted"] is False
    assert by["moved"]["drifted"] is True
