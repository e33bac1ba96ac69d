"""The online store: materialize (watermarks, incremental runs, a refused future end), reads with TTL
applied at read time, readers during a write; SQLite under .mlops/ and a real redis-server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.features.online import get_online, materialize

pytest.importorskip("duckdb")

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)

FEATURES = """\
format: 1
project: churn
{store}
entities:
  customer: {{join_keys: [customer_id], value_type: int64}}
sources:
  orders: {{path: data/orders.parquet, timestamp_field: event_ts, created_timestamp_column: created_ts}}
feature_views:
  customer_stats:
    entities: [customer]
    source: orders
    ttl: 10d
    schema: {{total_purchases: int64, avg_order_value: float64}}
feature_services:
  churn_v2:
    features: [customer_stats]
"""


def write_orders(root: Path, rows: list[tuple[int, dt.datetime, dt.datetime, int, float | None]]) -> None:
    (root / "data").mkdir(exist_ok=True)
    target = root / "data" / "orders.parquet"
    if target.exists():
        target.unlink()  # it may be a read-only link to the cache
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([r[0] for r in rows], pa.int64()),
                "event_ts": pa.array([r[1] for r in rows], ts),
                "created_ts": pa.array([r[2] for r in rows], ts),
                "total_purchases": pa.array([r[3] for r in rows], pa.int64()),
                "avg_order_value": pa.array([r[4] for r in rows], pa.float64()),
            }
        ),
        target,
    )


ROWS = [
    (42, T0, T0, 1, 10.0),
    (42, T0 + 2 * DAY, T0 + 2 * DAY, 2, 12.0),
    (7, T0 + DAY, T0 + DAY, 5, None),
    # a value of day 3 written on day 6: backfilled, visible only from day 6
    (42, T0 + 3 * DAY, T0 + 6 * DAY, 3, 13.0),
]


@pytest.fixture
def online_repo(repo, cli):
    write_orders(repo.root, ROWS)
    (repo.root / "features.yaml").write_text(FEATURES.format(store=""))
    cli("add", "data/orders.parquet")
    return repo


def test_materialize_then_read_applies_ttl_at_read_time(online_repo) -> None:
    result = materialize(online_repo, service="churn_v2", end=T0 + 4 * DAY, now=T0 + 4 * DAY)
    assert [(v.view, v.mode, v.entities) for v in result.views] == [("customer_stats", "full", 2)]
    got = get_online(online_repo, service="churn_v2", entity={"customer_id": "42"}, now=T0 + 4 * DAY)
    assert got.values == {"total_purchases": 2, "avg_order_value": 12.0}  # the day-3 backfill is not visible yet
    assert got.missing == ()
    # customer 7's value is null in the source: missing, as an expired one
    seven = get_online(online_repo, service="churn_v2", entity={"customer_id": 7}, now=T0 + 4 * DAY)
    assert seven.values == {"total_purchases": 5, "avg_order_value": None}
    assert seven.missing == ("customer_stats:avg_order_value",)
    # 10 days after its event time the value is still there; a microsecond later it has expired
    edge = T0 + 12 * DAY
    assert get_online(online_repo, service="churn_v2", entity={"customer_id": 42}, now=edge).values["total_purchases"]
    late = get_online(
        online_repo, service="churn_v2", entity={"customer_id": 42}, now=edge + dt.timedelta(microseconds=1)
    )
    assert late.values == {"total_purchases": None, "avg_order_value": None}
    assert set(late.missing) == {"customer_stats:total_purchases", "customer_stats:avg_order_value"}
    # the store is one SQLite file under .mlops/, ignored by git
    assert (online_repo.dot / "features" / "online.sqlite").is_file()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", ".mlops/features"], capture_output=True, text=True
    )
    assert "!! .mlops/features/" in status.stdout


def test_incremental_runs_follow_the_watermark_and_a_changed_source_rebuilds(online_repo, cli) -> None:
    first = materialize(online_repo, service="churn_v2", end=T0 + 4 * DAY, now=T0 + 9 * DAY)
    assert first.views[0].mode == "full"
    same = materialize(online_repo, service="churn_v2", end=T0 + 4 * DAY, now=T0 + 9 * DAY)
    assert same.views[0].mode == "up to date"
    # from day 4 to day 7 only the backfilled row became visible: one entity written, and it wins
    second = materialize(online_repo, service="churn_v2", end=T0 + 7 * DAY, now=T0 + 9 * DAY)
    assert (second.views[0].mode, second.views[0].entities) == ("incremental", 1)
    got = get_online(online_repo, service="churn_v2", entity={"customer_id": 42}, now=T0 + 7 * DAY)
    assert got.values["total_purchases"] == 3 and got.event_times == {"customer_stats": (T0 + 3 * DAY).isoformat()}
    # a late row (event and created before the watermark) appended to the source: a rebuild catches it
    write_orders(online_repo.root, [*ROWS, (7, T0 + 2 * DAY, T0 + 2 * DAY, 6, 1.5)])
    cli("add", "data/orders.parquet")
    third = materialize(online_repo, service="churn_v2", end=T0 + 7 * DAY, now=T0 + 9 * DAY)
    assert third.views[0].mode == "full"
    seven = get_online(online_repo, service="churn_v2", entity={"customer_id": 7}, now=T0 + 7 * DAY)
    assert seven.values == {"total_purchases": 6, "avg_order_value": 1.5}


def test_cli_refuses_a_future_end_and_reads_json(online_repo, cli) -> None:
    result = cli("features", "materialize", "--service", "churn_v2", "--end", "2999-01-01T00:00:00Z", code=2)
    assert "is in the future" in result.stderr
    cli("features", "materialize", "-s", "churn_v2", "--end", "2026-03-01T00:00:00", code=2)  # naive, no zone
    cli("features", "get-online", "-s", "churn_v2", "-e", "customer_id=42", code=2)  # nothing materialized yet
    doc = json.loads(cli("features", "materialize", "-s", "churn_v2", "--end", "2026-03-05T00:00:00Z", "--json").stdout)
    assert doc["views"][0]["mode"] == "full" and doc["views"][0]["entities"] == 2
    # read now (far past the 10-day TTL): every value expired, so every feature is missing
    doc = json.loads(cli("features", "get-online", "-s", "churn_v2", "-e", "customer_id=42", "--json").stdout)
    assert doc["features"] == {"total_purchases": None, "avg_order_value": None}
    assert len(doc["missing"]) == 2
    assert doc["entity"] == {"customer_id": 42}  # an int64 key as a number, not the text "42"
    cli("features", "get-online", "-s", "churn_v2", "-e", "customer_id", code=2)


def test_materialize_output_is_labelled_and_an_end_before_the_watermark_says_so(online_repo, cli) -> None:
    first = cli("features", "materialize", "-s", "churn_v2", "--end", "2026-03-05T00:00:00Z").stdout.splitlines()
    assert first[0].startswith("materialized 'churn_v2' as of 2026-03-05T00:00:00+00:00")
    assert first[1:] == [
        "view\tmode\tentities written\twatermark",
        "customer_stats\tfull\t2\t2026-03-05T00:00:00+00:00",
    ]
    earlier = cli("features", "materialize", "-s", "churn_v2", "--end", "2026-03-03T00:00:00Z").stdout
    assert "materialized" not in earlier
    assert "up to date (watermark 2026-03-05T00:00:00+00:00 is later than --end 2026-03-03T00:00:00+00:00)" in earlier


@pytest.mark.timeout(180)
def test_readers_never_wait_or_fail_while_materialize_writes(online_repo, cli) -> None:
    many = [(k, T0 + DAY, T0 + DAY, k, float(k)) for k in range(150_000)]
    write_orders(online_repo.root, many)
    cli("add", "data/orders.parquet")
    materialize(online_repo, service="churn_v2", end=T0 + 2 * DAY, now=T0 + 2 * DAY)
    write_orders(online_repo.root, [*many, *((k, T0 + 3 * DAY, T0 + 3 * DAY, -k, 0.0) for k in range(150_000))])
    cli("add", "data/orders.parquet")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-m", "mlops", "features", "materialize", "-s", "churn_v2", "--end", "2026-03-05T00:00:00Z"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    reads_while_writing = 0
    try:
        while writer.poll() is None:
            got = get_online(online_repo, service="churn_v2", entity={"customer_id": 149_999}, now=T0 + 4 * DAY)
            seen.add(got.values["total_purchases"])
            reads_while_writing += 1
            time.sleep(0.01)
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert reads_while_writing >= 1
    assert seen <= {149_999, -149_999}  # the old value or the new one, never an error or a half write
    after = get_online(online_repo, service="churn_v2", entity={"customer_id": 149_999}, now=T0 + 4 * DAY)
    assert after.values["total_purchases"] == -149_999


# --- Redis ---------------------------------------------------------------------------------------


def test_redis_online_store(repo, cli, redis_url) -> None:
    write_orders(repo.root, ROWS)
    (repo.root / "features.yaml").write_text(FEATURES.format(store=f"online_store: {redis_url}"))
    cli("add", "data/orders.parquet")
    first = materialize(repo, service="churn_v2", end=T0 + 4 * DAY, now=T0 + 9 * DAY)
    assert (first.store, first.views[0].mode, first.views[0].entities) == (redis_url, "full", 2)
    assert not (repo.dot / "features" / "online.sqlite").exists()
    got = get_online(repo, service="churn_v2", entity={"customer_id": 42}, now=T0 + 4 * DAY)
    assert got.values == {"total_purchases": 2, "avg_order_value": 12.0}
    second = materialize(repo, service="churn_v2", end=T0 + 7 * DAY, now=T0 + 9 * DAY)
    assert (second.views[0].mode, second.views[0].entities) == ("incremental", 1)
    got = get_online(repo, service="churn_v2", entity={"customer_id": 42}, now=T0 + 7 * DAY)
    assert got.values == {"total_purchases": 3, "avg_order_value": 13.0}
    expired = get_online(repo, service="churn_v2", entity={"customer_id": 42}, now=T0 + 14 * DAY)
    assert expired.values == {"total_purchases": None, "avg_order_value": None}
    # a server that went away: one clear error (exit 3), no traceback
    (repo.root / "features.yaml").write_text(FEATURES.format(store="online_store: redis://127.0.0.1:1/0"))
    result = cli("features", "get-online", "-s", "churn_v2", "-e", "customer_id=42", code=3)
    assert "online store redis://127.0.0.1:1/0" in result.stderr


def test_a_changed_view_definition_rebuilds_that_view(online_repo, cli) -> None:
    """A longer TTL reaches rows the shorter one left out; a new feature is filled; a watermark written
    before definitions were hashed counts as changed, once."""
    features = online_repo.root / "features.yaml"
    short = FEATURES.format(store="").replace("ttl: 10d", "ttl: 1d").replace(", avg_order_value: float64", "")
    features.write_text(short)
    end, now = T0 + 9 * DAY, T0 + 9 * DAY
    first = materialize(online_repo, service="churn_v2", end=end, now=now)
    assert (first.views[0].mode, first.views[0].entities, first.views[0].reason) == ("full", 0, "first run")
    features.write_text(short.replace("ttl: 1d", "ttl: 30d"))
    longer = cli("features", "materialize", "-s", "churn_v2", "--end", end.isoformat())
    assert "definition changed: rebuilt" in longer.stdout
    got = get_online(online_repo, service="churn_v2", entity={"customer_id": 42}, now=end)
    assert got.values == {"total_purchases": 3} and got.missing == ()
    # a feature added to the schema: rebuilt at the same end, the new feature has its values
    features.write_text(FEATURES.format(store="").replace("ttl: 10d", "ttl: 30d"))
    added = materialize(online_repo, service="churn_v2", end=end, now=now)
    assert (added.views[0].mode, added.views[0].reason) == ("full", "definition changed")
    got = get_online(online_repo, service="churn_v2", entity={"customer_id": 42}, now=end)
    assert got.values == {"total_purchases": 3, "avg_order_value": 13.0}
    assert materialize(online_repo, service="churn_v2", end=end, now=now).views[0].mode == "up to date"
    # a store written before the definition's hash was recorded: rebuilt once, then incremental again
    import sqlite3

    with sqlite3.connect(online_repo.dot / "features" / "online.sqlite") as conn:
        conn.execute("ALTER TABLE watermarks DROP COLUMN definition_hash")
    old = materialize(online_repo, service="churn_v2", end=end, now=now)
    assert (old.views[0].mode, old.views[0].reason) == ("full", "definition changed")
    assert materialize(online_repo, service="churn_v2", end=end, now=now).views[0].mode == "up to date"


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 512])
def test_a_damaged_or_empty_store_is_one_config_error_not_an_internal_one(tmp_path, content) -> None:
    """The serve start-up probe reads every view's watermark: a store a killed materialize left
    empty, or one damaged on disk, is one line (exit 2) naming the file, never a sqlite traceback."""
    from mlops.errors import ConfigError
    from mlops.features.online import SqliteStore

    path = tmp_path / "online.sqlite"
    path.write_bytes(content)
    store = SqliteStore(path)
    with pytest.raises(ConfigError, match="the online store cannot be read") as raised:
        store.watermark("customer_stats")
    assert str(path) in str(raised.value) and raised.value.exit_code == 2
    store.close()
