"""`mlops schema infer` and `mlops validate`: the inferred YAML, every rule, exit codes."""

from __future__ import annotations

import json

import numpy as np
import yaml
from driftkit import write_csv, write_parquet


def _reference(tmp_path):
    rows = 500
    rng = np.random.default_rng(1)
    data = {
        "customer_id": np.arange(rows),
        "tenure": rng.integers(1, 73, rows),
        "plan": rng.choice(["basic", "standard", "premium"], rows),
        "charges": np.round(rng.uniform(10, 120, rows), 2),
        "note": [None if i % 3 else "vip" for i in range(rows)],
        "active": rng.random(rows) < 0.7,
    }
    return write_parquet(tmp_path / "reference.parquet", data)


def test_infer_writes_an_editable_schema(tmp_path, cli) -> None:
    ref = _reference(tmp_path)
    text = cli("schema", "infer", str(ref)).stdout
    assert text.startswith("# mlops data schema")
    schema = yaml.safe_load(text)
    cols = schema["columns"]
    assert schema["format"] == 1 and schema["rows"] == 500 and schema["extra_columns"] == "warn"
    assert cols["customer_id"] == {"type": "integer", "nullable": False, "min": 0, "max": 499, "unique": True}
    assert (
        cols["tenure"]["type"] == "integer"
        and 1 <= cols["tenure"]["min"]
        and cols["tenure"]["max"] <= 72
        and "unique" not in cols["tenure"]
    )
    assert cols["plan"] == {"type": "string", "nullable": False, "allowed": ["basic", "premium", "standard"]}
    assert cols["charges"]["type"] == "float" and "unique" not in cols["charges"]
    assert cols["note"] == {"type": "string", "nullable": True, "allowed": ["vip"]}
    assert cols["active"] == {"type": "boolean", "nullable": False}
    out = tmp_path / "schema.yaml"
    result = cli("schema", "infer", str(ref), "-o", str(out))
    assert result.stdout == "" and yaml.safe_load(out.read_text()) == schema
    assert json.loads(cli("schema", "infer", str(ref), "--json").stdout)["columns"] == cols


def test_validate_passes_on_its_own_data_and_lists_every_violation(tmp_path, cli) -> None:
    ref = _reference(tmp_path)
    schema = tmp_path / "schema.yaml"
    cli("schema", "infer", str(ref), "-o", str(schema))
    assert "valid: 500 row(s), 6 column(s)" in cli("validate", str(ref), "--schema", str(schema)).stdout
    rows = 6
    bad = {
        "customer_id": [1, 2, 2, 3, 3, 3],  # unique: 3 repeated rows
        "tenure": ["5", "x", "7", "8.5", "9", None],  # type: 'x' and '8.5' are not integers
        "plan": ["basic", "gold", "gold", "premium", None, "silver"],  # allowed: gold x2, silver; nullable: 1
        "charges": [5.0, 50.0, 130.0, float("inf"), 20.0, 30.0],  # min: 5.0; max: 130 and inf
        "active": [True] * rows,
        "extra": [1] * rows,
        # 'note' missing: present
    }
    current = write_csv(tmp_path / "current.csv", bad)
    result = cli("validate", str(current), "--schema", str(schema), code=1)
    doc = json.loads(cli("validate", str(current), "--schema", str(schema), "--json", code=1).stdout)
    found = {(v["column"], v["rule"]): v for v in doc["violations"]}
    assert set(found) == {
        ("customer_id", "unique"),
        ("tenure", "type"),
        ("tenure", "nullable"),
        ("plan", "allowed"),
        ("plan", "nullable"),
        ("charges", "min"),
        ("charges", "max"),
        ("note", "present"),
    }
    assert (
        found[("customer_id", "unique")]["count"] == 3
        and found[("customer_id", "unique")]["examples"][0] == "3 (3 rows)"
    )
    assert found[("tenure", "type")]["count"] == 2
    assert found[("tenure", "type")]["examples"] == [f"{current} row 2: 'x'", f"{current} row 4: '8.5'"]
    assert found[("plan", "allowed")]["count"] == 3 and "'gold' (2 rows)" in found[("plan", "allowed")]["examples"]
    assert found[("plan", "nullable")]["examples"] == [f"{current} row 5"]
    assert found[("charges", "min")]["count"] == 1 and found[("charges", "max")]["count"] == 2
    assert doc["ok"] is False and doc["rows"] == rows
    assert any("extra" in w for w in doc["warnings"])
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["column", "rule", "count", "problem", "examples"]
    assert "error: 8 violation(s)" in result.stderr


def test_extra_columns_policy_and_bad_schemas(tmp_path, cli) -> None:
    ref = _reference(tmp_path)
    schema = tmp_path / "schema.yaml"
    cli("schema", "infer", str(ref), "-o", str(schema))
    data = yaml.safe_load(schema.read_text())
    data["extra_columns"] = "error"
    del data["columns"]["active"]
    schema.write_text(yaml.safe_dump(data))
    doc = json.loads(cli("validate", str(ref), "--schema", str(schema), "--json", code=1).stdout)
    assert [(v["column"], v["rule"]) for v in doc["violations"]] == [("active", "extra_columns")]
    schema.write_text("format: 1\ncolumns:\n  a: {type: number}\n")
    assert "columns.a.type must be one of" in cli("validate", str(ref), "--schema", str(schema), code=2).stderr
    schema.write_text("format: 1\ncolumns:\n  a: {maximum: 3}\n")
    assert "unknown rule 'maximum'" in cli("validate", str(ref), "--schema", str(schema), code=2).stderr
    assert "no such schema file" in cli("validate", str(ref), "--schema", str(tmp_path / "none.yaml"), code=2).stderr


def test_validation_streams_batches_across_files(tmp_path) -> None:
    """Row numbers and uniqueness hold across batches and files."""
    from mlops.drift.io import Source, expand
    from mlops.drift.schema import validate

    write_parquet(tmp_path / "d" / "a.parquet", {"id": np.arange(0, 2500), "v": np.arange(2500) * 1.0})
    v = np.arange(2500) * 1.0
    v[2100] = -1.0
    write_parquet(tmp_path / "d" / "b.parquet", {"id": np.arange(2000, 4500), "v": v})
    source = Source.open(expand([str(tmp_path / "d")]), "data")
    schema = {"columns": {"id": {"type": "integer", "unique": True}, "v": {"type": "float", "min": 0.0}}}
    seen = []
    for item in source.iter_batches(["id", "v"], batch_rows=700):
        seen.append((item[0].rsplit("/", 1)[-1], item[1]))
    assert seen[:5] == [
        ("a.parquet", 0),
        ("a.parquet", 700),
        ("a.parquet", 1400),
        ("a.parquet", 2100),
        ("b.parquet", 0),
    ]
    report = validate(source, schema)
    by = {(v.column, v.rule): v for v in report.violations}
    assert by[("id", "unique")].count == 500
    assert by[("v", "min")].count == 1 and by[("v", "min")].examples == [
        f"{tmp_path / 'd' / 'b.parquet'} row 2101: -1.0"
    ]
    assert report.rows == 5000


def test_validation_streams_a_csv_without_parsing_it_whole(tmp_path, monkeypatch) -> None:
    """validate reads CSV files batch by batch: the whole-file parse used by drift is never called."""
    import mlops.drift.io as io
    from mlops.drift.schema import validate

    path = write_csv(tmp_path / "big.csv", {"id": np.arange(50_000), "v": np.arange(50_000) % 7})
    monkeypatch.setattr(io, "CSV_BLOCK_BYTES", 64 * 1024)

    def refuse(*args, **kwargs):
        raise AssertionError("parsed the whole file")

    monkeypatch.setattr(io, "_read_csv_file", refuse)
    source = io.Source.open(io.expand([str(path)]), "data")
    report = validate(
        source, {"columns": {"id": {"type": "integer", "unique": True}, "v": {"type": "integer", "max": 5}}}
    )
    assert report.rows == 50_000 and report.source["rows"] == 50_000
    assert [(v.column, v.rule, v.count) for v in report.violations] == [("v", "max", 7142)]


def test_validate_reads_csv_columns_as_the_schema_declares(tmp_path, cli) -> None:
    """Digit-only text (zip codes) keeps its leading zeros, gets no false type violations, and
    its `allowed` list is checked; a declared integer column with text in it is still judged."""
    data = tmp_path / "data.csv"
    data.write_text("zip,count\n02345,1\n10001,2\n00501,3\n99999,x\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        yaml.safe_dump(
            {
                "format": 1,
                "columns": {
                    "zip": {"type": "string", "allowed": ["02345", "10001", "00501"]},
                    "count": {"type": "integer"},
                },
            }
        )
    )
    result = cli("validate", str(data), "--schema", str(schema), "--json", code=1)
    doc = json.loads(result.stdout)
    found = {(v["column"], v["rule"]): v for v in doc["violations"]}
    assert set(found) == {("zip", "allowed"), ("count", "type")}, found
    assert found[("zip", "allowed")]["count"] == 1 and "'99999'" in found[("zip", "allowed")]["examples"][0]
    assert found[("count", "type")]["count"] == 1 and "'x'" in found[("count", "type")]["examples"][0]


def test_text_in_a_number_column_reads_only_as_plain_numbers() -> None:
    import pyarrow as pa

    from mlops.drift.schema import _parse_numbers

    parsed = _parse_numbers(
        pa.array(["1", "-2.5", ".5", "1e3", "1_000", "nan", "infinity", "inf", "0x10", None, " 7 "])
    )
    assert parsed.to_pylist() == [1.0, -2.5, 0.5, 1000.0, None, None, None, None, None, None, 7.0]
