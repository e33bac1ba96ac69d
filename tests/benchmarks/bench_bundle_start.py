"""`mlops serve --model-dir` against `mlflow models serve` of the same models: time to ready, resident memory.

    .venv/bin/python tests/benchmarks/bench_bundle_start.py [--work DIR] [--mlflow-venv DIR] [--repeat 3]

Two models, each registered in one fresh repository and exported with `mlops export model` as a
bundle, and saved for MLflow from the same object or class:

- ``sklearn``: the scikit-learn churn pipeline of tests/serve/servekit.py; MLflow's copy saved from
  the same pickle with ``mlflow.sklearn.save_model``;
- ``sklearn-onnx``: the same registered version exported with ``--onnx`` (its ONNX form, checked
  against the pickle on the training rows, served by onnxruntime), against the same MLflow model;
- ``python``: a Python class model (``mlops register NAME scorer.py:LogisticScorer --artifacts
  weights/``), a logistic scorer using numpy only, its coefficients in the artifacts folder;
  MLflow's copy is the same class behind a ``mlflow.pyfunc.PythonModel`` adapter, saved with
  ``mlflow.pyfunc.save_model(python_model=..., artifacts=..., code_paths=[scorer.py])``.

MLflow runs from its own virtual environment (``--mlflow-venv``, default WORK/mlflow-venv, built
here with pip when absent and reused after), ``--env-manager local``, one worker.

Each round starts each server (they take turns at going first), times from the spawn to the
first 200 on its readiness endpoint (mlops: /v2/health/ready; MLflow: /ping, its only one) and
to the first prediction answered, then reads the resident memory of the whole process tree
(supervisor and workers: /proc, RSS summed) one second after that prediction, and again six seconds
after it ("settled": mlops' request log has written its first rows by then, with pyarrow). The same round measures the
floor: a bare ``python -c`` that imports the model's library and loads the model (the pickle; the
class's coefficients, with numpy alone and with pandas too, which both servers hand the class its
rows in), its wall time and resident memory: what any server of that model pays before it
serves. One unmeasured warm-up start of everything first (byte code cached as an installed
package has it, files in the page cache). Medians over ``--repeat`` rounds. Bounds per model:
mlops at least 5x faster to ready and at most a third of MLflow's memory; PASS/FAIL for each,
``uptime`` before and after. Exit status 0 when every bound holds. For scikit-learn the bounds
apply to the ONNX form (``sklearn-onnx``); the pickle's row is shown beside it, (met)/(not met),
because a bare ``pickle.load`` of the model (its floor) is already past both.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
SERVE_TESTS = PROJECT / "tests" / "serve"
sys.path.insert(0, str(SERVE_TESTS))

import httpx  # noqa: E402
from servekit import fit_pipeline, register, serve_env, training_frame  # noqa: E402

MLOPS = str(Path(sys.executable).with_name("mlops"))
ROW = {"tenure": 3, "plan": "basic", "monthly_charges": 80.0}
FASTER, LIGHTER = 5.0, 3.0  # the bounds: mlops at least 5x faster to ready, at most a third of the memory
SETTLE = 6.0

SCORER = '''\
"""A logistic churn scorer over two numbers: numpy only, its coefficients in the artifacts folder."""

import os

import numpy as np


class LogisticScorer:
    def load(self, artifacts_dir):
        coef = np.load(os.path.join(artifacts_dir, "coef.npy"))
        self.bias, self.weights = float(coef[0]), coef[1:]

    def predict_proba(self, frame):
        x = frame[["tenure", "monthly_charges"]].to_numpy(dtype=float)
        p = 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, frame):
        return (self.predict_proba(frame)[:, 1] >= 0.5).astype(int)
'''

ADAPTER = '''\
"""MLflow's view of the same class: a PythonModel that loads and calls LogisticScorer."""

import os

import mlflow.pyfunc
from scorer import LogisticScorer


class ScorerAdapter(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = LogisticScorer()
        self.model.load(os.path.dirname(context.artifacts["coef"]))

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)
'''


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (from /proc), in MiB."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


@dataclass(frozen=True)
class Measured:
    ready: float  # seconds from the spawn to the first 200 on the readiness endpoint (floor: the whole run)
    answered: float  # ... to the first prediction answered (floor: the same)
    rss: float  # MiB resident after one prediction (floor: at the end of its run)
    peak: float = 0.0  # MiB, the floor's peak resident memory
    settled: float = 0.0  # MiB resident SETTLE seconds after the prediction (the request log written)


def start_and_measure(
    argv: list[str], ready: str, predict: tuple[str, dict[str, Any]], port: int, cwd: Path, env: dict[str, str]
) -> Measured:
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(url + ready).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{argv[0]} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            path, body = predict
            answer = client.post(url + path, json=body)
            if answer.status_code != 200:
                raise SystemExit(f"{argv[0]}: prediction answered {answer.status_code}: {answer.text[:500]}")
            answered = time.perf_counter() - t0
        time.sleep(1.0)  # settle: lazily started threads, the first request's allocations
        rss = tree_rss_mib(proc.pid)
        time.sleep(SETTLE - 1.0)  # mlops' request log writes every 5 s
        return Measured(seconds, answered, rss, settled=tree_rss_mib(proc.pid))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# the floor's memory from /proc/self/status at its end: getrusage's ru_maxrss would count this (large)
# benchmark process, whose high-water mark a forked child inherits through exec
REPORT_MEMORY = (
    "\nimport sys\nsys.stdout.write(' '.join(l.split()[1] for l in open('/proc/self/status')"
    " if l.startswith(('VmRSS:', 'VmHWM:'))))"
)


def floor(python: str, code: str, env: dict[str, str]) -> Measured:
    """The cost of ``python -c code`` alone: what the model's library takes before any server."""
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", code + REPORT_MEMORY], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the floor {code!r} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak, rss = sorted(int(kib) / 1024 for kib in proc.stdout.split())[::-1]
    return Measured(seconds, seconds, rss, peak)


@dataclass(frozen=True)
class Model:
    name: str  # sklearn | sklearn-onnx | python
    bundle: Path
    mlflow_model: Path
    floors: dict[str, str]  # label -> python -c code: import the library, load the model
    # why this row is shown without the bounds, or "" when they apply
    unbounded: str = ""


def mlflow_save(venv: Path, code: str, work: Path, env: dict[str, str]) -> None:
    sh(
        str(venv / "bin" / "python"),
        "-c",
        code,
        cwd=work,
        env={**env, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}"},
    )


def sklearn_model(work: Path, project: Path, venv: Path, env: dict[str, str]) -> Model:
    model = fit_pipeline()
    pickle_path = work / "model.pkl"
    pickle_path.write_bytes(pickle.dumps(model))
    register(project, "churn", 1, model, stage="production")
    sh(MLOPS, "export", "model", "churn@production", "-o", str(work / "sklearn-bundle"), cwd=project, env=env)
    training_frame(rows=200, seed=5).to_parquet(work / "example.parquet")
    save = (
        "import pickle, pandas as pd, mlflow.sklearn\n"
        "from mlflow.models import infer_signature\n"
        f"model = pickle.load(open({str(pickle_path)!r}, 'rb'))\n"
        f"x = pd.read_parquet({str(work / 'example.parquet')!r})\n"
        f"mlflow.sklearn.save_model(model, {str(work / 'sklearn-mlflow')!r}, serialization_format='pickle',"
        " signature=infer_signature(x, model.predict(x)))\n"
    )
    mlflow_save(venv, save, work, env)
    floors = {"unpickle": f"import pickle; pickle.load(open({str(pickle_path)!r}, 'rb'))"}
    # the scikit-learn bound is held by the same version's ONNX form (sklearn-onnx); this row is the pickle's
    # own cost beside it, which the bounds cannot reach: loading the pickle alone (the floor) takes longer
    # than a fifth of MLflow's start-up and holds more than a third of its memory
    unbounded = "the pickle: its floor is past both bounds; the bounds apply to its ONNX form (sklearn-onnx)"
    return Model("sklearn", work / "sklearn-bundle", work / "sklearn-mlflow", floors, unbounded)


def onnx_model(work: Path, project: Path, env: dict[str, str]) -> Model:
    """churn@production (sklearn_model registered it) exported with --onnx; MLflow serves the same pickle."""
    checked_on = work / "example.parquet"
    bundle = work / "onnx-bundle"
    sh(MLOPS, "export", "model", "churn@production", "-o", str(bundle), "--onnx", "--check-data", str(checked_on),
       cwd=project, env=env)  # fmt: skip
    form = bundle / "compiled" / "model.onnx"
    floors = {"onnxruntime": f"import onnxruntime; onnxruntime.InferenceSession({str(form)!r})"}
    return Model("sklearn-onnx", bundle, work / "sklearn-mlflow", floors)


def python_model(work: Path, project: Path, venv: Path, env: dict[str, str]) -> Model:
    import numpy as np

    code = project / "scorer.py"
    code.write_text(SCORER)
    weights = project / "weights"
    weights.mkdir()
    np.save(weights / "coef.npy", np.array([-1.0, -0.1, 0.05]))
    training_frame(rows=50, seed=7).to_parquet(project / "sample.parquet")
    sh(MLOPS, "register", "scorer", "scorer.py:LogisticScorer", "--artifacts", "weights", "--signature-from",
       "sample.parquet", cwd=project, env=env)  # fmt: skip
    sh(MLOPS, "export", "model", "scorer:1", "-o", str(work / "python-bundle"), cwd=project, env=env)
    (work / "adapter.py").write_text(ADAPTER)
    save = (
        "import sys, pandas as pd, mlflow.pyfunc\n"
        "from mlflow.models import infer_signature\n"
        f"sys.path[:0] = [{str(project)!r}, {str(work)!r}]\n"
        "from adapter import ScorerAdapter\n"
        "from scorer import LogisticScorer\n"
        f"x = pd.read_parquet({str(project / 'sample.parquet')!r})\n"
        f"m = LogisticScorer(); m.load({str(weights)!r})\n"
        f"mlflow.pyfunc.save_model({str(work / 'python-mlflow')!r}, python_model=ScorerAdapter(),"
        f" artifacts={{'coef': {str(weights / 'coef.npy')!r}}},"
        f" code_paths=[{str(code)!r}, {str(work / 'adapter.py')!r}], signature=infer_signature(x, m.predict(x)))\n"
    )
    mlflow_save(venv, save, work, env)
    load = f"numpy.load({str(weights / 'coef.npy')!r})"
    # the class needs numpy; both servers hand it its rows as a pandas DataFrame
    floors = {"numpy": f"import numpy; {load}", "numpy+pandas": f"import numpy, pandas; {load}"}
    return Model("python", work / "python-bundle", work / "python-mlflow", floors)


def build_venv(venv: Path) -> None:
    print(f"building MLflow's venv in {venv} (pip install mlflow scikit-learn pandas)", flush=True)
    sh(sys.executable, "-m", "venv", str(venv))
    sklearn = sh(sys.executable, "-c", "import sklearn; print(sklearn.__version__)").strip()
    sh(str(venv / "bin" / "pip"), "install", "-q", "mlflow", f"scikit-learn=={sklearn}", "pandas", "pyarrow")


def verdict(ok: bool, bounded: bool = True) -> str:
    return ("PASS" if ok else "FAIL") if bounded else ("(met)" if ok else "(not met)")


def measure(model: Model, side: str, ctx: dict[str, Any]) -> Measured:
    port = free_port()
    if side == "mlops":
        argv = [MLOPS, "serve", "--model-dir", str(model.bundle), "--port", str(port)]
        argv += ["--state-dir", str(ctx["outside"] / f"state-{model.name}")]
        body = ("/predict", {"records": [ROW]})
        return start_and_measure(argv, "/v2/health/ready", body, port, ctx["outside"], ctx["env"])
    if side == "mlflow":
        argv = [str(ctx["venv"] / "bin" / "mlflow"), "models", "serve", "-m", str(model.mlflow_model)]
        argv += ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local", "--workers", "1"]
        body = ("/invocations", {"dataframe_records": [ROW]})
        return start_and_measure(argv, "/ping", body, port, ctx["outside"], ctx["mlflow_env"])
    return floor(sys.executable, model.floors[side.removeprefix("floor ")], ctx["env"])


def report(model: Model, runs: dict[tuple[str, str], list[Measured]]) -> tuple[bool, dict[str, Any]]:
    sides = ["mlops", "mlflow", *(f"floor {label}" for label in model.floors)]
    med = {
        side: {
            k: statistics.median(getattr(m, k) for m in runs[(model.name, side)]) for k in Measured.__dataclass_fields__
        }
        for side in sides
    }
    faster = med["mlflow"]["ready"] / med["mlops"]["ready"]
    lighter = med["mlflow"]["rss"] / med["mlops"]["rss"]
    for label, code in model.floors.items():
        m = med[f"floor {label}"]
        print(f"{model.name}: floor {label} (python -c {code!r}): {m['ready']:.2f} s, {m['rss']:.0f} MiB "
              f"resident at its end, {m['peak']:.0f} MiB peak")  # fmt: skip
    for side in ("mlops", "mlflow"):
        m = med[side]
        print(f"{model.name}: {side:6s} ready {m['ready']:.2f} s, first answer {m['answered']:.2f} s, "
              f"{m['rss']:.0f} MiB resident, {m['settled']:.0f} MiB after {SETTLE:g} s")  # fmt: skip
    bounded = not model.unbounded
    if not bounded:
        print(f"{model.name}: no bounds ({model.unbounded})")
    print(f"{model.name}: time to ready {faster:.1f}x (bound >= {FASTER:g}x) {verdict(faster >= FASTER, bounded)}")
    first = med["mlflow"]["answered"] / med["mlops"]["answered"]
    print(f"{model.name}: time to the first answer {first:.1f}x (no bound; what is imported lazily is paid here)")
    print(
        f"{model.name}: resident memory {lighter:.1f}x (bound >= {LIGHTER:g}x) {verdict(lighter >= LIGHTER, bounded)}"
    )
    ok = (faster >= FASTER and lighter >= LIGHTER) or not bounded
    quiet = ("peak", "settled")  # zero where a side has none (the floors)
    summary = {side: {k: round(v, 3) for k, v in m.items() if v or k not in quiet} for side, m in med.items()}
    return ok, {**summary, "faster": round(faster, 2), "first_answer": round(first, 2), "lighter": round(lighter, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-work"))
    parser.add_argument("--mlflow-venv", type=Path, default=None, help="default: WORK/mlflow-venv (built once)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("uptime before:", sh("uptime").strip(), flush=True)
    work = (args.work / "bundle-start").resolve()
    venv = (args.mlflow_venv or args.work / "mlflow-venv").resolve()
    if not (venv / "bin" / "mlflow").exists():
        build_venv(venv)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # as installed: byte code cached (pip compiles what it installs; the first, unmeasured, start writes the rest)
    env = {k: v for k, v in serve_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    project = work / "project"
    project.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=project)
    sh(MLOPS, "init", cwd=project, env=env)
    models = [sklearn_model(work, project, venv, env)]
    models += [onnx_model(work, project, env), python_model(work, project, venv, env)]
    outside = work / "elsewhere"  # served from a folder outside the repository
    outside.mkdir()
    mlflow_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    mlflow_env.pop("PYTHONPATH", None)
    ctx = {"outside": outside, "env": env, "mlflow_env": mlflow_env, "venv": venv}
    for model in models:  # warm-up, not counted: byte code written, files in the page cache, for every side
        for side in ("mlops", "mlflow", *(f"floor {label}" for label in model.floors)):
            measure(model, side, ctx)
    runs: dict[tuple[str, str], list[Measured]] = {}
    for round_ in range(args.repeat):
        for model in models:
            sides = ["mlops", "mlflow", *(f"floor {label}" for label in model.floors)]
            for side in sides if round_ % 2 == 0 else sides[::-1]:  # they take turns at going first
                measured = measure(model, side, ctx)
                runs.setdefault((model.name, side), []).append(measured)
                print(
                    f"round {round_ + 1} {model.name:12s} {side:18s}: {measured.ready:.2f} s to ready, "
                    f"{measured.answered:.2f} s to the first answer, {measured.rss:.0f} MiB resident",
                    flush=True,
                )
    mlflow_version = sh(str(venv / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)").strip()
    summary: dict[str, Any] = {"mlflow": mlflow_version, "repeat": args.repeat, "models": {}}
    ok = True
    print()
    for model in models:
        met, summary["models"][model.name] = report(model, runs)
        ok = ok and met
    print(json.dumps(summary))
    print("uptime after:", sh("uptime").strip())
    print("all bounds met" if ok else "BOUNDS MISSED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
