"""Pointer files and pipeline.lock come through git: a crafted one never writes outside its place.

A committed pointer file whose name or ``path:`` field leaves the repository, names .git or
.mlops, or makes a pointer file its own data is refused (exit 3, one line naming it). A
pipeline.lock output is placed only when pipeline.yaml declares that stage and path, and never
when it is pipeline.yaml, pipeline.lock, a params file or a pointer file; gc and push treat
only declared outputs as references.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops.store.hashing import hash_bytes

DATA = b"some data\n"
PWNED = b"#!/bin/sh\necho pwned\n"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def commit(root: Path, guard: Any, *paths: str) -> None:
    git(root, "add", "-f", *paths)
    git(root, "commit", "-q", "-m", "received")
    guard.expect_git_change()


def cache(repo: Any, *blobs: bytes) -> None:
    with repo.objects.batch() as batch:
        for blob in blobs:
            batch.add_bytes(blob)


def file_pointer(name: str, data: bytes = PWNED) -> str:
    return f"format: 1\npath: {json.dumps(name)}\nkind: file\nhash: {hash_bytes(data)}\nsize: {len(data)}\n"


def refused_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "refused" in line]
    assert len(lines) == 1, stderr
    return lines[0]


# --- pointer files -----------------------------------------------------------------------------

BAD_POINTERS = [
    pytest.param("evil.mlops", file_pointer("../victim.txt"), "field 'path' of pointer file evil.mlops", id="path-up"),
    pytest.param("evil.mlops", file_pointer(".git"), "field 'path' of pointer file evil.mlops", id="path-dot-git"),
    pytest.param("evil.mlops", file_pointer(".mlops"), "field 'path' of pointer file evil.mlops", id="path-dot-mlops"),
    pytest.param("evil.mlops", file_pointer("a\nb"), "field 'path' of pointer file evil.mlops", id="path-newline"),
    pytest.param("evil.mlops", file_pointer("/etc/x"), "field 'path' of pointer file evil.mlops", id="path-absolute"),
    pytest.param(".git.mlops", file_pointer(".git"), "pointer file .git.mlops", id="target-dot-git"),
    pytest.param("hooks/.git.mlops", file_pointer(".git"), "pointer file hooks/.git.mlops", id="nested-dot-git"),
    pytest.param("x.mlops.mlops", file_pointer("x.mlops"), "pointer file x.mlops.mlops", id="data-is-a-pointer"),
]


@pytest.mark.parametrize(("pointer_rel", "text", "where"), BAD_POINTERS)
def test_checkout_refuses_a_committed_pointer_that_escapes(guard, repo, cli, pointer_rel, text, where) -> None:
    cache(repo, PWNED)
    path = repo.root / pointer_rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    commit(repo.root, guard, pointer_rel)
    before = sorted(p.relative_to(repo.root).as_posix() for p in repo.root.rglob("*") if ".git" not in p.parts)
    line = refused_line(cli("checkout", code=3).stderr)
    assert where in line, line
    # and at a revision: the pointer files are read from git's tree, not the workspace
    path.unlink()
    line = refused_line(cli("checkout", "--rev", "HEAD", code=3).stderr)
    assert where in line and "at revision HEAD" in line, line
    path.write_text(text)
    after = sorted(p.relative_to(repo.root).as_posix() for p in repo.root.rglob("*") if ".git" not in p.parts)
    assert after == before
    guard.check()


def test_two_pointer_files_may_not_name_one_path(guard, repo, cli) -> None:
    cache(repo, DATA, PWNED)
    (repo.root / "a.mlops").write_text(file_pointer("b", PWNED))
    (repo.root / "b.mlops").write_text(file_pointer("b", DATA))
    commit(repo.root, guard, "a.mlops", "b.mlops")
    line = refused_line(cli("checkout", code=3).stderr)
    assert "'b'" in line and "appears twice" in line
    assert not (repo.root / "b").exists()


def test_a_file_pointer_never_follows_a_planted_link_out(guard, repo, cli, tmp_path) -> None:
    cache(repo, PWNED)
    (repo.root / "victim.txt.mlops").write_text(file_pointer("victim.txt"))
    commit(repo.root, guard, "victim.txt.mlops")
    (repo.root / "victim.txt").symlink_to(tmp_path / "victim.txt")
    line = refused_line(cli("checkout", "--force", code=3).stderr)
    assert "victim.txt" in line and "outside the repository" in line
    guard.check()


def test_pull_refuses_a_pointer_that_escapes_on_both_remotes(hostile_remote, guard, repo, cli) -> None:
    hostile_remote.put_object(hash_bytes(PWNED), PWNED)
    (repo.root / "evil.mlops").write_text(file_pointer("../../victim.txt"))
    commit(repo.root, guard, "evil.mlops")
    line = refused_line(cli("pull", code=3).stderr)
    assert "field 'path' of pointer file evil.mlops" in line
    guard.check()


# --- pipeline.lock ----------------------------------------------------------------------------------

PIPELINE = """\
format: 1
stages:
  train:
    cmd: python train.py
    params: [lr]
    outs:
      - model.pkl
      - metrics.json: {cache: false}
"""


def lock_text(*outs: tuple[str, str, bytes], stage: str = "train") -> str:
    rows = "".join(
        f"    - path: {json.dumps(path)}\n      hash: {json.dumps(digest)}\n      kind: file\n      size: {len(data)}\n"
        for path, digest, data in outs
    )
    return f"format: 1\nstages:\n  {stage}:\n    cmd: python train.py\n    outs:\n{rows}"


def good_out() -> tuple[str, str, bytes]:
    return ("model.pkl", hash_bytes(DATA), DATA)


def setup_pipeline(repo: Any, guard: Any, lock: str) -> None:
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    (repo.root / "params.yaml").write_text("lr: 0.1\n")
    (repo.root / "pipeline.lock").write_text(lock)
    commit(repo.root, guard, "pipeline.yaml", "params.yaml", "pipeline.lock")


BAD_OUTPUTS = [
    pytest.param(".git/hooks/post-checkout", "managed by git or mlops", id="into-git-hooks"),
    pytest.param("../victim.txt", "may not be '..'", id="up"),
    pytest.param(".mlops/config.yaml", "managed by git or mlops", id="into-mlops"),
    pytest.param("pipeline.yaml", "says what the pipeline runs", id="pipeline-yaml"),
    pytest.param("pipeline.lock", "says what the pipeline runs", id="pipeline-lock"),
    pytest.param("params.yaml", "says what the pipeline runs", id="params-file"),
    pytest.param("model.pkl.mlops", "a pointer file is never replaced", id="pointer-file"),
    pytest.param("notes.txt", "it is not declared", id="undeclared-output"),
]


@pytest.mark.parametrize(("out", "problem"), BAD_OUTPUTS)
def test_checkout_refuses_a_lock_output_that_is_not_declared_or_protected(guard, repo, cli, out, problem) -> None:
    cache(repo, DATA, PWNED)
    setup_pipeline(repo, guard, lock_text(good_out(), (out, hash_bytes(PWNED), PWNED)))
    protected = {p: (repo.root / p).read_bytes() for p in ("pipeline.yaml", "pipeline.lock", "params.yaml")}
    line = refused_line(cli("checkout", code=3).stderr)
    assert problem in line and "pipeline.lock stage 'train'" in line and out.split("/")[-1] in line, line
    assert not (repo.root / "model.pkl").exists(), "refused whole: not even the declared output"
    assert not (repo.root / "notes.txt").exists()
    assert {p: (repo.root / p).read_bytes() for p in protected} == protected
    line = refused_line(cli("checkout", "--rev", "HEAD", code=3).stderr)
    assert "HEAD:pipeline.lock stage 'train'" in line, line
    guard.check()


def test_checkout_refuses_a_stage_the_pipeline_does_not_have(guard, repo, cli) -> None:
    cache(repo, DATA)
    setup_pipeline(repo, guard, lock_text(good_out(), stage="evil"))
    line = refused_line(cli("checkout", code=3).stderr)
    assert "stage 'evil' is not in pipeline.yaml" in line
    assert not (repo.root / "model.pkl").exists()


def test_checkout_refuses_a_lock_hash_that_is_a_path(guard, repo, cli) -> None:
    cache(repo, DATA)
    setup_pipeline(repo, guard, lock_text(("model.pkl", "../../../victim", DATA)))
    line = refused_line(cli("checkout", code=3).stderr)
    assert "'../../../victim'" in line and "not a xxh3-128 hash" in line
    assert not (repo.root / "model.pkl").exists()
    guard.check()


def test_checkout_places_a_declared_lock_output(guard, repo, cli) -> None:
    """The rule refuses what is crafted, not what the pipeline produced."""
    cache(repo, DATA)
    setup_pipeline(repo, guard, lock_text(good_out()))
    cli("checkout")
    assert (repo.root / "model.pkl").read_bytes() == DATA


@pytest.mark.parametrize(("out", "problem"), [BAD_OUTPUTS[0], BAD_OUTPUTS[-1]])
def test_pull_refuses_bad_lock_outputs_on_both_remotes(hostile_remote, guard, repo, cli, out, problem) -> None:
    for blob in (DATA, PWNED):
        hostile_remote.put_object(hash_bytes(blob), blob)
    setup_pipeline(repo, guard, lock_text(good_out(), (out, hash_bytes(PWNED), PWNED)))
    line = refused_line(cli("pull", code=3).stderr)
    assert problem in line and "pipeline.lock stage 'train'" in line
    assert not (repo.root / "model.pkl").exists() and not (repo.root / "notes.txt").exists()
    guard.check()


def test_gc_and_push_take_only_declared_lock_outputs(guard, repo, cli, remote_dir) -> None:
    """An output pipeline.yaml does not declare is no reference: gc does not keep its object,
    push does not send it."""
    cache(repo, DATA, PWNED)
    setup_pipeline(repo, guard, lock_text(good_out(), ("notes.txt", hash_bytes(PWNED), PWNED)))
    cli("remote", "add", "storage", str(remote_dir), "--default")
    cli("push")
    sent = {p.parent.name + p.name for p in remote_dir.rglob("*") if p.is_file()}
    assert hash_bytes(DATA) in sent and hash_bytes(PWNED) not in sent
    cli("gc")
    assert repo.objects.exists(hash_bytes(DATA)) and not repo.objects.exists(hash_bytes(PWNED))
