"""Bad input gets a clear report, not a crash: each case of issue 6 through the real command."""

from __future__ import annotations

import os

import numpy as np
import pytest
from driftkit import base_columns, write_csv, write_parquet


def test_columns_in_one_set_only_are_listed_and_the_rest_checked(tmp_path, drift_json) -> None:
    ref = base_columns(3000, seed=1) | {"old_feature": np.arange(3000)}
    cur = base_columns(3000, seed=2) | {"new_feature": np.ones(3000)}
    doc, result = drift_json(
        str(write_parquet(tmp_path / "ref.parquet", ref)), str(write_parquet(tmp_path / "cur.parquet", cur))
    )
    assert doc["only_in_reference"] == ["old_feature"] and doc["only_in_current"] == ["new_feature"]
    assert sorted(c["column"] for c in doc["columns"]) == ["age", "amount", "plan"]
    assert all(c["status"] == "tested" for c in doc["columns"])
    assert "only in the reference, not checked: old_feature" in result.stderr
    assert "only in the current data, not checked: new_feature" in result.stderr


def test_a_type_change_is_reported_with_examples_and_counts_as_drift(tmp_path, drift_json) -> None:
    ref = base_columns(2000, seed=1)
    cur = base_columns(2000, seed=2)
    cur["age"] = cur["age"].astype(str).astype(object)
    cur["age"][[3, 8]] = ["unknown", "?"]
    doc, result = drift_json(str(write_csv(tmp_path / "ref.csv", ref)), str(write_csv(tmp_path / "cur.csv", cur)))
    age = next(c for c in doc["columns"] if c["column"] == "age")
    assert age["status"] == "type_changed" and age["drifted"] is True
    assert (
        "reference integer, current string" in age["reason"] and "'unknown'" in age["reason"] and "'?'" in age["reason"]
    )
    assert {c["column"]: c["status"] for c in doc["columns"]}["amount"] == "tested"
    assert "type changed" in result.stderr


def test_empty_files(tmp_path, cli) -> None:
    ref = write_parquet(tmp_path / "ref.parquet", base_columns(500, seed=1))
    (tmp_path / "zero.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("amount,plan,age\n")
    for empty in ("zero.csv", "header.csv"):
        result = cli("drift", str(ref), str(tmp_path / empty), code=2)
        assert "current data has no rows" in result.stderr and empty in result.stderr
    # in a folder, an empty file is skipped with a warning and the rest is read
    folder = tmp_path / "current"
    write_csv(folder / "2026-11-01.csv", base_columns(400, seed=3))
    (folder / "2026-11-02.csv").write_text("")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"amount": pa.array([], pa.float64())}), folder / "2026-11-03.parquet")
    result = cli("drift", str(ref), str(folder))
    assert "2026-11-02.csv" in result.stderr and "skipped" in result.stderr
    assert "2026-11-03.parquet" in result.stderr


def test_all_null_and_constant_columns(tmp_path, drift_json) -> None:
    rows = 1500
    ref = base_columns(rows, seed=1) | {
        "gone": np.random.default_rng(0).normal(size=rows),
        "never": [None] * rows,
        "const": np.full(rows, 7.0),
        "const_moved": np.full(rows, 1.0),
    }
    cur = base_columns(rows, seed=2) | {
        "gone": [None] * rows,
        "never": [None] * rows,
        "const": np.full(rows, 7.0),
        "const_moved": np.full(rows, 2.0),
    }
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", cur))
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["gone"]["status"] == "empty_current" and by["gone"]["drifted"] is True
    assert "all missing" in by["gone"]["reason"] and by["gone"]["current"]["missing"] == rows
    assert by["never"]["status"] == "empty_reference" and by["never"]["drifted"] is False
    assert by["const"]["status"] == "tested" and by["const"]["drifted"] is False and by["const"]["score"] == 0
    assert by["const_moved"]["drifted"] is True
    assert doc["verdict"]["tested_columns"] == 6  # 'never' is not counted


def test_nan_and_inf_are_counted_and_left_out(tmp_path, drift_json) -> None:
    rng = np.random.default_rng(4)
    ref = {"x": rng.normal(size=2000)}
    x = rng.normal(size=2000)
    x[:50] = np.nan
    x[50:60] = np.inf
    x[60:65] = -np.inf
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", {"x": x}))
    )
    col = doc["columns"][0]
    assert col["status"] == "tested" and col["drifted"] is False
    assert col["current"]["inf"] == 15 and col["current"]["values"] == 1935
    assert col["current"]["missing"] == 50  # pyarrow stores pandas' NaN as null in Parquet: counted as missing
    assert any("NaN and infinite" in n for n in col["notes"])


def test_thousands_of_categories_and_identifier_columns(tmp_path, drift_json) -> None:
    rng = np.random.default_rng(5)
    levels = np.array([f"zip_{i:05d}" for i in range(3000)])
    ref = {"zip": levels[rng.integers(0, 3000, 20_000)], "email": [f"user{i}@example.com" for i in range(20_000)]}
    cur = {"zip": levels[rng.integers(0, 3000, 20_000)], "email": [f"user{i}@example.org" for i in range(20_000)]}
    html = tmp_path / "r.html"
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)),
        str(write_parquet(tmp_path / "c.parquet", cur)),
        "--html",
        str(html),
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["zip"]["status"] == "tested" and by["zip"]["type"] == "categorical"
    assert any("3000 categories" in n for n in by["zip"]["notes"])
    assert len(by["zip"]["distribution"]["labels"]) == 21  # 20 most frequent and "(other: 2980)"
    assert by["email"]["status"] == "skipped" and by["email"]["type"] == "text"
    assert "(other: 2980)" in html.read_text()


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("data.parquet", b"this is not parquet at all", "data.parquet: not a readable Parquet file"),
        ("data.csv", b"a,b\n1,\x00\x01\x02\n", "data.csv: not a text (CSV) file"),
        ("data.json", b'{"a": 1}', "data.json: not a CSV or Parquet file"),
    ],
)
def test_wrong_files_are_named(tmp_path, cli, name, content, needle) -> None:
    ref = write_parquet(tmp_path / "ref.parquet", base_columns(100, seed=1))
    (tmp_path / name).write_bytes(content)
    result = cli("drift", str(ref), str(tmp_path / name), code=2)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_and_unreadable_paths(tmp_path, cli) -> None:
    ref = write_parquet(tmp_path / "ref.parquet", base_columns(100, seed=1))
    result = cli("drift", str(ref), str(tmp_path / "nope.parquet"), code=2)
    assert "nope.parquet: no such file or folder" in result.stderr
    locked = write_csv(tmp_path / "locked.csv", base_columns(100, seed=2))
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        result = cli("drift", str(ref), str(locked), code=2)
        assert "locked.csv: cannot read" in result.stderr
    finally:
        os.chmod(locked, 0o644)


def test_mixed_csv_dialects_read_as_one_table(tmp_path, drift_json) -> None:
    ref = write_csv(tmp_path / "ref.csv", base_columns(3000, seed=1))
    folder = tmp_path / "current"
    write_csv(folder / "a.csv", base_columns(1000, seed=2), sep=";", decimal=",")
    write_csv(folder / "b.tsv", base_columns(1000, seed=3), sep="\t")
    latin = base_columns(1000, seed=4)
    latin["plan"] = np.where(latin["plan"] == "basic", "básico", latin["plan"])
    path = folder / "c.csv"
    import pandas as pd

    pd.DataFrame(latin).to_csv(path, index=False, sep="|", encoding="latin-1")
    doc, _ = drift_json(str(ref), str(folder))
    by = {c["column"]: c for c in doc["columns"]}
    assert by["amount"]["type"] == "numeric" and by["amount"]["drifted"] is False
    assert by["age"]["type"] == "numeric"
    assert doc["current"]["rows"] == 3000
    dialects = doc["current"]["csv_dialects"]
    assert "semicolon-separated, decimal comma" in dialects[str(folder / "a.csv")]
    assert "tab-separated" in dialects[str(folder / "b.tsv")]
    assert "latin1" in dialects[str(folder / "c.csv")]
    assert "básico" in [label for label, _ in by["plan"]["current"]["top"]]


def test_a_csv_column_whose_later_values_do_not_fit_the_first_guess(tmp_path, drift_json, monkeypatch) -> None:
    """pyarrow guesses a CSV column's type from its first block: a float after many ints is re-read."""
    import mlops.drift.io

    monkeypatch.setattr(mlops.drift.io, "CSV_BLOCK_BYTES", 4096)  # many blocks from a small file
    n = 30_000
    values = [str(i % 1000) for i in range(n)] + ["12.5"]
    path = tmp_path / "c.csv"
    path.write_text("v\n" + "\n".join(values) + "\n")
    ref = write_parquet(tmp_path / "r.parquet", {"v": np.arange(n + 1) % 1000})
    doc, _ = drift_json(str(ref), str(path))
    assert doc["columns"][0]["type"] == "numeric" and doc["columns"][0]["status"] == "tested"
    assert doc["columns"][0]["current"]["max"] == 999.0 and doc["columns"][0]["current"]["values"] == n + 1
    # and the same file streams in batches for validation, the type widened on the way
    from mlops.drift.io import Source, expand

    batches = list(Source.open(expand([str(path)]), "data").iter_batches(["v"], batch_rows=1000))
    assert sum(b.num_rows for _, _, b in batches) == n + 1
    assert [o for _, o, _ in batches][:3] == [
        0,
        batches[0][2].num_rows,
        batches[0][2].num_rows + batches[1][2].num_rows,
    ]


def test_datetime_columns_are_listed_not_tested_and_booleans_are_categories(tmp_path, drift_json) -> None:
    import datetime as dt

    rng = np.random.default_rng(7)
    start = dt.datetime(2026, 1, 1)
    ref = {
        "when": [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 5000, 1500)],
        "flag": rng.random(1500) < 0.3,
    }
    cur = {
        "when": [start + dt.timedelta(hours=int(h)) for h in rng.integers(5000, 9000, 1500)],
        "flag": rng.random(1500) < 0.6,
    }
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", cur))
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["when"]["status"] == "skipped" and by["when"]["type"] == "datetime"
    assert (
        by["flag"]["type"] == "categorical"
        and by["flag"]["method"] == "jensenshannon"
        and by["flag"]["drifted"] is True
    )
    assert doc["verdict"]["tested_columns"] == 1


def test_compressed_csv_is_read_by_its_name_even_from_a_suffixless_copy(tmp_path) -> None:
    """A registry snapshot's file is a cache object without a suffix: the original name says gzip."""
    import gzip

    from mlops.drift.io import Source, data_file

    text = "a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(1000))
    (tmp_path / "object").write_bytes(gzip.compress(text.encode()))
    source = Source.open([data_file(tmp_path / "object", name="data/day.csv.gz")], "reference")
    source.want(["a", "b"])
    assert source.rows == 1000 and source.column("b").to_pylist()[:4] == [0, 1, 2, 0]
    batches = list(source.iter_batches(["a"]))
    assert sum(b.num_rows for _, _, b in batches) == 1000


def test_int64_beyond_2_to_the_53_is_tested_not_a_crash(tmp_path, drift_json) -> None:
    """Ids between 2**60 and 2**62 do not fit float64 exactly; they round, they do not fail the cast."""
    rng = np.random.default_rng(4)
    ref = {"big_id": rng.integers(2**60, 2**62, 3000, dtype=np.int64), "amount": rng.normal(size=3000)}
    cur = {"big_id": rng.integers(2**60, 2**62, 3000, dtype=np.int64), "amount": rng.normal(size=3000)}
    for fmt, write in (("parquet", write_parquet), ("csv", write_csv)):
        doc, _ = drift_json(str(write(tmp_path / f"ref.{fmt}", ref)), str(write(tmp_path / f"cur.{fmt}", cur)))
        big = next(c for c in doc["columns"] if c["column"] == "big_id")
        assert big["status"] == "tested" and big["type"] == "numeric" and big["drifted"] is False
        assert big["reference"]["min"] >= 2.0**60 and big["reference"]["max"] <= 2.0**62


@pytest.mark.parametrize("first_non_ascii_row", [10, 20_000])
def test_latin1_beyond_the_sniffed_start_reads_as_latin1(
    tmp_path, drift_json, monkeypatch, first_non_ascii_row
) -> None:
    """The first 64 KiB are pure ASCII, a later byte is Latin-1: not a binary column, not a type change."""
    import mlops.drift.io

    monkeypatch.setattr(mlops.drift.io, "CSV_BLOCK_BYTES", 1 << 16)  # several blocks: the later one meets the byte
    n = 30_000
    rng = np.random.default_rng(3)
    plans = rng.choice(["basic", "standard", "premium"], n)

    def write(path, plans):
        lines = ["amount,plan"] + [f"{i % 97},{p}" for i, p in enumerate(plans)]
        path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        return str(path)

    cur = plans.copy().astype(object)
    cur[first_non_ascii_row] = "básico"
    ref = write(tmp_path / "ref.csv", plans)
    doc, result = drift_json(ref, write(tmp_path / "cur.csv", cur))
    plan = next(c for c in doc["columns"] if c["column"] == "plan")
    assert plan["status"] == "tested" and plan["type"] == "categorical", plan["reason"]
    assert "latin1" in doc["current"]["csv_dialects"][str(tmp_path / "cur.csv")]
    from mlops.drift.io import Source, expand

    batches = list(Source.open(expand([str(tmp_path / "cur.csv")]), "data").iter_batches(["plan"], batch_rows=1000))
    values = [v for _, _, b in batches for v in b.column(0).to_pylist()]
    assert len(values) == n and values[first_non_ascii_row] == "básico"
