"""The shared run cache on a remote (issue 14): ``runcache.publish``, ``remote_lookup``, ``push_entries``.

Every "machine" is a separate ``git clone`` with its own cache; the remote is a local folder or
the moto S3 server on 127.0.0.1. Stages run for real through the ``mlops`` console script.
"""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlops.data.transfer import get_remote
from mlops.errors import MissingObjectError
from mlops.pipeline import runcache
from mlops.repo.repo import Repo, find_repo

# a stage whose output differs on every run: two machines with the same key make different bytes
PIPELINE = """stages:
  train:
    cmd: python -c "import os; open('model.bin', 'wb').write(os.urandom(64))"
    deps: [data.txt]
    outs: [model.bin]
"""


@pytest.fixture(params=["local", "s3"])
def origin(request: pytest.FixtureRequest, repo: Repo, tmp_path: Path, mlops_bin: Any) -> Repo:
    """A committed project whose default remote is a local folder or a bucket on the moto server."""
    if request.param == "local":
        mlops_bin("remote", "add", "team", str(tmp_path / "remote"), "--default", cwd=repo.root)
    else:
        bucket = request.getfixturevalue("s3_bucket")
        mlops_bin("remote", "add", "team", f"s3://{bucket.name}/store", "--default", cwd=repo.root)
        mlops_bin("remote", "modify", "team", "endpoint_url", bucket.endpoint_url, cwd=repo.root)
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    (repo.root / "data.txt").write_text("rows\n")
    subprocess.run(["git", "add", "-A"], cwd=repo.root, check=True)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=repo.root, check=True)
    return find_repo(repo.root)


def clone(origin: Repo, tmp_path: Path, name: str) -> Repo:
    folder = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(origin.root), str(folder)], check=True)
    return find_repo(folder)


def ran(mlops_bin: Any, root: Path) -> tuple[str, runcache.CacheHit]:
    """Run the pipeline there; the stage's key and its local entry."""
    doc = json.loads(mlops_bin("run", "--json", cwd=root).stdout)
    assert [s["status"] for s in doc["stages"]] == ["ran"]
    repo = find_repo(root)
    (key,) = runcache.local_keys(repo)
    hit = runcache.lookup_entry(repo, key)
    assert hit is not None
    return key, hit


def test_publish_once_and_the_loser_adopts_the_winner(origin: Repo, tmp_path: Path, mlops_bin: Any) -> None:
    ann, bob = clone(origin, tmp_path, "ann"), clone(origin, tmp_path, "bob")
    key, ann_hit = ran(mlops_bin, ann.root)
    bob_key, bob_hit = ran(mlops_bin, bob.root)
    assert bob_key == key and bob_hit.outs != ann_hit.outs  # same inputs, other bytes

    mlops_bin("push", cwd=ann.root)  # objects first
    remote = get_remote(ann)
    assert runcache.remote_lookup(remote, key) is None
    first = runcache.publish(ann, remote, key, ann_hit.outs, run_id=ann_hit.run_id)
    assert first.created and first.hit.outs == ann_hit.outs

    mlops_bin("push", cwd=bob.root)
    second = runcache.publish(bob, get_remote(bob), key, bob_hit.outs, run_id=bob_hit.run_id)
    assert not second.created
    assert second.hit.outs == ann_hit.outs and second.hit.run_id == ann_hit.run_id  # the winner's
    assert runcache.lookup_entry(bob, key, need_objects=False) == second.hit  # bob adopted it
    assert runcache.remote_lookup(get_remote(bob), key, outs=["model.bin"]) == second.hit


def test_publish_refuses_an_entry_whose_objects_are_not_there(origin: Repo, tmp_path: Path, mlops_bin: Any) -> None:
    ann = clone(origin, tmp_path, "ann")
    key, hit = ran(mlops_bin, ann.root)
    remote = get_remote(ann)
    with pytest.raises(MissingObjectError, match="was not published"):
        runcache.publish(ann, remote, key, hit.outs)
    assert remote.list_refs(runcache.REMOTE_PREFIX) == []


@pytest.mark.timeout(180)
def test_racing_publishers_leave_one_entry(origin: Repo, tmp_path: Path, mlops_bin: Any) -> None:
    machines = [clone(origin, tmp_path, f"m{i}") for i in range(3)]
    hits = []
    for machine in machines:
        key, hit = ran(mlops_bin, machine.root)
        mlops_bin("push", cwd=machine.root)
        hits.append(hit)
    start = threading.Barrier(len(machines))

    def publish(index: int) -> runcache.Published:
        remote = get_remote(machines[index])
        start.wait()
        return runcache.publish(machines[index], remote, key, hits[index].outs, run_id=hits[index].run_id)

    with ThreadPoolExecutor(len(machines)) as pool:
        results = list(pool.map(publish, range(len(machines))))
    assert [r.created for r in results].count(True) == 1
    winner = next(r.hit for r in results if r.created)
    assert all(r.hit == winner for r in results)
    for machine in machines:  # every machine's run cache now names the one winner
        assert runcache.lookup_entry(machine, key, need_objects=False) == winner


def test_push_entries_sends_objects_then_entries(origin: Repo, tmp_path: Path, mlops_bin: Any) -> None:
    ann = clone(origin, tmp_path, "ann")
    key, hit = ran(mlops_bin, ann.root)
    pushed = runcache.push_entries(ann)
    assert pushed.created == (key,) and pushed.present == () and pushed.skipped == ()
    remote = get_remote(ann)
    assert remote.missing([o.hash for o in hit.outs if o.hash]) == set()
    assert runcache.remote_lookup(remote, key) == hit
    again = runcache.push_entries(ann)
    assert again.created == () and again.present == (key,)
