"""`mlops serve` against `mlflow models serve` on the same scikit-learn pipeline, side by side.

    .venv/bin/python tests/benchmarks/bench_serve.py --work ../bench-work [--repeat 3]

Both servers get the same model (a ColumnTransformer + LogisticRegression churn pipeline,
pickled once; MLflow's copy is saved from that pickle with mlflow.sklearn.save_model), one
worker each, and the same MLflow scoring payloads on POST /invocations. The load generator
(tests/serve/loadgen.py, raw HTTP/1.1 over asyncio streams with uvloop, 127.0.0.1 only, bounded
in count and time) runs in its own process; its CPU time is reported per cell. Each cell runs
``--repeat`` times per server, the servers taking turns at going first; medians are reported. Scenarios:
single-row requests at concurrency 1, 8 and 32, 100-row requests at concurrency 8, then 60 s of
single-row traffic on /predict with a 10% canary deployed.

MLflow runs from its own venv (``--mlflow-venv``, default WORK/mlflow-venv), never the project's.
The figures go into docs/benchmarks.md under "## Serving (issue 7)" (``--docs ''`` to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchdocs import replace_section  # the script's folder is on sys.path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
SERVE_TESTS = PROJECT / "tests" / "serve"
sys.path.insert(0, str(SERVE_TESTS))

import httpx  # noqa: E402
from servekit import fit_pipeline, register, serve_env, training_frame  # noqa: E402

LOADGEN = SERVE_TESTS / "loadgen.py"
SECTION = "## Serving (issue 7)"
FEATURES = ["tenure", "plan", "monthly_charges"]


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def wait_ready(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(
    port: int, path: str, body: bytes, *, concurrency: int, count: int, seconds: float, work: Path
) -> dict[str, Any]:
    body_file = work / "body.json"
    body_file.write_bytes(body)
    out = sh(
        sys.executable,
        str(LOADGEN),
        "--port",
        str(port),
        "--path",
        path,
        "--body-file",
        str(body_file),
        "--concurrency",
        str(concurrency),
        "--count",
        str(count),
        "--seconds",
        str(seconds),
        "--uvloop",
        timeout=seconds + 120,
    )
    return json.loads(out.strip().splitlines()[-1])


TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # minus idle and iowait


def group_seconds(pgid: int) -> float:
    """CPU seconds used by the processes of one process group (a server and its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def measured(pgid: int, run: Any) -> dict[str, Any]:
    """Run one load; add the server's CPU seconds and the share of the machine that other work used."""
    busy0, server0 = busy_seconds(), group_seconds(pgid)
    result = run()
    busy1, server1 = busy_seconds(), group_seconds(pgid)
    others = max(0.0, (busy1 - busy0) - (server1 - server0) - result["cpu_seconds"])
    result["server_cpu_seconds"] = round(server1 - server0, 2)
    result["others_cpu_share"] = round(others / (result["seconds"] * (os.cpu_count() or 1)), 3)
    return result


def machine() -> list[str]:
    cpu = "?"
    try:
        cpu = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ][0]
    except (OSError, IndexError):
        pass
    import sklearn
    import starlette
    import uvicorn

    return [
        f"cpus (nproc): {os.cpu_count()}",
        f"cpu: {cpu}",
        f"kernel: {platform.release()}",
        f"python: {platform.python_version()}",
        f"uvicorn {uvicorn.__version__}, starlette {starlette.__version__}, scikit-learn {sklearn.__version__}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="bench-work", type=Path)
    parser.add_argument("--mlflow-venv", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=20.0, help="bound of each measured cell")
    parser.add_argument("--canary-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each cell per server (medians are reported)")
    parser.add_argument("--docs", default=str(PROJECT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    work = (args.work / "serve").resolve()
    venv = (args.mlflow_venv or args.work / "mlflow-venv").resolve()
    mlflow_bin = venv / "bin" / "mlflow"
    if not mlflow_bin.exists():
        raise SystemExit(f"MLflow is not installed in {venv} (python -m venv {venv} && {venv}/bin/pip install mlflow)")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()

    # --- one model, two servers ------------------------------------------------------------
    model = fit_pipeline()
    pickle_path = work / "model.pkl"
    pickle_path.write_bytes(pickle.dumps(model))
    project = work / "project"
    project.mkdir()
    env = serve_env()
    sh("git", "init", "-q", "-b", "main", cwd=project)
    sh(str(Path(sys.executable).with_name("mlops")), "init", cwd=project, env=env)
    register(project, "churn", 1, model, stage="production")
    register(project, "churn", 2, pickle.loads(pickle_path.read_bytes()))
    frame = training_frame(rows=200, seed=5)
    frame.to_parquet(work / "example.parquet")
    save = (
        "import pickle, pandas as pd, mlflow.sklearn\n"
        "from mlflow.models import infer_signature\n"
        f"model = pickle.load(open({str(pickle_path)!r}, 'rb'))\n"
        f"x = pd.read_parquet({str(work / 'example.parquet')!r})\n"
        f"mlflow.sklearn.save_model(model, {str(work / 'mlflow-model')!r}, serialization_format='pickle',"
        " signature=infer_signature(x, model.predict(x)))\n"
    )
    sh(str(venv / "bin" / "python"), "-c", save, env={**os.environ, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}"})

    mlflow_port = free_port()
    mlflow_log = open(work / "mlflow-serve.log", "wb")
    mlflow_proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "models",
            "serve",
            "-m",
            str(work / "mlflow-model"),
            "-p",
            str(mlflow_port),
            "-h",
            "127.0.0.1",
            "--env-manager",
            "local",
            "--workers",
            "1",
        ],
        cwd=work,
        stdout=mlflow_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    mlops_log = work / "mlops-serve.log"
    mlops_proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlops")), "serve", "churn@production", "--port", "0", "--workers", "1"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(mlops_log, "wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not re.search(r"127\.0\.0\.1:(\d+)", mlops_log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        mlops_port = int(re.search(r"127\.0\.0\.1:(\d+)", mlops_log.read_text()).group(1))  # type: ignore[union-attr]
        wait_ready(f"http://127.0.0.1:{mlops_port}/ping", mlops_proc, "mlops serve")
        wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", mlflow_proc, "mlflow models serve")

        rows1 = frame.head(1)
        rows100 = training_frame(rows=100, seed=9)
        one = json.dumps({"dataframe_split": {"columns": FEATURES, "data": rows1[FEATURES].values.tolist()}}).encode()
        hundred = json.dumps(
            {"dataframe_split": {"columns": FEATURES, "data": rows100[FEATURES].values.tolist()}}
        ).encode()
        answers = {}
        for name, port in (("mlops", mlops_port), ("mlflow", mlflow_port)):  # the same answers from both
            for body, rows in ((one, 1), (hundred, 100)):
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/invocations", content=body, headers={"Content-Type": "application/json"}
                ).json()
                assert len(answer["predictions"]) == rows, (name, answer)
                answers[name, rows] = answer["predictions"]
        assert answers["mlops", 100] == answers["mlflow", 100], "the two servers disagree on the same model"
        for port in (mlops_port, mlflow_port):  # warm-up: both payloads, a few hundred requests each
            for body in (one, hundred):
                load(port, "/invocations", body, concurrency=4, count=200, seconds=10, work=work)

        cells = [
            ("single row, concurrency 1", one, 1, 4000),
            ("single row, concurrency 8", one, 8, 20000),
            ("single row, concurrency 32", one, 32, 40000),
            ("100 rows, concurrency 8", hundred, 8, 10000),
        ]
        results = []
        servers = (("mlflow", mlflow_port, mlflow_proc), ("mlops", mlops_port, mlops_proc))
        turn = 0
        for label, body, concurrency, count in cells:
            cell: dict[str, Any] = {"label": label, "concurrency": concurrency}
            runs: dict[str, list[dict[str, Any]]] = {"mlflow": [], "mlops": []}
            for repeat in range(args.repeat):
                # which server goes first alternates from run to run, so neither always meets the machine's
                # load (or the cache left by the other) first
                for name, port, proc in servers if turn % 2 == 0 else servers[::-1]:
                    result = measured(
                        proc.pid,
                        lambda port=port, body=body, concurrency=concurrency, count=count: load(
                            port,
                            "/invocations",
                            body,
                            concurrency=concurrency,
                            count=count,
                            seconds=args.seconds,
                            work=work,
                        ),
                    )
                    runs[name].append(result)
                    print(f"{label:<28} {name:<7} run {repeat + 1}/{args.repeat} {json.dumps(result)}", flush=True)
                turn += 1
            for name, found in runs.items():
                cell[name] = median_run(found)
            results.append(cell)

        # --- 60 s with a 10% canary -------------------------------------------------------------
        mlops_bin = str(Path(sys.executable).with_name("mlops"))
        sh(mlops_bin, "deploy", "churn", "--canary", "2", "--weight", "10", cwd=project, env=env)
        deadline = time.monotonic() + 30
        while "canary" not in httpx.get(f"http://127.0.0.1:{mlops_port}/health").json() and time.monotonic() < deadline:
            time.sleep(0.2)
        predict_body = json.dumps({"records": rows1[FEATURES].to_dict(orient="records")}).encode()
        canary = measured(
            mlops_proc.pid,
            lambda: load(
                mlops_port,
                "/predict",
                predict_body,
                concurrency=8,
                count=10_000_000,
                seconds=args.canary_seconds,
                work=work,
            ),
        )
        print(f"canary 10%, {args.canary_seconds:g} s  {json.dumps(canary)}", flush=True)
        status = json.loads(sh(mlops_bin, "canary", "status", "churn", "--json", cwd=project, env=env))
    finally:
        for proc in (mlops_proc, mlflow_proc):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (mlops_proc, mlflow_proc):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    report(results, canary, status, args, started, model_alone_ms(model, rows1[FEATURES]))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the repeated runs of one cell, with the spread of the rate."""
    import statistics

    out: dict[str, Any] = {}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_seconds", "server_cpu_seconds", "others_cpu_share", "seconds"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["requests"] = sum(r["requests"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    out["rps_runs"] = [r["rps"] for r in runs]
    return out


def model_alone_ms(model: Any, row: Any) -> dict[str, float]:
    """Median time of one single-row predict() in this process: the floor under both servers' latency."""
    import statistics

    import sklearn

    def median(skip: bool) -> float:
        times = []
        with sklearn.config_context(skip_parameter_validation=skip):
            for _ in range(50):
                model.predict(row)
            for _ in range(400):
                t0 = time.perf_counter()
                model.predict(row)
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    return {"default": median(False), "skip_validation": median(True)}


def report(
    results: list[dict[str, Any]],
    canary: dict[str, Any],
    status: dict[str, Any],
    args: argparse.Namespace,
    started: float,
    alone: dict[str, float],
) -> None:
    c1, c8, c32, c100 = results

    def ratio(cell: dict[str, Any]) -> float:
        return cell["mlops"]["rps"] / cell["mlflow"]["rps"]

    targets = [
        (
            c1,
            "rps >= 2x and p50 <= half of MLflow's",
            ratio(c1) >= 2 and c1["mlops"]["p50_ms"] <= c1["mlflow"]["p50_ms"] / 2,
        ),
        (c8, "rps >= 5x", ratio(c8) >= 5),
        (c32, "rps >= 10x, p99 below MLflow's", ratio(c32) >= 10 and c32["mlops"]["p99_ms"] < c32["mlflow"]["p99_ms"]),
        (c100, "info", None),
    ]

    def spread(run: dict[str, Any]) -> str:
        return f"({min(run['rps_runs']):.0f}-{max(run['rps_runs']):.0f})" if len(run["rps_runs"]) > 1 else ""

    lines = [
        "| requests | mlops rps | MLflow rps | ratio | mlops p50 / p99 ms | MLflow p50 / p99 ms | generator CPU s "
        "(mlops / MLflow) | other work's CPU (mlops / MLflow) | target | pass/fail |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, target, ok in targets:
        m, f = cell["mlops"], cell["mlflow"]
        mark = lambda r: "*" if r["others_cpu_share"] > 0.2 else ""  # noqa: E731
        lines.append(
            f"| {cell['label']} | {m['rps']:.0f}{mark(m)} {spread(m)} | {f['rps']:.0f}{mark(f)} {spread(f)} | "
            f"{ratio(cell):.1f}x | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} | {f['p50_ms']:.1f} / {f['p99_ms']:.1f} | "
            f"{m['cpu_seconds']:.1f} / {f['cpu_seconds']:.1f} | {m['others_cpu_share']:.0%} / "
            f"{f['others_cpu_share']:.0%} | {target} | {'-' if ok is None else 'PASS' if ok else 'FAIL'} |"
        )
    variants = canary.get("variants", {})
    share = variants.get("canary", 0) / max(1, sum(variants.values()))
    canary_ok = canary["errors"] == 0 and abs(share - 0.10) <= 0.02
    lines.append(
        f"| {args.canary_seconds:g} s, 10% canary (/predict, c=8) | {canary['rps']:.0f} | - | - | "
        f"{canary['p50_ms']:.1f} / {canary['p99_ms']:.1f} | - | {canary['cpu_seconds']:.1f} | "
        f"{canary['others_cpu_share']:.0%} | no failed request, split 10% +- 2 | {'PASS' if canary_ok else 'FAIL'} "
        f"({canary['requests']} requests, {canary['errors']} failed, canary {share:.2%}) |"
    )
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} with:",
            "",
            "```",
            f"# from the repository's root\n.venv/bin/python tests/benchmarks/bench_serve.py --work {args.work} "
            f"--repeat {args.repeat}",
            "```",
            "",
            "Machine:",
            "",
            *[f"- {line}" for line in machine()],
            "",
            "Both servers: one worker process, the same pickled scikit-learn pipeline (ColumnTransformer with one-hot "
            "and scaling, then LogisticRegression), MLflow's `dataframe_split` payload on POST /invocations; MLflow "
            f"{_mlflow_version(args)} via `mlflow models serve --env-manager local`. Each cell ran {args.repeat} "
            "time(s) per server, the two servers taking turns at going first; the table gives each figure's median "
            f"(the rate's range over the runs in brackets). Each run is bounded to {args.seconds:g} s and a request "
            "count; the generator (raw HTTP/1.1 keep-alive connections over asyncio streams with uvloop) runs in its "
            "own process and reports its own CPU time. \"Other work's CPU\" is the share of the machine's two cores "
            "busy during the cell with neither the server nor the generator (other jobs on this shared machine); a `*` "
            "marks a cell where it passed 20%.",
            "",
            *lines,
            "",
            "Canary status after the run: "
            + json.dumps(
                [
                    {k: v[k] for k in ("variant", "version", "requests", "errors", "p50_ms", "p99_ms")}
                    for v in status["variants"]
                ]
            ),
            "",
            "Not quite the same work on both sides: mlops serve's model threads skip scikit-learn's per-call "
            "validation of hyperparameters (`skip_parameter_validation`, the input data is still validated), MLflow's "
            "server does not; the line below measures what that is worth per call.",
            "",
            f"The model alone, in-process, right after: one single-row `predict()` takes {alone['default']:.2f} ms "
            f"(median of 400; {alone['skip_validation']:.2f} ms with scikit-learn's parameter validation skipped, as "
            "mlops serve's model threads do). At concurrency 1 that leaves "
            f"{c1['mlops']['p50_ms'] - alone['skip_validation']:.1f} ms of p50 to mlops serve (HTTP, parsing, checks, "
            f"the thread hand-off) and {c1['mlflow']['p50_ms'] - alone['default']:.1f} ms to MLflow's server.",
            "",
            f"{sum(bool(ok) for _, _, ok in targets if ok is not None) + canary_ok} of 4 targets pass. Server CPU "
            "seconds per cell (mlops / MLflow): "
            + ", ".join(
                f"{c['concurrency']}: {c['mlops']['server_cpu_seconds']:.1f} / {c['mlflow']['server_cpu_seconds']:.1f}"
                for c in results
            )
            + ".",
            "",
        ]
    )
    print("\n" + text)
    if args.docs:
        replace_section(Path(args.docs), text)


def _mlflow_version(args: argparse.Namespace) -> str:
    venv = (args.mlflow_venv or args.work / "mlflow-venv").resolve()
    try:
        return sh(str(venv / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)").strip()
    except SystemExit:
        return "?"


if __name__ == "__main__":
    main()
