"""Profiles: exact sums, the merge property, CSV = Parquet, and distances against raw-data values."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planted import DRIFTED, planted_pair, score

from mlops.drift import stats
from mlops.drift.config import preset_settings
from mlops.drift.io import Source
from mlops.drift.report import check_drift
from mlops.errors import DataError
from mlops.monitor.compare import compare_profiles, drift_report
from mlops.monitor.profile import (
    Basis,
    Profile,
    _Bins,
    _Scratch,
    exact_sums,
    make_basis,
    merge_all,
    profile_files,
    profile_table,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(finite, max_size=200))
def test_exact_sums_are_the_exact_rational_sums(values: list[float]) -> None:
    total, squares = exact_sums(np.asarray(values, dtype=np.float64))
    assert Fraction(total, 1 << 1126) == sum((Fraction(v) for v in values), Fraction(0))
    assert Fraction(squares, 1 << 2252) == sum((Fraction(v) ** 2 for v in values), Fraction(0))


def test_exact_sums_at_the_ends_of_float64_and_across_lanes() -> None:
    big, tiny = np.finfo(np.float64).max, np.finfo(np.float64).smallest_subnormal
    values = np.concatenate(
        [np.full(70_000, big), np.full(65_537, -big / 3), [tiny, -tiny, 0.0, -0.0, np.finfo(np.float64).tiny]]
    )
    total, squares = exact_sums(values)
    assert Fraction(total, 1 << 1126) == sum((Fraction(v) for v in values), Fraction(0))
    assert Fraction(squares, 1 << 2252) == sum((Fraction(v) ** 2 for v in values), Fraction(0))


edge_sets = st.one_of(
    st.lists(finite, min_size=1, max_size=90, unique=True),
    st.lists(st.floats(-1e3, 1e3), min_size=8, max_size=90, unique=True),  # the lookup table's case
).map(sorted)


@settings(deadline=None, max_examples=200)
@given(edges=edge_sets, extra=st.lists(finite, max_size=50), seed=st.integers(0, 2**32 - 1))
def test_bins_by_lookup_table_are_searchsorted(edges: list[float], extra: list[float], seed: int) -> None:
    """The lookup table answers as searchsorted does, at the edges, next to them and anywhere."""
    e = np.asarray(edges, dtype=np.float64)
    rng = np.random.default_rng(seed)
    width = max(float(e[-1] - e[0]), 1.0) if np.isfinite(e[-1] - e[0]) else 1e300
    with np.errstate(over="ignore"):
        up, down = np.nextafter(e, np.inf), np.nextafter(e, -np.inf)
    x = np.concatenate(
        [
            e,
            up,
            down,
            extra,
            rng.uniform(-1, 1, 500) * width + e[len(e) // 2],
            [0.0, -0.0, np.finfo(np.float64).max, -np.finfo(np.float64).max],
        ]
    )
    x = x[np.isfinite(x)]
    expected = np.bincount(np.searchsorted(e, x, side="right"), minlength=len(e) + 1)
    assert (_Bins(e).counts(x, _Scratch()) == expected).all()


def test_bins_use_the_table_on_quantile_edges() -> None:
    """Bunched quantile edges (a skewed column) still get the table, not the binary search."""
    x = np.random.default_rng(3).lognormal(0, 1, 100_000)
    edges = np.unique(np.concatenate([np.quantile(x, np.linspace(0, 1, 60)), [x.max() * 1.6]]))
    bins = _Bins(edges)
    assert bins.table is not None and bins.steps <= 2
    expected = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    assert (bins.counts(x[:60_000], _Scratch()) + bins.counts(x[60_000:], _Scratch()) == expected).all()


def _basis(tmp_path: Path) -> Basis:
    rng = np.random.default_rng(1)
    reference = pa.table(
        {
            "x": rng.normal(0, 1, 2000),
            "n": rng.integers(0, 4, 2000),  # few values: categorical
            "k": rng.integers(0, 15, 2000).astype(np.float64),  # 15 values: one bin per value
            "s": rng.choice(["a", "b", "c"], 2000),
        }
    )
    pq.write_table(reference, tmp_path / "ref.parquet")
    return make_basis([tmp_path / "ref.parquet"])


cell = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.none(), st.integers(-20, 20))
rows_strategy = st.lists(
    st.tuples(cell, st.one_of(st.none(), st.integers(-2, 6)), cell, st.one_of(st.none(), st.sampled_from("abcdz"))),
    min_size=0,
    max_size=60,
)


def _table(rows: list[tuple]) -> pa.Table:
    def num(v):
        return None if v is None else float(v)

    return pa.table(
        {
            "x": pa.array([num(r[0]) for r in rows], pa.float64()),
            "n": pa.array([r[1] for r in rows], pa.int64()),
            "k": pa.array([num(r[2]) for r in rows], pa.float64()),
            "s": pa.array([r[3] for r in rows], pa.string()),
        }
    )


@pytest.fixture(scope="module")
def basis(tmp_path_factory) -> Basis:
    return _basis(tmp_path_factory.mktemp("basis"))


@settings(deadline=None, max_examples=150)
@given(rows=rows_strategy, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_any_split_merges_into_the_profile_of_the_whole(basis: Basis, rows: list[tuple], cuts: list[int]) -> None:
    table = _table(rows)
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    parts = [profile_table(table.slice(a, b - a), basis) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    whole = profile_table(table, basis)
    assert merge_all(parts, basis) == whole  # every field, bit for bit: counts, min/max, exact sums
    assert merge_all(reversed(parts), basis) == whole  # in any order
    # and through the file format
    assert Profile.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole
    x = whole.columns["x"]
    finite_x = [float(r[0]) for r in rows if r[0] is not None and math.isfinite(float(r[0]))]
    assert x.count == len(finite_x)
    if finite_x:
        assert x.mean() == float(sum(map(Fraction, finite_x)) / len(finite_x))  # correctly rounded
        assert x.min == min(finite_x) and x.max == max(finite_x)


def test_the_basis_fixes_kinds_and_places(basis: Basis) -> None:
    kinds = {c.name: c.kind for c in basis.columns}
    assert kinds == {"x": "numeric", "n": "categorical", "k": "numeric", "s": "categorical"}
    k = basis.column("k")
    assert k.values and len(k.edges) == 16  # 15 values, and just above the largest
    assert set(basis.column("s").categories) == {"a", "b", "c"}
    assert Basis.from_dict(json.loads(json.dumps(basis.to_dict()))).id == basis.id


def test_csv_and_parquet_give_the_same_profile(tmp_path: Path, basis: Basis) -> None:
    rng = np.random.default_rng(5)
    table = pa.table(
        {
            "x": rng.normal(0.2, 1, 3000).round(6),
            "n": rng.integers(0, 5, 3000),
            "k": rng.integers(0, 15, 3000).astype(np.float64),
            "s": rng.choice(["a", "b", "zz"], 3000),
        }
    )
    pq.write_table(table, tmp_path / "cur.parquet", row_group_size=700)
    pacsv.write_csv(table, tmp_path / "cur.csv")
    from_parquet = profile_files([tmp_path / "cur.parquet"], basis)
    assert from_parquet == profile_files([tmp_path / "cur.csv"], basis) == profile_table(table, basis)
    assert from_parquet.columns["s"].other == int((table["s"].to_numpy(zero_copy_only=False) == "zz").sum())


def test_threads_and_dictionary_reading_give_the_same_profile_bytes(tmp_path: Path) -> None:
    """Threads take row groups in any order and strings are read dictionary-encoded: the profile
    file is the same, byte for byte, as one thread's over plain arrays."""
    reference, current = planted_pair(30_000)
    current = current.set_column(
        current.schema.get_field_index("num_scale"),
        "num_scale",
        pa.array([None if i % 7 == 0 else v for i, v in enumerate(current["num_scale"].to_pylist())]),
    )
    pq.write_table(reference, tmp_path / "ref.parquet", row_group_size=4_000)
    pq.write_table(current, tmp_path / "cur.parquet", row_group_size=2_500)
    basis = make_basis([tmp_path / "ref.parquet"])
    assert basis == make_basis([tmp_path / "ref.parquet"])  # the prefetching reader: the same basis
    one = profile_files([tmp_path / "cur.parquet"], basis, jobs=1)
    text = json.dumps(one.to_dict(), sort_keys=True)
    for jobs in (2, 3):
        assert json.dumps(profile_files([tmp_path / "cur.parquet"], basis, jobs=jobs).to_dict(), sort_keys=True) == text
    assert profile_table(current, basis) == one
    assert one.columns["num_scale"].missing == len(range(0, 30_000, 7))


def test_a_bad_file_among_parts_fails_with_its_name(tmp_path: Path, basis: Basis) -> None:
    good = pa.table({"x": np.arange(5000.0), "n": np.arange(5000) % 4, "k": np.zeros(5000), "s": ["a"] * 5000})
    pq.write_table(good, tmp_path / "good.parquet", row_group_size=500)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="bad.parquet"):
        profile_files([tmp_path / "good.parquet", tmp_path / "bad.parquet"], basis, jobs=2)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("rows", [100_000, pytest.param(1_000_000, marks=pytest.mark.slow)])
def test_planted_drifts_from_profiles_agree_with_raw_data(tmp_path: Path, rows: int) -> None:
    reference, current = planted_pair(rows)
    pq.write_table(reference, tmp_path / "ref.parquet")
    basis = make_basis([tmp_path / "ref.parquet"])
    ref_profile, cur_profile = profile_files([tmp_path / "ref.parquet"], basis), profile_table(current, basis)
    report = drift_report(basis, ref_profile, cur_profile, preset_settings("default"), reference="r", current="c")
    raw = check_drift(
        Source.from_table(reference, "reference"), Source.from_table(current, "current"), preset_settings("default")
    )
    found = score({c.name for c in report.columns if c.drifted})
    assert found["false_alarms"] == [] and {"num_scale", "num_income", "cat_new", "num_shift_small"} <= set(
        found["found"]
    )
    distances = {d.column: d for d in compare_profiles(basis, ref_profile, cur_profile)}
    for column in report.columns:
        raw_column = raw.column(column.name)
        assert column.method == raw_column.method  # wasserstein / jensenshannon: Evidently's large-data choice
        if column.method == "wasserstein":
            x = np.sort(reference[column.name].to_numpy(zero_copy_only=False))
            y = np.sort(current[column.name].to_numpy(zero_copy_only=False))
            exact = stats.wasserstein_norm(stats.NumericPair(x[np.isfinite(x)], y[np.isfinite(y)]))
            assert exact == pytest.approx(raw_column.score, abs=1e-12)
            error = abs(column.score - exact)
            assert error <= distances[column.name].wasserstein_bound  # the documented, guaranteed bound
            assert error <= 0.01  # what it is in practice on these tables (docs/monitoring.md)
        else:  # categories: the same counts, the same distance
            assert column.score == pytest.approx(raw_column.score, abs=1e-12)
        if abs(raw_column.score - raw_column.threshold) > 0.01:  # verdicts agree away from the threshold
            assert column.drifted == raw_column.drifted, column.name
    assert set(DRIFTED) - {"cat_shift"} <= {c.name for c in report.columns if c.drifted}


def test_drift_profile_streams_files_and_folders(cli, tmp_path: Path) -> None:
    reference, current = planted_pair(20_000)
    pq.write_table(reference, tmp_path / "ref.parquet")
    (tmp_path / "cur").mkdir()
    pq.write_table(current.slice(0, 8_000), tmp_path / "cur" / "a.parquet", row_group_size=3_000)
    pacsv.write_csv(current.slice(8_000), tmp_path / "cur" / "b.csv")  # a folder of Parquet and CSV
    result = cli(
        "drift",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "cur"),
        "--profile",
        "--json",
        "--drift-share",
        "0.1",
        "--fail-on-drift",
        code=1,
    )
    doc = json.loads(result.stdout)
    assert doc["current"]["rows"] == 20_000 and doc["verdict"]["drifted"] is True
    drifted = {c["column"] for c in doc["columns"] if c["drifted"]}
    assert {"num_scale", "num_income", "cat_new"} <= drifted and not drifted - set(DRIFTED)
    wasserstein = next(c for c in doc["columns"] if c["column"] == "num_scale")
    assert wasserstein["method"] == "wasserstein" and "within" in wasserstein["notes"][0]
    cli("drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur"), "--profile", "--predict", code=2)
