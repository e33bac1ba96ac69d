"""`mlops import feast`: a Feast repository of file sources (written here, as Feast's quickstart has it)
converted to features.yaml without running its Python; what cannot be carried is named."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.features.definitions import load_definitions

pytest.importorskip("duckdb")

FEATURE_STORE_YAML = """\
project: driver_ranking
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online_store.db
entity_key_serialization_version: 2
"""

DEFINITIONS_PY = '''\
"""Feast quickstart-style definitions."""
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, String
from feast import RequestSource
import os

os.system("touch PWNED")  # never run: the importer reads, it does not import

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64, description="driver id")

driver_stats_source = FileSource(
    name="driver_hourly_stats_source",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

driver_stats_fv = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1, hours=12),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float32),
        Field(name="avg_daily_trips", dtype=Int64),
    ],
    online=True,
    source=driver_stats_source,
    tags={"team": "driver_performance"},
)

input_request = RequestSource(name="vals_to_add", schema=[Field(name="val_to_add", dtype=Int64)])

driver_activity_v1 = FeatureService(
    name="driver_activity_v1",
    features=[driver_stats_fv[["conv_rate"]], driver_stats_fv[["avg_daily_trips"]]],
)
driver_activity_v2 = FeatureService(name="driver_activity_v2", features=[driver_stats_fv])
'''


def test_a_feast_repository_converts_and_builds_a_training_set(repo, cli) -> None:
    root = repo.root
    feast_repo = root / "feature_repo"
    (feast_repo / "data").mkdir(parents=True)
    (feast_repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (feast_repo / "definitions.py").write_text(DEFINITIONS_PY)
    stamp = pa.timestamp("us", tz="UTC")
    times = [dt.datetime(2026, 5, 1, h, tzinfo=dt.timezone.utc) for h in (1, 2, 3)]
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1001, 1001, 1002], pa.int64()),
                "event_timestamp": pa.array(times, stamp),
                "created": pa.array(times, stamp),
                "conv_rate": pa.array([0.1, 0.2, 0.3], pa.float32()),
                "acc_rate": pa.array([0.5, 0.6, 0.7], pa.float32()),
                "avg_daily_trips": pa.array([10, 20, 30], pa.int64()),
            }
        ),
        feast_repo / "data" / "driver_stats.parquet",
    )
    doc = json.loads(cli("import", "feast", "feature_repo", "--json").stdout)
    assert not (root / "PWNED").exists()
    assert (doc["entities"], doc["sources"], doc["feature_views"], doc["feature_services"]) == (1, 1, 1, 2)
    assert doc["untracked_sources"] == ["feature_repo/data/driver_stats.parquet"]
    assert any("request sources are not carried (RequestSource)" in n for n in doc["not_carried"])
    assert all(n.startswith("feature_repo/definitions.py:") for n in doc["not_carried"])
    defs = load_definitions(root)
    assert defs.project == "driver_ranking"
    view = defs.views["driver_hourly_stats"]
    assert view.ttl_seconds == 36 * 3600
    assert view.features == (("conv_rate", "float32"), ("acc_rate", "float32"), ("avg_daily_trips", "int64"))
    assert defs.sources["driver_hourly_stats_source"].created_timestamp_column == "created"
    assert [str(r) for r in defs.services["driver_activity_v1"].features] == [
        "driver_hourly_stats:conv_rate",
        "driver_hourly_stats:avg_daily_trips",
    ]
    # a second import changes nothing; a different existing features.yaml needs --force
    cli("import", "feast", "feature_repo")
    (root / "features.yaml").write_text("format: 1\n")
    cli("import", "feast", "feature_repo", code=2)
    cli("import", "feast", "feature_repo", "--force")

    cli("add", "feature_repo/data/driver_stats.parquet")
    cli("features", "validate")
    pq.write_table(
        pa.table(
            {
                "driver_id": [1001, 1002],
                "event_timestamp": pa.array([dt.datetime(2026, 5, 1, 2, 30), dt.datetime(2026, 5, 1, 2)], stamp),
            }
        ),
        root / "entities.parquet",
    )
    cli("features", "get-training-set", "entities.parquet", "-s", "driver_activity_v1", "-o", "train.parquet")
    table = pq.read_table(root / "train.parquet")
    assert table.column("avg_daily_trips").to_pylist() == [20, None]


def test_broken_python_is_a_located_error_and_nothing_is_written(repo, cli) -> None:
    (repo.root / "fr").mkdir()
    (repo.root / "fr" / "defs.py").write_text("driver = Entity(name='driver'\n")
    result = cli("import", "feast", "fr", code=2)
    assert "fr/defs.py:1:" in result.stderr and "not valid Python" in result.stderr
    assert not (repo.root / "features.yaml").exists()
