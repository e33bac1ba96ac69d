"""`mlops ui` speed: the runs page's first screen in a real browser, a filter plus sort, and a
20-run compare, over 10,000 runs of 20 params and 10 metrics (issue 18). With --mlflow, the same
runs are logged into MLflow (in its own virtual environment) and its UI, served by `mlflow
server`, is timed the same way in the same run.

Run by hand (pytest does not collect this folder):

    .venv/bin/python tests/benchmarks/bench_ui.py                  # mlops only: ~1 min
    .venv/bin/python tests/benchmarks/bench_ui.py --mlflow         # side by side (installs mlflow)

The browser is Debian's chromium, driven through chromedriver's own HTTP protocol (W3C
WebDriver, no client library). "First screen" is the time from navigation start until the
runs table holds rows: for mlops, DOMContentLoaded of the server-rendered page; for MLflow's
React app, the moment a script polling every 10 ms sees the newest run's name in the page.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mlops.repo.repo import init_repo  # noqa: E402
from mlops.tracking import store  # noqa: E402

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
]


#: the same query on both sides (MLflow's params are text, so the filter names metrics only)
FILTER = "metrics.metric_01 < 0.5"
COMPARED = range(0, 20 * 37, 37)  # the 20 runs of the compare


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_values(i: int, params: int, metrics: int) -> tuple[dict[str, Any], dict[str, float]]:
    return (
        {f"param_{j:02d}": (i * (j + 3)) % 97 for j in range(params)},
        {f"metric_{j:02d}": ((i * 7919 + j * 31) % 10007) / 10007 for j in range(metrics)},
    )


def make_mlops_runs(root: Path, count: int, params: int, metrics: int) -> None:
    """A repository with ``count`` ended runs laid out as finish_run leaves them (no fsync)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = init_repo(root)
    folder = store._ensure_runs_dir(repo)
    start = time.time() - count
    lines = []
    for i in range(count):
        run_id = f"run{i:06d}"
        info = {
            "format": store.RUN_FORMAT,
            "id": run_id,
            "name": f"trial-{i}",
            "status": store.FINISHED,
            "start_time": start + i,
            "end_time": start + i + 1,
            "user": "bench",
            "host": "bench",
            "pid": 1,
            "pid_start": None,
            "git_commit": None,
            "git_dirty": None,
            "source": "api",
            "stages": [],
        }
        (folder / run_id).mkdir()
        (folder / run_id / store.RUN_FILE).write_text(json.dumps(info))
        p, m = run_values(i, params, metrics)
        summary = {"format": store.INDEX_FORMAT, **{k: info.get(k) for k in store.SUMMARY_FIELDS}}
        summary.update(owned=True, params=p, metrics=m, artifacts=0)
        lines.append(json.dumps(summary))
    (folder / store.INDEX_FILE).write_text("\n".join(lines) + "\n")


class Browser:
    """One headless Chromium session through chromedriver's HTTP protocol."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.driver = subprocess.Popen(
            [shutil.which("chromedriver") or "/usr/bin/chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.base + "/status", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        args = [*CHROME_ARGS, f"--user-data-dir={work / 'chrome-profile'}"]
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args, "binary": "/usr/bin/chromium"}}}}
        answer = httpx.post(self.base + "/session", json=caps, timeout=120).json()
        self.session = f"{self.base}/session/{answer['value']['sessionId']}"

    def go(self, url: str) -> None:
        httpx.post(self.session + "/url", json={"url": url}, timeout=300).raise_for_status()

    def script(self, source: str, *args: Any) -> Any:
        answer = httpx.post(self.session + "/execute/sync", json={"script": source, "args": list(args)}, timeout=300)
        return answer.json()["value"]

    def close(self) -> None:
        try:
            httpx.delete(self.session, timeout=30)
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)


def first_screen_ms(browser: Browser, url: str, marker: str | None) -> float:
    """Milliseconds from navigation start until the table is there (see the module's docstring)."""
    if marker is None:
        browser.go(url)
        return float(browser.script("return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
    browser.go("about:blank")
    browser.go(url)  # returns at load; a React app fills its table after that
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = browser.script(
            "return document.body && document.body.innerText.includes(arguments[0]) ? performance.now() : null",
            marker,
        )
        if found is not None:
            return float(found)
        time.sleep(0.01)
    raise RuntimeError(f"{url}: {marker!r} did not appear in 120 s")


def timed(fn: Any, repeats: int) -> tuple[float, list[float]]:
    values = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        values.append((time.perf_counter() - began) * 1000)
    return statistics.median(values), values


def bench_mlops(args: argparse.Namespace, work: Path) -> dict[str, float]:
    root = work / "mlops-project"
    if not root.exists():
        began = time.perf_counter()
        make_mlops_runs(root, args.runs, args.params, args.metrics)
        print(f"wrote {args.runs} runs in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    proc = subprocess.Popen(
        [MLOPS_BIN, "ui", "--port", "0", "--no-browser"], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        began = time.perf_counter()
        while True:
            try:
                first = httpx.get(address + "runs", timeout=120)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        results = {"http first /runs after start (ms)": (time.perf_counter() - began) * 1000}
        assert first.status_code == 200
        query = {"q": FILTER, "sort": "-metrics.metric_07"}
        compare = address + "compare?" + "&".join(f"run=run{i:06d}" for i in COMPARED)
        results["http /runs (ms)"], _ = timed(lambda: httpx.get(address + "runs", timeout=120), args.repeats)
        results["http filter+sort (ms)"], _ = timed(
            lambda: httpx.get(address + "runs", params=query, timeout=120), args.repeats
        )
        results["http compare 20 runs (ms)"], _ = timed(lambda: httpx.get(compare, timeout=120), args.repeats)
        browser = Browser(work)
        try:
            shots = [first_screen_ms(browser, address + "runs", None) for _ in range(args.repeats)]
            results["browser first screen (ms)"] = statistics.median(shots)
            filtered = address + "runs?" + str(httpx.QueryParams(query))
            results["browser filter+sort (ms)"] = statistics.median(
                first_screen_ms(browser, filtered, None) for _ in range(args.repeats)
            )
            results["browser compare 20 runs (ms)"] = statistics.median(
                first_screen_ms(browser, compare, None) for _ in range(args.repeats)
            )
        finally:
            browser.close()
        return results
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


MLFLOW_LOG = """
import sys, mlflow
from typing import Any
from mlflow.entities import Metric, Param
RUN_VALUES
count, params, metrics = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
for i in range(count):
    run = client.create_run("0", run_name=f"trial-{i}")
    p, m = run_values(i, params, metrics)
    now = int(__import__("time").time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in m.items()],
                     params=[Param(k, str(v)) for k, v in p.items()])
    client.set_terminated(run.info.run_id)
"""


def bench_mlflow(args: argparse.Namespace, work: Path) -> dict[str, float]:
    venv = work / "mlflow-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", args.mlflow_spec], check=True)
    db = work / "mlflow.db"
    uri = f"sqlite:///{db}"
    if not db.exists():
        began = time.perf_counter()
        subprocess.run(
            [
                str(python),
                "-c",
                MLFLOW_LOG.replace("RUN_VALUES", inspect.getsource(run_values)),
                uri,
                str(Path(__file__).parent),
                str(args.runs),
                str(args.params),
                str(args.metrics),
            ],
            check=True,
        )
        print(f"logged {args.runs} runs into MLflow in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    port = free_port()
    server = subprocess.Popen(
        [
            str(venv / "bin" / "mlflow"),
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(address + "health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start")
            time.sleep(0.2)
        newest = f"trial-{args.runs - 1}"
        api = address + "api/2.0/mlflow/runs/search"
        best = httpx.post(
            api,
            json={"experiment_ids": ["0"], "max_results": 1, "filter": FILTER, "order_by": ["metrics.metric_07 DESC"]},
            timeout=300,
        ).json()["runs"][0]["info"]["run_name"]
        ids = []
        for i in COMPARED:
            found = httpx.post(
                api, json={"experiment_ids": ["0"], "filter": f"attributes.run_name = 'trial-{i}'"}, timeout=300
            ).json()["runs"]
            ids.append(found[0]["info"]["run_id"])
        filtered = (
            address
            + "#/experiments/0/runs?"
            + urllib.parse.urlencode(
                {"searchFilter": FILTER, "orderByKey": "metrics.`metric_07`", "orderByAsc": "false"},
                quote_via=urllib.parse.quote,
            )
        )
        compare = (
            address
            + "#/compare-runs?"
            + urllib.parse.urlencode(
                {"runs": json.dumps(ids), "experiments": json.dumps(["0"])}, quote_via=urllib.parse.quote
            )
        )
        browser = Browser(work)
        try:
            runs_page = address + "#/experiments/0/runs"
            return {
                "browser first screen (ms)": statistics.median(
                    first_screen_ms(browser, runs_page, newest) for _ in range(args.repeats)
                ),
                "browser filter+sort (ms)": statistics.median(
                    first_screen_ms(browser, filtered, best) for _ in range(args.repeats)
                ),
                "browser compare 20 runs (ms)": statistics.median(
                    first_screen_ms(browser, compare, f"trial-{COMPARED[-1]}") for _ in range(args.repeats)
                ),
            }
        finally:
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--params", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", default=str(ROOT / "bench-work" / "ui"))
    parser.add_argument("--mlflow", action="store_true", help="also time MLflow's UI on the same runs")
    parser.add_argument("--mlflow-spec", default="mlflow")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = {"mlops": bench_mlops(args, work)}
    if args.mlflow:
        report["mlflow"] = bench_mlflow(args, work)
    load = os.getloadavg()
    print(
        f"{args.runs} runs x {args.params} params x {args.metrics} metrics; load {load[0]:.1f}; median of "
        f"{args.repeats}"
    )
    for side, figures in report.items():
        for name, value in figures.items():
            print(f"{side:7s} {name:34s} {value:9.1f}")
    print(json.dumps(report), file=sys.stderr)


if __name__ == "__main__":
    main()
