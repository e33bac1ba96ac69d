"""The attack tests' own instruments must be able to fail: the guard sees a write beside the repo and in .git."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_guard_sees_a_write_outside_the_repository(guard, tmp_path: Path) -> None:
    (tmp_path / "sentinel" / "keep.txt").write_text("changed\n")
    with pytest.raises(AssertionError, match="outside the repository"):
        guard.check()
    guard.take()  # leave the fixture's own final check clean


def test_guard_sees_a_new_git_hook(guard, repo) -> None:
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho pwned\n")
    with pytest.raises(AssertionError, match="inside .git"):
        guard.check()
    hook.unlink()


def test_hostile_remote_plants_raw_bytes(hostile_remote, guard) -> None:
    hostile_remote.put_object("ab" * 16, b"not what the name says")
    assert "abab" + "ab" * 14 in {k.replace("/", "") for k in hostile_remote.keys()}
