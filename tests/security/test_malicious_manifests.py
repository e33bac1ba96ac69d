"""A hostile remote serves crafted tree manifests: `mlops pull` refuses the whole snapshot, writes nothing.

Each test plants raw manifests on the remote (both kinds: a local folder and the moto S3
server) the way someone with write access to the bucket would, commits a pointer file that
names the top one, and pulls. The pull must exit 3 with one line naming the entry and the
tree it came from; no file of the snapshot may appear, nothing beside the repository may
change and .git must be intact (``guard``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlops.store.hashing import hash_bytes
from mlops.store.tree import TREE_FORMAT

PWNED = b"#!/bin/sh\necho pwned > /tmp/pwned\n"
OK = b"good data\n"


def manifest(rows: Any) -> bytes:
    return json.dumps({"format": TREE_FORMAT, "entries": rows}, separators=(",", ":"), ensure_ascii=False).encode()


def file_row(name: Any, data: bytes = PWNED, executable: int = 1) -> list[Any]:
    return [name, "f", hash_bytes(data), len(data), executable]


def plant_tree(remote: Any, data: bytes, *objects: bytes) -> str:
    """Plant a manifest and the file objects it names; returns the manifest's hash."""
    for blob in objects:
        remote.put_object(hash_bytes(blob), blob)
    digest = hash_bytes(data)
    remote.put_object(digest, data)
    return digest


def commit_pointer(repo_root: Path, guard: Any, digest: str, *, name: str = "images", files: int = 2) -> None:
    """Commit the pointer file a teammate (or the attacker) pushed to git."""
    (repo_root / f"{name}.mlops").write_text(
        f"format: 1\npath: {name}\nkind: dir\nhash: {digest}\nsize: 10\nfiles: {files}\n"
    )
    git(repo_root, "add", f"{name}.mlops")
    git(repo_root, "commit", "-q", "-m", "data")
    guard.expect_git_change()


def git(cwd: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def refused_line(stderr: str) -> str:
    """The one line of the refusal (the error; a hint line may follow)."""
    lines = [line for line in stderr.splitlines() if "refused" in line or "not a valid tree manifest" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_nothing_placed(repo_root: Path) -> None:
    assert not os.path.lexists(repo_root / "images"), "a file of the refused snapshot was written"
    assert not (repo_root / ".git" / "hooks" / "pre-commit").exists()


BAD_NAMES = [
    pytest.param("../.git/hooks/pre-commit", "a name may not contain '/'", id="dotdot-into-git-hooks"),
    pytest.param(".git", "managed by git or mlops", id="dot-git"),
    pytest.param(".GIT", "managed by git or mlops", id="dot-git-upper"),
    pytest.param(".mlops", "managed by git or mlops", id="dot-mlops"),
    # what macOS (HFS+ ignores zero-width code points) or Windows (NTFS drops trailing dots and
    # spaces, knows 8.3 short names) would open as .git in a clone of this repository
    pytest.param(".g\u200cit", "managed by git or mlops", id="dot-git-hfs-ignorable"),
    pytest.param("\ufeff.git", "managed by git or mlops", id="dot-git-bom"),
    pytest.param(".git.", "managed by git or mlops", id="dot-git-ntfs-dot"),
    pytest.param(".git ", "managed by git or mlops", id="dot-git-ntfs-space"),
    pytest.param("GIT~1", "managed by git or mlops", id="dot-git-ntfs-short"),
    pytest.param("..", "may not be '..'", id="dotdot"),
    pytest.param(".", "may not be '.'", id="dot"),
    pytest.param("", "may not be empty", id="empty"),
    pytest.param("a/b", "may not contain '/'", id="slash"),
    pytest.param("/etc/passwd", "may not contain '/'", id="absolute"),
    pytest.param("a\x00b", "may not contain", id="nul"),
    pytest.param("a\nb", "may not contain", id="newline"),
    pytest.param("x" * 300, "longer than 255 bytes", id="300-bytes"),
    pytest.param(7, "must be text", id="not-text"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES)
def test_pull_refuses_a_manifest_with_a_bad_name(hostile_remote, guard, repo, cli, name, problem) -> None:
    top = plant_tree(hostile_remote, manifest([file_row("ok.txt", OK, 0), file_row(name)]), OK, PWNED)
    commit_pointer(repo.root, guard, top)
    result = cli("pull", code=3)
    line = refused_line(result.stderr)
    assert problem in line and top in line, line
    if isinstance(name, str) and name.isprintable() and len(name) < 100:
        assert repr(name) in line or f"'{name}'" in line, line
    assert_nothing_placed(repo.root)
    guard.check()


def test_pull_refuses_a_bad_name_deep_inside_before_writing_anything(hostile_remote, guard, repo, cli) -> None:
    """The good file at the top is not written either: the whole tree is checked first."""
    inner = manifest([file_row("../../../.git/hooks/pre-commit")])
    inner_digest = plant_tree(hostile_remote, inner, PWNED)
    sub = manifest([["deeper", "t", inner_digest, len(PWNED), 1]])
    sub_digest = plant_tree(hostile_remote, sub)
    top = plant_tree(hostile_remote, manifest([file_row("ok.txt", OK, 0), ["sub", "t", sub_digest, len(PWNED), 1]]), OK)
    commit_pointer(repo.root, guard, top)
    line = refused_line(cli("pull", code=3).stderr)
    assert "../../../.git/hooks/pre-commit" in line and inner_digest in line
    assert_nothing_placed(repo.root)
    guard.check()


def test_pull_refuses_duplicate_names(hostile_remote, guard, repo, cli) -> None:
    top = plant_tree(hostile_remote, manifest([file_row("ok.txt", OK, 0), file_row("ok.txt")]), OK, PWNED)
    commit_pointer(repo.root, guard, top)
    line = refused_line(cli("pull", code=3).stderr)
    assert "'ok.txt'" in line and "appears twice" in line and top in line
    assert_nothing_placed(repo.root)


def test_pull_refuses_a_hash_that_is_a_path(hostile_remote, guard, repo, cli) -> None:
    """A hash becomes an object path in the cache and a key on the remote: it must be a hash."""
    top = plant_tree(hostile_remote, manifest([file_row("ok.txt", OK, 0), ["x", "f", "../../x", 1, 0]]), OK)
    commit_pointer(repo.root, guard, top)
    line = refused_line(cli("pull", code=3).stderr)
    assert "'../../x'" in line and "not a xxh3-128 hash" in line and top in line
    assert_nothing_placed(repo.root)
    assert not (repo.root / ".mlops" / "x").exists() and not (repo.root / "x").exists()


WRONG_SHAPES = [
    pytest.param(["ok.txt", "f", hash_bytes(OK), "10", 0], id="size-text"),
    pytest.param(["ok.txt", "f", hash_bytes(OK), -1, 0], id="size-negative"),
    pytest.param(["ok.txt", "f", hash_bytes(OK), True, 0], id="size-bool"),
    pytest.param(["ok.txt", "f", hash_bytes(OK), 10.0, 0], id="size-float"),
    pytest.param(["ok.txt", "f", hash_bytes(OK), 10, 7], id="flag-not-0-or-1"),
    pytest.param(["ok.txt", "x", hash_bytes(OK), 10, 0], id="kind-unknown"),
    pytest.param(["ok.txt", "f", hash_bytes(OK), 10], id="four-fields"),
    pytest.param("ok.txt", id="not-a-list"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("row", WRONG_SHAPES)
def test_pull_refuses_entries_of_the_wrong_shape(hostile_remote, guard, repo, cli, row) -> None:
    top = plant_tree(hostile_remote, manifest([row]), OK)
    commit_pointer(repo.root, guard, top, files=1)
    line = refused_line(cli("pull", code=3).stderr)
    assert top in line and "not a valid tree manifest" in line
    assert "Traceback" not in cli("pull", code=3).stderr
    assert_nothing_placed(repo.root)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe not json", id="not-json"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(json.dumps({"format": "other/9", "entries": []}).encode(), id="other-format"),
        pytest.param(json.dumps({"format": TREE_FORMAT, "entries": {"a": 1}}).encode(), id="entries-not-a-list"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-deeper-than-python-recurses"),
    ],
)
def test_pull_refuses_a_manifest_that_is_not_one(hostile_remote, guard, repo, cli, data) -> None:
    top = plant_tree(hostile_remote, data)
    commit_pointer(repo.root, guard, top)
    result = cli("pull", code=3)
    line = refused_line(result.stderr)
    assert top in line
    assert_nothing_placed(repo.root)


def test_pull_refuses_a_tree_whose_counts_lie(hostile_remote, guard, repo, cli) -> None:
    """A sub-folder listed with fewer files than its manifest holds: the counts are how a tree
    that names one folder many times (a trillion files from 40 manifests) is caught."""
    sub_digest = plant_tree(hostile_remote, manifest([file_row("a", OK, 0), file_row("b", OK, 0)]), OK)
    top = plant_tree(hostile_remote, manifest([["sub", "t", sub_digest, len(OK) * 2, 1]]))
    commit_pointer(repo.root, guard, top, files=1)
    line = refused_line(cli("pull", code=3).stderr)
    assert sub_digest in line and "file count differs" in line
    assert_nothing_placed(repo.root)


def test_pull_refuses_a_tree_that_names_more_files_than_any_snapshot(hostile_remote, guard, repo, cli) -> None:
    leaf = plant_tree(hostile_remote, manifest([file_row("a", OK, 0)]), OK)
    digest, size, files = leaf, len(OK), 1
    for _ in range(40):  # each level names the one below twice: 2**40 files from 41 manifests
        digest = plant_tree(
            hostile_remote, manifest([["l", "t", digest, size, files], ["r", "t", digest, size, files]])
        )
        size, files = size * 2, files * 2
    commit_pointer(repo.root, guard, digest, files=files)
    line = refused_line(cli("pull", code=3).stderr)
    assert digest in line and "more than" in line
    assert_nothing_placed(repo.root)


# --- symlinked folders: planted in the workspace, or committed -----------------------------------


def good_snapshot(remote: Any) -> str:
    sub = plant_tree(remote, manifest([file_row("x.txt", OK, 0)]), OK)
    return plant_tree(remote, manifest([file_row("ok.txt", OK, 0), ["sub", "t", sub, len(OK), 1]]), OK)


def test_pull_never_writes_through_a_planted_symlink_to_outside(hostile_remote, guard, repo, cli, tmp_path) -> None:
    top = good_snapshot(hostile_remote)
    commit_pointer(repo.root, guard, top)
    os.symlink(tmp_path / "sentinel", repo.root / "images")
    line = refused_line(cli("pull", code=3).stderr)
    assert "images" in line and "outside the repository" in line
    assert not (tmp_path / "sentinel" / "ok.txt").exists()
    guard.check()


def test_pull_never_writes_through_a_planted_symlinked_sub_folder(hostile_remote, guard, repo, cli, tmp_path) -> None:
    top = good_snapshot(hostile_remote)
    commit_pointer(repo.root, guard, top)
    (repo.root / "images").mkdir()
    os.symlink(tmp_path / "sentinel", repo.root / "images" / "sub")
    line = refused_line(cli("pull", code=3).stderr)
    assert "images.mlops" in line and "outside the repository" in line
    assert not (repo.root / "images" / "ok.txt").exists(), "refused whole: not even the good file"
    guard.check()


def test_checkout_never_writes_through_a_symlinked_folder_inside_the_repo(hostile_remote, guard, repo, cli) -> None:
    """Even a link that stays inside the repository is not written through: it would let a
    snapshot write where its own path does not say (into another tracked folder, say)."""
    top = good_snapshot(hostile_remote)
    commit_pointer(repo.root, guard, top)
    (repo.root / "other").mkdir()
    (repo.root / "images").mkdir()
    os.symlink("../other", repo.root / "images" / "sub")
    line = refused_line(cli("pull", code=3).stderr)
    assert "images/sub is a symlink" in line and "images.mlops" in line
    assert list((repo.root / "other").iterdir()) == []
    assert not (repo.root / "images" / "ok.txt").exists()


def test_checkout_never_writes_through_a_committed_symlink(hostile_remote, guard, repo, cli) -> None:
    top = good_snapshot(hostile_remote)
    (repo.root / "elsewhere").mkdir()
    (repo.root / "elsewhere" / "keep.txt").write_text("mine\n")
    os.symlink("elsewhere", repo.root / "images")
    git(repo.root, "add", "images", "elsewhere")
    commit_pointer(repo.root, guard, top)
    line = refused_line(cli("pull", code=3).stderr)
    assert "images" in line and "symlink" in line
    assert sorted(p.name for p in (repo.root / "elsewhere").iterdir()) == ["keep.txt"]
    guard.check()


# --- the cache side: manifests read back from the cache may be corrupt too ------------------------


def store_in_cache(repo: Any, *blobs: bytes) -> None:
    with repo.objects.batch() as batch:
        for blob in blobs:
            batch.add_bytes(blob)


def test_checkout_names_the_pointer_a_bad_cached_manifest_came_from(guard, repo, cli) -> None:
    top_data = manifest([file_row("ok.txt", OK, 0), file_row("..")])
    store_in_cache(repo, top_data, OK, PWNED)
    commit_pointer(repo.root, guard, hash_bytes(top_data))
    line = refused_line(cli("checkout", code=3).stderr)
    assert f"tree {hash_bytes(top_data)} of images.mlops" in line and "'..'" in line
    assert_nothing_placed(repo.root)


def test_verify_reports_a_malformed_manifest_and_gc_refuses(guard, repo, cli) -> None:
    top_data = manifest([file_row("ok.txt", OK, 0), file_row("a/../../b")])
    store_in_cache(repo, top_data, OK, PWNED)
    commit_pointer(repo.root, guard, hash_bytes(top_data))
    result = cli("verify", code=1)
    assert "malformed" in result.stdout and hash_bytes(top_data) in result.stdout
    assert "images.mlops" in result.stdout or "images" in result.stdout
    report = json.loads(cli("verify", "--json", code=1).stdout)
    (bad,) = report["corrupt"]
    assert bad["problem"] == "malformed" and bad["hash"] == hash_bytes(top_data) and "a/../../b" in bad["detail"]
    before = sorted(repo.objects.iter_digests())
    line = refused_line(cli("gc", code=3).stderr)
    assert "a/../../b" in line
    assert sorted(repo.objects.iter_digests()) == before, "gc removed objects while it could not read a manifest"
