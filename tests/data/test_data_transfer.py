"""push / pull / fetch with a local-directory remote, clones made with real `git clone`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from datakit import (
    assert_error,
    bad_objects,
    cache_objects,
    commit_all,
    corrupt_object,
    git,
    mlops,
    pointer_doc,
    read_files,
    store_objects,
    workspace_temps,
    xxh,
)

FILES = {
    "data/train/a.csv": "x,y\n1,2\n",
    "data/train/b.csv": "x,y\n3,4\n",
    "data/test/c.csv": "x,y\n5,6\n",
    "data/dup.csv": "x,y\n1,2\n",  # same bytes as a.csv
    "model.bin": b"\x00" * 3000,
}


@pytest.fixture
def pushed_repo(repo, cli, tree, remote_dir):
    tree(FILES)
    cli("add", "data", "model.bin")
    cli("remote", "add", "store", str(remote_dir), "--default")
    commit_all(repo.root, "data v1")
    return repo


def _clone(repo_root: Path, tmp_path: Path, name: str = "clone") -> Path:
    dest = tmp_path / name
    git(tmp_path, "clone", "-q", str(repo_root), str(dest))
    return dest


def test_push_sends_only_missing_objects(pushed_repo, cli, remote_dir):
    local = cache_objects(pushed_repo.root)
    first = json.loads(cli("push", "--json").stdout)
    assert first["remote"] == "store" and first["direction"] == "push"
    assert first["transferred"] == len(local) and first["present"] == 0 and first["missing_locally"] == []
    assert first["bytes"] == sum(p.stat().st_size for p in local.values())
    assert set(store_objects(remote_dir)) == set(local)
    assert bad_objects(remote_dir) == []
    assert all(p.stat().st_mode & 0o222 == 0 for p in store_objects(remote_dir).values())

    # top-down: the remote has both roots (the data/ manifest and model.bin), so nothing
    # below them is asked for; --full asks for every object
    second = json.loads(cli("push", "--json").stdout)
    assert second["transferred"] == 0 and second["bytes"] == 0 and second["present"] == 2
    assert cli("push").stdout == "pushed 0 object(s), 0 B (2 already there) via store\n"
    full = json.loads(cli("push", "--full", "--json").stdout)
    assert full["transferred"] == 0 and full["present"] == len(local)

    # one changed file: only it and the manifests on its path travel
    Path("data/train/b.csv").write_text("x,y\n9,9\n")
    cli("add", "data")
    third = json.loads(cli("push", "--json").stdout)
    assert third["transferred"] == 1 + 2  # b.csv + manifests of data/ and data/train/
    assert set(store_objects(remote_dir)) == set(cache_objects(pushed_repo.root))


def test_push_named_target_only(pushed_repo, cli, remote_dir):
    doc = json.loads(cli("push", "model.bin", "--json").stdout)
    assert doc["transferred"] == 1
    assert set(store_objects(remote_dir)) == {xxh(b"\x00" * 3000)}


def test_pull_into_fresh_clone_restores_data(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    clone = _clone(pushed_repo.root, tmp_path)
    assert not (clone / "data").exists() and (clone / "data.mlops").is_file()
    proc = mlops("pull", cwd=clone)
    assert proc.stdout.splitlines()[0].startswith(f"fetched {len(cache_objects(pushed_repo.root))} object(s)")
    assert "checked out 5 file(s)" in proc.stdout
    assert read_files(clone / "data") == read_files(pushed_repo.root / "data")
    assert (clone / "model.bin").read_bytes() == b"\x00" * 3000
    mlops("status", "--check", cwd=clone)
    mlops("verify", cwd=clone)
    assert set(cache_objects(clone)) == set(cache_objects(pushed_repo.root))
    again = json.loads(mlops("pull", "--json", cwd=clone).stdout)
    assert again["transferred"] == 0 and again["checkout"]["changed_files"] == 0


def test_fetch_fills_cache_without_touching_workspace(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    clone = _clone(pushed_repo.root, tmp_path)
    before = sorted(p.relative_to(clone).as_posix() for p in clone.rglob("*") if ".git" not in p.parts)
    doc = json.loads(mlops("fetch", "--json", cwd=clone).stdout)
    assert doc["direction"] == "fetch" and doc["transferred"] == len(cache_objects(pushed_repo.root))
    assert set(cache_objects(clone)) == set(cache_objects(pushed_repo.root))
    after = sorted(
        p.relative_to(clone).as_posix() for p in clone.rglob("*") if ".git" not in p.parts and ".mlops" not in p.parts
    )
    assert after == [p for p in before if not p.startswith(".mlops")]  # nothing new in the workspace
    assert not (clone / "data").exists()
    # the cache now suffices: checkout works with the remote gone
    shutil.rmtree(remote_dir)
    mlops("checkout", cwd=clone)
    assert read_files(clone / "data") == read_files(pushed_repo.root / "data")
    mlops("status", "--check", cwd=clone)


def test_fetch_leaves_local_edits_alone(pushed_repo, cli, remote_dir):
    cli("push")
    Path("data/train/a.csv").write_text("my edit\n")
    shutil.rmtree(".mlops/cache")
    cli("fetch")
    assert Path("data/train/a.csv").read_text() == "my edit\n"
    cli("status", "--check", code=1)
    cli("verify")


def test_pull_refuses_corrupt_remote_object(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    digest = xxh(b"x,y\n5,6\n")
    corrupt_object(store_objects(remote_dir)[digest])
    clone = _clone(pushed_repo.root, tmp_path)
    proc = mlops("pull", cwd=clone, code=3)
    line = assert_error(proc.stderr, digest)
    assert "corrupt" in line and "store" in line
    local = cache_objects(clone)
    assert digest not in local
    assert bad_objects(clone / ".mlops" / "cache") == []  # nothing corrupt landed
    assert not (clone / "data" / "test" / "c.csv").exists()
    assert workspace_temps(clone) == []
    staging = clone / ".mlops" / "cache" / ".tmp"
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # no half-downloaded leftovers
    mlops("verify", cwd=clone)
    # fetch is refused the same way
    proc = mlops("fetch", cwd=clone, code=3)
    assert_error(proc.stderr, digest)
    # once the remote holds good bytes again, pull completes
    good = store_objects(remote_dir)[digest]
    good.chmod(0o644)
    good.unlink()
    cli("push")  # the remote's manifests say it is complete: a plain push sends nothing
    assert digest not in store_objects(remote_dir)
    cli("push", "--full")  # checks every object and repairs the remote
    mlops("pull", cwd=clone)
    assert read_files(clone / "data") == read_files(pushed_repo.root / "data")


def test_pull_refuses_corrupt_remote_manifest(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    top = pointer_doc(Path("data.mlops"))["hash"]
    corrupt_object(store_objects(remote_dir)[top], b'{"format":"mlops-tree/1","entries":[]}')
    clone = _clone(pushed_repo.root, tmp_path)
    proc = mlops("pull", cwd=clone, code=3)
    assert_error(proc.stderr, top)
    assert top not in cache_objects(clone)
    assert bad_objects(clone / ".mlops" / "cache") == []
    assert not (clone / "data").exists()


def test_push_refuses_corrupt_local_object(pushed_repo, cli, remote_dir):
    digest = xxh(b"x,y\n3,4\n")
    corrupt_object(cache_objects(pushed_repo.root)[digest])
    result = cli("push", code=3)
    assert_error(result.stderr, digest, "corrupt")
    assert digest not in store_objects(remote_dir)
    assert bad_objects(remote_dir) == []


def test_push_reports_objects_missing_locally(pushed_repo, cli, remote_dir):
    digest = xxh(b"x,y\n3,4\n")
    obj = cache_objects(pushed_repo.root)[digest]
    obj.chmod(0o644)
    obj.unlink()
    doc = json.loads(cli("push", "--json").stdout)
    assert doc["missing_locally"] == [digest]
    result = cli("push")
    assert "1 referenced object(s) are not in this cache" in result.stderr


def test_push_all_commits_sends_history(pushed_repo, cli, remote_dir):
    old = xxh(b"\x00" * 3000)
    Path("model.bin").write_bytes(b"\x01" * 3000)
    cli("add", "model.bin")
    commit_all(pushed_repo.root, "model v2")
    cli("push")
    assert old not in store_objects(remote_dir)
    cli("push", "--all-commits")
    assert old in store_objects(remote_dir)


def test_unreachable_remote_exits_3_with_one_line(repo, cli, tree, tmp_path):
    tree({"a.txt": "a"})
    cli("add", "a.txt")
    nowhere = tmp_path / "no-such-mount" / "remote"
    cli("remote", "add", "far", str(nowhere), "--default")
    shutil.rmtree(".mlops/cache")  # so that fetch and pull do need the remote
    for command in ("push", "fetch", "pull"):
        proc = mlops(command, cwd=repo.root, code=3)
        assert_error(proc.stderr, "far", "unreachable", str(nowhere.parent))
        assert proc.stdout == ""
    assert not nowhere.parent.exists()  # nothing was created on the way
    doc = json.loads(mlops("push", "--json", cwd=repo.root, code=3).stdout)
    assert doc["error"] == "remote" and doc["exit_code"] == 3


def test_no_remote_configured_exits_2(repo, cli, tree):
    tree({"a.txt": "a"})
    cli("add", "a.txt")
    for command in ("push", "fetch", "pull"):
        proc = mlops(command, cwd=repo.root, code=2)
        assert_error(proc.stderr, "no remote")
        assert "mlops remote add" in proc.stderr
    proc = mlops("push", "-r", "ghost", cwd=repo.root, code=2)
    assert_error(proc.stderr, "ghost")


def test_relative_remote_path_is_resolved_from_repo_root(repo, cli, tree):
    tree({"sub/a.txt": "a"})
    cli("add", "sub/a.txt")
    cli("remote", "add", "rel", "../rel-remote", "--default")
    os.chdir("sub")
    cli("push")
    assert xxh(b"a") in store_objects(repo.root.parent / "rel-remote")


def test_pull_of_one_target_only(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    clone = _clone(pushed_repo.root, tmp_path)
    mlops("pull", "model.bin", cwd=clone)
    assert (clone / "model.bin").read_bytes() == b"\x00" * 3000
    assert not (clone / "data").exists()
    assert set(cache_objects(clone)) == {xxh(b"\x00" * 3000)}


def test_pull_names_an_object_missing_on_the_remote(pushed_repo, cli, remote_dir, tmp_path):
    cli("push")
    digest = xxh(b"x,y\n5,6\n")
    gone = store_objects(remote_dir)[digest]
    gone.chmod(0o644)
    gone.unlink()
    clone = _clone(pushed_repo.root, tmp_path)
    proc = mlops("pull", cwd=clone, code=3)
    assert_error(proc.stderr, digest, "store")
    assert "mlops push --full" in proc.stderr  # the hint says how to repair the remote
    assert bad_objects(clone / ".mlops" / "cache") == []
    # a full push from the repo that has it repairs the remote
    assert json.loads(cli("push", "--full", "--json").stdout)["transferred"] == 1
    mlops("pull", cwd=clone)
    mlops("status", "--check", cwd=clone)
