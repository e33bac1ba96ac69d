"""`mlops stage exec`: one stage anywhere, machines that share only git and the S3 test server.

Every "machine" is a `git clone` in its own folder with its own object cache; the only things
they share are the origin repository and the moto S3 server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipekit import cache_has, cache_objects, counts, git, mlops, pid_alive, step_cmd, wait_for, write_pipeline

from mlops.store.hashing import hash_bytes

STORE = "store"


class World:
    def __init__(self, tmp: Path, step: Path, bucket: Any, mlops_bin: Any) -> None:
        self.tmp = tmp
        self.step = step
        self.bucket = bucket
        self.mlops_bin = mlops_bin
        self.counter = tmp / "counter.txt"
        self.origin = tmp / "origin"
        self.sha = ""

    def cmd(self, *ops: str) -> str:
        return step_cmd(self.step, *ops)

    def mlops(self, *args: str, cwd: Path, code: int | None = 0, timeout: float = 180) -> Any:
        return self.mlops_bin(*args, cwd=cwd, code=code, timeout=timeout)

    def exec_json(self, stage: str, cwd: Path, *extra: str, code: int = 0) -> dict[str, Any]:
        done = self.mlops("stage", "exec", stage, "--rev", self.sha, "--json", *extra, cwd=cwd, code=code)
        return json.loads(done.stdout) if code == 0 else {"_stderr": done.stderr, "_stdout": done.stdout}

    def clone(self, name: str) -> Path:
        path = self.tmp / name
        subprocess.run(["git", "clone", "-q", str(self.origin), str(path)], check=True)
        return path

    def entries(self) -> set[str]:
        return self.bucket.keys(f"{STORE}/refs/runcache/")

    def objects_intact(self) -> None:
        """Every object on the remote is whole: named by the hash of its bytes."""
        for key in self.bucket.keys(f"{STORE}/"):
            if "/refs/" in key:
                continue
            body = self.bucket.client.get_object(Bucket=self.bucket.name, Key=key)["Body"].read()
            parts = key.split("/")
            assert hash_bytes(body) == parts[-2] + parts[-1], key


@pytest.fixture
def world(tmp_path: Path, step: Path, s3_bucket: Any, mlops_bin: Any) -> World:
    w = World(tmp_path, step, s3_bucket, mlops_bin)
    origin = w.origin
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "data").mkdir()
    (origin / "data" / "raw.txt").write_text("raw data\n")
    (origin / "params.yaml").write_text("train:\n  epochs: 3\n")
    w.mlops("init", cwd=origin)
    w.mlops("add", "data/raw.txt", cwd=origin)
    w.mlops("remote", "add", "storage", f"s3://{s3_bucket.name}/{STORE}", "--default", cwd=origin)
    w.mlops("remote", "modify", "storage", "endpoint_url", s3_bucket.endpoint_url, cwd=origin)
    flag = tmp_path / "go"
    write_pipeline(
        origin,
        {
            "prep": {
                "cmd": w.cmd(
                    f"count:{w.counter}",
                    "print:preparing",
                    "copy:data/raw.txt=prep/clean.txt",
                    "append:prep/clean.txt=cleaned",
                ),
                "deps": ["data/raw.txt"],
                "outs": ["prep"],
            },
            "train": {
                "cmd": w.cmd(f"count:{w.counter}", "param:train.epochs=model/epochs.txt", "cat:prep=model/model.txt"),
                "deps": ["prep"],
                "params": ["train.epochs"],
                "outs": ["model"],
            },
            "bad": {"cmd": w.cmd(f"count:{w.counter}", "fail:3"), "deps": ["data/raw.txt"], "outs": ["bad.txt"]},
            "slow": {
                "cmd": w.cmd("write:slow/part.txt=partial", f"write:{tmp_path / 'slow-started'}=1", f"waitfor:{flag}"),
                "deps": ["data/raw.txt"],
                "outs": ["slow"],
            },
            "race": {
                "cmd": w.cmd(f"count:{w.counter}", f"waitfor:{flag}", "write:race/note.txt=x", "pid:race/pid.txt"),
                "deps": ["prep"],
                "outs": ["race"],
            },
        },
    )
    w.mlops("push", cwd=origin)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "pipeline")
    w.sha = git(origin, "rev-parse", "HEAD").strip()
    return w


def _untouched(clone: Path) -> None:
    """stage exec never changes the user's workspace: git sees nothing, no lock, no worktree left."""
    assert git(clone, "status", "--porcelain") == ""
    assert not (clone / "pipeline.lock").exists()
    assert not (clone / "prep").exists() and not (clone / "model").exists()
    assert len(git(clone, "worktree", "list").splitlines()) == 1
    leftovers = list((clone / ".mlops" / "tmp" / "exec").glob("wt-*")) if (clone / ".mlops/tmp/exec").exists() else []
    assert leftovers == []


@pytest.mark.timeout(480)
def test_stage_exec_on_two_machines_and_the_key_mlops_run_computes(world: World) -> None:
    a = world.clone("machine-a")
    prep = world.exec_json("prep", a)
    assert prep["status"] == "ran" and prep["stage"] == "prep" and prep["rev"] == world.sha
    assert [o["path"] for o in prep["outs"]] == ["prep"] and prep["run_id"]
    (world.tmp / "prep.json").write_text(json.dumps(prep))
    done = world.mlops(
        "stage", "exec", "train", "--rev", world.sha, "--json", "--upstream", f"@{world.tmp / 'prep.json'}", cwd=a
    )
    train = json.loads(done.stdout)
    assert train["status"] == "ran"
    assert "[train]" not in done.stdout and "running train" in done.stderr  # stdout: the manifest alone
    assert counts(world.counter) == ["prep", "train"]
    assert train["params"] == {"params.yaml": {"train.epochs": 3}}
    assert [(d["path"], d["hash"]) for d in train["deps"]] == [("prep", prep["outs"][0]["hash"])]
    assert len(world.entries()) == 2
    # each stage that ran is a run on the remote (its worktree, where it was recorded, is gone)
    runs = world.bucket.keys(f"{STORE}/refs/runs/")
    assert {f"{STORE}/refs/runs/{m['run_id']}.json" for m in (prep, train)} <= runs
    world.objects_intact()
    _untouched(a)

    # machine B: no manifest; prep's result is found through its key, train's in the shared run cache
    b = world.clone("machine-b")
    again = world.exec_json("train", b)
    assert again["status"] == "restored" and again["key"] == train["key"] and again["outs"] == train["outs"]
    assert again["run_id"] == train["run_id"]
    assert counts(world.counter) == ["prep", "train"]  # nothing ran
    assert cache_objects(b) == set()  # and nothing was fetched
    _untouched(b)

    # the key is the one `mlops run` computes for the stage in a clean workspace at that commit
    c = world.clone("machine-c")
    world.mlops("pull", cwd=c)
    world.mlops("run", "prep", "train", cwd=c)
    from mlops.pipeline.graph import build_graph
    from mlops.pipeline.params import ParamFiles
    from mlops.pipeline.spec import load_pipeline
    from mlops.pipeline.state import read_inputs
    from mlops.repo.repo import Repo

    repo = Repo(c)
    graph = build_graph(load_pipeline(c), c)
    for manifest in (prep, train):
        stage = graph.stage(manifest["stage"])
        assert read_inputs(repo, stage, ParamFiles(c)).run_key(stage) == manifest["key"]
    lock = yaml.safe_load((c / "pipeline.lock").read_text())
    assert lock["stages"]["train"]["outs"][0]["hash"] == train["outs"][0]["hash"]


@pytest.mark.timeout(360)
def test_failing_command_exits_3_and_publishes_nothing(world: World) -> None:
    a = world.clone("machine-a")
    failed = world.exec_json("bad", a, code=3)
    assert "stage 'bad' failed: its command exited with code 3" in failed["_stderr"]
    assert "[bad] failing on purpose" in failed["_stderr"]
    assert json.loads(failed["_stdout"])["exit_code"] == 3
    assert world.entries() == set()
    # an upstream stage with no result anywhere: could not complete
    missing = world.exec_json("race", a, code=3)
    assert "upstream stage 'prep' has no result in the run cache" in missing["_stderr"]
    assert counts(world.counter) == ["bad"]
    _untouched(a)
    # usage errors: an unknown stage, a revision nobody has
    assert "no stage 'nope'" in world.mlops("stage", "exec", "nope", "--rev", world.sha, cwd=a, code=2).stderr
    assert "not found" in world.mlops("stage", "exec", "prep", "--rev", "f" * 40, cwd=a, code=2).stderr


@pytest.mark.timeout(360)
def test_worker_killed_mid_stage_leaves_nothing_and_a_retry_completes(world: World) -> None:
    a = world.clone("machine-a")
    before = world.bucket.keys(f"{STORE}/")
    argv = [world.mlops_bin.__globals__["MLOPS_BIN"], "stage", "exec", "slow", "--rev", world.sha, "--json"]
    # SIGTERM (what Airflow and Kubernetes send): the command is stopped, nothing recorded, the worktree removed
    interrupted = subprocess.Popen(argv, cwd=a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (world.tmp / "slow-started").exists(), timeout=120, what="the slow stage to start")
        interrupted.send_signal(signal.SIGTERM)
        _, stderr = interrupted.communicate(timeout=60)
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
            interrupted.wait()
    assert interrupted.returncode == 143, stderr
    assert "stage 'slow' stopped by SIGTERM; nothing recorded" in stderr
    assert world.bucket.keys(f"{STORE}/") == before
    _untouched(a)
    (world.tmp / "slow-started").unlink()
    # SIGKILL: no chance to clean up
    proc = subprocess.Popen(
        [world.mlops_bin.__globals__["MLOPS_BIN"], "stage", "exec", "slow", "--rev", world.sha, "--json"],
        cwd=a,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        wait_for(lambda: (world.tmp / "slow-started").exists(), timeout=120, what="the slow stage to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert world.bucket.keys(f"{STORE}/") == before  # no entry, no object
    assert list((a / ".mlops" / "tmp" / "exec").glob("wt-*"))  # the killed run's worktree is left ...
    (world.tmp / "go").write_text("go")
    retry = world.exec_json("slow", a)
    assert retry["status"] == "ran"
    _untouched(a)  # ... and the next stage exec removed it
    assert len(world.entries()) == 1
    world.objects_intact()


@pytest.mark.timeout(480)
def test_two_machines_racing_on_one_key_leave_one_entry(world: World) -> None:
    a, b = world.clone("machine-a"), world.clone("machine-b")
    world.exec_json("prep", a)
    argv = [world.mlops_bin.__globals__["MLOPS_BIN"], "stage", "exec", "race", "--rev", world.sha, "--json"]
    procs = [
        subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cwd in (a, b)
    ]
    try:
        # both commands running at once (each counts itself first), then both go
        wait_for(lambda: counts(world.counter).count("race") == 2, timeout=150, what="both race commands to start")
        (world.tmp / "go").write_text("go")
        outs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs
    docs = [json.loads(o[0]) for o in outs]
    assert sorted(d["status"] for d in docs) == ["adopted", "ran"]
    assert docs[0]["outs"] == docs[1]["outs"] and docs[0]["run_id"] == docs[1]["run_id"]
    assert len([k for k in world.entries() if k.endswith(".json")]) == 2  # prep's and race's: one each
    world.objects_intact()


@pytest.mark.timeout(360)
def test_force_runs_the_command_and_adopts_the_entry_that_stands(world: World) -> None:
    a, b = world.clone("machine-a"), world.clone("machine-b")
    made = world.exec_json("prep", a)
    assert made["status"] == "ran"
    assert world.exec_json("prep", b)["status"] == "restored"
    assert counts(world.counter) == ["prep"]
    entries = world.entries()
    forced = world.exec_json("prep", b, "--force")
    assert counts(world.counter) == ["prep", "prep"]  # the command ran again ...
    # ... and the entry on the remote stands: this run adopts it (outputs and producing run)
    assert forced["status"] == "adopted"
    assert (forced["outs"], forced["run_id"]) == (made["outs"], made["run_id"])
    assert world.entries() == entries
    _untouched(b)


@pytest.mark.timeout(120)
def test_received_manifests_are_checked(world: World) -> None:
    a = world.clone("machine-a")
    good = {
        "format": 1,
        "stage": "prep",
        "rev": world.sha,
        "key": "0" * 32,
        "status": "ran",
        "run_id": None,
        "seconds": 1,
        "deps": [],
        "params": {},
        "env": {},
        "outs": [{"path": "prep", "hash": "1" * 32, "kind": "dir", "size": 1, "files": 1}],
    }
    bad_outs = [
        [{"path": "../../etc", "hash": "1" * 32, "kind": "dir", "size": 1, "files": 1}],
        [{"path": "model", "hash": "1" * 32, "kind": "dir", "size": 1, "files": 1}],  # not prep's output
        [{"path": "prep", "hash": "../../../x", "kind": "dir", "size": 1, "files": 1}],
        [{"path": ".git/hooks", "hash": "1" * 32, "kind": "dir", "size": 1, "files": 1}],
    ]
    for outs in bad_outs:
        doc = {**good, "outs": outs}
        done = world.mlops("stage", "exec", "train", "--rev", world.sha, "--upstream", json.dumps(doc), cwd=a, code=2)
        assert "not a stage manifest" in done.stderr
    huge = world.tmp / "huge.json"
    huge.write_text(json.dumps({**good, "pad": "x" * (2 << 20)}))
    done = world.mlops("stage", "exec", "train", "--rev", world.sha, "--upstream", f"@{huge}", cwd=a, code=2)
    assert "larger than" in done.stderr
    assert counts(world.counter) == []
    _untouched(a)


@pytest.mark.timeout(480)
def test_commits_reach_workers_from_origin_or_as_a_bundle(world: World) -> None:
    from mlops.errors import UsageError
    from mlops.pipeline.stage_exec import prepare_commit
    from mlops.repo.repo import Repo

    worker = world.clone("worker")  # cloned now: it lacks every later commit
    driver = world.clone("driver")
    repo = Repo(driver)
    assert prepare_commit(repo, allow_dirty=False, remote=None) == world.sha  # clean: HEAD itself

    # a new commit on origin: the worker fetches it from there
    (world.origin / "params.yaml").write_text("train:\n  epochs: 4\n")
    git(world.origin, "commit", "-qam", "epochs 4")
    world.sha = git(world.origin, "rev-parse", "HEAD").strip()
    assert world.exec_json("prep", worker)["status"] == "ran"
    assert world.exec_json("train", worker)["params"] == {"params.yaml": {"train.epochs": 4}}

    # a dirty driver: refused, naming the files
    (driver / "params.yaml").write_text("train:\n  epochs: 5\n")
    (driver / "notes.py").write_text("print('untracked, not ignored')\n")
    status_before = git(driver, "status", "--porcelain")
    with pytest.raises(UsageError) as refused:
        prepare_commit(repo, allow_dirty=False, remote=None)
    assert "params.yaml" in refused.value.message and refused.value.hint == "commit them, or pass --allow-dirty"
    # --allow-dirty: a snapshot commit, index and HEAD untouched, bundled to the remote
    snapshot = prepare_commit(repo, allow_dirty=True, remote="storage")
    head = git(driver, "rev-parse", "HEAD").strip()
    assert snapshot != head and git(driver, "status", "--porcelain") == status_before
    assert git(driver, "show", f"{snapshot}:notes.py") == "print('untracked, not ignored')\n"
    assert f"{STORE}/refs/git/{snapshot}.bundle" in world.bucket.keys(f"{STORE}/refs/git/")
    world.sha = snapshot
    # a fresh worker cannot fetch the snapshot from origin: it comes from the bundle; prep (unchanged) is
    # found by its key, and only train's own input (prep's output) is fetched, never prep's raw data
    fresh = world.clone("fresh-worker")
    ran = world.exec_json("train", fresh)
    assert ran["status"] == "ran" and ran["params"] == {"params.yaml": {"train.epochs": 5}}
    assert counts(world.counter) == ["prep", "train", "train"]
    raw = yaml.safe_load((fresh / "data" / "raw.txt.mlops").read_text())
    assert not cache_has(fresh, raw["hash"]) and cache_has(fresh, ran["deps"][0]["hash"])
    _untouched(fresh)


def test_a_dirty_tree_names_ten_files_then_how_many_more(repo: Any) -> None:
    from mlops.errors import UsageError
    from mlops.pipeline.stage_exec import prepare_commit

    for index in range(13):
        (repo.root / f"f{index:02}.txt").write_text("a\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "files")
    for index in range(13):
        (repo.root / f"f{index:02}.txt").write_text("b\n")
    (repo.root / "pipeline.lock").write_text("# a driver's own state is not a change\n")
    with pytest.raises(UsageError) as refused:
        prepare_commit(repo, allow_dirty=False, remote=None)
    assert "f00.txt, f01.txt" in refused.value.message and "f09.txt and 3 more" in refused.value.message
    assert refused.value.exit_code == 2


@pytest.mark.timeout(480)
def test_collect_writes_the_lock_mlops_run_would_and_then_run_runs_nothing(world: World) -> None:

    # a DAG of stages that all succeed: prep and train
    pipeline = yaml.safe_load((world.origin / "pipeline.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in ("prep", "train")}
    write_pipeline(world.origin, pipeline["stages"])
    git(world.origin, "commit", "-qam", "two stages")
    world.sha = git(world.origin, "rev-parse", "HEAD").strip()

    a = world.clone("machine-a")
    prep = world.exec_json("prep", a)
    train = world.exec_json("train", a, "--upstream", json.dumps(prep))
    assert counts(world.counter) == ["prep", "train"]

    # machine C collects: train's manifest given, prep's found by its key
    c = world.clone("machine-c")
    done = world.mlops("stage", "collect", "--rev", world.sha, "--manifest", json.dumps(train), "--json", cwd=c)
    result = json.loads(done.stdout)
    assert [s["status"] for s in result["stages"]] == ["restored", "restored"]
    assert result["pushed_runs"] == [result["run_id"]]
    assert f"{STORE}/refs/runs/{result['run_id']}.json" in world.bucket.keys(f"{STORE}/refs/runs/")
    run = json.loads(world.mlops("runs", "show", result["run_id"], "--json", cwd=c).stdout)
    assert run["source"] == "pipeline"

    # machine D runs the pipeline itself: the same pipeline.lock
    d = world.clone("machine-d")
    world.mlops("pull", cwd=d)
    world.mlops("run", cwd=d)
    assert (c / "pipeline.lock").read_text() == (d / "pipeline.lock").read_text()
    assert (c / "model" / "model.txt").read_text() == (d / "model" / "model.txt").read_text()
    assert counts(world.counter) == ["prep", "train", "prep", "train"]  # D ran them; collect ran nothing

    # on C, `mlops run` finds everything up to date
    again = json.loads(world.mlops("run", "--json", cwd=c).stdout)
    assert again.get("up_to_date") is True, again
    assert counts(world.counter) == ["prep", "train", "prep", "train"]
    # a HEAD that is not the revision: refused
    (c / "x.txt").write_text("x")
    git(c, "add", "x.txt")
    git(c, "commit", "-qm", "later")
    refused = world.mlops("stage", "collect", "--rev", world.sha, cwd=c, code=2)
    assert "not " + world.sha[:12] in refused.stderr


def test_without_a_remote_the_clone_works_alone(repo: Any) -> None:
    """No remote configured: the stage runs in the private worktree, its entry goes to this clone's
    run cache, and the next stage exec (or mlops run) restores it."""
    from mlops.pipeline.stage_exec import exec_stage
    from mlops.repo.repo import Repo

    (repo.root / "in.txt").write_text("in\n")
    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    exec_dir = repo.root / ".mlops" / "tmp" / "exec"
    exec_dir.mkdir(parents=True)
    (exec_dir / "wt-0123456789ab-dead.lock").write_text("")  # left by a run killed before its worktree existed
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    sha = git(repo.root, "rev-parse", "HEAD").strip()
    first = exec_stage(Repo(repo.root), "copy", rev="HEAD")
    assert (first.status, first.rev) == ("ran", sha)
    assert exec_stage(Repo(repo.root), "copy", rev=sha).status == "restored"
    assert not (repo.root / "out.txt").exists() and list(exec_dir.iterdir()) == []
    ran = json.loads(mlops("run", "--json", cwd=repo.root).stdout)
    assert [s["status"] for s in ran["stages"]] == ["restored"]
    # a frozen stage never runs: its outputs are what pipeline.lock at the commit records
    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n    frozen: true\n"
    )
    (repo.root / "in.txt").write_text("changed\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "frozen")
    frozen = exec_stage(Repo(repo.root), "copy", rev="HEAD")
    assert frozen.status == "restored" and frozen.outs == first.outs


def test_links_and_set_aside_folders_in_the_exec_folder_are_cleared_never_followed(repo: Any, tmp_path: Path) -> None:
    """A symlink planted as .mlops/tmp/exec/wt-* once made every stage exec fail (remove_dir renamed
    the link onto a folder: an internal error) and pointed a removal outside the clone; a worktree
    set aside by a removal that was killed, and a git bundle's temp file of a killed run, stayed
    forever. They go; what a link points to stays."""
    from mlops.pipeline.stage_exec import exec_stage
    from mlops.repo.repo import Repo

    (repo.root / "in.txt").write_text("in\n")
    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "keep.txt").write_text("keep\n")
    exec_dir = repo.root / ".mlops" / "tmp" / "exec"
    exec_dir.mkdir(parents=True)
    (exec_dir / "wt-planted").symlink_to(victim)
    (exec_dir / "wt-planted2.lock").symlink_to(victim / "sub" / "keep.txt")
    # a bundle's temp file: one left by a killed run (old) goes, one a live run may be using stays
    stale, fresh = exec_dir / "bundle-dead.bundle", exec_dir / "bundle-live.bundle"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (1, 1))
    aside = exec_dir / ".tmp-mlops-wt-0123456789ab-dead.gone.x1"
    (aside / "out").mkdir(parents=True)
    (aside / "out" / "f.txt").write_text("left by a killed removal\n")

    assert exec_stage(Repo(repo.root), "copy", rev="HEAD").status == "ran"
    assert list(exec_dir.iterdir()) == [fresh]
    assert (victim / "sub" / "keep.txt").read_text() == "keep\n"
    assert len(git(repo.root, "worktree", "list").splitlines()) == 1


def test_collect_never_files_a_manifests_outputs_under_a_key_they_were_not_made_under(
    repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest whose key is not the one computed here (a declared env value differs) was taken
    as given AND recorded in this clone's run cache under the key computed here: a later `mlops run`
    with MODE=b restored outputs made with MODE=a. Collect still takes them, with a warning; the
    run cache stays clean, so that run runs the stage."""
    from mlops.pipeline import runcache
    from mlops.pipeline.stage_collect import collect
    from mlops.pipeline.stage_exec import exec_stage
    from mlops.repo.repo import Repo

    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  mode:\n    cmd: sh -c 'echo $MODE > out.txt'\n    env: [MODE]\n    outs: [out.txt]\n"
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    monkeypatch.setenv("MODE", "a")
    made = exec_stage(Repo(repo.root), "mode", rev="HEAD")
    monkeypatch.setenv("MODE", "b")
    done = collect(Repo(repo.root), rev="HEAD", manifests=[made])
    assert any("not entered in this clone's run cache" in w for w in done.warnings)
    assert (repo.root / "out.txt").read_text() == "a\n"
    assert runcache.local_keys(Repo(repo.root)) == [made.key]  # exec's own entry, under its own key
    ran = json.loads(mlops("run", "--json", cwd=repo.root, env={"MODE": "b"}).stdout)
    assert [s["status"] for s in ran["stages"]] == ["ran"]
    assert (repo.root / "out.txt").read_text() == "b\n"


def test_collect_records_the_image_digest_as_mlops_run_does(repo: Any) -> None:
    """Collect wrote pipeline.lock without the stage's image digest; `mlops run` then found the
    stage out of date ('image changed') right after a DAG had run it."""
    from mlops.pipeline.stage_collect import collect
    from mlops.pipeline.stage_exec import exec_stage
    from mlops.repo.repo import Repo

    digest = "sha256:" + "ab" * 32
    (repo.root / "pipeline.yaml").write_text(
        f"stages:\n  one:\n    cmd: echo 1 > out.txt\n    outs: [out.txt]\n    image: img@{digest}\n"
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    made = exec_stage(Repo(repo.root), "one", rev="HEAD", image_digest=digest)
    collect(Repo(repo.root), rev="HEAD", manifests=[made])
    assert yaml.safe_load((repo.root / "pipeline.lock").read_text())["stages"]["one"]["image"] == digest
    again = json.loads(mlops("run", "--json", cwd=repo.root).stdout)
    assert again.get("up_to_date") is True, again


def test_an_error_in_the_pipeline_at_the_commit_names_the_commits_file(repo: Any) -> None:
    """An error in pipeline.yaml at the commit named a file in the private worktree
    (.mlops/tmp/exec/wt-.../pipeline.yaml), gone by the time the user read it; it is named
    as git names a commit's file: <sha>:pipeline.yaml."""
    (repo.root / "pipeline.yaml").write_text("stages:\n  one:\n    cmd: echo\n    outs: [a-${x}]\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    sha = git(repo.root, "rev-parse", "HEAD").strip()
    done = mlops("stage", "exec", "one", "--rev", sha, "--json", cwd=repo.root, code=2)
    error = json.loads(done.stdout)
    assert error["message"].startswith(f"{sha[:12]}:pipeline.yaml:"), error
    assert ".mlops" not in done.stdout + done.stderr


def test_bundling_a_commit_leaves_another_drivers_snapshot_ref_alone(repo: Any, tmp_path: Path) -> None:
    """The bundle's temporary ref was refs/mlops/snapshots/<sha>, the same for every driver of one
    commit: one finishing deleted it under another still bundling (git bundle then failed, exit 3).
    Each call now has a ref of its own, and removes only that."""
    from mlops.pipeline.stage_exec import BUNDLE_REF, prepare_commit
    from mlops.remotes.base import open_remote
    from mlops.repo.repo import Repo

    (repo.root / "a.txt").write_text("a\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "a")
    sha = git(repo.root, "rev-parse", "HEAD").strip()
    other = f"refs/mlops/snapshots/{sha}"  # what another driver bundling this commit holds
    git(repo.root, "update-ref", other, sha)
    remote = open_remote("store", {"url": str(tmp_path / "store")}, root=repo.root)
    assert prepare_commit(Repo(repo.root), allow_dirty=False, remote=remote) == sha  # on no origin: bundled
    assert remote.get_ref(BUNDLE_REF.format(sha=sha))
    assert git(repo.root, "for-each-ref", "--format=%(refname)", "refs/mlops/").split() == [other]


def test_a_local_entry_naming_other_outputs_is_a_miss(repo: Any) -> None:
    """stage exec took this clone's run-cache entry for the key whatever outputs it named (mlops
    run takes one only when it names exactly the stage's outputs), reported them and would have
    published them to the shared run cache. Now such an entry is a miss: the stage runs."""
    from mlops.pipeline import runcache
    from mlops.pipeline.stage_exec import exec_stage
    from mlops.repo.repo import Repo

    (repo.root / "pipeline.yaml").write_text("stages:\n  one:\n    cmd: echo 1 > out.txt\n    outs: [out.txt]\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    first = exec_stage(Repo(repo.root), "one", rev="HEAD")
    wrong = tuple(replace(o, path="elsewhere.txt") for o in first.outs)
    runcache.record(Repo(repo.root), first.key, wrong)
    again = exec_stage(Repo(repo.root), "one", rev="HEAD")
    assert again.status == "ran" and [o.path for o in again.outs] == ["out.txt"]


@pytest.mark.timeout(240)
def test_a_sigkilled_stage_exec_takes_its_command_with_it(repo: Any, step: Path, tmp_path: Path) -> None:
    """`mlops stage exec` killed with SIGKILL (no handler runs): the stage's command, which would
    otherwise go on writing for minutes, ends at once (the lifeline watcher `mlops run` gives every
    stage kills its process group), and the next stage exec removes the worktree it left."""
    from tests.conftest import MLOPS_BIN

    pidfile, go = tmp_path / "command.pid", tmp_path / "go"
    (repo.root / "pipeline.yaml").write_text(
        f"stages:\n  slow:\n    cmd: {step_cmd(step, f'pid:{pidfile}', f'waitfor:{go}', 'write:out.txt=x')}\n"
        "    outs: [out.txt]\n"
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "p")
    proc = subprocess.Popen(
        [MLOPS_BIN, "stage", "exec", "slow", "--rev", "HEAD", "--json"],
        cwd=repo.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 120, "the command to start")
        command = int(pidfile.read_text())
        assert pid_alive(command)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not pid_alive(command), 30, "the killed stage exec's command to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    exec_dir = repo.root / ".mlops" / "tmp" / "exec"
    assert list(exec_dir.glob("wt-*"))  # left by the killed run ...
    go.touch()
    mlops("stage", "exec", "slow", "--rev", "HEAD", cwd=repo.root, timeout=120)
    assert list(exec_dir.glob("wt-*")) == []  # ... removed by the next one
    assert len(git(repo.root, "worktree", "list").splitlines()) == 1


def _snapshot_refs(root: Path) -> list[str]:
    return git(root, "for-each-ref", "--format=%(refname)", "refs/mlops/snapshots/").split()


def _bundling_driver(root: Path, remote_dir: Path, path: str) -> subprocess.Popen[bytes]:
    """A real process that snapshots the dirty workspace (--allow-dirty) and bundles it for the remote."""
    code = (
        "import sys\n"
        "from mlops.pipeline.stage_exec import prepare_commit\n"
        "from mlops.remotes.base import open_remote\n"
        "from mlops.repo.repo import find_repo\n"
        "repo = find_repo()\n"
        "prepare_commit(repo, allow_dirty=True, remote=open_remote('store', {'url': sys.argv[1]}, root=repo.root))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(remote_dir)],
        cwd=root,
        env={**os.environ, "PATH": path},
        start_new_session=True,  # its group: the held git goes with it
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the driver gets no chance to clean up (its held git goes with it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.timeout(240)
def test_a_killed_drivers_snapshot_ref_is_cleaned_never_a_live_one(repo: Any, tmp_path: Path) -> None:
    """A driver killed (SIGKILL) while it bundled a --allow-dirty snapshot left its temporary ref
    refs/mlops/snapshots/<sha>-<token>, which kept the snapshot's objects from git's gc forever. The
    next remote run (prepare_commit) or `mlops gc` deletes it; a driver bundling at that moment keeps its own."""
    from mlops.pipeline.stage_exec import prepare_commit
    from mlops.remotes.base import open_remote
    from mlops.repo.repo import Repo

    (repo.root / "a.txt").write_text("a\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "a")
    (repo.root / "a.txt").write_text("a, edited\n")  # dirty: --allow-dirty snapshots and bundles it
    # a git that holds `git bundle` (the moment the driver's ref exists) until the test lets it go
    real_git, bin_dir, held, release = shutil.which("git"), tmp_path / "bin", tmp_path / "held", tmp_path / "release"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do if [ "$a" = bundle ]; then touch "{held}.$$"; '
        f'while [ ! -e "{release}" ]; do sleep 0.05; done; fi; done\n'
        f'exec {real_git} "$@"\n'
    )
    (bin_dir / "git").chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    remote_dir = tmp_path / "store"

    killed = _bundling_driver(repo.root, remote_dir, path)
    try:
        wait_for(lambda: list(tmp_path.glob("held.*")), 120, "the first driver to bundle")
    finally:
        _kill_group(killed)
    stale = _snapshot_refs(repo.root)
    assert len(stale) == 1  # what the killed driver left
    for marker in tmp_path.glob("held.*"):
        marker.unlink()
    live = _bundling_driver(repo.root, remote_dir, path)
    try:
        wait_for(lambda: list(tmp_path.glob("held.*")), 120, "the second driver to bundle")
        ours = [ref for ref in _snapshot_refs(repo.root) if ref not in stale]
        assert len(ours) == 1
        # the next run: the killed driver's ref goes, the live driver's stays
        remote = open_remote("store", {"url": str(remote_dir)}, root=repo.root)
        (repo.root / "a.txt").write_text("a\n")  # clean again: this run bundles nothing of its own
        prepare_commit(Repo(repo.root), allow_dirty=False, remote=remote, send=False)
        assert _snapshot_refs(repo.root) == ours
        release.touch()
        assert live.wait(timeout=120) == 0
    finally:
        if live.poll() is None:
            _kill_group(live)
    assert _snapshot_refs(repo.root) == []  # the live driver removed its own

    # `mlops gc` cleans one too
    release.unlink()
    for marker in tmp_path.glob("held.*"):
        marker.unlink()
    (repo.root / "a.txt").write_text("a, edited again\n")
    again = _bundling_driver(repo.root, remote_dir, path)
    try:
        wait_for(lambda: list(tmp_path.glob("held.*")), 120, "the third driver to bundle")
    finally:
        _kill_group(again)
    assert len(_snapshot_refs(repo.root)) == 1
    mlops("gc", cwd=repo.root)
    assert _snapshot_refs(repo.root) == []
