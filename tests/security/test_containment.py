"""The containment rule's own pieces (mlops.paths) and where checkout applies it.

The fast path agrees with the slow one; a pointer's data is never a pointer file or a file
that says what the pipeline runs; a path too long for the system is refused before anything
is written; and a checkout that would delete files mlops never tracked does not suggest
``--force``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mlops.errors import UnsafeNameError
from mlops.paths import DEEP_MAX, Destinations, check_name, check_tracked_path, name_problem, names_ok
from mlops.store.hashing import hash_bytes


@pytest.mark.parametrize(
    "names",
    [
        ["a", "b.txt", "-x", "_y", "9"],
        ["a", "a/b"],
        ["a", ".."],
        ["a", ".git"],
        ["a", ""],
        ["a\nb"],
        ["x" * 256],
        ["é"],
        [".hidden"],
        [1],
    ],
)
def test_the_fast_path_agrees_with_the_full_check(names: list) -> None:
    """``names_ok`` may say "look closer" for a good name (then each is checked in full), but
    never "fine" for a bad one."""
    if names_ok(names):
        assert all(name_problem(n) is None for n in names)
    assert names_ok(["a", "b.txt"]) and not names_ok(["a", "a/b"]) and not names_ok([".."])


@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("data.mlops", "a pointer file is never replaced"),
        ("sub/x.mlops", "a pointer file is never replaced"),
        ("pipeline.yaml", "says what the pipeline runs"),
        (".git/config", "managed by git or mlops"),
        ("a/../b", "may not be '..'"),
    ],
)
def test_tracked_paths_are_never_pointer_or_protected_files(rel: str, problem: str) -> None:
    with pytest.raises(UnsafeNameError, match=problem) as caught:
        check_tracked_path(rel, where="pipeline.lock stage 'train'", protected={"pipeline.yaml"})
    assert caught.value.exit_code == 3 and "pipeline.lock stage 'train'" in caught.value.message
    assert check_tracked_path("data/model.pkl", where="x", protected={"pipeline.yaml"}) == "data/model.pkl"


def test_a_destination_longer_than_the_system_allows_is_refused(tmp_path: Path) -> None:
    rel = "/".join(["a"] * (DEEP_MAX // 2))  # past PATH_MAX too: written through open folders up to DEEP_MAX
    with pytest.raises(UnsafeNameError, match="nested too deep") as caught:
        Destinations(tmp_path).check(rel, where="tree x of deep.mlops")
    assert "\n" not in caught.value.message and "deep.mlops" in caught.value.message
    short = "/".join(["a"] * 100)
    assert Destinations(tmp_path).check(short, where="x") == tmp_path / short


def test_check_all_sees_a_symlinked_folder_and_remembers_real_ones(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    dest = Destinations(tmp_path)
    dest.check_all([f"real/f{i}" for i in range(1000)] + ["new/deeper/x"], where="x")
    with pytest.raises(UnsafeNameError, match="link is a symlink"):
        dest.check_all(["real/ok", "link/x"], where="tree t of data.mlops")
    with pytest.raises(UnsafeNameError, match="may not be '..'"):
        dest.check_all(["real/../../x"], where="x")
    with pytest.raises(UnsafeNameError, match="managed by git"):
        check_name(".Git", where="x")


# --- --force is suggested only where it deletes tracked data --------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def hint_of(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if line.startswith("hint"))


def test_checkout_over_git_tracked_files_does_not_suggest_force(guard, repo, cli) -> None:
    """A received pointer file names src/, which holds the team's code: checkout stops, and its
    hint does not offer --force (which would delete the code)."""
    (repo.root / "src").mkdir()
    (repo.root / "src" / "main.py").write_text("print('mine')\n")
    data = b"print('theirs')\n"
    with repo.objects.batch() as batch:
        batch.add_bytes(data)
    (repo.root / "src.mlops").write_text(
        f"format: 1\npath: src\nkind: file\nhash: {hash_bytes(data)}\nsize: {len(data)}\n"
    )
    git(repo.root, "add", "src", "src.mlops")
    git(repo.root, "commit", "-q", "-m", "code and a pointer")
    guard.expect_git_change()
    result = cli("checkout", code=2)
    assert "would lose changes" in result.stderr
    assert "--force" not in hint_of(result.stderr) and "not tracked data" in hint_of(result.stderr)
    assert (repo.root / "src" / "main.py").read_text() == "print('mine')\n"


def test_checkout_over_untracked_unignored_files_does_not_suggest_force(repo, cli) -> None:
    (repo.root / "notes").mkdir()
    (repo.root / "notes" / "todo.txt").write_text("mine\n")
    data = b"theirs\n"
    with repo.objects.batch() as batch:
        batch.add_bytes(data)
    (repo.root / "notes.mlops").write_text(
        f"format: 1\npath: notes\nkind: file\nhash: {hash_bytes(data)}\nsize: {len(data)}\n"
    )
    result = cli("checkout", code=2)
    assert "--force" not in hint_of(result.stderr)
    assert (repo.root / "notes" / "todo.txt").read_text() == "mine\n"


def test_checkout_over_changed_tracked_data_still_suggests_force(repo, cli, tree) -> None:
    tree({"data/a.txt": "one\n"})
    cli("add", "data")
    (repo.root / "data" / "a.txt").chmod(0o644)
    (repo.root / "data" / "a.txt").write_text("edited, not added\n")
    result = cli("checkout", code=2)
    assert "'mlops checkout --force'" in hint_of(result.stderr)
    cli("checkout", "--force")
    assert (repo.root / "data" / "a.txt").read_text() == "one\n"
