"""features.yaml: parsing with file:line:col errors, checks against the sources' real schemas and hashes,
and the `mlops features validate` / `get-training-set` commands end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.errors import FormatError, NewerFormatError
from mlops.features.definitions import parse_definitions

GOOD = """\
format: 1
entities:
  customer:
    join_keys: [customer_id]
    value_type: Int64
sources:
  orders:
    path: data/orders.parquet
    timestamp_field: event_ts
    created_timestamp_column: created_ts
feature_views:
  customer_stats:
    entities: [customer]
    source: orders
    ttl: 30d
    schema:
      total_purchases: int64
      avg_order_value: Float64
feature_services:
  churn_v2:
    features: [customer_stats:total_purchases, customer_stats:avg_order_value]
  everything:
    features: [customer_stats]
"""


def test_good_definitions_parse_with_feast_names() -> None:
    defs = parse_definitions(GOOD, "features.yaml")
    assert defs.entities["customer"].join_key == "customer_id"
    assert defs.views["customer_stats"].ttl_seconds == 30 * 86400
    assert defs.views["customer_stats"].features == (("total_purchases", "int64"), ("avg_order_value", "float64"))
    assert [str(r) for r in defs.services["everything"].features] == [
        "customer_stats:total_purchases",
        "customer_stats:avg_order_value",
    ]
    assert defs.hash.startswith("sha256:")
    # moving text (a comment, blank lines) does not change the definitions' hash; a TTL does
    assert parse_definitions("# churn features\n\n" + GOOD, "features.yaml").hash == defs.hash
    assert parse_definitions(GOOD.replace("ttl: 30d", "ttl: 29d"), "features.yaml").hash != defs.hash


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (("    ttl: 30d\n", "    ttl: 30d\n    tll: 1d\n"), "features.yaml:16:5", "unknown key 'tll'"),
        (("source: orders", "source: order"), "features.yaml:14:13", "unknown source 'order'"),
        (("avg_order_value: Float64", "avg_order_value: decimal"), "features.yaml:18:24", "unknown type 'decimal'"),
        (("ttl: 30d", "ttl: soon"), "features.yaml:15:10", "ttl must be a duration"),
        (("customer_stats:avg_order_value]", "customer_stats:avg]"), "features.yaml:21:48", "has no feature 'avg'"),
        (("path: data/orders.parquet", "path: ../secrets.parquet"), "features.yaml:8:11", "source 'orders'"),
        (("entities: [customer]", "entities: [client]"), "features.yaml:13:16", "unknown entity 'client'"),
    ],
)
def test_each_problem_names_file_line_and_column(change: tuple[str, str], where: str, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_definitions(GOOD.replace(*change), "features.yaml")
    problems = caught.value.fields["problems"]
    assert any(p.startswith(f"{where}: ") and message in p for p in problems), problems


def test_every_problem_is_listed_and_a_newer_format_refused() -> None:
    bad = GOOD.replace("source: orders", "source: nowhere").replace("ttl: 30d", "ttl: -1")
    with pytest.raises(FormatError) as caught:
        parse_definitions(bad, "features.yaml")
    assert len(caught.value.fields["problems"]) == 2
    assert "(and 1 more)" in caught.value.message
    with pytest.raises(NewerFormatError, match="newer mlops"):
        parse_definitions(GOOD.replace("format: 1", "format: 9"), "features.yaml")


# --- against the real source, through the command line ------------------------------------------


def _orders(root: Path, *, naive: bool = False, value_type: pa.DataType = pa.float64()) -> None:
    zone = None if naive else "UTC"
    times = [dt.datetime(2026, 1, d, 12) for d in (1, 5, 3)]
    (root / "data").mkdir(exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([42, 42, 7], pa.int64()),
                "event_ts": pa.array(times, pa.timestamp("us", tz=zone)),
                "created_ts": pa.array([times[0], times[1], dt.datetime(2026, 1, 20)], pa.timestamp("us", tz=zone)),
                "total_purchases": pa.array([3, 4, 9], pa.int64()),
                "avg_order_value": pa.array([10.5, 11.0, 2.5]).cast(value_type),
            }
        ),
        root / "data" / "orders.parquet",
    )


@pytest.fixture
def feature_repo(repo, cli):
    _orders(repo.root)
    (repo.root / "features.yaml").write_text(GOOD)
    cli("add", "data/orders.parquet")
    return repo


def test_validate_checks_columns_types_zones_and_tracking(repo, cli) -> None:
    _orders(repo.root, naive=True, value_type=pa.string())
    (repo.root / "features.yaml").write_text(GOOD.replace("total_purchases", "total_purchase"))
    result = cli("features", "validate", code=2)
    lines = result.stderr.splitlines()
    # every problem its own error line, at the field it is about (the feature's name, the column's value)
    assert lines == [
        "error: features.yaml:9:22: 'event_ts' in data/orders.parquet has no time zone; name one with 'timezone:' "
        "(in the source or at the top of features.yaml)",
        "error: features.yaml:10:31: 'created_ts' in data/orders.parquet has no time zone; name one with "
        "'timezone:' (in the source or at the top of features.yaml)",
        "error: features.yaml:17:7: feature 'total_purchase' is not a column of data/orders.parquet",
        "error: features.yaml:18:7: feature 'avg_order_value': declared float64, the source has string",
        "error: features.yaml:8:11: source 'orders': data/orders.parquet is not tracked; "
        "run 'mlops add data/orders.parquet'",
        "hint: fix features.yaml or the sources",
    ]
    doc = json.loads(cli("features", "validate", "--json", code=2).stdout)
    assert len(doc["problems"]) == 5 and doc["message"] == lines[-2].removeprefix("error: ")


def test_validate_ok_names_the_hashes_and_a_changed_source_is_refused(feature_repo, cli) -> None:
    doc = json.loads(cli("features", "validate", "--json").stdout)
    assert doc["ok"] is True
    assert doc["sources"]["orders"]["state"] == "unchanged"
    tracked_hash = doc["sources"]["orders"]["hash"]
    assert tracked_hash in (feature_repo.root / "data/orders.parquet.mlops").read_text()
    (feature_repo.root / "data/orders.parquet").unlink()  # a read-only link to the cache, maybe
    _orders(feature_repo.root, value_type=pa.float32())
    result = cli("features", "validate", code=2)
    assert "changed since 'mlops add'" in result.stderr
    cli("features", "get-training-set", "x.parquet", "--service", "churn_v2", "-o", "t.parquet", code=2)


def test_get_training_set_writes_point_in_time_values_and_lineage(feature_repo, cli) -> None:
    root = feature_repo.root
    pq.write_table(
        pa.table(
            {
                "customer_id": [42, 42, 7, 7],
                "event_timestamp": pa.array(
                    [dt.datetime(2026, 1, d, 12) for d in (2, 6, 10, 21)], pa.timestamp("ms", tz="UTC")
                ),
            }
        ),
        root / "entities.parquet",
    )
    doc = json.loads(
        cli(
            "features", "get-training-set", "entities.parquet", "-s", "churn_v2", "-o", "train.parquet", "--json"
        ).stdout
    )
    assert doc["rows"] == 4 and doc["filled"] == {"customer_stats": 3}
    table = pq.read_table(root / "train.parquet")
    # customer 7's value of Jan 3 was created Jan 20: not there on Jan 10, there on Jan 21
    assert table.column("total_purchases").to_pylist() == [3, 4, None, 9]
    lineage = json.loads(table.schema.metadata[b"mlops.training_set"])
    pointer_hash = json.loads(cli("features", "validate", "--json").stdout)["sources"]["orders"]["hash"]
    assert lineage["service"] == "churn_v2"
    assert lineage["sources"] == {"orders": {"path": "data/orders.parquet", "hash": pointer_hash}}
    assert lineage["definitions_hash"] == doc["definitions_hash"]
    result = cli("features", "get-training-set", "entities.parquet", "-s", "nope", "-o", "t.parquet", code=2)
    assert "no feature service 'nope'" in result.stderr
    # piped, each view's count is labelled
    plain = cli("features", "get-training-set", "entities.parquet", "-s", "churn_v2", "-o", "train.parquet").stdout
    assert plain.splitlines()[1:] == ["customer_stats: values in 3 of 4 rows"]


def test_get_training_set_writes_parquet_only(feature_repo, cli) -> None:
    root = feature_repo.root
    pq.write_table(
        pa.table(
            {"customer_id": [42], "event_timestamp": pa.array([dt.datetime(2026, 1, 9)], pa.timestamp("ms", "UTC"))}
        ),
        root / "entities.parquet",
    )
    refused = cli("features", "get-training-set", "entities.parquet", "-s", "churn_v2", "-o", "train.csv", code=2)
    assert "written as Parquet" in refused.stderr and "train.parquet" in refused.stderr
    cli("features", "get-training-set", "entities.parquet", "-s", "churn_v2", "-o", "train.txt", code=2)
    assert not (root / "train.csv").exists() and not (root / "train.txt").exists()
    cli("features", "get-training-set", "entities.parquet", "-s", "churn_v2", "-o", "train.PARQUET")
    assert pq.read_table(root / "train.PARQUET").column("total_purchases").to_pylist() == [4]
