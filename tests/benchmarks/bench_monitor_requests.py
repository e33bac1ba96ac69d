"""What counting requests, statuses and latencies (and a classifier's confidence sums) adds to
`monitor build`, side by side in one run.

    .venv/bin/python tests/benchmarks/bench_monitor_requests.py --rows 1000000

Writes one request log of --rows single-row requests (three input columns, a classifier's
prediction and probabilities, variant, version, status, latency, time, request id and row: the
server's columns) over 24 hours into a temporary folder, then profiles it --repeats times in this
process: the whole of `profile_log` (what build does per file), and, on the same batches, the
request counting (store._add_requests) and confidence sums (store._add_confidence) alone.

Bound: the two together take at most 25 % of profile_log's time (the best of the repeats).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops.monitor.profile import Basis, ColumnBasis, Profile, iter_batches, survey
    from mlops.monitor.store import (
        CONFIDENCE,
        CONFIDENCE_EDGES,
        HOUR_US,
        NUMERIC,
        Reference,
        _add_confidence,
        _add_requests,
        _with_confidence,
        profile_log,
    )

    rng = np.random.default_rng(0)
    n = args.rows
    p = rng.random(n)
    start = int(time.time() // 86400 * 86400 - 86400) * 1_000_000
    table = pa.table(
        {
            "tenure": rng.integers(0, 72, n),
            "plan": rng.choice(["basic", "pro", "family"], n),
            "monthly_charges": rng.uniform(10, 120, n).round(2),
            "prediction": (p >= 0.5).astype(np.int64),
            "variant": rng.choice(["production", "canary"], n, p=[0.9, 0.1]),
            "version": np.where(rng.random(n) < 0.9, 1, 2),
            "status": np.full(n, 200, dtype=np.int16),
            "latency_ms": rng.lognormal(1.0, 0.7, n),
            "time": pa.array(np.sort(start + rng.integers(0, 86400 * 1_000_000, n)), pa.timestamp("us", tz="UTC")),
            "request_id": [f"r{i}" for i in range(n)],
            "request_row": np.zeros(n, dtype=np.int32),
            "probabilities": pa.array(
                [[("0", 1 - x), ("1", x)] for x in p.tolist()], pa.map_(pa.string(), pa.float64())
            ),
        }
    )
    with tempfile.TemporaryDirectory() as work:
        log = Path(work) / "20261206T000000Z-bench-1-0001.parquet"
        pq.write_table(table, log, compression="zstd", row_group_size=100_000)
        inputs = table.select(["tenure", "plan", "monthly_charges", "prediction"]).slice(0, 200_000)
        basis = survey(iter([inputs.combine_chunks().to_batches()[0]]), what="bench")
        basis = Basis((*basis.columns, ColumnBasis(CONFIDENCE, NUMERIC, edges=CONFIDENCE_EDGES)))
        ref = Reference("bench", 1, basis, Profile.from_dict(_empty(basis), "bench"), ("tenure",), ("0", "1"))
        whole, added = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            profiled = profile_log(log, ref)
            whole.append(time.perf_counter() - began)
            assert sum(s.requests for slots in profiled.service.values() for s in slots.values()) == n
            extra = 0.0
            for batch in iter_batches(log, None):
                names = batch.schema.names
                hours = batch.column(names.index("time")).cast(pa.int64()).to_numpy(zero_copy_only=False) // HOUR_US
                with_confidence = _with_confidence(batch)
                began = time.perf_counter()
                _add_requests({}, batch, hours)
                _add_confidence({}, with_confidence, hours)
                extra += time.perf_counter() - began
            added.append(extra)
    best_whole, best_added = min(whole), min(added)
    share = best_added / best_whole
    print(f"rows {n}: profile_log {best_whole:.3f}s; request counts + confidence sums {best_added:.3f}s")
    print(f"share of build time: {share:.1%} (bound 25%): {'PASS' if share <= 0.25 else 'FAIL'}")
    return 0 if share <= 0.25 else 1


def _empty(basis):  # noqa: ANN001, ANN202 - a reference profile's shape is not what is measured here
    from mlops.monitor.profile import empty_profile

    return empty_profile(basis).to_dict()


if __name__ == "__main__":
    sys.exit(main())
