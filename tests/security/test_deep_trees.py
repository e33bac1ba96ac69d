"""Trees deeper than Python recurses: every walk is a loop.

A 1,500-level folder (beyond Python's recursion limit of 1,000, within Linux's 4,096-byte
PATH_MAX) is added, checked out, pushed, pulled, verified and collected. A 10,000-level tree
cannot exist on disk by path, but its manifests can be crafted on a remote: fetch, verify, gc
and push handle them, and checkout refuses it with one line (exit 3). A folder nested past
PATH_MAX is refused by add with one line (exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops.store.hashing import hash_bytes
from mlops.store.tree import TREE_FORMAT

LEAF = b"at the bottom\n"


def make_chain(top: Path, depth: int, leaf: bytes = LEAF) -> None:
    """``top/a/a/.../a/leaf.txt`` with ``depth`` folders below top, made relative to an open
    folder at each step (no full path is ever handed to the kernel: it may be too long)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, leaf)
        os.close(out)
    finally:
        os.close(fd)


def remove_chain(top: Path) -> None:
    """Delete what ``make_chain`` made (and any read-only link mlops put there), by relative steps."""
    if not top.exists():
        return
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while True:
            names = os.listdir(fds[-1])
            if "a" not in names:
                break
            fds.append(os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        while fds:
            fd = fds.pop()
            for name in os.listdir(fd):
                if name == "a":
                    os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
            os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)
    top.rmdir()


def deepest(top: Path, depth: int) -> Path:
    return top.joinpath(*(["a"] * depth), "leaf.txt")


DEPTH = 1500


@pytest.mark.timeout(600)
def test_a_1500_level_folder_is_added_checked_out_verified_and_collected(repo, cli) -> None:
    top = repo.root / "deep"
    make_chain(top, DEPTH)
    try:
        cli("add", "deep")
        assert json.loads(cli("status", "--json").stdout)["targets"][0]["state"] == "unchanged"
        remove_chain(top)
        cli("checkout")
        assert deepest(top, DEPTH).read_bytes() == LEAF
        cli("gc")
        assert json.loads(cli("verify", "--json").stdout)["checked"] == DEPTH + 2  # manifests + the leaf
        # a changed leaf is found, and the checkout puts the recorded one back
        deepest(top, DEPTH).chmod(0o644)
        deepest(top, DEPTH).write_bytes(b"changed\n")
        assert json.loads(cli("status", "--json").stdout)["targets"][0]["state"] == "modified"
        cli("checkout", "--force")
        assert deepest(top, DEPTH).read_bytes() == LEAF
    finally:
        remove_chain(top)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_1500_level_folder_is_pushed_and_pulled(repo, cli, remote_dir) -> None:
    """Slow only because a remote is walked a level at a time (a child's hash is known once its
    parent arrives): 1,500 levels are 1,500 round trips."""
    top = repo.root / "deep"
    make_chain(top, DEPTH)
    try:
        cli("add", "deep")
        cli("remote", "add", "storage", str(remote_dir), "--default")
        cli("push")
        remove_chain(top)
        shutil.rmtree(repo.root / ".mlops" / "cache")
        cli("pull")
        assert deepest(top, DEPTH).read_bytes() == LEAF
    finally:
        remove_chain(top)


def test_add_refuses_a_folder_nested_past_path_max_in_one_line(repo, cli) -> None:
    top = repo.root / "deeper"
    make_chain(top, 2100)  # "a/" x 2,100: over 4,096 bytes from the root
    try:
        result = cli("add", "deeper", code=2)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "nested too deep" in errors[0] and "deeper/" in errors[0], result.stderr
        assert "Traceback" not in result.stderr
        assert not (repo.root / "deeper.mlops").exists()
    finally:
        remove_chain(top)


def manifest(rows: list[Any]) -> bytes:
    return json.dumps({"format": TREE_FORMAT, "entries": rows}, separators=(",", ":")).encode()


def plant_chain(put: Any, depth: int) -> str:
    """Manifests of a ``depth``-level chain ``a/a/.../leaf.txt``, planted with ``put(digest, data)``."""
    put(hash_bytes(LEAF), LEAF)
    digest = hash_bytes(manifest([["leaf.txt", "f", hash_bytes(LEAF), len(LEAF), 0]]))
    put(digest, manifest([["leaf.txt", "f", hash_bytes(LEAF), len(LEAF), 0]]))
    for _ in range(depth - 1):
        data = manifest([["a", "t", digest, len(LEAF), 1]])
        digest = hash_bytes(data)
        put(digest, data)
    return digest


def commit_deep_pointer(repo: Any, guard: Any, top: str) -> None:
    (repo.root / "deep.mlops").write_text(f"format: 1\npath: deep\nkind: dir\nhash: {top}\nsize: 14\nfiles: 1\n")
    subprocess.run(["git", "add", "deep.mlops"], cwd=repo.root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "deep"], cwd=repo.root, check=True)
    guard.expect_git_change()


@pytest.mark.timeout(600)
def test_a_10000_level_tree_is_verified_collected_and_refused_by_checkout(repo, cli, tmp_path, guard) -> None:
    with repo.objects.batch() as batch:
        top = plant_chain(lambda _digest, data: batch.add_bytes(data), 10_000)
    commit_deep_pointer(repo, guard, top)

    assert json.loads(cli("verify", "--json").stdout) == {"ok": True, "checked": 10_001, "corrupt": [], "missing": []}
    assert json.loads(cli("gc", "--json").stdout)["kept"] == 10_001
    assert json.loads(cli("status", "--json").stdout)["targets"][0]["state"] == "deleted"
    result = cli("checkout", code=3)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "nested too deep" in errors[0] and "deep.mlops" in errors[0], result.stderr
    assert not (repo.root / "deep").exists(), "refused before anything was written"
    guard.check()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_crafted_10000_level_tree_is_fetched_and_pushed(repo, cli, tmp_path, guard) -> None:
    """Slow only because a remote is walked a level at a time: 10,000 levels, 10,000 round trips."""
    remote = tmp_path / "remote"

    def put(digest: str, data: bytes) -> None:
        path = remote / digest[:2] / digest[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    top = plant_chain(put, 10_000)
    cli("remote", "add", "storage", str(remote), "--default")
    commit_deep_pointer(repo, guard, top)
    assert json.loads(cli("fetch", "--json").stdout)["transferred"] == 10_001
    assert json.loads(cli("verify", "--json").stdout)["checked"] == 10_001
    other = tmp_path / "second-remote"
    guard.skip = frozenset({*guard.skip, "second-remote"})  # expected to change: it is pushed to
    cli("remote", "add", "second", str(other))
    assert json.loads(cli("push", "-r", "second", "--json").stdout)["transferred"] == 10_001
    line = [x for x in cli("pull", code=3).stderr.splitlines() if x.startswith("error")]
    assert len(line) == 1 and "nested too deep" in line[0]
    guard.check()
