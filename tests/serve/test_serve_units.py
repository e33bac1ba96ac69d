"""The pure parts of serving: signature checks, payload parsing, routing, window statistics,
request-log rotation and retention, the batcher's folding."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from mlops.serve.batching import Batcher, QueueFull
from mlops.serve.health import Bucket, Stats, aggregate, judge
from mlops.serve.protocols import BadRequest, mlflow_inputs, v2_inputs
from mlops.serve.requestlog import LogSettings, RequestLog, _finished
from mlops.serve.router import Route, slot
from mlops.serve.signature import Signature

SIG = Signature.from_dict(
    {
        "inputs": [
            {"name": "tenure", "dtype": "int64"},
            {"name": "plan", "dtype": "str"},
            {"name": "monthly_charges", "dtype": "float64"},
            {"name": "vip", "dtype": "bool"},
        ]
    }
)


def test_signature_lists_every_problem_once_per_column() -> None:
    assert SIG is not None
    columns = {
        "tenure": [1, 2.0, "x", True, None],
        "plan": ["a", "b", 3, "c", "d"],
        "monthly_charges": [1, 2.5, None, 3, 4],
        "extra": [1] * 5,
    }
    problems = SIG.check(columns, 5)
    assert problems == [
        "missing column 'vip' (bool)",
        "unexpected column 'extra' (the model takes: tenure, plan, monthly_charges, vip)",
        "column 'tenure' (int64): null at row 4; the model needs a value",
        "column 'tenure' (int64): row 2 is string 'x', expected a whole number (and 1 more row(s))",
        "column 'plan' (str): row 2 is number 3, expected a string",
    ]
    assert SIG.check({**{k: v for k, v in columns.items() if k != "extra"}, "vip": [True] * 5}, 5, ignore=()) != []
    ok = {"tenure": [1, 2], "plan": ["a", "b"], "monthly_charges": [1, None], "vip": [True, False]}
    assert SIG.check(ok, 2) == []


def test_mlflow_payloads_as_documented() -> None:
    want = {"tenure": [1, 2], "plan": ["a", "b"], "monthly_charges": [1.0, 2.0], "vip": [True, False]}
    rows = [[1, "a", 1.0, True], [2, "b", 2.0, False]]
    records = [dict(zip(want, r, strict=True)) for r in rows]
    import json

    for doc in (
        {"dataframe_split": {"columns": list(want), "data": rows}},
        {"dataframe_split": {"data": rows}},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": want},
        {"inputs": rows},
        {"instances": rows},
    ):
        parsed = mlflow_inputs(json.dumps(doc).encode(), "application/json; charset=utf-8", SIG)
        assert parsed.columns == want and parsed.rows == 2, doc
    with pytest.raises(BadRequest) as info:
        mlflow_inputs(b"{}", "application/json; charset=latin-1", SIG)
    assert info.value.status == 415
    with pytest.raises(BadRequest, match="received a list"):
        mlflow_inputs(b"[1]", "application/json", SIG)


def test_v2_tensors_one_per_column_or_one_matrix() -> None:
    doc = {
        "inputs": [
            {"name": "tenure", "shape": [2, 1], "datatype": "INT32", "data": [[1], [2]]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            {"name": "monthly_charges", "shape": [2], "datatype": "FP32", "data": [1.5, 2]},
            {"name": "vip", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ]
    }
    parsed = v2_inputs(doc, SIG)
    assert parsed.columns["tenure"] == [1, 2] and parsed.rows == 2
    matrix = v2_inputs(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": [[3, "a", 1.0, True]]}]}, SIG
    )
    assert matrix.columns == {"tenure": [3], "plan": ["a"], "monthly_charges": [1.0], "vip": [True]}
    with pytest.raises(BadRequest) as info:
        v2_inputs(
            {"inputs": [{"name": "tenure", "shape": [1], "datatype": "FLOAT", "data": [1]}, {"name": "plan"}]}, SIG
        )
    assert len(info.value.problems) == 4  # unknown datatype; plan: shape, datatype, data


def test_sticky_routing_is_stable_and_monotonic_in_the_weight() -> None:
    route10 = Route(production="p", canary="c", weight=10, salt="churn:4")
    route50 = Route(production="p", canary="c", weight=50, salt="churn:4")
    keys = [f"k{i}" for i in range(5000)]
    at10 = {k for k in keys if route10.choose(k)[0] == "canary"}
    at50 = {k for k in keys if route50.choose(k)[0] == "canary"}
    assert at10 <= at50 and 0.08 < len(at10) / 5000 < 0.12 and 0.46 < len(at50) / 5000 < 0.54
    assert all(route10.choose(k)[0] == ("canary" if k in at10 else "production") for k in keys[:500])
    assert slot("k1", "churn:4") != slot("k1", "churn:5") or slot("k2", "churn:4") != slot("k2", "churn:5")


def test_window_statistics_percentiles_and_verdicts() -> None:
    stats = Stats()
    now = time.time()
    for i in range(100):
        stats.bucket(("canary", 4), now).add(4.0 if i < 98 else 400.0, 500 if i < 10 else 200, [i % 2])
    snap = stats.snapshot("churn", now)
    snap["alive"] = True
    window = aggregate([snap, snap], since=now - 60, until=now + 1).window[("canary", 4)]
    assert window.n == 200 and window.e5 == 20 and window.rows == 200
    assert 3 <= window.percentile_ms(0.5) <= 5 and window.percentile_ms(0.995) > 300
    assert judge(window, min_requests=300, max_error_rate=0.05, max_p99_ms=None, window_seconds=60).healthy is None
    bad = judge(window, min_requests=50, max_error_rate=0.05, max_p99_ms=None, window_seconds=60)
    assert bad.healthy is False and "error rate 10.0% > 5.0%" in bad.reason
    slow = judge(window, min_requests=50, max_error_rate=0.2, max_p99_ms=100, window_seconds=60)
    assert slow.healthy is False and "p99" in slow.reason
    assert judge(Bucket(), min_requests=1, max_error_rate=0.1, max_p99_ms=None, window_seconds=60).healthy is None


def test_request_log_rotates_by_size_and_keeps_within_its_bound(tmp_path: Path) -> None:
    settings = LogSettings(
        max_file_bytes=20_000, rotate_seconds=3600, max_total_bytes=60_000, flush_seconds=0.05, flush_rows=100
    )
    log = RequestLog(tmp_path / "requests", settings=settings)
    log.start()
    rng = range(400)
    for batch in range(30):
        columns = {
            "tenure": [batch * 1000 + i for i in rng],
            "plan": [f"plan-{batch}-{i}" for i in rng],
            "monthly_charges": [i / 7 for i in rng],
            "vip": [i % 3 == 0 for i in rng],
        }
        log.append(
            SIG,
            columns,
            400,
            {
                "prediction": [i % 2 for i in rng],
                "variant": "production",
                "version": 1,
                "latency_ms": 1.5,
                "time": time.time(),
            },
        )
        time.sleep(0.06)
    log.close()
    files = _finished(tmp_path / "requests", None)
    sizes = [f.stat().st_size for f in files]
    assert log.files_finished > len(files) >= 2, "rotation happened and retention removed the oldest"
    assert sum(sizes) <= 60_000 + max(sizes)
    assert not [n for n in os.listdir(tmp_path / "requests") if n.startswith(".open-")]
    import pyarrow.parquet as pq

    newest = pq.read_table(files[-1]).to_pandas()
    assert newest["tenure"].max() == 29 * 1000 + 399  # the newest rows are the ones kept
    assert str(pq.read_schema(files[-1]).field("vip").type) == "bool"


def test_the_batcher_folds_concurrent_requests_and_bounds_its_queue() -> None:
    calls: list[int] = []

    def predict(columns: dict, rows: int) -> list:
        time.sleep(0.02)
        calls.append(rows)
        return [v * 2 for v in columns["x"]]

    async def main() -> None:
        batcher = Batcher(predict, name="t", max_batch_rows=64, max_wait_ms=0, max_queue=40)
        batcher.start()
        futures = [batcher.submit({"x": [i, i]}, 2) for i in range(40)]
        with pytest.raises(QueueFull):
            batcher.submit({"x": [1]}, 1)
        results = await asyncio.gather(*futures)
        assert results == [[2 * i, 2 * i] for i in range(40)]
        await batcher.close()

    asyncio.run(main())
    assert sum(calls) == 80 and len(calls) <= 3 and max(calls) <= 64


def test_a_progressive_step_does_not_advance_on_bad_input_alone(model_repo: Path) -> None:
    """The controller's step window counts requests that reached the model: 4xx answers make up no evidence."""
    from mlops.repo.repo import Repo
    from mlops.serve.controller import control_once
    from mlops.serve.deployment import deploy, load_deployment, serve_dir
    from mlops.serve.health import write_snapshot
    from mlops.serve.source import open_source

    repo = Repo(model_repo)
    source = open_source(repo)
    deploy(repo, source, "churn", canary=2, steps=(20.0, 60.0), interval_seconds=1.0, min_requests=5, by="tests")
    stats = Stats()
    for _ in range(20):
        stats.record("canary", 2, 3.0, 400, None)
    write_snapshot(serve_dir(repo, "churn"), stats.snapshot("churn"))
    later = time.time() + 5  # the step has lasted its interval
    assert control_once(repo, source, "churn", now=later) == (None, None)
    assert load_deployment(repo, "churn").candidate.weight == 20.0
    for _ in range(5):
        stats.record("canary", 2, 3.0, 200, [0])
    write_snapshot(serve_dir(repo, "churn"), stats.snapshot("churn"))
    new, event = control_once(repo, source, "churn", now=later)
    assert event == "step" and new is not None and new.candidate.weight == 60.0


def test_bad_input_stays_out_of_the_request_count_and_latency() -> None:
    bucket = Bucket()
    for _ in range(12):
        bucket.add(900.0, 400, None)
    for _ in range(9):
        bucket.add(5.0, 500, None)
    assert (bucket.n, bucket.e4, bucket.e5, bucket.error_rate) == (9, 12, 9, 1.0)
    assert bucket.percentile_ms(0.99) <= 5.0  # the slow 400s are not in the histogram
    assert judge(bucket, min_requests=10, max_error_rate=0.5, max_p99_ms=None, window_seconds=60).healthy is None


def test_no_payload_shape_raises_anything_but_bad_request() -> None:
    """Odd JSON of every kind into every parser and the signature check: a BadRequest or a result, never a crash."""
    import itertools
    import json

    from mlops.serve.protocols import predict_inputs

    values = [None, True, 0, -1, 1.5, 1e308, 10**30, "", "x", [], [1], [[1]], {}, {"a": 1}, [{"tenure": 1}], [None]]
    keys = [
        "records",
        "columns",
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
        "params",
        "parameters",
        "id",
        "name",
        "shape",
        "datatype",
        "data",
        "tenure",
    ]
    docs: list = [*values]
    for key, value in itertools.product(keys, values):
        docs.append({key: value})
        docs.append({"inputs": [{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [1], key: value}]})
        docs.append({"dataframe_split": {"columns": ["tenure", "plan", "monthly_charges", "vip"], key: value}})
        docs.append(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", key: value, "data": [1, "a", 2.0, True]}]}
        )
    for doc in docs:
        for parse in (
            predict_inputs,
            lambda d: v2_inputs(d, SIG),
            lambda d: v2_inputs(d, None),
            lambda d: mlflow_inputs(json.dumps(d).encode(), "application/json", SIG),
        ):
            try:
                inputs = parse(doc)
            except BadRequest:
                continue
            SIG.check(inputs.columns, inputs.rows)


def test_a_statistics_snapshot_shares_nothing_the_loop_goes_on_changing() -> None:
    """Snapshots are written and added up in threads while the event loop keeps counting:
    nothing in one may be a live object of the statistics."""
    import copy
    import json

    stats = Stats()
    stats.record("production", 1, 3.0, 200, [0, 1])
    stats.record("production", 1, 3.0, 200, [0.5, 1.5])
    snap = stats.snapshot("churn")
    frozen = copy.deepcopy(snap)
    for i in range(60):  # new classes, numbers, a new variant, new seconds
        stats.record("production", 1, 5.0, 200, [f"class-{i}", float(i)])
        stats.record("canary", 2, 5.0, 500, None)
        stats.bucket(("production", 1), time.time() + i).add(1.0, 200, [i])
    assert json.dumps(snap, sort_keys=True) == json.dumps(frozen, sort_keys=True)


def test_the_admin_trust_rules_read_host_and_origin_strictly() -> None:
    from mlops.serve.trust import admin_refusal, host_and_port, is_loopback

    assert host_and_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert host_and_port("[::1]:9") == ("::1", 9) and host_and_port("LOCALHOST") == ("localhost", None)
    for bad in ("", ":80", "[::1", "[::1]x", "a:b:c", "host:0", "host:70000", "host:8o"):
        assert host_and_port(bad) is None, bad
    for name in ("localhost", "127.0.0.1", "127.3.2.1", "::1"):
        assert is_loopback(name), name
    for name in ("localhost.evil.example", "127.0.0.1.evil.example", "evil.example", "0.0.0.0", "::ffff:127.0.0.1"):
        assert not is_loopback(name), name

    def rule(headers: dict, **kw) -> str | None:
        options = {"server_port": 8080, "token_set": False, "token_ok": False, "bound_loopback": True, **kw}
        refusal = admin_refusal(headers, **options)
        return None if refusal is None else refusal.rule

    ok = {"host": "127.0.0.1:8080", "content-type": "application/json"}
    assert rule(ok) is None
    assert (
        rule({**ok, "origin": "http://127.0.0.1:8080"}) is None
        and rule({**ok, "origin": "http://localhost:8080"}) is None
    )
    for origin in (
        "http://127.0.0.1:8081",
        "https://127.0.0.1:8080",
        "http://evil.example:8080",
        "null",
        "http://127.0.0.1:8080/x",
    ):
        assert rule({**ok, "origin": origin}) == "same-origin", origin
    assert (
        rule({**ok, "sec-fetch-site": "same-site"}) == "same-origin" and rule({**ok, "sec-fetch-site": "none"}) is None
    )
    assert (
        rule({**ok, "host": "evil.example:8080"}) == "loopback-host"
        and rule({"content-type": "application/json"}) == "loopback-host"
    )
    assert rule({**ok, "content-type": "text/plain"}) == "json-content-type"
    assert rule({**ok, "content-type": "text/plain"}, writes=False) is None  # reading /health's details
    assert rule(ok, bound_loopback=False) == "loopback-only"
    assert (
        rule(ok, token_set=True) == "token" and rule({"host": "proxy.internal"}, token_set=True, token_ok=True) is None
    )
    assert rule({"origin": "http://evil.example"}, token_set=True, token_ok=True) == "same-origin"
