"""Bad input: exit 2, one clear error line naming the path or file, never a traceback.

Run as the real console script (a traceback would be printed by the interpreter itself).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from datakit import assert_error, git, mlops


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    (path / "secret.csv").write_text("not yours\n")
    return path


def _nothing_tracked(root: Path) -> None:
    assert not [p for p in root.rglob("*.mlops") if p.is_file()], "a pointer file was written"
    objects = [p for p in (root / ".mlops" / "cache").rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert objects == []


def test_path_outside_repo(repo, outside):
    for shown in ("../elsewhere/secret.csv", str(outside / "secret.csv"), "../elsewhere"):
        proc = mlops("add", shown, cwd=repo.root, code=2)
        assert_error(proc.stderr, shown, "outside the repository")
    _nothing_tracked(repo.root)


def test_path_inside_mlops_or_git(repo):
    for shown in (".mlops/config.yaml", ".mlops", ".git/config", ".git", "./.git/HEAD"):
        proc = mlops("add", shown, cwd=repo.root, code=2)
        line = assert_error(proc.stderr, shown)
        assert ".mlops/" in line or ".git/" in line
    _nothing_tracked(repo.root)


def test_repo_root_itself(repo):
    proc = mlops("add", ".", cwd=repo.root, code=2)
    assert_error(proc.stderr, "root")


def test_symlink_named_path_pointing_outside(repo, outside):
    os.symlink(outside / "secret.csv", repo.root / "link.csv")
    os.symlink(outside, repo.root / "linkdir")
    for shown in ("link.csv", "linkdir"):
        proc = mlops("add", shown, cwd=repo.root, code=2)
        line = assert_error(proc.stderr, shown, "symlink", "outside")
        assert str(outside) in line
    _nothing_tracked(repo.root)


def test_symlink_inside_added_dir_pointing_outside(repo, outside):
    data = repo.root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "ok.txt").write_text("fine\n")
    os.symlink(outside / "secret.csv", data / "sub" / "escape.csv")
    proc = mlops("add", "data", cwd=repo.root, code=2)
    assert_error(proc.stderr, "data/sub/escape.csv", "outside")
    _nothing_tracked(repo.root)
    # a symlink that stays inside the repository is followed
    os.unlink(data / "sub" / "escape.csv")
    (repo.root / "elsewhere-in-repo.txt").write_text("inside\n")
    os.symlink(repo.root / "elsewhere-in-repo.txt", data / "sub" / "inside.csv")
    mlops("add", "data", cwd=repo.root)


def test_broken_symlink_in_dir(repo):
    data = repo.root / "data"
    data.mkdir()
    os.symlink(repo.root / "nowhere", data / "dangling")
    proc = mlops("add", "data", cwd=repo.root, code=2)
    assert_error(proc.stderr, "data/dangling", "broken")


def test_missing_path(repo):
    proc = mlops("add", "no/such/file.csv", cwd=repo.root, code=2)
    assert_error(proc.stderr, "no/such/file.csv", "no such")
    proc = mlops("status", "ghost", cwd=repo.root, code=2)
    assert_error(proc.stderr, "ghost", "not tracked")
    proc = mlops("checkout", "ghost", cwd=repo.root, code=2)
    assert_error(proc.stderr, "ghost")


def test_path_inside_tracked_dir(repo):
    (repo.root / "data").mkdir()
    (repo.root / "data" / "a.txt").write_text("a")
    mlops("add", "data", cwd=repo.root)
    proc = mlops("add", "data/a.txt", cwd=repo.root, code=2)
    assert_error(proc.stderr, "data/a.txt", "data")


def _tracked(repo_root: Path) -> None:
    (repo_root / "data").mkdir()
    (repo_root / "data" / "a.txt").write_text("a")
    mlops("add", "data", cwd=repo_root)


def test_pointer_invalid_yaml_names_file_line_col(repo):
    _tracked(repo.root)
    (repo.root / "data.mlops").write_text("format: 1\nkind: dir\nhash: [unclosed\nsize: 3\n")
    for command in ("status", "checkout", "gc", "verify"):
        proc = mlops(command, cwd=repo.root, code=2)
        line = assert_error(proc.stderr)
        assert re.search(r"data\.mlops:\d+:\d+", line), f"{command}: {line}"
        assert "YAML" in line


def test_pointer_invalid_yaml_from_subfolder_names_path(repo):
    (repo.root / "sub" / "data").mkdir(parents=True)
    (repo.root / "sub" / "data" / "a.txt").write_text("a")
    mlops("add", "sub/data", cwd=repo.root)
    (repo.root / "sub" / "data.mlops").write_text("hash: {\n")
    proc = mlops("status", cwd=repo.root / "sub", code=2)
    line = assert_error(proc.stderr)
    assert re.search(r"data\.mlops:\d+:\d+", line)


def test_pointer_missing_hash_names_file_and_field(repo):
    _tracked(repo.root)
    text = (repo.root / "data.mlops").read_text()
    (repo.root / "data.mlops").write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("hash:")) + "\n"
    )
    for command in ("status", "checkout", "verify"):
        proc = mlops(command, cwd=repo.root, code=2)
        assert_error(proc.stderr, "data.mlops", "'hash'")


@pytest.mark.parametrize(
    "content, needles",
    [
        ("format: 1\nkind: dir\nhash: not-a-hash\nsize: 1\n", ["data.mlops", "hash"]),
        ("format: 1\nkind: folder\nhash: 0123456789abcdef0123456789abcdef\nsize: 1\n", ["data.mlops", "kind"]),
        ("format: 1\nkind: dir\nhash: 0123456789abcdef0123456789abcdef\nsize: -4\n", ["data.mlops", "size"]),
        ("format: 1\nkind: dir\nhash: 0123456789abcdef0123456789abcdef\nsize: big\n", ["data.mlops", "size"]),
        ("- just\n- a list\n", ["data.mlops", "mapping"]),
        ("format: 7\nkind: dir\nhash: 0123456789abcdef0123456789abcdef\nsize: 1\n", ["data.mlops", "newer"]),
    ],
)
def test_pointer_bad_fields(repo, content, needles):
    _tracked(repo.root)
    (repo.root / "data.mlops").write_text(content)
    proc = mlops("status", cwd=repo.root, code=2)
    assert_error(proc.stderr, *needles)


def test_pointer_not_utf8(repo):
    _tracked(repo.root)
    (repo.root / "data.mlops").write_bytes(b"\xff\xfe\x00garbage")
    proc = mlops("status", cwd=repo.root, code=2)
    assert_error(proc.stderr, "data.mlops")


def test_config_from_newer_format(repo):
    (repo.root / "tracked.txt").write_text("t")
    mlops("add", "tracked.txt", cwd=repo.root)
    config = repo.root / ".mlops" / "config.yaml"
    config.write_text(config.read_text().replace("format: 1", "format: 99"))
    (repo.root / "a.txt").write_text("a")
    for args in (
        ["add", "a.txt"],
        ["status"],
        ["checkout"],
        ["remote", "list"],
        ["push"],
        ["remote", "add", "x", "/x"],
    ):
        proc = mlops(*args, cwd=repo.root, code=2)
        assert_error(proc.stderr, "config.yaml", "newer", "99")
    assert not (repo.root / "a.txt.mlops").exists()


def test_config_invalid_yaml(repo):
    (repo.root / ".mlops" / "config.yaml").write_text("cache: [unclosed\n")
    (repo.root / "a.txt").write_text("a")
    proc = mlops("add", "a.txt", cwd=repo.root, code=2)
    line = assert_error(proc.stderr)
    assert re.search(r"config\.yaml:\d+:\d+", line)


def test_outside_any_repo(tmp_path):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    for args in (["status"], ["add", "x"], ["verify"], ["remote", "list"], ["push"], ["gc"]):
        proc = mlops(*args, cwd=lonely, code=2)
        assert_error(proc.stderr, "not an mlops repository")
    assert not (lonely / ".mlops").exists()


def test_init_twice(repo):
    proc = mlops("init", cwd=repo.root, code=2)
    assert_error(proc.stderr, ".mlops", "already exists")


def test_init_outside_git_needs_no_git(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = mlops("init", cwd=plain, code=2)
    assert_error(proc.stderr, str(plain), "git")
    assert "--no-git" in proc.stderr
    assert not (plain / ".mlops").exists()
    proc = mlops("init", "--no-git", cwd=plain)
    assert (plain / ".mlops" / "config.yaml").is_file()
    (plain / "d").mkdir()
    (plain / "d" / "f.txt").write_text("f")
    mlops("add", "d", cwd=plain)
    mlops("status", "--check", cwd=plain)
    os.unlink(plain / "d" / "f.txt")
    mlops("checkout", cwd=plain)
    assert (plain / "d" / "f.txt").read_text() == "f"
    mlops("verify", cwd=plain)
    mlops("gc", cwd=plain)
    proc = mlops("diff", cwd=plain, code=2)  # revisions need git
    assert_error(proc.stderr, "git")


def test_init_with_path_argument(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    git(project, "init", "-q")
    proc = mlops("init", str(project), cwd=tmp_path)
    assert (project / ".mlops" / "config.yaml").is_file()
    assert "config.yaml" in proc.stderr
    ignored = (project / ".mlops" / ".gitignore").read_text().splitlines()
    assert {"/cache/", "/tmp/", "/config.local.yaml"} <= set(ignored)


def test_unknown_option_is_usage_error(repo):
    proc = mlops("add", "--no-such-flag", cwd=repo.root, code=2)
    assert proc.stdout == ""


def test_in_process_bad_input_matches(repo, cli, outside):
    result = cli("add", "../elsewhere/secret.csv", code=2)
    assert_error(result.stderr, "outside")
    result = cli("add", ".git/config", code=2)
    assert_error(result.stderr, ".git")


def test_symlink_loop_inside_added_dir(repo):
    data = repo.root / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    os.symlink(data, data / "self")
    proc = mlops("add", "data", cwd=repo.root, code=None, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert_error(proc.stderr, "data/self")


def test_non_utf8_file_name_inside_added_dir(repo):
    data = repo.root / "data"
    data.mkdir()
    (data / "ok.txt").write_text("ok")
    with open(os.path.join(os.fsencode(data), b"caf\xe9.txt"), "wb") as handle:  # latin-1 name
        handle.write(b"bytes")
    proc = mlops("add", "data", cwd=repo.root, code=None)
    assert "internal error" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 2:
        assert_error(proc.stderr, "data/")
