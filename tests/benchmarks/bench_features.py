"""Feature store benchmark: point-in-time training sets, mlops vs Feast's local offline store, side by side
in one run; and online lookups of 10 features for one entity (p99, in-process).

    python tests/benchmarks/bench_features.py --entities 1000000 --rows 10000000 \\
        [--feast-python /path/to/feast-venv/bin/python] [--feast-timeout 1800]

Each side runs in a subprocess of its own on the same files and definitions (two views of five
features over one entity; a created timestamp on both), so peak memory (ru_maxrss) is that
side's alone. Feast runs in its own virtual environment (pip install feast); with it, mlops'
features.yaml is `mlops import feast` of the Feast repository written here (so the import is
checked against Feast's own answer too); without --feast-python only mlops is measured. Both
answers are compared on the rows where both finish.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PROJECT = HERE.parents[2]
FEATURES = [f"f{i}" for i in range(10)]  # f0..f4 in view_a, f5..f9 in view_b

FEATURES_YAML = """\
format: 1
entities:
  customer: {join_keys: [customer_id], value_type: int64}
sources:
  src_a: {path: data/view_a.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}
  src_b: {path: data/view_b.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}
feature_views:
  view_a:
    entities: [customer]
    source: src_a
    ttl: 30d
    schema: {f0: float64, f1: float64, f2: float64, f3: float64, f4: int64}
  view_b:
    entities: [customer]
    source: src_b
    ttl: 30d
    schema: {f5: float64, f6: float64, f7: float64, f8: float64, f9: int64}
feature_services:
  bench:
    features: [view_a, view_b]
"""

FEAST_REPO = """\
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
src_a = FileSource(name="src_a", path="{root}/data/view_a.parquet", timestamp_field="event_timestamp",
                   created_timestamp_column="created")
src_b = FileSource(name="src_b", path="{root}/data/view_b.parquet", timestamp_field="event_timestamp",
                   created_timestamp_column="created")
view_a = FeatureView(name="view_a", entities=[customer], ttl=timedelta(days=30), source=src_a,
                     schema=[Field(name="f0", dtype=Float64), Field(name="f1", dtype=Float64),
                             Field(name="f2", dtype=Float64), Field(name="f3", dtype=Float64),
                             Field(name="f4", dtype=Int64)])
view_b = FeatureView(name="view_b", entities=[customer], ttl=timedelta(days=30), source=src_b,
                     schema=[Field(name="f5", dtype=Float64), Field(name="f6", dtype=Float64),
                             Field(name="f7", dtype=Float64), Field(name="f8", dtype=Float64),
                             Field(name="f9", dtype=Int64)])
bench = FeatureService(name="bench", features=[view_a, view_b])
"""


def make_data(root: Path, entities: int, rows: int, late: float, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    customers = max(1, entities // 4)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype("int64")
    span = 180 * 86400 * 1_000_000
    (root / "data").mkdir(parents=True, exist_ok=True)
    for view, offset in (("view_a", 0), ("view_b", 5)):
        n = rows // 2
        event = base + rng.integers(0, span, n)
        created = event + np.where(rng.random(n) < late, rng.integers(0, 5 * 86400 * 1_000_000, n), 0)
        columns = {
            "customer_id": pa.array(rng.integers(0, customers, n), pa.int64()),
            "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
            "created": pa.array(created, pa.timestamp("us", tz="UTC")),
        }
        for i in range(5):
            name = f"f{offset + i}"
            columns[name] = pa.array(rng.integers(0, 1000, n) if i == 4 else rng.random(n))
        pq.write_table(pa.table(columns), root / "data" / f"{view}.parquet")
    times = base + rng.integers(30 * 86400 * 1_000_000, span, entities)
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(rng.integers(0, customers, entities), pa.int64()),
                "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            }
        ),
        root / "entities.parquet",
    )


# each side: wall time, CPU time (user + system, all threads and any children: steadier than wall time on a
# loaded machine) and peak memory of its own process
SIDE_CLOCK = """
import json, resource
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
"""
SIDE_REPORT = """
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu_s": cpu_seconds, "peak_mib": peak_mib}))
"""

MLOPS_SIDE = """
import json, resource, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from mlops.features.definitions import load_definitions
from mlops.features.offline import build_training_set
from mlops.repo.repo import Repo
root = Path(sys.argv[1])
rows = pq.read_table(root / "entities.parquet")
cpu_started = cpu()
started = time.perf_counter()
result = build_training_set(load_definitions(root), Repo(root), "bench", rows)
seconds = time.perf_counter() - started
cpu_seconds = cpu() - cpu_started
pq.write_table(result.table, root / "mlops-out.parquet")
"""


FEAST_SIDE = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
from feast import FeatureStore
repo = Path(sys.argv[1]) / "feast_repo"
store = FeatureStore(repo_path=str(repo))
entity_df = pd.read_parquet(Path(sys.argv[1]) / "entities.parquet")
cpu_started = cpu()
started = time.perf_counter()
frame = store.get_historical_features(entity_df=entity_df, features=store.get_feature_service("bench")).to_df()
seconds = time.perf_counter() - started
cpu_seconds = cpu() - cpu_started
frame.to_parquet(Path(sys.argv[1]) / "feast-out.parquet")
"""


def run_side(python: str, code: str, root: Path, timeout: float, env: dict[str, str]) -> dict | None:
    try:
        proc = subprocess.run(
            [python, "-c", code, str(root)], capture_output=True, text=True, timeout=timeout, env=env, cwd=root
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def setup_feast(python: str, root: Path) -> None:
    repo = root / "feast_repo"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\nregistry: data/registry.db\nprovider: local\n"
        "online_store: {type: sqlite, path: data/online.db}\nentity_key_serialization_version: 3\n"
    )
    (repo / "definitions.py").write_text(FEAST_REPO.replace("{root}", str(root)))
    feast = str(Path(python).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True, timeout=600)


def compare(root: Path) -> str:
    """How the answers differ: entity rows Feast left out, and values that differ on the rows both gave."""
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(root / "mlops-out.parquet")
    theirs = pd.read_parquet(root / "feast-out.parquet")
    key = ["customer_id", "event_timestamp"]
    ours = ours.drop_duplicates(key)  # (random microsecond times: duplicates are rare, and answer alike)
    theirs = theirs.drop_duplicates(key)
    both = ours.merge(theirs, on=key, how="inner", suffixes=("", "_feast"))
    differ = 0
    for f in FEATURES:
        a, b = both[f].astype(float).to_numpy(), both[f + "_feast"].astype(float).to_numpy()
        differ += int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
    return (
        f"{len(both)} entity rows in both answers, {len(ours) - len(both)} missing from Feast's; "
        f"{differ} feature values differ (backfilled rows leak into Feast's answer when --late > 0)"
    )


def online_p99(root: Path, lookups: int = 5000) -> dict:
    code = textwrap.dedent(
        f"""
        import datetime as dt, json, time
        from pathlib import Path
        from mlops.features.definitions import load_definitions
        from mlops.features.online import OnlineReader, materialize
        from mlops.repo.repo import Repo
        root = Path({str(root)!r})
        repo = Repo(root)
        defs = load_definitions(root)
        now = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
        started = time.perf_counter()
        materialize(repo, service="bench", now=now)
        materialize_seconds = time.perf_counter() - started
        reader = OnlineReader(repo, defs, "bench")
        times = []
        for i in range({lookups}):
            started = time.perf_counter()
            reader.lookup({{"customer_id": i % 1000}}, now=now)
            times.append(time.perf_counter() - started)
        times.sort()
        p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
        report = {{"materialize_s": round(materialize_seconds, 2), "p50_ms": round(p50, 3)}}
        print(json.dumps({{**report, "p99_ms": round(p99, 3)}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=root)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _side(report: dict) -> str:
    return f"{report['seconds']:.2f}s (CPU {report['cpu_s']:.2f}s), peak {report['peak_mib']:.0f} MiB"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _load() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine the figures depend on them."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--feast-python", help="python of a virtual environment with feast installed")
    parser.add_argument("--feast-timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--late", type=float, default=0.1, help="share of feature rows created after their event")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-features-"))
    started = time.perf_counter()
    make_data(root, args.entities, args.rows, args.late)
    (root / "features.yaml").write_text(FEATURES_YAML)
    sys.path.insert(0, str(PROJECT))
    from mlops.data.add import add
    from mlops.repo.repo import Repo, init_repo

    add(init_repo(root, no_git=True), [str(root / "data" / f"view_{v}.parquet") for v in "ab"])  # sources are tracked
    print(f"load before: {_load()} on {os.cpu_count()} cores")
    print(
        f"data: {args.entities} entity rows, {args.rows} feature rows ({time.perf_counter() - started:.1f}s) in {root}"
    )
    if args.feast_python:
        # absolute (not resolved: a venv's python is a symlink whose target has no feast): Feast runs
        # with the data folder as its working directory, where a path relative to the repository fails
        args.feast_python = os.path.abspath(args.feast_python)
        # the same definitions for both sides: mlops' features.yaml is `mlops import feast` of Feast's repository
        setup_feast(args.feast_python, root)
        from mlops.features.feast import import_feast

        imported = import_feast(Repo(root), root / "feast_repo", force=True)
        assert not imported.notes, imported.notes
    theirs = None
    ours = run_side(sys.executable, SIDE_CLOCK + MLOPS_SIDE + SIDE_REPORT, root, 3600, _env())
    print(f"mlops: {_side(ours)} (load after: {_load()})")
    if args.feast_python:
        theirs = run_side(
            args.feast_python, SIDE_CLOCK + FEAST_SIDE + SIDE_REPORT, root, args.feast_timeout, dict(os.environ)
        )
        if theirs is None:
            print(f"feast: did not finish in {args.feast_timeout:.0f}s")
        else:
            print(f"feast: {_side(theirs)} (load after: {_load()})")
            cpu_ratio = theirs["cpu_s"] / ours["cpu_s"]
            print(
                f"speed-up {theirs['seconds'] / ours['seconds']:.1f}x (CPU time: {cpu_ratio:.1f}x), "
                f"memory {theirs['peak_mib'] / ours['peak_mib']:.1f}x less; answers: {compare(root)}"
            )
    online = online_p99(root)
    print("online lookups of 10 features, one entity, in-process:", online)
    if theirs is not None:
        speedup = theirs["seconds"] / ours["seconds"]
        print(f"{_verdict(speedup >= 20)} training set at least 20x faster than Feast: {speedup:.1f}x")
        less = theirs["peak_mib"] / ours["peak_mib"]
        print(f"{_verdict(less > 1)} training set in less peak memory than Feast: {less:.1f}x less")
    print(f"{_verdict(online['p99_ms'] < 2)} online lookup p99 under 2 ms: {online['p99_ms']} ms")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
