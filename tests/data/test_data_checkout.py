"""`mlops checkout`: restoring deleted data, following git, --rev, refusing to lose work,
removing extra files, and refusing corrupt objects (then `mlops verify`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from datakit import (
    assert_error,
    cache_objects,
    commit_all,
    corrupt_object,
    git,
    mlops,
    pointer_doc,
    read_files,
    workspace_temps,
    xxh,
)

V1 = {"data/a.txt": "a1\n", "data/b/b.txt": "b1\n", "data/b/c/c.txt": "c1\n", "data/old.txt": "old\n"}


@pytest.fixture
def two_versions(repo, cli, tree):
    tree(V1)
    cli("add", "data")
    v1 = commit_all(repo.root, "v1")
    Path("data/a.txt").write_text("a2\n")
    Path("data/old.txt").unlink()
    tree({"data/b/c/new.txt": "new\n", "data/d/d.txt": "d2\n"})
    cli("add", "data")
    v2 = commit_all(repo.root, "v2")
    return v1, v2


V2_FILES = {"a.txt": b"a2\n", "b/b.txt": b"b1\n", "b/c/c.txt": b"c1\n", "b/c/new.txt": b"new\n", "d/d.txt": b"d2\n"}
V1_FILES = {k.removeprefix("data/"): v.encode() for k, v in V1.items()}


def test_checkout_after_rm_rf_of_tracked_dir(repo, cli, two_versions):
    shutil.rmtree("data")
    assert "deleted\tdata" in cli("status", code=0).stdout
    doc = json.loads(cli("checkout", "--json").stdout)
    assert doc["changed_files"] == len(V2_FILES)
    assert doc["targets"][0]["placed"] == len(V2_FILES) and doc["targets"][0]["removed"] == 0
    assert read_files(Path("data")) == V2_FILES
    cli("status", "--check")


def test_checkout_follows_git_checkout_of_older_commit(repo, cli, two_versions):
    v1, v2 = two_versions
    git(repo.root, "checkout", "-q", v1)
    cli("status", "--check", code=1)  # the pointer moved, the data did not yet
    out = cli("checkout")
    assert out.stdout.startswith("updated\tdata\t(")
    assert read_files(Path("data")) == V1_FILES
    assert not Path("data/d").exists() and not Path("data/b/c/new.txt").exists()  # removed, empty folder pruned
    cli("status", "--check")
    git(repo.root, "checkout", "-q", "main")
    cli("checkout")
    assert read_files(Path("data")) == V2_FILES
    cli("status", "--check")


def test_checkout_rev_uses_that_revisions_pointers(repo, cli, two_versions):
    v1, _ = two_versions
    cli("checkout", "--rev", v1)
    assert read_files(Path("data")) == V1_FILES
    assert pointer_doc(Path("data.mlops"))["hash"] != xxh(b"")  # the pointer file itself is untouched
    assert git(repo.root, "status", "--porcelain") == ""
    cli("status", "--check", code=1)  # workspace is v1, pointer says v2
    cli("checkout", "--rev", "HEAD", "data")
    assert read_files(Path("data")) == V2_FILES
    proc = mlops("checkout", "--rev", "no-such-rev", cwd=repo.root, code=2)
    assert_error(proc.stderr, "no-such-rev")


def test_checkout_refuses_to_overwrite_uncached_change_without_force(repo, cli, two_versions):
    Path("data/b/b.txt").write_text("my precious edit\n")
    result = cli("checkout", code=2)
    line = assert_error(result.stderr, "data/b/b.txt")
    assert "not in the cache" in line
    assert "--force" in result.stderr  # the hint says how to go on
    assert Path("data/b/b.txt").read_text() == "my precious edit\n"  # untouched
    assert workspace_temps(repo.root) == []
    # subprocess: same refusal, one line, no traceback
    proc = mlops("checkout", "data", cwd=repo.root, code=2)
    assert_error(proc.stderr, "data/b/b.txt")
    cli("checkout", "--force")
    assert read_files(Path("data")) == V2_FILES


def test_checkout_refuses_to_overwrite_uncached_single_file(repo, cli, tree):
    tree({"model.bin": b"v1"})
    cli("add", "model.bin")
    Path("model.bin").write_bytes(b"local, not added")
    result = cli("checkout", "model.bin", code=2)
    assert_error(result.stderr, "model.bin")
    assert Path("model.bin").read_bytes() == b"local, not added"
    cli("checkout", "model.bin", "-f")
    assert Path("model.bin").read_bytes() == b"v1"


def test_checkout_removes_files_not_in_snapshot(repo, cli, two_versions):
    # an extra file whose bytes are in the cache: nothing is lost, so no --force needed
    tree_bytes = b"a2\n"
    Path("data/b/c/extra-copy.txt").write_bytes(tree_bytes)
    os.makedirs("data/e/f", exist_ok=True)
    Path("data/e/f/also.txt").write_text("old\n")  # v1 content, in the cache
    doc = json.loads(cli("checkout", "--json").stdout)
    assert doc["targets"][0]["removed"] == 2 and doc["targets"][0]["placed"] == 0
    assert read_files(Path("data")) == V2_FILES
    assert not Path("data/e").exists()  # emptied folders go too
    # an extra file that exists nowhere else needs --force
    Path("data/scratch.txt").write_text("unsaved\n")
    result = cli("checkout", code=2)
    assert_error(result.stderr, "data/scratch.txt")
    assert Path("data/scratch.txt").exists()
    cli("checkout", "--force")
    assert read_files(Path("data")) == V2_FILES


def test_checkout_replaces_file_where_dir_belongs(repo, cli, two_versions):
    shutil.rmtree("data")
    Path("data").write_text("a2\n")  # cached bytes: safe to replace
    cli("checkout")
    assert read_files(Path("data")) == V2_FILES


def test_checkout_missing_object_exits_3_and_hints_pull(repo, cli, two_versions):
    shutil.rmtree("data")
    digest = xxh(b"d2\n")
    cache_objects(repo.root)[digest].unlink()
    proc = mlops("checkout", cwd=repo.root, code=3)
    assert_error(proc.stderr, "data", digest)
    assert "mlops pull" in proc.stderr
    assert not Path("data").exists() or read_files(Path("data")) == {}


def test_corrupt_object_checkout_exits_3_places_nothing_then_verify_exits_1(repo, cli, tree):
    tree(
        {
            "data/good1.txt": "good one\n",
            "data/bad.txt": "this object will rot\n",
            "data/sub/good2.txt": "g2\n",
            "other.txt": "unrelated\n",
        }
    )
    cli("add", "data", "other.txt")
    digest = xxh(b"this object will rot\n")
    obj = cache_objects(repo.root)[digest]
    corrupt_object(obj)
    shutil.rmtree("data")

    proc = mlops("checkout", "data", cwd=repo.root, code=3)
    line = assert_error(proc.stderr, "data/bad.txt", digest)
    assert "corrupt" in line
    placed = [os.path.join(f, n) for f, _d, ns in os.walk("data") for n in ns] if Path("data").exists() else []
    assert placed == [], f"checkout placed files for a target with a corrupt object: {placed}"
    assert workspace_temps(repo.root) == []

    # in-process too (same contract), with --json: an error document on stdout
    result = cli("checkout", "data", "--json", code=3)
    err = json.loads(result.stdout)
    assert err["error"] == "corrupt_object" and err["object"] == digest and err["file"] == "data/bad.txt"

    verify = mlops("verify", cwd=repo.root, code=1)
    assert verify.stdout.startswith(f"corrupt\t{digest}\t") and verify.stdout.count("\n") == 1
    assert "bad.txt" in verify.stdout
    assert "error: 1 corrupt object(s) in the cache" in verify.stderr.splitlines()
    doc = json.loads(mlops("verify", "--json", cwd=repo.root, code=1).stdout)
    assert doc["ok"] is False and doc["missing"] == []
    assert [(c["hash"], c["problem"]) for c in doc["corrupt"]] == [(digest, "corrupt")]
    assert doc["corrupt"][0]["used_by"].endswith("bad.txt")
    assert doc["checked"] == len(cache_objects(repo.root))

    # the way out: put good bytes back by re-adding the data, then all is well
    obj.chmod(0o644)
    obj.unlink()
    tree({"data/good1.txt": "good one\n", "data/bad.txt": "this object will rot\n", "data/sub/good2.txt": "g2\n"})
    cli("add", "data")
    assert cli("verify").exit_code == 0
    cli("status", "--check")


def test_corrupt_object_of_single_file_target(repo, cli, tree):
    tree({"m.bin": b"model bytes" * 100})
    cli("add", "m.bin")
    digest = xxh(b"model bytes" * 100)
    corrupt_object(cache_objects(repo.root)[digest])  # same size, one byte flipped
    Path("m.bin").unlink()
    proc = mlops("checkout", cwd=repo.root, code=3)
    assert_error(proc.stderr, "m.bin", digest)
    assert not Path("m.bin").exists()
    assert workspace_temps(repo.root) == []


def test_verify_clean_and_json(repo, cli, tree):
    tree({"data/x.txt": "x", "data/y.txt": "y"})
    cli("add", "data")
    doc = json.loads(cli("verify", "--json").stdout)
    assert doc == {"ok": True, "checked": 3, "corrupt": [], "missing": []}


def test_verify_reports_missing_referenced_object(repo, cli, tree):
    tree({"data/x.txt": "x", "data/y.txt": "y"})
    cli("add", "data")
    cache_objects(repo.root)[xxh(b"y")].unlink()
    doc = json.loads(cli("verify", "--json").stdout)  # missing is not corruption: exit 0
    assert [(m["hash"], m["problem"]) for m in doc["missing"]] == [(xxh(b"y"), "missing")]
    assert doc["missing"][0]["used_by"].endswith("y.txt")


def test_verify_names_the_workspace_path_that_uses_a_bad_object(repo, cli, tree):
    tree({"data/x.txt": "x", "data/y.txt": "y"})
    cli("add", "data")
    cache_objects(repo.root)[xxh(b"y")].unlink()
    corrupt_object(cache_objects(repo.root)[xxh(b"x")])
    doc = json.loads(cli("verify", "--json", code=1).stdout)
    assert doc["missing"][0]["used_by"] == "data/y.txt"
    assert doc["corrupt"][0]["used_by"] == "data/x.txt"


def test_pointer_file_name_is_accepted_as_target(repo, cli, two_versions):
    v1, _ = two_versions
    cli("status", "data.mlops", "--check")
    cli("checkout", "--rev", v1, "data.mlops")
    assert read_files(Path("data")) == V1_FILES


def test_checkout_rev_of_untracked_path_is_refused(repo, cli, two_versions):
    v1, _ = two_versions
    assert_error(cli("checkout", "ghost", code=2).stderr, "ghost")
    result = cli("checkout", "--rev", v1, "ghost", code=2)
    assert_error(result.stderr, "ghost")
