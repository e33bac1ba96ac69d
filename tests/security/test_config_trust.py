"""The committed config arrives through git: it may not choose where this machine writes objects."""

from __future__ import annotations

from pathlib import Path


def _set_cache_dir(root: Path, name: str, folder: str) -> None:
    path = root / ".mlops" / name
    text = path.read_text() if path.exists() else "format: 1\n"
    path.write_text(text + f"cache:\n  dir: {folder}\n")


def test_a_committed_cache_dir_outside_the_repository_is_refused(repo, cli, tree, guard, tmp_path: Path) -> None:
    tree({"data/a.txt": "a\n"})
    _set_cache_dir(repo.root, "config.yaml", str(tmp_path / "sentinel" / "objects"))
    result = cli("add", "data", code=2)
    assert "cache.dir" in result.stderr and "config.local.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sentinel" / "objects").exists()


def test_a_local_cache_dir_outside_the_repository_is_used(repo, cli, tree, tmp_path: Path) -> None:
    tree({"data/a.txt": "a\n"})
    shared = tmp_path / "shared-cache"
    _set_cache_dir(repo.root, "config.local.yaml", str(shared))
    cli("add", "data")
    assert any(p.is_file() for p in shared.rglob("*"))


def test_a_committed_cache_dir_inside_the_repository_is_used(repo, cli, tree) -> None:
    tree({"data/a.txt": "a\n"})
    _set_cache_dir(repo.root, "config.yaml", "cache-here")
    cli("add", "data")
    assert any(p.is_file() for p in (repo.root / "cache-here").rglob("*"))


def test_a_committed_cache_dir_in_git_or_at_the_root_is_refused(repo, cli, tree) -> None:
    tree({"data/a.txt": "a\n"})
    for folder in (".git", ".", ".git/objects"):
        path = repo.root / ".mlops" / "config.yaml"
        path.write_text("format: 1\n" + f"cache:\n  dir: '{folder}'\n")
        result = cli("add", "data", code=2)
        assert "cache.dir" in result.stderr
    assert not any(p.name != "pack" and len(p.name) == 2 for p in (repo.root / ".git").iterdir() if p.is_dir())


def test_a_committed_config_local_cannot_move_the_cache_out(repo, cli, tree, guard, tmp_path: Path) -> None:
    import subprocess

    _set_cache_dir(repo.root, "config.local.yaml", str(tmp_path / "sentinel"))
    subprocess.run(["git", "add", "-f", ".mlops/config.local.yaml"], cwd=repo.root, check=True)
    guard.expect_git_change()  # the test's own commit-to-be, as an attacker's clone would have it
    tree({"data/a.txt": "a\n"})
    result = cli("add", "data", code=2)
    assert "cache.dir" in result.stderr


def test_gc_sweeps_only_its_own_temp_files(repo, cli, tree) -> None:
    tree({"data/a.txt": "a\n"})
    cli("add", "data")
    tmp = repo.root / ".mlops" / "cache" / ".tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "notes.txt").write_text("not ours\n")
    cli("gc")
    assert (tmp / "notes.txt").read_text() == "not ours\n"
