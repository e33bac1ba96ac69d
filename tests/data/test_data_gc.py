"""`mlops gc`: unreferenced objects go, --dry-run removes nothing, --all-commits keeps history."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from datakit import cache_objects, commit_all, git, mlops, xxh


@pytest.fixture
def two_versions(repo, cli, tree):
    """v1 then v2 of data/ and model.bin; returns (objects only v1 uses, objects v2 uses)."""
    tree({"data/same.txt": "same\n", "data/sub/v.txt": "v1\n", "model.bin": b"m1" * 100})
    cli("add", "data", "model.bin")
    v1_objects = set(cache_objects(repo.root))
    commit_all(repo.root, "v1")
    Path("data/sub/v.txt").write_text("v2\n")
    Path("model.bin").write_bytes(b"m2" * 100)
    cli("add", "data", "model.bin")
    commit_all(repo.root, "v2")
    all_objects = set(cache_objects(repo.root))
    # every v1 object but same.txt changed: v.txt, model.bin and both manifests (data/, data/sub/)
    only_v1 = v1_objects - {xxh(b"same\n")}
    return only_v1, all_objects - only_v1


def test_gc_removes_unreferenced_objects(repo, cli, two_versions):
    only_v1, v2 = two_versions
    assert len(only_v1) == 4  # v1's v.txt, model, data/ and data/sub/ manifests
    assert len(v2) == 5  # same.txt, v2.txt, model v2, and the two new manifests
    doc = json.loads(cli("gc", "--json").stdout)
    assert doc["removed"] == 4 and doc["kept"] == len(v2) and doc["dry_run"] is False
    assert doc["freed_bytes"] > 0 and doc["unexpanded"] == []
    assert set(cache_objects(repo.root)) == v2
    cli("status", "--check")
    assert cli("verify").exit_code == 0
    again = json.loads(cli("gc", "--json").stdout)
    assert again["removed"] == 0


def test_gc_dry_run_removes_nothing(repo, cli, two_versions):
    only_v1, _ = two_versions
    before = set(cache_objects(repo.root))
    out = cli("gc", "--dry-run").stdout
    assert out.startswith("would remove 4 object(s)")
    doc = json.loads(cli("gc", "-n", "--json").stdout)
    assert doc["dry_run"] is True and doc["removed"] == 4
    assert set(cache_objects(repo.root)) == before


def test_gc_all_commits_keeps_history(repo, cli, two_versions):
    only_v1, v2 = two_versions
    doc = json.loads(cli("gc", "--all-commits", "--json").stdout)
    assert doc["removed"] == 0
    assert set(cache_objects(repo.root)) == only_v1 | v2
    cli("checkout", "--rev", "HEAD~1")  # history still checks out
    cli("checkout")
    cli("gc")
    assert set(cache_objects(repo.root)) == v2
    assert cli("verify").exit_code == 0


def test_gc_all_commits_keeps_history_when_only_pointers_are_committed(repo, cli, tree):
    """The same, in a history that never committed .mlops/ (sidesteps the --all-commits bug above)."""
    tree({"data/same.txt": "same\n", "data/sub/v.txt": "v1\n", "model.bin": b"m1" * 100})
    cli("add", "data", "model.bin")
    git(repo.root, "add", "data.mlops", "model.bin.mlops", ".gitignore")
    git(repo.root, "commit", "-q", "-m", "v1")
    v1 = set(cache_objects(repo.root))
    Path("data/sub/v.txt").write_text("v2\n")
    Path("model.bin").write_bytes(b"m2" * 100)
    cli("add", "data", "model.bin")
    git(repo.root, "add", "data.mlops", "model.bin.mlops")
    git(repo.root, "commit", "-q", "-m", "v2")
    everything = set(cache_objects(repo.root))
    Path("junk.txt").write_text("never committed\n")
    cli("add", "junk.txt")
    Path("junk.txt.mlops").unlink()  # an object nothing references, not even history
    doc = json.loads(cli("gc", "--all-commits", "--json").stdout)
    assert doc["removed"] == 1 and set(cache_objects(repo.root)) == everything
    assert v1 <= everything
    cli("gc")
    assert not (v1 - {xxh(b"same\n")}) & set(cache_objects(repo.root))
    assert cli("verify").exit_code == 0
    cli("status", "--check")


def test_gc_removes_leftover_cache_temp_files(repo, cli, tree):
    # every writer holds the store lock shared, so under gc's exclusive hold any temp file,
    # old or new, is a leftover of a process that died
    tree({"a.txt": "a"})
    cli("add", "a.txt")
    tmp = Path(".mlops/cache/.tmp")
    tmp.mkdir(exist_ok=True)
    old = tmp / ".tmp-mlops-old"
    new = tmp / ".tmp-mlops-new"
    old.write_bytes(b"left by a crash")
    new.write_bytes(b"left by a crash a moment ago")
    past = time.time() - 2 * 86400
    os.utime(old, (past, past))
    assert json.loads(cli("gc", "--dry-run", "--json").stdout)["temp_files_removed"] == 0
    assert old.exists() and new.exists()
    doc = json.loads(cli("gc", "--json").stdout)
    assert doc["temp_files_removed"] == 2
    assert not old.exists() and not new.exists()


def test_gc_subprocess_keeps_referenced_and_verify_clean(repo, cli, two_versions):
    _, v2 = two_versions
    proc = mlops("gc", cwd=repo.root)
    assert proc.stdout.startswith("removed 4 object(s)")
    assert set(cache_objects(repo.root)) == v2
    mlops("verify", cwd=repo.root)
