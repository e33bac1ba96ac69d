"""`mlops diff` between real git commits and the workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from datakit import assert_error, commit_all, git, mlops, xxh


@pytest.fixture
def history(repo, cli, tree):
    """Two commits: v1 then v2 (one file modified, one added, one deleted, a new tracked file)."""
    tree({"data/keep.txt": "keep\n", "data/change.txt": "v1\n", "data/sub/gone.txt": "gone\n", "model.bin": b"m1"})
    cli("add", "data", "model.bin")
    v1 = commit_all(repo.root, "v1")
    Path("data/change.txt").write_text("v2\n")
    Path("data/sub/gone.txt").unlink()
    Path("data/sub/new.txt").write_text("new\n")
    Path("model.bin").write_bytes(b"m2")
    tree({"extra.csv": "e\n"})
    cli("add", "data", "model.bin", "extra.csv")
    v2 = commit_all(repo.root, "v2")
    return v1, v2


EXPECTED = [
    ("modified", "data/change.txt"),
    ("added", "data/sub/new.txt"),
    ("deleted", "data/sub/gone.txt"),
    ("added", "extra.csv"),
    ("modified", "model.bin"),
]


def _pairs(doc):
    return sorted((c["change"], c["path"]) for c in doc["changes"])


def test_diff_two_revisions(repo, cli, history):
    v1, v2 = history
    doc = json.loads(cli("diff", v1, v2, "--json").stdout)
    assert doc["a"] == v1 and doc["b"] == v2 and doc["notes"] == []
    assert _pairs(doc) == sorted(EXPECTED)
    by_path = {c["path"]: c for c in doc["changes"]}
    assert by_path["data/change.txt"]["old"] == xxh(b"v1\n") and by_path["data/change.txt"]["new"] == xxh(b"v2\n")
    assert by_path["data/sub/new.txt"]["old"] is None and by_path["data/sub/gone.txt"]["new"] is None
    assert by_path["model.bin"]["old"] == xxh(b"m1")
    # the same through symbolic revisions, and the reverse
    assert _pairs(json.loads(cli("diff", "HEAD~1", "HEAD", "--json").stdout)) == sorted(EXPECTED)
    reverse = _pairs(json.loads(cli("diff", "HEAD", "HEAD~1", "--json").stdout))
    flip = {"added": "deleted", "deleted": "added", "modified": "modified"}
    assert reverse == sorted((flip[c], p) for c, p in EXPECTED)


def test_diff_plain_output_is_tab_separated_sorted(repo, cli, history):
    out = cli("diff", "HEAD~1", "HEAD").stdout
    lines = out.splitlines()
    assert sorted(lines, key=lambda line: line.split("\t")[1]) == lines
    assert set(lines) == {f"{c}\t{p}" for c, p in EXPECTED}


def test_diff_head_tilde_against_workspace(repo, cli, history):
    doc = json.loads(cli("diff", "HEAD~1", "--json").stdout)
    assert doc["b"] == "workspace"
    assert _pairs(doc) == sorted(EXPECTED)
    # uncommitted workspace edits show up against HEAD
    Path("data/keep.txt").write_text("edited\n")
    doc = json.loads(cli("diff", "--json").stdout)
    assert _pairs(doc) == [("modified", "data/keep.txt")]
    Path("data/keep.txt").write_text("keep\n")
    assert json.loads(cli("diff", "--json").stdout)["changes"] == []
    assert "no changes in tracked data" in cli("diff").stderr


def test_diff_same_revision_is_empty(repo, cli, history):
    v1, _ = history
    doc = json.loads(cli("diff", v1, v1, "--json").stdout)
    assert doc["changes"] == []


def test_diff_without_manifest_in_cache_notes_it(repo, cli, history):
    v1, _ = history
    old_top = yaml.safe_load(git(repo.root, "show", f"{v1}:data.mlops"))["hash"]
    (repo.root / ".mlops" / "cache" / old_top[:2] / old_top[2:]).unlink()
    doc = json.loads(cli("diff", v1, "HEAD", "--json").stdout)
    assert ("modified", "data") in _pairs(doc)  # whole-directory entry
    assert any(old_top in note for note in doc["notes"])


def test_diff_subprocess_unknown_revision(repo, history):
    for args in (["nosuchrev"], ["HEAD", "nosuchrev"], ["HEAD~99"], ["deadbeefdeadbeef"]):
        proc = mlops("diff", *args, cwd=repo.root, code=2)
        line = assert_error(proc.stderr, "unknown git revision")
        assert args[-1] in line
        assert proc.stdout == ""


def test_diff_unknown_revision_with_json_prints_error_document(repo, history):
    proc = mlops("diff", "nosuchrev", "--json", cwd=repo.root, code=2)
    doc = json.loads(proc.stdout)
    assert doc["error"] == "unknown_revision" and doc["exit_code"] == 2
    assert_error(proc.stderr, "nosuchrev")


def test_diff_in_repo_without_commits(repo, cli, tree):
    tree({"a.txt": "a"})
    cli("add", "a.txt")
    proc = mlops("diff", cwd=repo.root, code=2)
    assert_error(proc.stderr, "HEAD")


def test_diff_subprocess_between_commits(repo, history):
    v1, v2 = history
    proc = mlops("diff", v1, v2, cwd=repo.root)
    assert set(proc.stdout.splitlines()) == {f"{c}\t{p}" for c, p in EXPECTED}


def test_diff_after_tracked_data_removed_from_git(repo, cli, history):
    Path("extra.csv.mlops").unlink()
    Path("extra.csv").unlink()
    commit_all(repo.root, "drop extra")
    doc = json.loads(cli("diff", "HEAD~1", "HEAD", "--json").stdout)
    assert _pairs(doc) == [("deleted", "extra.csv")]
    shutil.rmtree("data")  # data missing from the workspace, pointer still there
    doc = json.loads(cli("diff", "HEAD", "--json").stdout)
    assert ("deleted", "data/keep.txt") in _pairs(doc) or ("deleted", "data") in _pairs(doc)


@pytest.mark.parametrize("rev", ["HEAD:", "HEAD^{tree}", "HEAD:data.mlops"])
def test_diff_revision_that_is_not_a_commit(repo, history, rev):
    proc = mlops("diff", rev, cwd=repo.root, code=None)
    assert proc.returncode == 2, proc.stderr
    assert_error(proc.stderr, rev)
