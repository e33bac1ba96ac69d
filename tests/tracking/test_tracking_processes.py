"""Real processes: parallel stages logging into one run, and runs whose process was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from trackkit import PYTHON, run_script

from mlops.tracking import store
from mlops.tracking.store import list_summaries, load_run

WORKERS = 6
VALUES = 150

WORKER = f"""
import mlops, os
stage = os.environ['MLOPS_STAGE']
with mlops.start_run():
    mlops.log_params({{stage + '.lr': 0.1, 'shared': 1}})
    for i in range({VALUES}):
        mlops.log_metric(stage + '.loss', i / 1000, step=i)
        mlops.log_metric('all', i, step=i)
"""


def _spawn(repo, run_id: str, stage: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MLOPS_RUN_ID": run_id, "MLOPS_STAGE": stage}
    return subprocess.Popen(
        [PYTHON, "-c", WORKER], cwd=repo.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_all(procs) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_parallel_processes_logging_into_one_run_lose_no_value(repo):
    run_id = store.new_run_id()
    store.create_run(
        repo, run_id, "pipeline", stages=[f"s{i}" for i in range(WORKERS)]
    )  # this process plays the pipeline
    _wait_all([_spawn(repo, run_id, f"s{i}") for i in range(WORKERS)])
    # every line is whole JSON: no interleaved writes
    lines = (repo.dot / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == WORKERS * VALUES * 2
    records = [json.loads(line) for line in lines]
    data = load_run(repo, run_id)
    for i in range(WORKERS):
        history = data.history[f"s{i}.loss"]
        assert sorted(h["step"] for h in history) == list(range(VALUES))
        assert {r["stage"] for r in records if r["key"] == f"s{i}.loss"} == {f"s{i}"}
    assert len(data.history["all"]) == WORKERS * VALUES
    assert set(data.params) == {*(f"s{i}.lr" for i in range(WORKERS)), "shared"}
    assert data.status == "running"  # joined processes never end the pipeline's run
    summary = store.finish_run(repo, run_id, "finished")
    assert summary["status"] == "finished" and summary["metrics"]["s0.loss"] == (VALUES - 1) / 1000
    assert load_run(repo, run_id).status == "finished"


def test_run_joined_before_anyone_created_it(repo):
    """Stages of a pipeline that does not create runs itself: status comes from the joined processes."""
    run_id = store.new_run_id()
    _wait_all([_spawn(repo, run_id, f"s{i}") for i in range(3)])
    data = load_run(repo, run_id)
    assert data.info["pid"] is None and data.status == "finished"
    assert len(data.history["all"]) == 3 * VALUES
    # one of its processes fails: the run failed
    proc = run_script(
        "import mlops\nwith mlops.start_run():\n    mlops.log_metric('x', 1)\n    raise RuntimeError('stage broke')\n",
        cwd=repo.root,
        env={"MLOPS_RUN_ID": run_id, "MLOPS_STAGE": "bad"},
        check=False,
    )
    assert proc.returncode == 1
    assert load_run(repo, run_id).status == "failed"


def test_process_that_exits_hard_mid_run_is_reported_failed_with_values_kept(repo, cli):
    proc = run_script(
        "import mlops, os\n"
        "run = mlops.start_run(name='crashy')\n"
        "mlops.log_params({'depth': 4})\n"
        "for i in range(5):\n    mlops.log_metric('loss', 1 - i / 10, step=i)\n"
        "os._exit(9)\n",
        cwd=repo.root,
        check=False,
    )
    assert proc.returncode == 9
    (run_id,) = store.run_ids(repo)
    assert json.loads((repo.dot / "runs" / run_id / "run.json").read_text())["status"] == "running"  # as left on disk
    data = load_run(repo, run_id)
    assert data.status == "failed"
    assert data.params == {"depth": 4} and [h["value"] for h in data.history["loss"]] == [1, 0.9, 0.8, 0.7, 0.6]
    doc = json.loads(cli("runs", "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in doc["runs"]] == [(run_id, "failed")]
    # the listing healed the index: the next one reads the summary from it
    assert store.read_index(repo)[run_id]["status"] == "failed"


def test_sigkill_mid_run(repo):
    proc = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import mlops, sys, time\n"
            "mlops.start_run(name='killed')\n"
            "for i in range(3):\n    mlops.log_metric('acc', i / 10, step=i)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        (run_id,) = store.run_ids(repo)
        assert load_run(repo, run_id).status == "running"  # alive: really running
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while load_run(repo, run_id).status != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)  # a killed child stays a zombie until reaped: counted as dead already
        assert load_run(repo, run_id).status == "failed"
    finally:
        proc.kill()
        proc.wait()
    summary = {s["id"]: s for s in list_summaries(repo)}[run_id]
    assert summary["status"] == "failed" and summary["metrics"]["acc"] == 0.2


def test_torn_last_line_is_skipped(repo):
    run_id = store.new_run_id()
    store.create_run(repo, run_id, "t", source="api")
    store.log_metrics(repo, run_id, {"a": 1.0}, step=0)
    store.log_metrics(repo, run_id, {"a": 2.0}, step=1)
    with open(repo.dot / "runs" / run_id / "metrics.jsonl", "a") as handle:
        handle.write('{"key": "a", "value": 3.0, "st')  # a crash mid-append
    data = load_run(repo, run_id)
    assert [h["value"] for h in data.history["a"]] == [1.0, 2.0] and data.metrics == {"a": 2.0}
    with open(repo.dot / "runs" / "index.jsonl", "a") as handle:
        handle.write('{"id": "torn')
    assert run_id in {s["id"] for s in list_summaries(repo)}


def test_other_host_runs_stay_running(repo):
    run_id = store.new_run_id()
    store.create_run(repo, run_id, "remote-run", source="api")
    path = repo.dot / "runs" / run_id / "run.json"
    info = json.loads(path.read_text())
    info.update(host="some-other-machine", pid=1)
    path.write_text(json.dumps(info))
    assert load_run(repo, run_id).status == "running"
    info.update(host=store.socket.gethostname(), pid=2**22 + 12345)  # no such pid here
    path.write_text(json.dumps(info))
    assert load_run(repo, run_id).status == "failed"
