"""The strict preset's numeric effect floor is measured on the reference's rank scale: a heavy
tail that inflates the raw standard deviation does not excuse a shift plain on the log scale."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlops.drift import stats
from mlops.drift.config import preset_settings
from mlops.drift.io import Source
from mlops.drift.report import check_drift


def _pair(x: np.ndarray, y: np.ndarray) -> stats.NumericPair:
    return stats.NumericPair(np.sort(x), np.sort(y))


def test_the_rank_effect_matches_the_raw_one_on_a_normal_column_and_ignores_monotone_transforms() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 200_000), rng.normal(0.1, 1, 200_000)
    raw, ranked = stats.wasserstein_norm(_pair(x, y)), stats.rank_effect(_pair(x, y))
    assert ranked == pytest.approx(0.977 * raw, rel=0.05)  # the floor keeps its meaning on normal data
    # exp() is monotone: the same ranks, the same effect (the raw one collapses under the tail)
    assert stats.rank_effect(_pair(np.exp(2 * x), np.exp(2 * y))) == pytest.approx(ranked, rel=1e-9)
    assert stats.wasserstein_norm(_pair(np.exp(2 * x), np.exp(2 * y))) < raw / 2


def test_strict_finds_a_log_scale_shift_of_a_heavy_tailed_column_and_nothing_on_clean_ones() -> None:
    rng = np.random.default_rng(8)
    n = 50_000
    reference = pa.table(
        {
            "income": rng.lognormal(10, 2.0, n),  # heavy tail: raw std ~7x the mean
            "clean_skewed": rng.lognormal(0, 1.5, n),
            "clean_normal": rng.normal(0, 1, n),
        }
    )
    current = pa.table(
        {
            "income": rng.lognormal(10, 2.0, n) * 1.2,  # +18% on the log scale: 0.09 log-sd
            "clean_skewed": rng.lognormal(0, 1.5, n),
            "clean_normal": rng.normal(0, 1, n),
        }
    )
    report = check_drift(
        Source.from_table(reference, "reference"), Source.from_table(current, "current"), preset_settings("strict")
    )
    income = report.column("income")
    raw_effect = stats.wasserstein_norm(_pair(reference["income"].to_numpy(), current["income"].to_numpy()))
    assert raw_effect < 0.05  # on the raw scale the tail would have excused it
    assert income.effect >= 0.05 and income.drifted, income.reason
    assert income.effect_name == "Wasserstein distance on the reference's rank scale (normed)"
    assert not report.column("clean_skewed").drifted and not report.column("clean_normal").drifted
