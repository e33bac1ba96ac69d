"""Tracking benchmark: list, filter and sort 10,000 runs with `mlops runs list` (target: < 1 s),
side by side with MLflow on the same runs when --mlflow is given.

    .venv/bin/python tests/benchmarks/bench_tracking.py [--runs 10000] [--work DIR] [--repeats 5]
    .venv/bin/python tests/benchmarks/bench_tracking.py --mlflow --work ../bench-work   # with MLflow

What it does:
1. makes a fresh git repository with `mlops init` in the work folder (default: a temp dir);
2. creates N runs in the documented on-disk format (.mlops/runs/<id>/run.json, params.jsonl,
   metrics.jsonl with 10 steps of loss plus test_accuracy, and one index.jsonl line per ended
   run), written in bulk for speed; 1 % of the runs are left out of the index (half of them
   "running" with a dead pid, i.e. crashed; half ended without an index line), so the
   fallback path that reads run.json is exercised too; 5 more runs are logged through the
   real API (`mlops.start_run`) as a sanity check of the format;
3. times wall-clock seconds around one subprocess call of the real console script:
   `mlops runs list --filter "params.max_depth>=8 and metrics.test_accuracy>0.9"
   --sort=-metrics.test_accuracy` (first call, which heals the index, then best of
   --repeats), the same with --json and --limit 0, `--limit 1000`, a plain `mlops runs list`
   and `mlops --help`.
4. With --mlflow: installs MLflow (`pip install mlflow`, --mlflow-spec to pin; falls back to
   mlflow-skinny) into its own virtual environment WORK/mlflow-venv (reused when present; it
   is never installed into the interpreter running this script), writes the very same runs
   (same names, start times, statuses, params, 10-step loss history and test_accuracy) into
   MLflow tracking stores with MlflowClient.create_run/log_batch/set_terminated (creation is
   printed as info, not compared), by default a sqlite store (`sqlite:///WORK/.../mlflow.db`,
   what MLflow recommends for search) and a file store (`--mlflow-stores sqlite,file`), and
   times, in that venv's python:
   - a fresh process that imports mlflow and calls MlflowClient().search_runs(filter, order_by)
     once (what a user's script or notebook cell pays: the analogue of one CLI call), best of
     --repeats;
   - search_runs alone inside one warm process (no start-up), best of --repeats;
   - the `mlflow runs list --experiment-id X` CLI, which has no filter or sort option and lists
     the newest 1,000 runs (MLflow's default page), next to `mlops runs list --limit 1000`;
   - `mlflow --help` next to `mlops --help`.

MLflow's filter language compares params as strings and allows only =, !=, LIKE, ILIKE and
IS [NOT] NULL on them (no <, >=, IN or OR), so `params.max_depth >= 8` cannot be written as
such: with max_depth drawn from the integers 2..16 the same runs are selected by
`params.max_depth != '2' and ... and params.max_depth != '7' and metrics.test_accuracy > 0.9`
(every run has max_depth; a run lacking it would match neither tool). The script checks that
both tools return the same number of matches and the same top test_accuracy values.

Before it creates the runs and again before the timed calls it waits until no other
benchmark named in --wait-for (default bench_data.py, bench_pipeline.py) is running.
The table (operation | mlops s | mlflow s | ratio (mlflow/mlops) | target | pass/fail) is
printed and, unless --docs '', written into docs/benchmarks.md under '## Tracking (issue 4)'
(only that section is replaced; the file is re-read just before writing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchdocs import replace_section, repo_relative  # the script's folder is on sys.path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
MLOPS = str(Path(sys.executable).with_name("mlops"))
FILTER = "params.max_depth>=8 and metrics.test_accuracy>0.9"
SORT = "-metrics.test_accuracy"
TARGET = 1.0
SECTION = "## Tracking (issue 4)"
DEPTHS = range(2, 17)  # max_depth is drawn from these integers
MIN_DEPTH = 8
MIN_ACC = 0.9
# the same selection in MLflow's filter language (params are strings with = / != / LIKE only)
MLFLOW_FILTER = " and ".join(
    [f"params.max_depth != '{d}'" for d in DEPTHS if d < MIN_DEPTH] + [f"metrics.test_accuracy > {MIN_ACC}"]
)
MLFLOW_ORDER = "metrics.test_accuracy DESC"
MLFLOW_PAGE = 1000  # `mlflow runs list` shows one page of SEARCH_MAX_RESULTS_DEFAULT runs
MLFLOW_MAX = 50000  # SEARCH_MAX_RESULTS_THRESHOLD: the most one search_runs call returns


def log(message: str = "") -> None:
    print(message, flush=True)


def sh(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 3600
) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr[-600:]}")
    return took, proc.stdout


def best(cmd: list[str], repeats: int, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    return min(sh(cmd, cwd, env)[0] for _ in range(repeats))


# --- waiting for other benchmarks ------------------------------------------------------------


def others_running(patterns: list[str]) -> list[str]:
    """Command lines of other processes that contain one of ``patterns`` (this process and its
    ancestors excluded)."""
    skip = set()
    pid = os.getpid()
    while pid > 1:
        skip.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if cmdline and any(p in cmdline for p in patterns):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def wait_for_quiet(patterns: list[str], poll: float = 20.0) -> float:
    """Wait until no process matching ``patterns`` has been seen for one poll interval (two
    clean looks ``poll`` s apart, so a gap between two chained benchmarks is not mistaken for
    the end). Returns the seconds waited."""
    if not patterns:
        return 0.0
    start = time.perf_counter()
    said = False
    clean = 0
    while clean < 2:
        busy = others_running(patterns)
        if busy:
            clean = 0
            if not said:
                log(f"waiting for other benchmarks to finish (polling every {poll:.0f} s): {'; '.join(busy)}")
                said = True
        else:
            clean += 1
            if clean == 1 and not said:
                return time.perf_counter() - start  # nothing was running at all
        if clean < 2:
            time.sleep(poll)
    waited = time.perf_counter() - start
    if said:
        log(f"... quiet after {waited / 60:.1f} min")
    return waited


class Watch:
    """Notes other benchmarks that start while we time (polled every 2 s in a thread)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self.seen: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(2.0):
            for line in others_running(self.patterns):
                self.seen.setdefault(line.split(":", 1)[0], line)

    def __enter__(self) -> Watch:
        if self.patterns:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


# --- the runs --------------------------------------------------------------------------------


def make_runs(root: Path, count: int, seed: int = 7) -> list[dict]:
    """Write ``count`` runs into the mlops store of ``root``; returns what was written (one
    record a run) so that MLflow gets the very same runs."""
    sys.path.insert(0, str(REPO_ROOT))
    from mlops.repo.repo import Repo
    from mlops.tracking import store

    rng = random.Random(seed)
    repo = Repo(root)
    runs = store._ensure_runs_dir(repo)
    host = socket.gethostname()
    dead_pid = 2**22 + 4321  # above the default pid_max: never alive
    index_lines = []
    records = []
    start0 = time.time() - count * 60
    for i in range(count):
        run_id = (
            time.strftime("%Y%m%d-%H%M%S", time.gmtime(start0 + i * 60))
            + "-"
            + uuid.UUID(int=rng.getrandbits(128)).hex[:8]
        )
        folder = runs / run_id
        folder.mkdir()
        started = start0 + i * 60
        crashed = i % 100 == 0
        unindexed = i % 100 == 50
        params = {
            "max_depth": rng.randint(DEPTHS[0], DEPTHS[-1]),
            "n_estimators": rng.choice([50, 100, 200]),
            "model": rng.choice(["rf", "gbm", "lr"]),
        }
        acc = round(rng.uniform(0.7, 0.99), 4)
        info = {
            "format": 1,
            "id": run_id,
            "name": f"run-{i}",
            "status": "running" if crashed else "finished",
            "start_time": started,
            "end_time": None if crashed else started + 30,
            "user": "bench",
            "host": host,
            "pid": dead_pid if crashed else 1000 + i,
            "pid_start": None,
            "git_commit": None,
            "git_dirty": None,
            "source": "api",
            "stages": [],
        }
        (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
        with open(folder / "params.jsonl", "w") as handle:
            for key, value in params.items():
                handle.write(json.dumps({"key": key, "value": value, "timestamp": started}) + "\n")
        loss = []
        with open(folder / "metrics.jsonl", "w") as handle:
            for step in range(10):
                loss.append(1 / (step + 1) + rng.random() / 10)
                handle.write(
                    json.dumps({"key": "loss", "value": loss[-1], "step": step, "timestamp": started + step}) + "\n"
                )
            handle.write(
                json.dumps({"key": "test_accuracy", "value": acc, "step": None, "timestamp": started + 11}) + "\n"
            )
        if not crashed and not unindexed:
            index_lines.append(
                json.dumps(store.summarize(repo, run_id, info=info), sort_keys=True, separators=(",", ":"))
            )
        records.append(
            {
                "name": f"run-{i}",
                "start": started,
                "end": started + 30,
                "status": "FAILED" if crashed else "FINISHED",
                "params": params,
                "loss": loss,
                "acc": acc,
            }
        )
    (runs / store.INDEX_FILE).write_text("\n".join(index_lines) + "\n")
    return records


def api_runs(root: Path, count: int = 5) -> list[dict]:
    code = (
        "import mlops\n"
        f"for i in range({count}):\n"
        "    with mlops.start_run(name=f'api-{i}'):\n"
        "        mlops.log_params({'max_depth': 8 + i})\n"
        "        for s in range(10):\n            mlops.log_metric('loss', 1 / (s + 1), step=s)\n"
        "        mlops.log_metric('test_accuracy', 0.95)\n"
    )
    now = time.time()
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    return [
        {
            "name": f"api-{i}",
            "start": now + i,
            "end": now + i + 1,
            "status": "FINISHED",
            "params": {"max_depth": 8 + i},
            "loss": [1 / (s + 1) for s in range(10)],
            "acc": 0.95,
        }
        for i in range(count)
    ]


def expected(records: list[dict]) -> tuple[int, list[float]]:
    hits = [r["acc"] for r in records if r["params"]["max_depth"] >= MIN_DEPTH and r["acc"] > MIN_ACC]
    return len(hits), sorted(hits, reverse=True)


# --- MLflow, in its own virtual environment --------------------------------------------------


def install_mlflow(work: Path, spec: str) -> tuple[Path | None, str]:
    """The python of work/mlflow-venv (created, and mlflow installed, when missing), or (None, why)."""
    venv = work / "mlflow-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mlflow; print(mlflow.__version__)"]
    if python.exists():
        try:
            version = sh(probe, timeout=300)[1].strip()
            return python, f"reused {venv} (mlflow {version})"
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            log(f"existing {venv} has no working mlflow ({exc}); installing")
    errors = []
    for candidate in dict.fromkeys([spec, "mlflow-skinny"]):
        log(f"installing {candidate} into {venv} (a separate virtual environment) ...")
        try:
            if not python.exists():
                sh([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], timeout=600)
            started = time.perf_counter()
            sh([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", candidate], timeout=3600)
            version = sh(probe, timeout=300)[1].strip()
            return (
                python,
                f"installed {candidate} (mlflow {version}) into {venv} in {time.perf_counter() - started:.0f} s",
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{candidate}: {str(exc)[-300:]}")
    return None, "MLflow install failed: " + " | ".join(errors)


# Runs inside the MLflow venv. Modes:
#   create URI DATA.json              -> {"experiment_id", "seconds", "version"}
#   search URI EXP FILTER ORDER N K   -> first call, then best of K, of search_runs in this process
#   once URI EXP FILTER ORDER N       -> one search_runs call (the parent times the whole process)
MLFLOW_CHILD = r"""
import json, sys, time
mode, uri = sys.argv[1], sys.argv[2]
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=uri)

def search(exp, flt, order, n):
    return client.search_runs([exp], filter_string=flt, order_by=[order], max_results=n)

if mode == "create":
    import mlflow
    from mlflow.entities import Metric, Param
    records = json.load(open(sys.argv[3]))
    t0 = time.perf_counter()
    exp = client.create_experiment("bench")
    for r in records:
        ms = int(r["start"] * 1000)
        run = client.create_run(exp, start_time=ms, run_name=r["name"])
        metrics = [Metric("loss", v, ms + 1000 * s, s) for s, v in enumerate(r["loss"])]
        metrics.append(Metric("test_accuracy", r["acc"], ms + 11000, 0))
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in r["params"].items()])
        client.set_terminated(run.info.run_id, status=r["status"], end_time=int(r["end"] * 1000))
    print(json.dumps({"experiment_id": exp, "seconds": time.perf_counter() - t0, "version": mlflow.__version__}))
elif mode == "search":
    exp, flt, order, n, k = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    t0 = time.perf_counter()
    runs = search(exp, flt, order, n)
    first = time.perf_counter() - t0
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        runs = search(exp, flt, order, n)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"first": first, "best": min(times), "count": len(runs),
                      "top": [r.data.metrics["test_accuracy"] for r in runs[:20]]}))
else:
    exp, flt, order, n = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
    print(len(search(exp, flt, order, n)))
"""


class MlflowSide:
    def __init__(self, python: Path, work: Path) -> None:
        self.python = python
        self.work = work
        self.child = work / "mlflow_child.py"
        self.child.write_text(MLFLOW_CHILD)
        self.env = dict(os.environ)
        self.env.pop("VIRTUAL_ENV", None)
        # MLFLOW_ALLOW_FILE_STORE: MLflow 3.x refuses the (deprecated) file store without this opt-out
        self.env.update(
            {
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "PYTHONWARNINGS": "ignore",
                "MLFLOW_ALLOW_FILE_STORE": "true",
            }
        )
        self.cli = str(python.with_name("mlflow"))

    def uri(self, kind: str) -> str:
        folder = self.work / f"mlflow-{kind}"
        return f"sqlite:///{folder / 'mlflow.db'}" if kind == "sqlite" else (folder / "mlruns").as_uri()

    def create(self, kind: str, data: Path) -> dict:
        folder = self.work / f"mlflow-{kind}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _, out = sh(
            [str(self.python), str(self.child), "create", self.uri(kind), str(data)],
            cwd=folder,
            env=self.env,
            timeout=7200,
        )
        return json.loads(out.strip().splitlines()[-1])

    def search(self, kind: str, exp: str, n: int, repeats: int) -> dict:
        _, out = sh(
            [
                str(self.python),
                str(self.child),
                "search",
                self.uri(kind),
                exp,
                MLFLOW_FILTER,
                MLFLOW_ORDER,
                str(n),
                str(repeats),
            ],
            env=self.env,
        )
        return json.loads(out.strip().splitlines()[-1])

    def once(self, kind: str, exp: str, n: int, repeats: int) -> float:
        return best(
            [str(self.python), str(self.child), "once", self.uri(kind), exp, MLFLOW_FILTER, MLFLOW_ORDER, str(n)],
            repeats,
            env=self.env,
        )

    def runs_list(self, kind: str, exp: str, repeats: int) -> tuple[float, int]:
        env = {**self.env, "MLFLOW_TRACKING_URI": self.uri(kind)}
        cmd = [self.cli, "runs", "list", "--experiment-id", exp]
        _, out = sh(cmd, env=env)
        lines = sum(1 for line in out.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\d", line))
        return best(cmd, repeats, env=env), lines

    def help(self, repeats: int) -> float:
        return best([self.cli, "--help"], repeats, env=self.env)


# --- the report ------------------------------------------------------------------------------

COLUMNS = ["operation", "mlops s", "mlflow s", "ratio (mlflow/mlops)", "target", "pass/fail"]


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def row(op: str, mlops_s: float | None, mlflow_s: float | None, target: bool) -> list[str]:
    ratio = f"{mlflow_s / mlops_s:.1f}x" if mlops_s and mlflow_s is not None else "-"
    if target and mlops_s is not None:
        verdict = "PASS" if mlops_s < TARGET else "FAIL"
        return [op, fmt(mlops_s), fmt(mlflow_s), ratio, f"mlops < {TARGET:g} s", verdict]
    return [op, fmt(mlops_s), fmt(mlflow_s), ratio, "info", "-"]


def plain_table(rows: list[list[str]]) -> str:
    body = [COLUMNS, *rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    out = []
    for index, line in enumerate(body):
        out.append(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
        if index == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * len(COLUMNS)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_facts(mlflow_python: Path | None, mlflow_version: str | None) -> list[tuple[str, str]]:
    mem = cpu = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        head = sh(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])[1].strip()
        dirty = sh(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "mlops"])[1].strip()
        source = head + (" + uncommitted changes in mlops/" if dirty else " (clean)")
    except (RuntimeError, OSError) as exc:
        source = f"unknown ({exc})"
    try:
        version = sh([MLOPS, "--version"])[1].strip()
    except (RuntimeError, OSError) as exc:
        version = f"unknown ({exc})"
    facts = [
        ("cpus (nproc)", str(os.cpu_count())),
        ("cpu", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("mlops", f"{version} ({MLOPS}); source {source}"),
    ]
    if mlflow_python is not None:
        mlflow_py = sh([str(mlflow_python), "-c", "import platform; print(platform.python_version())"])[1].strip()
        facts.append(("mlflow", f"{mlflow_version} (python {mlflow_py}, {mlflow_python.parent.parent})"))
    return facts


def write_docs(path: Path, section_body: str) -> None:
    replace_section(path, SECTION + "\n\n" + section_body)


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work folder (default: a temp dir, removed after; the MLflow venv lives here)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--mlflow",
        action="store_true",
        help="compare with MLflow, installed into WORK/mlflow-venv (reused when present)",
    )
    parser.add_argument(
        "--mlflow-spec",
        default="mlflow",
        help="what pip installs into the MLflow venv (default: mlflow; falls back to mlflow-skinny)",
    )
    parser.add_argument(
        "--mlflow-stores",
        default="sqlite,file",
        help="MLflow backends to time: sqlite, file or both (default: sqlite,file)",
    )
    parser.add_argument(
        "--wait-for",
        default="bench_data.py,bench_pipeline.py",
        help=(
            "before creating runs and before timing, "
            "wait while a process whose command line contains one of these runs ('' : never)"
        ),
    )
    parser.add_argument(
        "--docs",
        default=str(REPO_ROOT / "docs" / "benchmarks.md"),
        help=f"markdown file to update under '{SECTION}' ('' for none)",
    )
    args = parser.parse_args()
    patterns = [p.strip() for p in args.wait_for.split(",") if p.strip()]
    stores = [s.strip() for s in args.mlflow_stores.split(",") if s.strip()]
    if any(s not in ("sqlite", "file") for s in stores):
        parser.error("--mlflow-stores: sqlite and/or file")

    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-tracking-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mlflow_python, mlflow_why, mlflow_version = None, "--mlflow not given", None
    if args.mlflow:
        mlflow_python, mlflow_why = install_mlflow(work, args.mlflow_spec)
        log(mlflow_why)
        if mlflow_python is not None:
            mlflow_version = sh([str(mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"])[1].strip()

    wait_for_quiet(patterns)
    bench = work / "tracking"
    root = bench / "project"
    shutil.rmtree(bench, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([MLOPS, "init"], cwd=root, check=True, capture_output=True)
    t0 = time.perf_counter()
    records = make_runs(root, args.runs)
    records += api_runs(root)
    made = time.perf_counter() - t0
    total = len(records)
    n_match, top_acc = expected(records)
    facts = machine_facts(mlflow_python, mlflow_version)
    log("machine: " + "; ".join(f"{k}: {v}" for k, v in facts))
    log(f"created {total} runs for mlops in {made:.1f}s under {root / '.mlops' / 'runs'} (bulk writes, info only)")

    mlflow = MlflowSide(mlflow_python, bench) if mlflow_python is not None else None
    created: dict[str, dict] = {}
    notes: list[str] = []
    mismatch: list[str] = []
    if mlflow is not None:
        data = bench / "runs.json"
        data.write_text(json.dumps(records))
        for kind in stores:
            log(
                f"creating the same {total} runs in an MLflow {kind} store (MlflowClient create_run + log_batch + "
                "set_terminated) ..."
            )
            try:
                created[kind] = mlflow.create(kind, data)
                log(
                    f"  {kind}: {created[kind]['seconds']:.1f}s (info only), experiment "
                    f"{created[kind]['experiment_id']}, {mlflow.uri(kind)}"
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"MLflow {kind} store: creating the runs failed: {str(exc)[-300:]}")
                log(notes[-1])

    wait_for_quiet(patterns)
    log("timing ...")
    watch = Watch(patterns).__enter__()
    rows: list[list[str]] = []
    query = [MLOPS, "runs", "list", "--filter", FILTER, f"--sort={SORT}"]
    first, _ = sh(query, root)  # heals the index with the crashed runs
    q20 = best(query, args.repeats, root)
    _, doc = sh([*query, "--json", "--limit", "0"], root)
    matched = json.loads(doc)
    qall = best([*query, "--json", "--limit", "0"], args.repeats, root)
    l1000 = best([MLOPS, "runs", "list", "--limit", "1000"], args.repeats, root)
    plain = best([MLOPS, "runs", "list"], args.repeats, root)
    mhelp = best([MLOPS, "--help"], args.repeats, root)
    m_count = len(matched["runs"])
    m_top = [r["metrics"]["test_accuracy"] for r in matched["runs"][:20]]
    assert matched["total"] == total, (matched["total"], total)
    if m_count != n_match or m_top != top_acc[:20]:
        mismatch.append(f"mlops returned {m_count} matches (expected {n_match}) or a different top 20.")
    log(f"{m_count} of {total} runs match {FILTER!r} (expected {n_match})")

    rows.append(
        row(
            f"runs list --filter --sort, first call (heals the index of {args.runs // 100} crashed runs)",
            first,
            None,
            False,
        )
    )
    res: dict[str, dict] = {}
    for kind in created:
        exp = created[kind]["experiment_id"]
        try:
            r20 = mlflow.search(kind, exp, 20, args.repeats)
            rall = mlflow.search(kind, exp, MLFLOW_MAX, args.repeats)
            res[kind] = {
                "r20": r20,
                "rall": rall,
                "once20": mlflow.once(kind, exp, 20, args.repeats),
                "onceall": mlflow.once(kind, exp, MLFLOW_MAX, args.repeats),
                "list": mlflow.runs_list(kind, exp, args.repeats),
            }
            if rall["count"] != n_match or rall["top"] != top_acc[:20] or r20["top"] != top_acc[:20]:
                mismatch.append(
                    f"MLflow ({kind}) returned {rall['count']} matches (expected {n_match}) or a different top 20."
                )
            log(f"  mlflow {kind}: {rall['count']} matches; `mlflow runs list` printed {res[kind]['list'][1]} runs")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            notes.append(f"MLflow {kind} store: timing failed: {str(exc)[-300:]}")
            log(notes[-1])
    mhelp_flow = mlflow.help(args.repeats) if mlflow is not None else None
    watch.__exit__()
    if watch.seen:
        notes.append(
            "Warning: other benchmarks ran during the timed calls ("
            + "; ".join(watch.seen.values())
            + "), so the figures may be inflated: run it again on a quiet machine."
        )
        log(notes[-1])

    def get(kind: str, key: str) -> float | None:
        value = res.get(kind, {}).get(key)
        return value[0] if isinstance(value, tuple) else value

    kinds = list(res) or ["sqlite"]
    for kind in kinds:
        tag = f" [{kind}]" if mlflow is not None else ""
        rows.append(
            row(
                f"filter+sort, top 20 (mlops CLI call vs new python process: import mlflow + search_runs){tag}",
                q20,
                get(kind, "once20"),
                True,
            )
        )
        rows.append(
            row(
                f"filter+sort, all {n_match} matches (`--json --limit 0` vs new process, search_runs "
                f"max_results={MLFLOW_MAX}){tag}",
                qall,
                get(kind, "onceall"),
                True,
            )
        )
    for kind in res:
        rows.append(
            row(
                f"info: filter+sort, top 20, mlflow search_runs alone in a warm process (mlops: CLI call) [{kind}]",
                q20,
                res[kind]["r20"]["best"],
                False,
            )
        )
        rows.append(
            row(
                "info: filter+sort, all matches, mlflow search_runs alone "
                f"in a warm process (mlops: CLI call) [{kind}]",
                qall,
                res[kind]["rall"]["best"],
                False,
            )
        )
    for kind in kinds:
        tag = f" [{kind}]" if mlflow is not None else ""
        rows.append(
            row(
                f"list newest 1000, no filter (`runs list --limit 1000` vs `mlflow runs list --experiment-id X`){tag}",
                l1000,
                get(kind, "list"),
                True,
            )
        )
    rows.append(row("runs list (newest 20, no filter)", plain, None, True))
    rows.append(row("info: --help (start-up)", mhelp, mhelp_flow, False))
    for kind in created:
        rows.append(
            row(
                f"info: create the {total} runs (mlops: bulk file writes; mlflow: client API) [{kind}]",
                made,
                created[kind]["seconds"],
                False,
            )
        )

    log()
    table = plain_table(rows)
    log(table)
    log()
    judged = [r for r in rows if r[4] != "info"]
    passed = [r for r in judged if r[5] == "PASS"]
    reading = [f"{len(passed)} of {len(judged)} targets (mlops < {TARGET:g} s) pass."]
    fails = [r[0] for r in judged if r[5] != "PASS"]
    if fails:
        reading.append("Missed: " + "; ".join(fails) + ".")
    for kind in res:
        ratio = get(kind, "once20") / q20
        reading.append(
            f"Against MLflow {created[kind]['version']} with a {kind} store, the filtered and sorted top 20 costs "
            f"mlops {q20:.3f} s as one CLI process and MLflow {get(kind, 'once20'):.3f} s as one process that imports "
            f"mlflow and searches ({ratio:.1f}x); MLflow's search_runs alone, in a process that has already imported "
            f"it, takes {res[kind]['r20']['best']:.3f} s (top 20) "
            f"and {res[kind]['rall']['best']:.3f} s (all {n_match} matches)."
        )
    if mlflow is None:
        reading.append(f"No MLflow figures: {mlflow_why}.")
    else:
        reading.append(
            f"MLflow compares params as strings and allows no >= (nor IN, nor OR) on them, so its filter was "
            f"`{MLFLOW_FILTER}`: with max_depth drawn from the integers {DEPTHS[0]}..{DEPTHS[-1]} this selects the "
            f"same runs as mlops' `{FILTER}` (checked: same number of matches, {n_match}, and same top-20 "
            "test_accuracy values" + (", except where noted below" if mismatch else "") + ")."
        )
        if "file" in res:
            reading.append(
                "The file store (`file://.../mlruns`) is deprecated in MLflow 3.x and refused unless "
                "MLFLOW_ALLOW_FILE_STORE=true, which the script sets for it; "
                "it reads every run's folder on each search."
            )
        reading.append(
            f"`mlflow runs list` has no filter or sort and prints MLflow's default page of {MLFLOW_PAGE} runs, so it "
            "is set against `mlops runs list --limit 1000`."
        )
    reading += mismatch + notes
    paragraph = " ".join(reading)
    log(paragraph)

    if args.docs:
        when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        argv = [sys.executable, *sys.argv]
        shown = " ".join(
            shlex.quote(
                os.path.relpath(a, Path.cwd()) if os.path.isabs(a) and Path(a).is_relative_to(Path.cwd()) else a
            )
            for a in argv
        )
        body = [f"Measured {when} with:", "", "```", repo_relative(shown), "```", "", "Machine:", ""]
        body += [f"- {k}: {v}" for k, v in facts]
        body += [
            "",
            f"{total} runs ({args.runs} written in bulk in the documented format, 1 % of them crashed or missing from "
            "the index, plus 5 through `mlops.start_run`), each with params max_depth (2..16), n_estimators, model and "
            "metrics test_accuracy plus a 10-step loss history; MLflow got the very same runs through MlflowClient "
            f"(create_run, log_batch, set_terminated). Wall-clock seconds, best of {args.repeats}, around one "
            "subprocess call, except the rows marked 'warm process' (timed inside a python process that has already "
            "imported mlflow and searched once). mlops filter: "
            f'`{FILTER}`, sort `{SORT}`; MLflow: `filter_string="{MLFLOW_FILTER}"`, `order_by=["{MLFLOW_ORDER}"]`. '
            "Timing started only once no other benchmark was running.",
            "",
            markdown_table(rows),
            "",
            paragraph,
        ]
        write_docs(Path(args.docs), "\n".join(body))
        log(f"\nwrote {args.docs} (section '{SECTION}')")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    ok = all(r[5] == "PASS" for r in judged)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
