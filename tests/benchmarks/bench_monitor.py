"""Monitoring benchmark: profiling the planted-drift tables in bounded memory, and a check over
30 daily profiles.

    .venv/bin/python tests/benchmarks/bench_monitor.py --work ../bench-work --rows 10000000
    .venv/bin/python tests/benchmarks/bench_monitor.py --work ../bench-work --rows 1000000   # quick

1. writes reference and current Parquet files of the planted-drift family (tests/drift/planted.py:
   20 numeric, 5 categorical columns) at --rows rows each, in chunks of 1M rows (reused when
   present), into WORK/monitor/<rows>/;
2. times one whole process `mlops drift REF CUR --profile --json` (a basis from the reference,
   both sides streamed into profiles, compared): wall-clock seconds and the child's peak memory
   (max RSS from wait4), and scores the planted columns;
3. times, in this process, a check's core over 30 daily profiles: merging 30 profiles of one
   basis and judging them against the reference (drift_report), repeated --repeats times.

Targets (issue 16): 10M rows x 25 columns profiled in under 30 s and under 1 GB on 2 cores;
a check over 30 daily profiles under 1 s. Not here yet: Evidently's preset beside it, and
NannyML's CBPE against the estimated accuracy (their own virtual environments).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "drift")]

from planted import arrow_table, make_table, score  # noqa: E402

CHUNK = 1_000_000


def write(path: Path, rows: int, *, drifted: bool, seed: int) -> None:
    import pyarrow.parquet as pq

    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    writer = None
    done = 0
    part = 0
    while done < rows:
        n = min(CHUNK, rows - done)
        table = arrow_table(make_table(n, drifted=drifted, seed=seed + part))
        if writer is None:
            writer = pq.ParquetWriter(str(tmp), table.schema, compression="zstd")
        writer.write_table(table, row_group_size=128 * 1024)
        done += n
        part += 1
    assert writer is not None
    writer.close()
    os.replace(tmp, path)


def timed_child(argv: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """(wall seconds, the child's CPU seconds (user + system), its peak RSS in bytes, its stdout)."""
    import tempfile

    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            err.seek(0)
            raise SystemExit(f"{argv} -> {proc.returncode}\n{err.read().decode()}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode()


def check_over_days(ref_path: Path, days: int, repeats: int) -> float:
    from planted import planted_pair

    from mlops.drift.config import preset_settings
    from mlops.monitor.compare import drift_report
    from mlops.monitor.profile import make_basis, merge_all, profile_table

    ref, cur = planted_pair(100_000)
    basis = make_basis([ref_path])
    reference = profile_table(ref, basis)
    daily = [profile_table(cur.slice(i * 3000, 3000), basis) for i in range(days)]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        merged = merge_all(daily, basis)
        for day in daily:  # one report per window, as monitor check makes
            drift_report(basis, reference, day, preset_settings("default"), reference="r", current="c")
        drift_report(basis, reference, merged, preset_settings("default"), reference="r", current="c")
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = args.work / "monitor" / str(args.rows)
    folder.mkdir(parents=True, exist_ok=True)
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    write(ref, args.rows, drifted=False, seed=7)
    write(cur, args.rows, drifted=True, seed=1007)
    mlops = [sys.executable, "-m", "mlops"]
    env_note = f"load {os.getloadavg()[0]:.1f}"
    seconds, cpu, peak, out = timed_child([*mlops, "drift", str(ref), str(cur), "--profile", "--json"], ROOT)
    doc = json.loads(out)
    found = score({c["column"] for c in doc["columns"] if c["drifted"]})
    check = check_over_days(ref, 30, args.repeats)
    print(f"rows per side: {args.rows:,} x 25 columns ({env_note} before the run)")
    print(f"mlops drift --profile: {seconds:.1f} s ({cpu:.1f} s of CPU), peak RSS {peak / 2**20:.0f} MiB")
    print(f"planted: {found}")
    print(f"check over 30 daily profiles: {check * 1000:.0f} ms (best of {args.repeats})")


if __name__ == "__main__":
    main()
