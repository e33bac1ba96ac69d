"""Trees deeper than Python recurses and than a path the kernel takes: every walk is a loop,
and a path past PATH_MAX is reached through open folders (mlops/deepfs.py).

A 1,500-level folder (beyond Python's recursion limit of 1,000, within Linux's 4,096-byte
PATH_MAX) and a 10,000-level one (~20,000 bytes deep) are added, reported by status, checked
out, pushed, pulled, verified and collected. Crafted manifests of a 10,000-level tree are
fetched, pushed and checked out. What even that route does not write (a destination over
paths.DEEP_MAX, a name over 255 bytes) is refused with one line (exit 3) before anything is
written.
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


DEEP = 10_000


def leaf_fd(top: Path, depth: int) -> int:
    """An open descriptor of the folder that holds ``leaf.txt`` (reached by relative steps)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = inner
    return fd


def read_leaf(top: Path, depth: int) -> bytes:
    fd = leaf_fd(top, depth)
    try:
        out = os.open("leaf.txt", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return os.read(out, 1000)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def write_leaf(top: Path, depth: int, data: bytes) -> None:
    """Replace the leaf (it may be a read-only link into the cache: a new file, not written through)."""
    fd = leaf_fd(top, depth)
    try:
        os.unlink("leaf.txt", dir_fd=fd)
        out = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)


def state_of(cli: Any) -> str:
    return json.loads(cli("status", "--json").stdout)["targets"][0]["state"]


@pytest.mark.timeout(600)
def test_a_10000_level_folder_is_added_reported_checked_out_verified_and_collected(repo, cli) -> None:
    """~20,000 bytes deep: five times what a path handed to the kernel may hold."""
    top = repo.root / "deep"
    make_chain(top, DEEP)
    try:
        added = json.loads(cli("add", "deep", "--json").stdout)["added"][0]
        assert added["files"] == 1 and added["size"] == len(LEAF), added
        assert state_of(cli) == "unchanged"
        assert read_leaf(top, DEEP) == LEAF  # add left the workspace copy as it was (or linked it)

        write_leaf(top, DEEP, b"changed\n")
        assert state_of(cli) == "modified"
        cli("checkout", "--force")
        assert read_leaf(top, DEEP) == LEAF

        remove_chain(top)
        assert state_of(cli) == "deleted"
        cli("checkout")
        assert read_leaf(top, DEEP) == LEAF
        assert state_of(cli) == "unchanged"

        cli("gc")
        assert json.loads(cli("verify", "--json").stdout) == {
            "ok": True,
            "checked": DEEP + 2,  # the manifests and the leaf
            "corrupt": [],
            "missing": [],
        }
    finally:
        remove_chain(top)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_10000_level_folder_is_pushed_and_pulled_into_an_empty_cache(repo, cli, remote_dir) -> None:
    """Slow only because a remote is walked a level at a time (a child's hash is known once its
    parent arrives): 10,000 levels are 10,000 round trips."""
    top = repo.root / "deep"
    make_chain(top, DEEP)
    try:
        cli("add", "deep")
        cli("remote", "add", "storage", str(remote_dir), "--default")
        assert json.loads(cli("push", "--json").stdout)["transferred"] == DEEP + 2
        remove_chain(top)
        shutil.rmtree(repo.root / ".mlops" / "cache")
        cli("pull")
        assert read_leaf(top, DEEP) == LEAF
        assert state_of(cli) == "unchanged"
        assert json.loads(cli("verify", "--json").stdout)["checked"] == DEEP + 2
    finally:
        remove_chain(top)


def manifest(rows: list[Any]) -> bytes:
    return json.dumps({"format": TREE_FORMAT, "entries": rows}, separators=(",", ":")).encode()


def plant_chain(put: Any, depth: int, name: str = "a") -> str:
    """Manifests of a ``depth``-level chain ``a/a/.../leaf.txt`` (folders called ``name``),
    planted with ``put(digest, data)``."""
    put(hash_bytes(LEAF), LEAF)
    digest = hash_bytes(manifest([["leaf.txt", "f", hash_bytes(LEAF), len(LEAF), 0]]))
    put(digest, manifest([["leaf.txt", "f", hash_bytes(LEAF), len(LEAF), 0]]))
    for _ in range(depth - 1):
        data = manifest([[name, "t", digest, len(LEAF), 1]])
        digest = hash_bytes(data)
        put(digest, data)
    return digest


def commit_deep_pointer(repo: Any, guard: Any, top: str) -> None:
    (repo.root / "deep.mlops").write_text(f"format: 1\npath: deep\nkind: dir\nhash: {top}\nsize: 14\nfiles: 1\n")
    subprocess.run(["git", "add", "deep.mlops"], cwd=repo.root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "deep"], cwd=repo.root, check=True)
    guard.expect_git_change()


@pytest.mark.timeout(600)
def test_a_crafted_10000_level_tree_is_verified_collected_and_checked_out(repo, cli, guard) -> None:
    with repo.objects.batch() as batch:
        top = plant_chain(lambda _digest, data: batch.add_bytes(data), DEEP)
    commit_deep_pointer(repo, guard, top)

    assert json.loads(cli("verify", "--json").stdout) == {"ok": True, "checked": 10_001, "corrupt": [], "missing": []}
    assert json.loads(cli("gc", "--json").stdout)["kept"] == 10_001
    assert state_of(cli) == "deleted"
    try:
        cli("checkout")
        assert read_leaf(repo.root / "deep", DEEP - 1) == LEAF
        assert state_of(cli) == "unchanged"
        guard.check()
    finally:
        remove_chain(repo.root / "deep")


def refused_in_one_line(cli: Any, *args: str) -> str:
    result = cli(*args, code=3)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_crafted_tree_nested_past_what_mlops_writes_is_refused_in_one_line(repo, cli, guard) -> None:
    """600 folders of 250-byte names: ~150 KiB, past paths.DEEP_MAX (what even the route through
    open folders writes): refused before anything is written."""
    with repo.objects.batch() as batch:
        top = plant_chain(lambda _digest, data: batch.add_bytes(data), 600, name="n" * 250)
    commit_deep_pointer(repo, guard, top)
    error = refused_in_one_line(cli, "checkout")
    assert "nested too deep" in error and "deep.mlops" in error, error
    assert not (repo.root / "deep").exists(), "refused before anything was written"
    guard.check()


def test_a_crafted_name_longer_than_a_disk_takes_is_refused_in_one_line(repo, cli, guard) -> None:
    with repo.objects.batch() as batch:
        top = plant_chain(lambda _digest, data: batch.add_bytes(data), 3, name="n" * 256)
    commit_deep_pointer(repo, guard, top)
    error = refused_in_one_line(cli, "checkout")
    assert "longer than 255 bytes" in error and "deep.mlops" in error, error
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
    try:
        cli("pull")
        assert read_leaf(repo.root / "deep", DEEP - 1) == LEAF
        guard.check()
    finally:
        remove_chain(repo.root / "deep")
