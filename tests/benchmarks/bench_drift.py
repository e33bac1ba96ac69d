"""Drift benchmark: `mlops drift` against Evidently's DataDriftPreset, side by side, on the same files.

    .venv/bin/python tests/benchmarks/bench_drift.py --work ../bench-work
    .venv/bin/python tests/benchmarks/bench_drift.py --work ../bench-work --sizes 10000 --no-evidently   # quick

What it does:
1. writes reference and current Parquet files of 20 numeric and 5 categorical columns with
   drift planted in 5 known columns (tests/drift/planted.py, the tables the tests use) at
   10k, 100k and 1M rows per set into WORK/drift/<rows>/ (reused when present);
2. installs Evidently into its own venv WORK/evidently-venv (`pip install evidently
   "pandas<3" pyarrow`; Evidently 0.7 does not import under pandas 3), reused when present,
   never into the project's venv;
3. per size, times wall-clock seconds and peak memory (the child's max RSS from wait4) of one
   whole process each: `mlops drift REF CUR --json` (default preset: Evidently's rules),
   `mlops drift REF CUR --json --preset strict`, and a Python process in the Evidently venv
   that reads the same files with pandas and runs `Report([DataDriftPreset()])` with the
   column types declared (the same 20 numeric and 5 categorical columns). Process start-up
   and imports count for both tools. mlops runs --repeats times (median shown), Evidently
   --evidently-repeats times (median);
4. scores every run on the planted columns: found, missed, false alarms (clean columns
   flagged), and compares mlops' default per-column scores with Evidently's (largest
   difference, and columns whose verdict differs);
5. prints a table and writes it into docs/benchmarks.md under '## Drift (issue 6)'.

Targets (issue 6): 1M rows per set in under 5 s on 2 cores and at least 10x faster than
Evidently's preset; 10k rows under 1 s; peak memory at most twice the in-memory (Arrow) size
of the two tables; every planted drift found and no clean column flagged at each size (the
strict preset; the default follows Evidently's thresholds and is shown for comparison).

Load: before each timed call the run waits (up to --idle-wait s) until other processes use at
most 20% of the CPU, then measures what others used during the call (all busy CPU time minus
the child's own); a cell measured while they used more is marked `*`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchdocs import replace_section  # the script's folder is on sys.path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "drift"))
from planted import CATEGORICAL, DRIFTED, NUMERIC, arrow_table, make_table, score  # noqa: E402

SECTION = "## Drift (issue 6)"
MLOPS = str(Path(sys.executable).with_name("mlops"))
EVIDENTLY_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref_path, cur_path, numeric, categorical = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                         Dataset.from_pandas(ref, data_definition=definition))
columns = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        method, threshold, value = config["method"], config["threshold"], metric["value"]
        if "p_value" in method:
            drifted = value <= threshold if method.startswith("K-S") else value < threshold
        else:
            drifted = value >= threshold
        columns[config["column"]] = {"method": method, "score": value, "threshold": threshold, "drifted": bool(drifted)}
print(json.dumps({"import_seconds": t1 - t0, "columns": columns}))
"""


# --- machine and load --------------------------------------------------------------------------


def cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def wait_idle(limit: float, share: float = 0.2) -> float:
    """Wait until others use at most ``share`` of the CPU (sampled over 1 s); return the last share seen."""
    deadline = time.monotonic() + limit
    seen = 1.0
    while True:
        b0, t0 = cpu_busy()
        time.sleep(1.0)
        b1, t1 = cpu_busy()
        seen = (b1 - b0) / max(t1 - t0, 1e-9)
        if seen <= share or time.monotonic() >= deadline:
            return seen


GNU_TIME = "/usr/bin/time"


def timed_with_rusage(cmd: list[str], env: dict[str, str]) -> dict:
    """Run one process: wall seconds, peak RSS, what others used, its output.

    The peak comes from GNU time (`%M`), which forks the command from its own small image:
    Linux carries a process's pre-exec peak RSS over exec, so a child forked straight from
    this script (which held the generated tables) would report this script's size.
    """
    b0, t0 = cpu_busy()
    stem = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-drift-{os.getpid()}"
    out_path, err_path, rss_path = stem.with_suffix(".out"), stem.with_suffix(".err"), stem.with_suffix(".rss")
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *cmd] if Path(GNU_TIME).exists() else cmd
    start = time.perf_counter()
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        proc = subprocess.Popen(wrapped, stdout=out_f, stderr=err_f, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    b1, t1 = cpu_busy()
    own = usage.ru_utime + usage.ru_stime
    others = max(0.0, (b1 - b0) - own) / max(t1 - t0, 1e-9)
    peak = usage.ru_maxrss * 1024
    if wrapped is not cmd:
        try:
            peak = int(rss_path.read_text().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    result = {
        "seconds": seconds,
        "peak": peak,
        "rc": os.waitstatus_to_exitcode(status),
        "others": others,
        "stdout": out_path.read_text(),
        "stderr": err_path.read_text(),
    }
    for path in (out_path, err_path, rss_path):
        path.unlink(missing_ok=True)
    return result


def baseline_rss(env: dict[str, str]) -> int:
    """Peak RSS of a process that only imports what `mlops drift` imports (the interpreter and libraries)."""
    code = "import numpy, pyarrow, pyarrow.parquet, pyarrow.compute, mlops.cli.main, mlops.drift.report, mlops.drift.io"
    return timed_with_rusage([sys.executable, "-c", code], env)["peak"]


def machine(evidently_python: Path | None) -> list[str]:
    def cmd(args: list[str]) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        mem = f"{kb / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    rev = cmd(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = cmd(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "mlops"])
    lines = [
        f"- cpus (nproc): {os.cpu_count()}",
        f"- cpu: {cpu}",
        f"- memory: {mem}",
        f"- kernel: {platform.release()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- mlops: git {rev}{' (with uncommitted changes)' if dirty else ''}; numpy, pyarrow, scipy: "
        + cmd(
            [
                sys.executable,
                "-c",
                "import numpy, pyarrow, scipy; print(numpy.__version__, pyarrow.__version__, scipy.__version__)",
            ]
        ),
        f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
    if evidently_python is not None:
        lines.append(
            "- evidently: "
            + cmd(
                [
                    str(evidently_python),
                    "-c",
                    "import evidently, pandas; print(evidently.__version__, '(pandas', pandas.__version__ + ')')",
                ]
            )
            + f" ({evidently_python})"
        )
    return lines


# --- data --------------------------------------------------------------------------------------


def write_tables(folder: Path, rows: int) -> tuple[Path, Path, int]:
    """Reference and current Parquet files (reused when present); the two tables' Arrow size."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    marker = folder / "made-by.json"
    expected = {"rows": rows, "generator": "tests/drift/planted.py", "seed": 7}
    if not (ref.exists() and cur.exists() and marker.exists() and json.loads(marker.read_text()) == expected):
        pq.write_table(arrow_table(make_table(rows, drifted=False, seed=7)), ref)
        pq.write_table(arrow_table(make_table(rows, drifted=True, seed=1007)), cur)
        marker.write_text(json.dumps(expected))
    size = sum(pq.ParquetFile(p).read().nbytes for p in (ref, cur))  # the Arrow size of the two tables in memory
    return ref, cur, size


def ensure_evidently(work: Path, spec: str) -> Path | None:
    venv = work / "evidently-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import evidently, pandas; from evidently.presets import DataDriftPreset"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing Evidently into {venv} ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", spec, "pandas<3", "pyarrow"], capture_output=True, text=True
    )
    if proc.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        print(f"could not install Evidently: {proc.stderr.strip()[-500:]}", flush=True)
        return None
    return python


# --- runs --------------------------------------------------------------------------------------


def run_tool(label: str, cmd: list[str], env: dict[str, str], repeats: int, idle_wait: float) -> dict:
    runs = []
    for _ in range(repeats):
        wait_idle(idle_wait)
        r = timed_with_rusage(cmd, env)
        if r["rc"] != 0:
            print(f"  {label}: exit {r['rc']}: {r['stderr'][-800:]}", flush=True)
            return {"error": f"exit {r['rc']}"}
        runs.append(r)
        print(
            f"  {label}: {r['seconds']:.2f} s, peak {r['peak'] / 2**20:.0f} MiB, others {r['others']:.0%}", flush=True
        )
    middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    middle = dict(middle)
    middle["all_seconds"] = [r["seconds"] for r in runs]
    middle["noisy"] = middle["others"] > 0.2
    return middle


def drifted_from_mlops(stdout: str) -> tuple[set[str], dict[str, float]]:
    doc = json.loads(stdout)
    return {c["column"] for c in doc["columns"] if c["drifted"]}, {c["column"]: c["score"] for c in doc["columns"]}


def fmt_s(r: dict) -> str:
    if "error" in r:
        return r["error"]
    return f"{r['seconds']:.2f}" + ("*" if r.get("noisy") else "")


def write_docs(path: Path, section_body: str) -> None:
    replace_section(path, SECTION + "\n\n" + section_body)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench-work")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3, help="mlops runs per size and preset (median shown)")
    parser.add_argument("--evidently-repeats", type=int, default=1, help="Evidently runs per size (median shown)")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-spec", default="evidently")
    parser.add_argument(
        "--idle-wait", type=float, default=60.0, help="seconds to wait for a quiet machine before each timed call"
    )
    parser.add_argument(
        "--docs",
        default=str(REPO_ROOT / "docs" / "benchmarks.md"),
        help=f"markdown file to update under '{SECTION}' ('' for none)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = args.work.resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # both tools run from bytecode
    env["NO_COLOR"] = "1"
    evidently = None if args.no_evidently else ensure_evidently(work, args.evidently_spec)
    facts = machine(evidently)
    print("\n".join(facts), flush=True)
    started = time.time()
    script = work / "drift" / "evidently_preset.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(EVIDENTLY_SCRIPT)
    rows_out: list[list[str]] = []
    agreement: list[str] = []
    targets: list[tuple[str, bool]] = []
    loads: list[str] = []
    base = baseline_rss(env)
    facts.append(
        f"- start-up memory: {base / 2**20:.0f} MiB peak RSS for a process that only imports what `mlops drift` imports"
    )
    print(facts[-1], flush=True)
    for size in sizes:
        ref, cur, arrow_bytes = write_tables(work / "drift" / str(size), size)
        print(f"{size} rows per set: {arrow_bytes / 2**20:.0f} MiB in memory (Arrow, both tables)", flush=True)
        subprocess.run(
            [MLOPS, "drift", str(ref), str(cur), "--json"], capture_output=True, env=env
        )  # warm-up: bytecode, page cache
        loads.append(f"{size}: {os.getloadavg()[0]:.2f}")
        results = {
            "mlops default": run_tool(
                "mlops default", [MLOPS, "drift", str(ref), str(cur), "--json"], env, args.repeats, args.idle_wait
            ),
            "mlops strict": run_tool(
                "mlops strict",
                [MLOPS, "drift", str(ref), str(cur), "--json", "--preset", "strict"],
                env,
                args.repeats,
                args.idle_wait,
            ),
        }
        if evidently is not None:
            results["Evidently DataDriftPreset"] = run_tool(
                "evidently",
                [str(evidently), str(script), str(ref), str(cur), ",".join(NUMERIC), ",".join(CATEGORICAL)],
                env,
                args.evidently_repeats,
                args.idle_wait,
            )
        found: dict[str, dict] = {}
        scores: dict[str, dict[str, float]] = {}
        flagged: dict[str, set[str]] = {}
        for label, r in results.items():
            if "error" in r:
                continue
            if label.startswith("mlops"):
                drifted, scores[label] = drifted_from_mlops(r["stdout"])
            else:
                doc = json.loads(r["stdout"].strip().splitlines()[-1])
                drifted = {c for c, v in doc["columns"].items() if v["drifted"]}
                scores[label] = {c: v["score"] for c, v in doc["columns"].items()}
                r["import_seconds"] = doc["import_seconds"]
            found[label] = score(drifted)
            flagged[label] = drifted
        ev = results.get("Evidently DataDriftPreset", {})
        for label, r in results.items():
            s = found.get(label, {"found": [], "missed": list(DRIFTED), "false_alarms": []})
            ratio = "-"
            if label.startswith("mlops") and "seconds" in r and "seconds" in ev:
                ratio = f"{ev['seconds'] / r['seconds']:.1f}x"
            peak = f"{r['peak'] / 2**20:.0f}" if "peak" in r else "-"
            net = f"{max(0, r['peak'] - base) / arrow_bytes:.2f}" if "peak" in r else "-"
            rows_out.append(
                [
                    f"{size:,}",
                    label,
                    fmt_s(r),
                    peak,
                    f"{r['peak'] / arrow_bytes:.2f}" if "peak" in r else "-",
                    net,
                    ratio,
                    f"{len(s['found'])}/5",
                    ", ".join(s["missed"]) or "-",
                    ", ".join(s["false_alarms"]) or "-",
                ]
            )
        if "mlops default" in scores and "Evidently DataDriftPreset" in scores:
            a, b = scores["mlops default"], scores["Evidently DataDriftPreset"]
            common = sorted(set(a) & set(b))
            diffs = [abs(float(a[c]) - float(b[c])) for c in common]
            verdicts = [
                c for c in common if (c in flagged["mlops default"]) != (c in flagged["Evidently DataDriftPreset"])
            ]
            agreement.append(
                f"- {size:,} rows: {len(common)} columns scored by both; largest score difference {max(diffs):.2e}; "
                f"columns whose verdict differs: {', '.join(verdicts) or 'none'}"
            )
        d = results["mlops default"]
        st = results["mlops strict"]
        if "seconds" in d:
            if size == 1_000_000:
                targets.append((f"1M rows, default preset, under 5 s ({d['seconds']:.2f} s)", d["seconds"] < 5))
                if "seconds" in ev:
                    targets.append(
                        (
                            f"1M rows, at least 10x Evidently's preset ({ev['seconds'] / d['seconds']:.1f}x)",
                            ev["seconds"] / d["seconds"] >= 10,
                        )
                    )
            if size == 10_000:
                targets.append((f"10k rows, default preset, under 1 s ({d['seconds']:.2f} s)", d["seconds"] < 1))
            worst = max(r["peak"] for r in (d, st) if "peak" in r)
            targets.append(
                (
                    f"{size:,} rows: peak memory at most 2x the tables ({worst / 2**20:.0f} MiB = "
                    f"{worst / arrow_bytes:.2f}x of {arrow_bytes / 2**20:.0f} MiB; above start-up: "
                    f"{max(0, worst - base) / arrow_bytes:.2f}x)",
                    worst <= 2 * arrow_bytes,
                )
            )
        if "mlops strict" in found:
            s = found["mlops strict"]
            targets.append(
                (
                    f"{size:,} rows, strict: every planted drift found, no clean column flagged",
                    not s["missed"] and not s["false_alarms"],
                )
            )
    elapsed = (time.time() - started) / 60
    heads = [
        "rows per set",
        "tool / preset",
        "seconds",
        "peak MiB",
        "peak / tables",
        "(peak - start-up) / tables",
        "Evidently / mlops",
        "planted found",
        "missed",
        "false alarms",
    ]
    table = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)] + [
        "| " + " | ".join(r) + " |" for r in rows_out
    ]
    print("\n".join(table))
    print("\n".join(agreement))
    for text, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if args.docs:
        command = f".venv/bin/python tests/benchmarks/bench_drift.py --work {args.work}" + (
            f" --sizes {args.sizes}" if args.sizes != "10000,100000,1000000" else ""
        )
        body = [
            f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with:",
            "",
            "```",
            command,
            "```",
            "",
            "Machine:",
            "",
            *facts,
            "",
            "Wall-clock seconds of one whole process (start-up and imports included) reading the same Parquet files; "
            f"mlops the median of {args.repeats}, Evidently the median of {args.evidently_repeats}. Peak memory is the "
            "process's max RSS (GNU time's %M); 'peak / tables' divides it by the Arrow size of the two tables, "
            "'(peak - start-up) / tables' first takes off the start-up memory above (the interpreter and libraries, "
            "the same at any size). Planted: 5 drifted columns of 25 (tests/drift/planted.py). A cell marked `*` was "
            "measured while other processes used more than 20% of the CPU (load average when each size started: "
            f"{'; '.join(loads)}).",
            "",
            *table,
            "",
            "mlops default against Evidently, column by column (same rules, same thresholds):",
            "",
            *agreement,
            "",
            "Targets:",
            "",
            *[f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in targets],
            "",
            f"Benchmark steps took {elapsed:.1f} min.",
        ]
        write_docs(Path(args.docs), "\n".join(body))
        print(f"wrote {args.docs} ({SECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
