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

4. beside it, in one run: Evidently's data drift preset (DataDriftPreset, in its own virtual
   environment WORK/venvs/evidently, built here by pip when missing) on the same files at
   --evidently-rows sizes, up to the first it cannot complete (--peer-timeout seconds, a
   --peer-memory GiB address-space cap); mlops drift --profile on the same files; the ratios;
5. estimated accuracy without labels: a logistic model on synthetic data (reference 100k rows with
   labels; 10 analysis chunks of 100k rows whose first feature's mean moves, a known covariate
   shift that lowers the accuracy), mlops' estimate (the mean confidence of a chunk, from its
   profile, as monitor check takes it) against NannyML's CBPE (its own virtual environment
   WORK/venvs/nannyml), each against the realized accuracy: mean absolute error and seconds.

Targets (issue 16): 10M rows x 25 columns profiled in under 30 s and under 1 GB on 2 cores;
a check over 30 daily profiles under 1 s; the estimated accuracy at least as close as CBPE's
and at least 10x faster. --no-peers skips 4 and 5.
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


PEERS = {
    # pandas < 3: Evidently 0.7.23 and NannyML 0.13.1 import pandas internals that pandas 3 removed
    "evidently": ["evidently==0.7.23", "pandas<3", "pyarrow"],
    "nannyml": ["nannyml==0.13.1", "pandas<3", "statsmodels", "pyarrow"],
}
PEER_SCRIPTS = Path(__file__).resolve().parent / "peers"


def peer_python(work: Path, name: str) -> Path:
    """The python of a peer's own virtual environment, built by pip the first time."""
    folder = work / "venvs" / name
    python = folder / "bin" / "python"
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
    return python


def planted_files(work: Path, rows: int) -> tuple[Path, Path]:
    folder = work / "monitor" / str(rows)
    folder.mkdir(parents=True, exist_ok=True)
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    write(ref, rows, drifted=False, seed=7)
    write(cur, rows, drifted=True, seed=1007)
    return ref, cur


def run_peer(argv: list[str], timeout: float, memory_gib: float) -> tuple[dict | None, float, int, str]:
    """(its JSON line or None, wall seconds, peak RSS, why it did not complete)."""
    import resource

    def cap() -> None:
        limit = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, time.perf_counter() - started, 0, f"not done in {timeout:.0f} s"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child so far
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return None, seconds, peak, last[0][:200]
    return json.loads(out.decode().strip().splitlines()[-1]), seconds, peak, ""


def evidently_beside(work: Path, sizes: list[int], timeout: float, memory_gib: float) -> None:
    python = peer_python(work, "evidently")
    mlops = [sys.executable, "-m", "mlops"]
    largest = None
    for rows in sizes:
        ref, cur = planted_files(work, rows)
        seconds, cpu, peak, out = timed_child([*mlops, "drift", str(ref), str(cur), "--profile", "--json"], ROOT)
        found = score({c["column"] for c in json.loads(out)["columns"] if c["drifted"]})
        print(f"  {rows:>11,} rows  mlops drift --profile: {seconds:7.1f} s ({cpu:.1f} s CPU, {peak / 2**20:.0f} MiB)")
        print(f"  {'':>11}       planted {found}")
        doc, wall, peer_peak, why = run_peer(
            [str(python), str(PEER_SCRIPTS / "evidently_preset.py"), str(ref), str(cur), str(rows)], timeout, memory_gib
        )
        if doc is None:
            print(f"  {'':>11}       Evidently DataDriftPreset: did not complete ({why})")
            break
        largest = rows
        ev = score(set(doc["drifted"]))
        print(
            f"  {'':>11}       Evidently DataDriftPreset: {doc['seconds']:7.1f} s for the report "
            f"({wall:.1f} s with import and reading); {doc['seconds'] / seconds:.1f}x mlops' whole run"
        )
        print(f"  {'':>11}       planted {ev}")
    print(f"  largest size Evidently completed: {largest:,} rows" if largest else "  Evidently completed none")


def _sigmoid(z):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-z))


def cbpe_data(folder: Path, chunk: int, chunks: int) -> tuple[Path, Path, list[float]]:
    """A logistic model fitted on training rows; reference rows with labels; analysis chunks whose
    first feature's mean moves by 0.2 per chunk (the truth P(y|x) stays: a covariate shift)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    truth = np.array([1.2, -0.8, 0.5])

    def rows(n: int, shift: float):
        x = rng.normal(0.0, 1.0, (n, 3))
        x[:, 0] += shift
        y = (rng.uniform(size=n) < _sigmoid(x @ truth - 0.3)).astype(np.int64)
        return x, y

    x, y = rows(50_000, 0.0)  # training: the model is fitted by Newton's method (logistic regression)
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(4)
    for _ in range(25):
        p = _sigmoid(design @ w)
        w += np.linalg.solve(design.T @ (design * (p * (1 - p))[:, None]), design.T @ (y - p))

    def table(x, y):
        p = _sigmoid(np.hstack([x, np.ones((len(x), 1))]) @ w)
        return pa.table({"y_pred_proba": p, "y_pred": (p >= 0.5).astype(np.int64), "y_true": y}), p, y

    ref_table, _, _ = table(*rows(100_000, 0.0))
    parts, realized = [], []
    for k in range(chunks):
        t, p, yk = table(*rows(chunk, -0.2 * k))
        parts.append(t)
        realized.append(float(np.mean((p >= 0.5) == yk)))
    pq.write_table(ref_table, folder / "reference.parquet")
    pq.write_table(pa.concat_tables(parts), folder / "analysis.parquet")
    return folder / "reference.parquet", folder / "analysis.parquet", realized


def mlops_estimates(analysis: Path, chunk: int) -> tuple[float, list[float]]:
    """Each chunk's confidence (the probability the model gave its own answer) profiled into the
    monitor's confidence column; the estimate is the profile's mean, as monitor check takes it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops.monitor.profile import NUMERIC, Basis, ColumnBasis, Profiler
    from mlops.monitor.store import CONFIDENCE, CONFIDENCE_EDGES

    p = pq.read_table(analysis, columns=["y_pred_proba"]).column(0).to_numpy()  # read: not timed, as for CBPE
    started = time.perf_counter()
    basis = Basis((ColumnBasis(CONFIDENCE, NUMERIC, edges=CONFIDENCE_EDGES),))
    estimates = []
    for start in range(0, len(p), chunk):
        part = p[start : start + chunk]
        profiler = Profiler(basis)
        profiler.add(pa.record_batch([pa.array(np.maximum(part, 1.0 - part))], names=[CONFIDENCE]))
        estimates.append(profiler.profile().columns[CONFIDENCE].mean())
    return time.perf_counter() - started, estimates


def cbpe_beside(work: Path, timeout: float, memory_gib: float, chunk: int = 100_000, chunks: int = 10) -> None:
    python = peer_python(work, "nannyml")
    ref, analysis, realized = cbpe_data(work / "cbpe", chunk, chunks)
    seconds, ours = mlops_estimates(analysis, chunk)
    doc, wall, _, why = run_peer(
        [str(python), str(PEER_SCRIPTS / "nannyml_cbpe.py"), str(ref), str(analysis), str(chunk)], timeout, memory_gib
    )
    print(f"  realized accuracy per chunk:   {' '.join(f'{a:.4f}' for a in realized)}")
    ours_error = sum(abs(a - b) for a, b in zip(ours, realized, strict=True)) / len(realized)
    print(f"  mlops (mean confidence):        {' '.join(f'{a:.4f}' for a in ours)}")
    if doc is None:
        print(f"  NannyML CBPE did not complete ({why})")
        print(f"  mlops: mean absolute error {ours_error:.5f}, {seconds:.3f} s")
        return
    theirs = doc["estimates"]
    theirs_error = sum(abs(a - b) for a, b in zip(theirs, realized, strict=True)) / len(realized)
    print(f"  NannyML CBPE:                   {' '.join(f'{a:.4f}' for a in theirs)}")
    print(f"  mean absolute error: mlops {ours_error:.5f}, CBPE {theirs_error:.5f}")
    print(
        f"  seconds: mlops {seconds:.3f} (profiling and the mean), CBPE {doc['seconds']:.3f} (fit and estimate; "
        f"{wall:.1f} with import and reading): mlops {doc['seconds'] / seconds:.0f}x faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="skip Evidently and NannyML")
    parser.add_argument("--evidently-rows", default="100000,1000000,10000000")
    parser.add_argument("--peer-timeout", type=float, default=1800.0)
    parser.add_argument("--peer-memory", type=float, default=8.0, help="GiB of address space for a peer")
    args = parser.parse_args()
    ref, cur = planted_files(args.work, args.rows)
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
    if args.no_peers:
        return
    print(f"beside Evidently (load {os.getloadavg()[0]:.1f}):")
    evidently_beside(args.work, [int(n) for n in args.evidently_rows.split(",")], args.peer_timeout, args.peer_memory)
    print(f"estimated accuracy without labels, beside NannyML's CBPE (load {os.getloadavg()[0]:.1f}):")
    cbpe_beside(args.work, args.peer_timeout, args.peer_memory)


if __name__ == "__main__":
    main()
