"""`mlops run --executor ray`: stages as Ray tasks on a real local Ray cluster (tests/executors/raycluster.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipekit import MLOPS_BIN, commit_all, counts, first_json, git, lock_doc, mlops, statuses, step_cmd, write_pipeline
from raycluster import RayCluster

from tests.conftest import S3Bucket


def test_executor_ray_without_ray_says_how_to_install_it(repo, tmp_path: Path) -> None:
    write_pipeline(repo.root, {"a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]}})
    # the interpreter refuses `import ray` as if it were not installed (None in sys.modules does that)
    code = (
        "import sys, runpy\n"
        "sys.modules['ray'] = None\n"
        "sys.argv = ['mlops', 'run', '--executor', 'ray']\n"
        "runpy.run_module('mlops', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'mlops[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo.root / "a.txt").exists()  # nothing ran
    assert not (repo.root / "pipeline.lock").exists()


def test_unknown_executor_is_a_usage_error(repo) -> None:
    write_pipeline(repo.root, {"a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]}})
    proc = subprocess.run(
        [sys.executable, "-m", "mlops", "run", "--executor", "dask"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown executor 'dask'" in proc.stderr


# --- a real local Ray cluster (the session's ray_cluster fixture) ----------------------------------

RAY_TIMEOUT = 600  # a cold Ray worker pool on a loaded 2-core machine takes a while to warm


def _project(root: Path, step: Path, counter: Path) -> None:
    """A committed project: prep, a foreach group of two members after it, and a report joining them.
    Every command appends its stage's name to ``counter`` (outside the repository) when it runs."""
    count = f"count:{counter}"
    clean = "cat:prep/all.txt+data/${item}.txt=clean/${item}.txt"
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "data").mkdir()
    (root / "data" / "raw.txt").write_text("raw\n")
    (root / "data" / "a.txt").write_text("alpha\n")
    (root / "data" / "b.txt").write_text("beta\n")
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        "  prep:\n"
        f"    cmd: {step_cmd(step, count, 'print:preparing', 'copy:data/raw.txt=prep/all.txt')}\n"
        "    deps: [data/raw.txt]\n"
        "    outs: [prep/all.txt]\n"
        "  clean:\n"
        "    foreach: [a, b]\n"
        "    do:\n"
        f"      cmd: {step_cmd(step, count, 'print:hello-${item}', clean)}\n"
        "      deps: [prep/all.txt, 'data/${item}.txt']\n"
        "      outs: ['clean/${item}.txt']\n"
        "      resources: {cpus: 1}\n"
        "  report:\n"
        f"    cmd: {step_cmd(step, count, 'cat:clean/a.txt+clean/b.txt=report.txt')}\n"
        "    deps: [clean/a.txt, clean/b.txt]\n"
        "    outs: [report.txt]\n"
    )
    commit_all(root, "pipeline")


def _clone(source: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True, capture_output=True, timeout=120)
    return dest


def _ray_run(root: Path, cluster: RayCluster, *args: str, code: int = 0) -> dict:
    proc = mlops(
        "run",
        "--json",
        "--executor",
        "ray",
        "--address",
        cluster.address,
        *args,
        cwd=root,
        code=code,
        timeout=RAY_TIMEOUT,
    )
    doc = first_json(proc.stdout)
    doc["_stderr"] = proc.stderr
    return doc


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_foreach_pipeline_on_ray_records_what_mlops_run_records(ray_cluster, step, tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    _project(origin, step, tmp_path / "counter-origin.txt")
    here = _clone(origin, tmp_path / "here")  # `mlops run`, subprocesses in the workspace
    on_ray = _clone(origin, tmp_path / "on-ray")  # the same commit, every stage a Ray task
    counter = tmp_path / "counter-origin.txt"

    local = first_json(mlops("run", "--json", cwd=here, timeout=RAY_TIMEOUT).stdout)
    assert statuses(local) == {"prep": "ran", "clean@a": "ran", "clean@b": "ran", "report": "ran"}
    counter.unlink()
    doc = _ray_run(on_ray, ray_cluster)
    assert statuses(doc) == {"prep": "ran", "clean@a": "ran", "clean@b": "ran", "report": "ran"}
    assert sorted(counts(counter)) == ["clean@a", "clean@b", "prep", "report"]  # each command ran once, on Ray
    # the driver alone wrote the lock file and the outputs: the same as `mlops run`, byte for byte in the lock
    assert (on_ray / "pipeline.lock").read_text() == (here / "pipeline.lock").read_text()
    assert (on_ray / "report.txt").read_text() == "raw\nalpha\nraw\nbeta\n"
    # stage output streamed back with [stage] prefixes (stderr under --json)
    assert "[clean@a] hello-a" in doc["_stderr"] and "[prep] preparing" in doc["_stderr"]
    # Ray's own start-up and tear-down in the driver, timed apart from the stages
    engine = doc["engine_seconds"]
    assert set(engine) == {"import", "connect", "warm_up", "disconnect"}
    assert all(isinstance(v, float) and v >= 0 for v in engine.values())
    assert "engine_seconds" not in local  # the local executor has no engine to start
    # one run record, every stage in it
    record = json.loads(mlops("runs", "show", doc["run_id"], "--json", cwd=on_ray).stdout)
    assert record["source"] == "pipeline" and record["status"] == "finished"
    assert {s["stage"]: s["status"] for s in record["stage_records"]} == statuses(doc)
    # nothing left behind by the workers' private worktrees (a runner removes its stage's after answering)
    exec_dir = on_ray / ".mlops" / "tmp" / "exec"
    _wait_for(lambda: not list(exec_dir.glob("wt-*")), "the runners to remove their worktrees", timeout=60)
    assert len(git(on_ray, "worktree", "list").splitlines()) == 1

    again = _ray_run(on_ray, ray_cluster)
    assert again["up_to_date"] is True and set(statuses(again).values()) == {"skipped"}
    assert len(counts(counter)) == 4  # nothing ran


def _with_s3_remote(root: Path, bucket: S3Bucket, prefix: str) -> None:
    mlops("remote", "add", "storage", f"s3://{bucket.name}/{prefix}", "--default", cwd=root)
    mlops("remote", "modify", "storage", "endpoint_url", bucket.endpoint_url, cwd=root)
    commit_all(root, "the team's remote")


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_teammate_restores_everything_from_the_shared_run_cache(ray_cluster, step, s3_bucket, tmp_path) -> None:
    origin = tmp_path / "origin"
    counter = tmp_path / "counter.txt"
    _project(origin, step, counter)
    _with_s3_remote(origin, s3_bucket, "team")
    mine = _clone(origin, tmp_path / "mine")
    doc = _ray_run(mine, ray_cluster, "--remote", "storage")
    assert set(statuses(doc).values()) == {"ran"}
    entries = s3_bucket.keys("team/refs/runcache/")
    assert len(entries) == 4  # one entry per stage, published by the workers

    # a teammate's fresh clone, its own folder and cache: every stage comes from the shared run cache
    theirs = _clone(origin, tmp_path / "theirs")
    before = counts(counter)
    # --dry-run plans with the remote its workers would restore from (the default one here)
    plan = first_json(mlops("run", "--json", "--executor", "ray", "--dry-run", cwd=theirs).stdout)
    assert {s["name"]: (s["status"], s.get("restore_from")) for s in plan["stages"]} == {
        name: ("would restore", "remote storage") for name in ("prep", "clean@a", "clean@b", "report")
    }
    doc = _ray_run(theirs, ray_cluster)
    assert statuses(doc) == {"prep": "restored", "clean@a": "restored", "clean@b": "restored", "report": "restored"}
    assert counts(counter) == before  # no command ran anywhere
    assert (theirs / "report.txt").read_text() == "raw\nalpha\nraw\nbeta\n"
    assert lock_doc(theirs) == lock_doc(mine)
    assert s3_bucket.keys("team/refs/runcache/") == entries
    # and the run record names the run that made each output
    record = json.loads(mlops("runs", "show", doc["run_id"], "--json", cwd=theirs).stdout)
    assert {s["produced_by"] for s in record["stage_records"]} - {None}


# --- workers that die, drivers that race, Ctrl-C ------------------------------------------------------


def _one_stage_project(root: Path, step: Path, *ops: str) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "pipeline.yaml").write_text(f"stages:\n  make:\n    cmd: {step_cmd(step, *ops)}\n    outs: [out.txt]\n")
    commit_all(root, "pipeline")


def _start_driver(
    root: Path, cluster: RayCluster, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MLOPS_BIN, "run", "--json", "--executor", "ray", "--address", cluster.address, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for(check, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ray_worker_of(pid: int) -> int:
    """The Ray worker process a stage command runs under (its nearest ancestor Ray named 'ray::...')."""
    current = pid
    for _ in range(20):
        current = int(Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()[1])
        cmdline = Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ")
        if cmdline.startswith(b"ray::") or b"default_worker.py" in cmdline:
            return current
    raise AssertionError(f"no Ray worker above process {pid}")


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_worker_killed_mid_stage_leaves_no_entry_and_the_retry_completes(
    ray_cluster, step, s3_bucket, tmp_path
) -> None:
    root, counter, pidfile, go = tmp_path / "proj", tmp_path / "counter.txt", tmp_path / "pid", tmp_path / "go"
    _one_stage_project(root, step, f"count:{counter}", f"pid:{pidfile}", f"waitfor:{go}", "write:out.txt=made")
    _with_s3_remote(root, s3_bucket, "kill")
    driver = _start_driver(root, ray_cluster)
    try:
        _wait_for(pidfile.exists, "the stage's command to start")
        first = int(pidfile.read_text())
        os.kill(_ray_worker_of(first), signal.SIGKILL)
        # the command died with its worker (its watcher saw the worker's lifeline close), and Ray ran the task again
        _wait_for(lambda: not _alive(first), "the killed worker's command to end", timeout=60)
        _wait_for(lambda: len(counts(counter)) == 2, "Ray's retry of the task")
        # meanwhile: nothing recorded anywhere
        assert s3_bucket.keys("kill/refs/runcache/") == set()
        assert not list((root / ".mlops").glob("runcache/*/*.json"))
        assert not (root / "pipeline.lock").exists()
        go.touch()
        out, err = driver.communicate(timeout=RAY_TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    assert statuses(first_json(out)) == {"make": "ran"}
    assert len(s3_bucket.keys("kill/refs/runcache/")) == 1
    assert (root / "out.txt").read_text() == "made\n" and lock_doc(root)["make"]["outs"][0]["path"] == "out.txt"


@pytest.mark.timeout(RAY_TIMEOUT)
def test_two_drivers_racing_on_one_key_leave_one_entry_and_both_adopt_it(
    ray_cluster, step, s3_bucket, tmp_path
) -> None:
    origin, counter, go = tmp_path / "origin", tmp_path / "counter.txt", tmp_path / "go"
    # each machine writes its own bytes (its pid): the entry that wins decides what both record
    _one_stage_project(origin, step, f"count:{counter}", f"waitfor:{go}", "pid:out.txt")
    _with_s3_remote(origin, s3_bucket, "race")
    clones = [_clone(origin, tmp_path / name) for name in ("mine", "theirs")]
    drivers = [_start_driver(root, ray_cluster) for root in clones]
    try:
        # both commands run at once (the cluster has 2 CPUs, a task takes 1); then both finish
        _wait_for(lambda: len(counts(counter)) == 2, "both commands to start")
        go.touch()
        results = [driver.communicate(timeout=RAY_TIMEOUT) for driver in drivers]
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
    for driver, (out, err) in zip(drivers, results, strict=True):
        assert driver.returncode == 0, err
        assert statuses(first_json(out)) == {"make": "ran"}
    assert len(s3_bucket.keys("race/refs/runcache/")) == 1
    mine, theirs = (lock_doc(root)["make"]["outs"] for root in clones)
    assert mine == theirs  # the loser adopted the winner's outputs
    assert (clones[0] / "out.txt").read_text() == (clones[1] / "out.txt").read_text()


@pytest.mark.timeout(RAY_TIMEOUT)
def test_ctrl_c_cancels_every_task_and_records_nothing(ray_cluster, step, tmp_path) -> None:
    root, pidfile = tmp_path / "proj", tmp_path / "pid"
    _one_stage_project(root, step, f"pid:{pidfile}", "sleep:300", "write:out.txt=made")
    driver = _start_driver(root, ray_cluster)
    try:
        _wait_for(pidfile.exists, "the stage's command to start")
        command = int(pidfile.read_text())
        runner = _ray_worker_of(command)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "Traceback" not in err
    doc = first_json(out)
    assert doc["interrupted"] is True and statuses(doc) == {"make": "interrupted"}
    _wait_for(lambda: not _alive(command), "the cancelled task's command to end", timeout=60)
    # the stage runner (a long-lived actor) went with it: Ray cannot force-cancel an actor's call
    _wait_for(lambda: not _alive(runner), "the stage runner to end", timeout=60)
    assert not (root / "pipeline.lock").exists() and not (root / "out.txt").exists()
    assert not list((root / ".mlops").glob("runcache/*/*.json"))


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_stage_runner_stays_warm_for_the_next_run_then_ends_when_idle(ray_cluster, step, tmp_path) -> None:
    root, pidfile, go = tmp_path / "proj", tmp_path / "pid", tmp_path / "go"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "seed.txt").write_text("1\n")
    command = step_cmd(step, f"pid:{pidfile}", f"waitfor:{go}", "copy:seed.txt=out.txt")
    stage = f"  make:\n    cmd: {command}\n    deps: [seed.txt]\n    outs: [out.txt]\n"
    (root / "pipeline.yaml").write_text(f"stages:\n{stage}")
    commit_all(root, "pipeline")
    idle = {"MLOPS_RAY_IDLE_TIMEOUT": "20"}  # given to the runner when it is created

    def one_run() -> int:
        """A run of the stage; the pid of the Ray process (the stage runner) its command ran under."""
        pidfile.unlink(missing_ok=True)
        go.unlink(missing_ok=True)
        driver = _start_driver(root, ray_cluster, env=idle)
        try:
            _wait_for(pidfile.exists, "the stage's command to start")
            runner = _ray_worker_of(int(pidfile.read_text()))
            go.touch()
            out, err = driver.communicate(timeout=RAY_TIMEOUT)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, err
        assert statuses(first_json(out)) == {"make": "ran"}
        return runner

    first = one_run()
    (root / "seed.txt").write_text("2\n")
    commit_all(root, "a change the stage depends on")
    assert one_run() == first  # the second run's driver (a new Ray job) found the same runner, warm
    assert (root / "out.txt").read_text() == "2\n"
    # idle for MLOPS_RAY_IDLE_TIMEOUT seconds, the runner ends itself and gives its CPU back
    _wait_for(lambda: not _alive(first), "the idle runner to end", timeout=180)


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_stage_of_another_shape_gets_what_idle_runners_hold_and_force_runs_again(
    ray_cluster, step, s3_bucket, tmp_path
) -> None:
    root, counter = tmp_path / "proj", tmp_path / "counter.txt"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    # on the 2-CPU test cluster: the runner of `small` (1 CPU) stays after its stage, and earlier
    # tests' idle runners hold CPUs too; `big` needs both CPUs, so the driver must ask idle runners to end
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        f"  small:\n    cmd: {step_cmd(step, f'count:{counter}', 'write:small.txt=s')}\n    outs: [small.txt]\n"
        "    resources: {cpus: 1}\n"
        f"  big:\n    cmd: {step_cmd(step, f'count:{counter}', 'cat:small.txt=big.txt')}\n"
        "    deps: [small.txt]\n    outs: [big.txt]\n    resources: {cpus: 2}\n"
    )
    commit_all(root, "pipeline")
    _with_s3_remote(root, s3_bucket, "force")
    doc = _ray_run(root, ray_cluster)
    assert statuses(doc) == {"small": "ran", "big": "ran"}
    assert (root / "big.txt").read_text() == "s\n"
    entries = s3_bucket.keys("force/refs/runcache/")
    lock = lock_doc(root)

    # --force: every command runs again, though the shared run cache has both keys; the entries stand
    # (a run-cache entry is never replaced) and what the run records is theirs
    forced = _ray_run(root, ray_cluster, "--force")
    assert statuses(forced) == {"small": "ran", "big": "ran"}
    assert counts(counter) == ["small", "big", "small", "big"]
    assert s3_bucket.keys("force/refs/runcache/") == entries
    assert lock_doc(root) == lock


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_dirty_tree_is_refused_unless_allow_dirty_sends_it(ray_cluster, step, tmp_path) -> None:
    root, counter = tmp_path / "proj", tmp_path / "counter.txt"
    _project(root, step, counter)
    _ray_run(root, ray_cluster)
    (root / "data" / "a.txt").write_text("alpha, edited\n")
    proc = mlops("run", "--executor", "ray", "--address", ray_cluster.address, cwd=root, code=2)
    assert "data/a.txt" in proc.stderr and "--allow-dirty" in proc.stderr
    doc = _ray_run(root, ray_cluster, "--allow-dirty")
    assert statuses(doc) == {"prep": "skipped", "clean@a": "ran", "clean@b": "skipped", "report": "ran"}
    assert (root / "report.txt").read_text() == "raw\nalpha, edited\nraw\nbeta\n"
    assert git(root, "status", "--porcelain", "--untracked-files=no").strip() == "M data/a.txt"  # index, HEAD untouched


@pytest.mark.timeout(RAY_TIMEOUT)
def test_fail_fast_and_keep_going_on_ray(ray_cluster, step, tmp_path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        f"  broken:\n    cmd: {step_cmd(step, 'fail:4')}\n    outs: [broken.txt]\n"
        f"  after:\n    cmd: {step_cmd(step, 'write:after.txt=x')}\n    deps: [broken.txt]\n    outs: [after.txt]\n"
        f"  apart:\n    cmd: {step_cmd(step, 'sleep:1', 'write:apart.txt=y')}\n    outs: [apart.txt]\n"
    )
    commit_all(root, "pipeline")
    doc = _ray_run(root, ray_cluster, "-j", "1", code=3)
    assert statuses(doc)["broken"] == "failed" and statuses(doc)["after"] == "not run"
    assert "exited with code 4" in doc["stages"][0]["error"]
    assert "[broken] failing on purpose" in doc["_stderr"]
    kept = _ray_run(root, ray_cluster, "--keep-going", code=3)
    assert statuses(kept) == {"broken": "failed", "after": "not run", "apart": "ran"}
    assert (root / "apart.txt").read_text() == "y\n"
    assert set(lock_doc(root)) == {"apart"}


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_ray_client_address_runs_the_stages_there(ray_cluster, step, tmp_path) -> None:
    root = tmp_path / "proj"
    _one_stage_project(root, step, "print:through-ray-client", "write:out.txt=made")
    # ray://HOST:PORT: the head's Ray Client server (the `ray[client]` extra); the stage runs on the cluster
    proc = mlops(
        "run", "--json", "--executor", "ray", "--address", ray_cluster.client_address, cwd=root, timeout=RAY_TIMEOUT
    )
    assert statuses(first_json(proc.stdout)) == {"make": "ran"}
    assert "[make] through-ray-client" in proc.stderr
    assert (root / "out.txt").read_text() == "made\n" and "make" in lock_doc(root)


def test_an_address_nothing_listens_on_fails_at_once(repo) -> None:
    pytest.importorskip("ray")
    write_pipeline(repo.root, {"a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]}})
    commit_all(repo.root, "pipeline")
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = mlops("run", "--executor", "ray", "--address", f"127.0.0.1:{port}", cwd=repo.root, code=3)
    assert f"could not reach Ray at 127.0.0.1:{port}" in proc.stderr
    bad = mlops("run", "--executor", "ray", "--address", "head-without-port", cwd=repo.root, code=2)
    assert "not HOST:PORT" in bad.stderr


@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_worker_whose_inputs_differ_records_nothing(ray_cluster, step, tmp_path) -> None:
    """A declared env: value set for the driver and not on the cluster's workers gives the worker
    another run key: its outputs were made from other inputs, and are not recorded under this one."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        f"  tuned:\n    cmd: {step_cmd(step, 'write:tuned.txt=x')}\n    outs: [tuned.txt]\n"
        "    env: [MLOPS_TEST_DRIVER_ONLY]\n"
    )
    commit_all(root, "pipeline")
    proc = mlops(
        "run",
        "--json",
        "--executor",
        "ray",
        "--address",
        ray_cluster.address,
        cwd=root,
        code=3,
        env={"MLOPS_TEST_DRIVER_ONLY": "on the driver"},
        timeout=RAY_TIMEOUT,
    )
    doc = first_json(proc.stdout)
    assert statuses(doc) == {"tuned": "failed"}
    assert "an input differs on the worker" in doc["stages"][0]["error"]
    assert not (root / "pipeline.lock").exists() and not (root / "tuned.txt").exists()
