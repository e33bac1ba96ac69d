"""Crash and Ctrl-C safety with real processes: SIGINT and SIGKILL in the middle of add, checkout and push.

The signal is sent as soon as the process is seen at work (a temp file of its copy exists), not after
a fixed delay. Should a run finish before the signal lands anyway, the input is made bigger and the run
tried again; after the last try the completed run is checked instead, with a warning saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from datakit import (
    TMP_PREFIX,
    any_entry,
    bad_objects,
    cache_objects,
    hash_path,
    interrupt_when,
    mlops,
    read_files,
    store_objects,
    temp_files,
    temp_with_bytes,
    workspace_temps,
)

MANY = 3000
BIG_MB = 200
SCALES = (1, 2, 4)


def _write_many(folder: Path, count: int, tag: str = "v1") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:05d}.txt").write_text(f"{tag} small file number {i}\n")


def _write_big(path: Path, megabytes: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1 << 20))


def _attempts(
    make: Callable[[int], str],
    command: Callable[[str], list[str]],
    ready: Callable[[str], Callable[[], bool]],
    cwd: Path,
    sig: int,
):
    """Run until the signal lands while the command still works; returns (target, process, interrupted)."""
    for scale in SCALES:
        target = make(scale)
        proc, sent = interrupt_when(command(target), cwd, ready(target), sig=sig)
        if sent and proc.returncode != 0:
            return target, proc, True
        assert proc.returncode == 0, proc.stderr
    warnings.warn(
        f"mlops {' '.join(command(target))} finished before the signal at every size; checked the completed run",
        stacklevel=1,
    )
    return target, proc, False


def _assert_interrupted(proc, interrupted: bool, sig: int) -> None:
    if not interrupted:
        return
    if sig == signal.SIGINT:
        assert proc.returncode == 130, f"exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
        assert proc.stderr.strip().splitlines()[-1].startswith("error: interrupted"), proc.stderr
        assert proc.stdout == ""
    else:
        assert proc.returncode == -sig


def _assert_pointer_old_or_absent(root: Path, target: str, old: str | None, interrupted: bool) -> None:
    pointer = root / f"{target}.mlops"
    if not interrupted:
        assert pointer.is_file()
        return
    if old is None:
        assert not pointer.exists(), f"an interrupted first add left a pointer:\n{pointer.read_text()}"
    else:
        assert pointer.read_text() == old, "an interrupted re-add changed the pointer"


def _assert_recovers(root: Path, target: str, expected: dict[str, bytes] | str) -> None:
    """The next add completes; status is clean; verify is clean; the data is intact."""
    assert workspace_temps(root) == [], workspace_temps(root)[:5]
    mlops("add", target, cwd=root)
    mlops("status", "--check", cwd=root)
    mlops("verify", cwd=root)
    assert bad_objects(root / ".mlops" / "cache") == []
    path = root / target
    assert (read_files(path) if isinstance(expected, dict) else hash_path(path)) == expected
    assert workspace_temps(root) == []


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    _write_big(path, BIG_MB)
    return path


def _cache_tmp(root: Path) -> Path:
    return root / ".mlops" / "cache" / ".tmp"


# --- add -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_add_many_files_interrupted(repo, sig):
    root = repo.root

    def make(scale: int) -> str:
        _write_many(root / f"many{scale}", MANY * scale)
        return f"many{scale}"

    target, proc, interrupted = _attempts(
        make,
        lambda t: ["add", t],
        lambda t: lambda: any_entry(_cache_tmp(root), lambda n: n.startswith(TMP_PREFIX)),
        root,
        sig,
    )
    _assert_interrupted(proc, interrupted, sig)
    _assert_pointer_old_or_absent(root, target, None, interrupted)
    expected = read_files(root / target)
    assert len(expected) == MANY * int(target.removeprefix("many"))  # the workspace was not touched
    _assert_recovers(root, target, expected)


def test_readd_of_changed_dir_interrupted_keeps_complete_old_pointer(repo):
    root = repo.root

    def make(scale: int) -> str:
        target = f"many{scale}"
        _write_many(root / target, MANY * scale, "v1")
        mlops("add", target, cwd=root)
        _write_many(root / target, MANY * scale, "v2 changed")  # every file must be hashed again
        return target

    olds: dict[str, str] = {}

    def command(target: str) -> list[str]:
        olds[target] = (root / f"{target}.mlops").read_text()
        return ["add", target]

    target, proc, interrupted = _attempts(
        make,
        command,
        lambda t: lambda: any_entry(_cache_tmp(root), lambda n: n.startswith(TMP_PREFIX)),
        root,
        signal.SIGINT,
    )
    _assert_interrupted(proc, interrupted, signal.SIGINT)
    _assert_pointer_old_or_absent(root, target, olds[target], interrupted)
    if interrupted:
        mlops("status", "--check", cwd=root, code=1)  # the old pointer, the new data
    _assert_recovers(root, target, read_files(root / target))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_add_big_file_interrupted(repo, big_source, sig):
    root = repo.root
    (root / "big.bin").write_bytes(b"the old small version\n")
    mlops("add", "big.bin", cwd=root)
    old = (root / "big.bin.mlops").read_text()

    def make(scale: int) -> str:
        (root / "big.bin").unlink()
        if scale == 1:
            os.link(big_source, root / "big.bin")  # 200 MB of random bytes, made once
        else:
            _write_big(root / "big.bin", BIG_MB * scale)
        return "big.bin"

    target, proc, interrupted = _attempts(
        make, lambda t: ["add", t], lambda t: lambda: temp_with_bytes(_cache_tmp(root), 1 << 20), root, sig
    )
    _assert_interrupted(proc, interrupted, sig)
    _assert_pointer_old_or_absent(root, target, old, interrupted)
    if interrupted and sig == signal.SIGINT:
        staged = temp_files(_cache_tmp(root))
        assert staged == [], "Ctrl-C left a half-copied object in the cache's temp folder"
    size = (root / "big.bin").stat().st_size
    assert size >= BIG_MB << 20
    cache_before = set(cache_objects(root))
    _assert_recovers(root, target, hash_path(root / "big.bin"))
    assert len(set(cache_objects(root)) - cache_before) == 1


# --- checkout ------------------------------------------------------------------------------------


def _deleted_many(root: Path, scale: int) -> tuple[str, dict[str, bytes]]:
    target = f"flat{scale}"
    _write_many(root / target, MANY * scale)
    mlops("add", target, cwd=root)
    expected = read_files(root / target)
    shutil.rmtree(root / target)
    return target, expected


def test_checkout_of_deleted_big_dir_interrupted_while_staging(repo):
    root = repo.root
    expected: dict[str, dict[str, bytes]] = {}

    def make(scale: int) -> str:
        target, files = _deleted_many(root, scale)
        expected[target] = files
        return target

    target, proc, interrupted = _attempts(
        make,
        lambda t: ["checkout", t],
        lambda t: lambda: any_entry(root / t, lambda n: n.startswith(TMP_PREFIX)),
        root,
        signal.SIGINT,
    )
    _assert_interrupted(proc, interrupted, signal.SIGINT)
    assert workspace_temps(root) == [], (
        f"{len(workspace_temps(root))} temp files left, e.g. {workspace_temps(root)[:3]}"
    )
    if interrupted:
        present = read_files(root / target) if (root / target).exists() else {}
        assert all(expected[target][rel] == data for rel, data in present.items())  # old or new, never half
    mlops("checkout", target, cwd=root)
    assert read_files(root / target) == expected[target]
    mlops("status", "--check", cwd=root)
    mlops("verify", cwd=root)


def test_checkout_of_deleted_big_dir_interrupted_while_placing(repo):
    root = repo.root
    expected: dict[str, dict[str, bytes]] = {}

    def make(scale: int) -> str:
        target, files = _deleted_many(root, scale)
        expected[target] = files
        return target

    target, proc, interrupted = _attempts(
        make,
        lambda t: ["checkout", t],
        lambda t: lambda: any_entry(root / t, lambda n: not n.startswith(TMP_PREFIX)),  # the first file in place
        root,
        signal.SIGINT,
    )
    _assert_interrupted(proc, interrupted, signal.SIGINT)
    mlops("checkout", target, cwd=root)
    mlops("status", "--check", cwd=root)
    assert read_files(root / target) == expected[target]  # (temp files would show up here too)
    assert workspace_temps(root) == [], (
        f"{len(workspace_temps(root))} temp files left, e.g. {workspace_temps(root)[:3]}"
    )


# --- push ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_push_to_local_remote_interrupted(repo, remote_dir, sig):
    root = repo.root
    mlops("remote", "add", "store", str(remote_dir), "--default", cwd=root)

    def make(scale: int) -> str:
        target = f"many{scale}"
        _write_many(root / target, MANY * scale)
        mlops("add", target, cwd=root)
        return target

    target, proc, interrupted = _attempts(
        make,
        lambda t: ["push", t],
        lambda t: lambda: any_entry(remote_dir / ".tmp", lambda n: n.startswith(TMP_PREFIX)),
        root,
        sig,
    )
    _assert_interrupted(proc, interrupted, sig)
    assert bad_objects(remote_dir) == [], "a partial or wrong object is visible in the remote"
    if interrupted and sig == signal.SIGINT:
        leftovers = temp_files(remote_dir / ".tmp")
        assert leftovers == [], f"{len(leftovers)} staged uploads left behind"
    mlops("push", cwd=root)
    assert bad_objects(remote_dir) == []
    assert set(store_objects(remote_dir)) == set(cache_objects(root))
    assert "pushed 0 object(s)" in mlops("push", cwd=root).stdout
    mlops("verify", cwd=root)
    mlops("status", "--check", cwd=root)


# --- what an interrupted add already hashed is kept ------------------------------------------------


def _count_temps(folder: Path) -> int:
    return len(temp_files(folder))


def test_interrupted_add_keeps_the_hashes_it_computed(repo):
    from datakit import age_files

    from mlops.data.workspace import hash_files, scan_dir
    from mlops.repo.repo import find_repo

    root = repo.root
    for scale in SCALES:
        target = f"many{scale}"
        _write_many(root / target, MANY * scale)
        age_files(root / target)  # old enough for the state database to trust
        # interrupt once a few hundred files are staged in the cache: those at least were hashed
        proc, sent = interrupt_when(["add", target], root, lambda: _count_temps(_cache_tmp(root)) >= 300)
        if sent and proc.returncode == 130:
            break
    else:
        pytest.skip("add finished before the signal at every size")
    fresh = find_repo(root)
    files = scan_dir(fresh, str(root / target))
    assert hash_files(fresh, files.values()).hashed < len(files) - 200
