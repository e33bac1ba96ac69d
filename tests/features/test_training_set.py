"""Point-in-time training sets against an independent oracle (a brute-force loop) and pandas.merge_asof."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops.errors import DataError
from mlops.features.definitions import parse_definitions
from mlops.features.offline import build_training_set
from mlops.repo.repo import Repo

pytest.importorskip("duckdb")

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)

DEFINITIONS = """
format: 1
entities:
  customer: {join_keys: [customer_id], value_type: int64}
sources:
  orders: {path: orders.parquet, timestamp_field: event_ts, created_timestamp_column: created_ts}
  visits: {path: visits.parquet, timestamp_field: ts}
feature_views:
  order_stats:
    entities: [customer]
    source: orders
    ttl: {ttl_orders}
    schema: {total: int64, value: float64}
  visit_stats:
    entities: [customer]
    source: visits
    ttl: {ttl_visits}
    schema: {visits: int64}
feature_services:
  svc:
    features: [order_stats:total, order_stats:value, visit_stats]
"""


def definitions(ttl_orders: str, ttl_visits: str, head: str = "") -> str:
    return head + DEFINITIONS.replace("{ttl_orders}", ttl_orders).replace("{ttl_visits}", ttl_visits)


def _stamp(hours: int | None) -> dt.datetime | None:
    return None if hours is None else BASE + hours * HOUR


def oracle(rows: list[dict], entity_rows: list[tuple], ttl_hours: int, features: list[str], created: bool) -> list:
    """For each entity row, brute force: the values of the best visible row, or None (the documented rules)."""
    out = []
    for key, t in entity_rows:
        candidates = []
        for index, row in enumerate(rows):
            event = row["event"]
            made = row.get("created") if created else None
            made = event if made is None else made
            if key is None or row["key"] != key or event is None:
                continue
            if event <= t and made <= t:
                candidates.append(((event, made, index), row))
        if not candidates:
            out.append({f: None for f in features})
            continue
        rank, best = max(candidates, key=lambda c: c[0])
        if ttl_hours and t - rank[0] > ttl_hours:
            out.append({f: None for f in features})
        else:
            out.append({f: best[f] for f in features})
    return out


keys = st.sampled_from([1, 2, 3, None])
hours = st.integers(0, 12)
order_rows = st.lists(
    st.fixed_dictionaries(
        {
            "key": keys,
            "event": st.one_of(hours, st.none()),
            "created": st.one_of(st.integers(0, 20), st.none()),  # later than the event: a backfill
            "total": st.one_of(st.integers(-5, 5), st.none()),
            "value": st.one_of(st.sampled_from([0.5, 1.5, -2.0]), st.none()),
        }
    ),
    max_size=25,
)
visit_rows = st.lists(
    st.fixed_dictionaries({"key": keys, "event": hours, "visits": st.one_of(st.integers(0, 9), st.none())}),
    max_size=25,
)
entity_rows = st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, None]), st.integers(0, 22)), min_size=1, max_size=20)


def _write(root: Path, orders: list[dict], visits: list[dict]) -> None:
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([r["key"] for r in orders], pa.int64()),
                "event_ts": pa.array([_stamp(r["event"]) for r in orders], ts),
                "created_ts": pa.array([_stamp(r["created"]) for r in orders], ts),
                "total": pa.array([r["total"] for r in orders], pa.int64()),
                "value": pa.array([r["value"] for r in orders], pa.float64()),
            }
        ),
        root / "orders.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([r["key"] for r in visits], pa.int64()),
                "ts": pa.array([_stamp(r["event"]) for r in visits], ts),
                "visits": pa.array([r["visits"] for r in visits], pa.int32()),
            }
        ),
        root / "visits.parquet",
    )


def _entities(rows: list[tuple]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([k for k, _ in rows], pa.int64()),
            "event_timestamp": pa.array([_stamp(t) for _, t in rows], pa.timestamp("ns", tz="UTC")),
        }
    )


@pytest.mark.timeout(240)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=order_rows,
    visits=visit_rows,
    wanted=entity_rows,
    ttl_orders=st.sampled_from([0, 2, 5]),
    ttl_visits=st.sampled_from([0, 1, 4]),
)
def test_training_set_matches_brute_force_oracle(orders, visits, wanted, ttl_orders, ttl_visits) -> None:
    text = definitions(f"{ttl_orders}h", f"{ttl_visits}h")
    defs = parse_definitions(text, "features.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, orders, visits)
        result = build_training_set(defs, Repo(root), "svc", _entities(wanted))
    table = result.table.to_pylist()
    ent = [(k, t) for k, t in wanted]
    want_orders = oracle(orders, ent, ttl_orders, ["total", "value"], created=True)
    want_visits = oracle(visits, ent, ttl_visits, ["visits"], created=False)
    assert [{"total": r["total"], "value": r["value"]} for r in table] == want_orders
    assert [{"visits": r["visits"]} for r in table] == want_visits
    # the entity rows come back as they were, in their order, with their times in UTC
    assert [r["customer_id"] for r in table] == [k for k, _ in wanted]
    assert [r["event_timestamp"] for r in table] == [_stamp(t) for _, t in wanted]
    assert result.filled["visit_stats"] == sum(_found(visits, ent, ttl_visits))


def _found(rows: list[dict], entity_rows: list[tuple], ttl: int) -> list[bool]:
    """Whether each entity row gets a row within TTL (its feature may still be null)."""
    marked = [{**r, "_here": True} for r in rows]
    return [v["_here"] is not None for v in oracle(marked, entity_rows, ttl, ["_here"], created=False)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits=visit_rows, wanted=entity_rows, ttl=st.sampled_from([0, 1, 3]))
def test_training_set_matches_pandas_merge_asof(visits, wanted, ttl) -> None:
    """Without created times or null keys the rules are merge_asof's: backward, exact matches
    allowed, tolerance inclusive, the last of equal times winning."""
    visits = [v for v in visits if v["key"] is not None]
    wanted = [(k or 4, t) for k, t in wanted]
    defs = parse_definitions(definitions("0", f"{ttl}h"), "features.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, [], visits)
        got = build_training_set(defs, Repo(root), "svc", _entities(wanted)).table.to_pandas()
    left = pd.DataFrame({"customer_id": [k for k, _ in wanted], "t": [t for _, t in wanted]})
    left["order"] = range(len(left))
    right = pd.DataFrame(
        {
            "customer_id": [v["key"] for v in visits],
            "t": [v["event"] for v in visits],
            "visits": [v["visits"] for v in visits],
        },
    ).astype({"customer_id": "int64", "t": "int64", "visits": "float64"})
    merged = pd.merge_asof(
        left.sort_values("t", kind="stable"),
        right.sort_values("t", kind="stable"),
        on="t",
        by="customer_id",
        direction="backward",
        tolerance=ttl or None,
        allow_exact_matches=True,
    ).sort_values("order")
    expected = [None if pd.isna(v) else int(v) for v in merged["visits"]]
    assert [None if pd.isna(v) else int(v) for v in got["visits"]] == expected


def test_a_backfilled_row_does_not_leak_and_ttl_edge_is_inclusive(tmp_path: Path) -> None:
    # an hour-3 value created at hour 10 is not seen before hour 10; the hour-1 value is, up to
    # exactly 8 h old (TTL 8 h), and not 1 us later
    orders = [
        {"key": 1, "event": 1, "created": 1, "total": 1, "value": 1.0},
        {"key": 1, "event": 3, "created": 10, "total": 3, "value": 3.0},
    ]
    _write(tmp_path, orders, [])
    defs = parse_definitions(definitions("8h", "0"), "features.yaml")
    entities = _entities([(1, 5), (1, 9), (1, 10), (1, 0)])
    late = pa.array([BASE + 9 * HOUR + dt.timedelta(microseconds=1)], pa.timestamp("ns", tz="UTC"))
    entities = pa.concat_tables([entities, pa.table({"customer_id": [1], "event_timestamp": late})])
    rows = build_training_set(defs, Repo(tmp_path), "svc", entities).table.to_pylist()
    assert [r["total"] for r in rows] == [1, 1, 3, None, None]


def test_naive_times_are_refused_unless_a_zone_is_named(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([1], pa.int64()),
                "ts": pa.array([dt.datetime(2026, 1, 1, 12)], pa.timestamp("us")),
                "visits": pa.array([7], pa.int64()),
            }
        ),
        tmp_path / "visits.parquet",
    )
    _write_orders_only(tmp_path)
    naive_entities = pa.table(
        {"customer_id": [1], "event_timestamp": pa.array([dt.datetime(2026, 1, 1, 12)], pa.timestamp("us"))}
    )
    defs = parse_definitions(definitions("0", "0"), "features.yaml")
    with pytest.raises(DataError, match="no time zone"):
        build_training_set(defs, Repo(tmp_path), "svc", naive_entities)
    zoned = parse_definitions(definitions("0", "0", head="timezone: Europe/Paris\n"), "f")
    # 12:00 in Paris is 11:00 UTC: the entity row at 12:00 Paris sees the visit of 12:00 Paris
    table = build_training_set(defs=zoned, repo=Repo(tmp_path), service_name="svc", rows=naive_entities).table
    assert table.column("visits").to_pylist() == [7]
    assert table.column("event_timestamp").to_pylist() == [dt.datetime(2026, 1, 1, 11, tzinfo=dt.timezone.utc)]


def _write_orders_only(root: Path) -> None:
    visits = pq.read_table(root / "visits.parquet")
    _write(root, [], [])
    pq.write_table(visits, root / "visits.parquet")


def _oracle_rows(rows: list[tuple], probes: list[tuple], ttl: int) -> list[int]:
    """Brute force over (key, event, created) rows: the index of the best visible row within TTL, or -1."""
    out = []
    for key, t in probes:
        candidates = [
            ((event, created, index), index)
            for index, (k, event, created) in enumerate(rows)
            if key is not None and k == key and event is not None and event <= t and created <= t
        ]
        if not candidates:
            out.append(-1)
            continue
        rank, index = max(candidates)
        out.append(-1 if ttl and t - rank[0] > ttl else index)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([0, 1, 2, None]), st.one_of(st.integers(0, 12), st.none()), st.integers(0, 20)),
        max_size=30,
    ),
    probes=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, None]), st.integers(0, 22)), min_size=1, max_size=20),
    ttl=st.sampled_from([0, 2, 5]),
    key_scale=st.sampled_from([1, 2**20, 2**40]),
    wide_times=st.booleans(),
    string_keys=st.booleans(),
    presorted=st.booleans(),
)
# the TTL's edge at the key's first entity row: that row is chosen, so it is not left out before the sort
@example(
    rows=[(1, 10, 10)],
    probes=[(1, 15), (1, 16)],
    ttl=5,
    key_scale=1,
    wide_times=False,
    string_keys=False,
    presorted=False,
)
def test_best_rows_on_every_coding_of_keys_and_times(
    rows, probes, ttl, key_scale, wide_times, string_keys, presorted
) -> None:
    """The join's own paths: keys near each other (offset; rows no entity row can choose left out before the
    sort), sparse (offset, nothing left out: a table per key would be too large), far apart (numbered), times
    too wide to share an int64 with the key (ranked), string keys, source and entity rows already in (key,
    time) order (no sort); each against the brute force on the same data."""
    import numpy as np

    from mlops.features.offline import best_rows

    unit = 10**17 if wide_times else 1  # 22 * 10**17 us apart: with the key's bits, more than 62
    if presorted:
        rows = sorted(rows, key=lambda r: (r[0] is None, r[0] or 0, r[1] is None, r[1] or 0))
        probes = sorted(probes, key=lambda p: (p[0] is None, p[0] or 0, p[1]))

    def key_array(values: list) -> pa.Array:
        if string_keys:
            return pa.array([None if k is None else f"customer-{k}" for k in values], pa.string())
        return pa.array([None if k is None else k * key_scale - 7 for k in values], pa.int64())

    null = np.iinfo(np.int64).min
    # created before, at (every third) or after the event time
    rows = [(k, e, e if e is not None and c % 3 == 0 else c) for k, e, c in rows]
    got = best_rows(
        key_array([k for k, _, _ in rows]),
        np.array([null if e is None else e * unit for _, e, _ in rows], dtype=np.int64),
        np.array([c * unit for _, _, c in rows], dtype=np.int64),
        key_array([k for k, _ in probes]),
        np.array([t * unit for _, t in probes], dtype=np.int64),
        ttl * unit,
    )
    assert got.tolist() == _oracle_rows(rows, probes, ttl)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.integers(0, 2**62), max_size=60) | st.lists(st.integers(0, 40), max_size=60),
    budget=st.sampled_from([63, 12, 8, 6]),
    presorted=st.booleans(),
)
def test_sorted_order_is_numpys_stable_argsort(values, budget, presorted) -> None:
    """The packed sort: values and indices sharing an int64 (budget 63), the values' low bits left out and the
    runs of equal high bits put right afterwards (small budgets), no bit left for the value (numpy's own sort),
    and values already in order."""
    import numpy as np

    from mlops.features.offline import sorted_order

    array = np.array(sorted(values) if presorted else values, dtype=np.int64)
    assert sorted_order(array, budget).tolist() == np.argsort(array, kind="stable").tolist()


def test_the_join_allocates_from_the_read_pool_and_restores_arrows_default() -> None:
    """The join swaps Arrow's default memory pool for the read pool (jemalloc where pyarrow has it) and
    numpy's huge pages off, and puts both back, also when the join fails."""
    from numpy._core.multiarray import _get_madvise_hugepage, _set_madvise_hugepage

    from mlops.features.offline import _join_memory
    from mlops.features.sources import read_pool

    pool = read_pool()
    if pool is None:
        pytest.skip("this pyarrow has no jemalloc")
    before = pa.default_memory_pool().backend_name
    if before == pool.backend_name:
        pytest.skip("jemalloc is already Arrow's default pool here")
    hugepages = _set_madvise_hugepage(True)
    try:
        with pytest.raises(RuntimeError), _join_memory(pool):
            assert pa.default_memory_pool().backend_name == "jemalloc"
            assert not _get_madvise_hugepage()
            raise RuntimeError("the join failed")
        assert pa.default_memory_pool().backend_name == before
        assert _get_madvise_hugepage()
    finally:
        _set_madvise_hugepage(hugepages)
