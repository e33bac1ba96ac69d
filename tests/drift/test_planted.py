"""The planted-drift tables at 10k, 100k and 1M rows: what each preset finds, misses and flags.

strict finds every planted drift and flags no clean column at every size. default (Evidently's
rules) flags no clean column either, finds the large drifts, and scores the 0.1-sd mean shift
and the 8-point category shift near its 0.1 thresholds (the reason strict exists).
"""

from __future__ import annotations

import pytest
from planted import DRIFTED, planted_pair, score

from mlops.drift.config import preset_settings
from mlops.drift.io import Source
from mlops.drift.report import check_drift

SIZES = [10_000, 100_000, 1_000_000]


@pytest.fixture(scope="module", params=SIZES, ids=["10k", "100k", "1M"])
def tables(request):
    return request.param, planted_pair(request.param)


def _run(tables, preset: str):
    rows, (ref, cur) = tables
    report = check_drift(
        Source.from_table(ref, "reference"), Source.from_table(cur, "current"), preset_settings(preset), jobs=2
    )
    return report, score({c.name for c in report.columns if c.drifted})


def test_strict_finds_every_planted_drift_and_nothing_else(tables) -> None:
    report, result = _run(tables, "strict")
    assert result == {"found": sorted(DRIFTED), "missed": [], "false_alarms": []}
    methods = {c.name: c.method for c in report.columns}
    assert methods["normal_a"] == "ks" and methods["cat_plan"] == "chisquare" and methods["cat_flag"] == "z"
    assert all(c.adjusted_p is not None for c in report.columns)
    assert report.verdict.drifted is False  # 5 of 25 columns: below the default drift share


def test_default_flags_no_clean_column_and_finds_the_large_drifts(tables) -> None:
    report, result = _run(tables, "default")
    assert result["false_alarms"] == []
    assert {"num_scale", "num_income", "cat_new"} <= set(result["found"])
    small = report.column("num_shift_small")
    assert small.method == "wasserstein" and 0.07 < small.score < 0.13  # right at Evidently's 0.1 threshold
    assert report.column("cat_shift").method == "jensenshannon"
    assert report.column("int_many").kind == "numeric" and report.column("cat_flag").kind == "categorical"


def test_the_check_leaves_the_callers_tables_as_they_were() -> None:
    """Values are sorted for the statistics: on copies, never in the caller's Arrow buffers."""
    ref, cur = planted_pair(5_000)
    before = (ref.column("normal_a").to_pylist(), cur.column("num_scale").to_pylist())
    check_drift(Source.from_table(ref, "reference"), Source.from_table(cur, "current"), preset_settings("strict"))
    assert (ref.column("normal_a").to_pylist(), cur.column("num_scale").to_pylist()) == before
