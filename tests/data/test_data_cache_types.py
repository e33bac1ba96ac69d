"""cache.type: hardlink / symlink workspaces share the cache object and are read-only; copy is independent."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from datakit import cache_objects, hash_path, read_files, set_cache_type, xxh

FILES = {
    "data/a.txt": "alpha\n",
    "data/sub/b.txt": "beta\n",
    "data/sub/deep/c.bin": b"\x00\xff" * 4096,
    "one.csv": "x,y\n",
}


def _workspace_files() -> list[Path]:
    return [Path("one.csv"), *(Path(f) / n for f, _d, ns in os.walk("data") for n in ns)]


def _assert_linked(root: Path, kind: str) -> None:
    objects = cache_objects(root)
    cache = (root / ".mlops" / "cache").resolve()
    for path in _workspace_files():
        digest = hash_path(path)
        assert digest in objects, path
        obj = objects[digest]
        if kind == "hardlink":
            assert not path.is_symlink()
            assert os.stat(path).st_ino == os.stat(obj).st_ino, f"{path} is not a hard link to {obj}"
            assert os.stat(path).st_nlink >= 2
        else:
            assert path.is_symlink(), f"{path} is not a symlink"
            target = Path(os.path.realpath(path))
            assert target == obj.resolve() and cache in target.parents, f"{path} -> {target}"
        mode = stat.S_IMODE(os.stat(path).st_mode)  # (through the link)
        assert mode & 0o222 == 0, f"{path} is writable ({oct(mode)}): an edit would corrupt the cache"


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_linked_workspace_after_add_and_checkout(repo, cli, tree, kind):
    set_cache_type(repo.root, [kind, "copy"])
    tree(FILES)
    expected = read_files(Path("data"))
    cli("add", "data", "one.csv")
    _assert_linked(repo.root, kind)  # add replaced the workspace files by links
    cli("status", "--check")
    assert read_files(Path("data")) == expected

    shutil.rmtree("data")
    Path("one.csv").unlink()
    doc = json.loads(cli("checkout", "--json").stdout)
    assert {t["path"]: t["link"] for t in doc["targets"]} == {"data": kind, "one.csv": kind}
    _assert_linked(repo.root, kind)
    assert read_files(Path("data")) == expected and Path("one.csv").read_text() == "x,y\n"
    cli("status", "--check")
    assert cli("verify").exit_code == 0


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_linked_workspace_can_be_changed_and_re_added_without_touching_the_cache(repo, cli, tree, kind):
    set_cache_type(repo.root, [kind, "copy"])
    tree(FILES)
    cli("add", "data")
    # the user replaces a linked file (the way editors do: a new file, then rename)
    Path("data/a.txt.new").write_text("ALPHA\n")
    os.replace("data/a.txt.new", "data/a.txt")
    cli("status", "--check", code=1)
    cli("add", "data")
    assert cache_objects(repo.root)[xxh(b"alpha\n")].read_bytes() == b"alpha\n"  # old object intact
    linked = [p for p in _workspace_files() if str(p).startswith("data")]
    assert all(os.stat(p).st_mode & 0o222 == 0 for p in linked)  # the re-added files are links again
    cli("checkout")
    cli("verify")


def test_copy_workspace_files_are_independent_and_writable(repo, cli, tree):
    set_cache_type(repo.root, ["copy"])
    tree(FILES)
    cli("add", "data", "one.csv")
    objects = cache_objects(repo.root)

    def check() -> None:
        for path in _workspace_files():
            assert not path.is_symlink()
            obj = objects[hash_path(path)]
            assert os.stat(path).st_ino != os.stat(obj).st_ino
            assert os.stat(path).st_nlink == 1
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644

    check()
    shutil.rmtree("data")
    Path("one.csv").unlink()
    cli("checkout")
    check()
    # editing a workspace file in place leaves the cache object alone
    with open("data/a.txt", "a") as handle:
        handle.write("more\n")
    assert objects[xxh(b"alpha\n")].read_bytes() == b"alpha\n"
    cli("verify")
    cli("status", "--check", code=1)


def test_hardlink_to_copy_switch_gives_writable_files_on_checkout(repo, cli, tree):
    set_cache_type(repo.root, ["hardlink", "copy"])
    tree(FILES)
    cli("add", "data")
    set_cache_type(repo.root, ["copy"])
    shutil.rmtree("data")
    cli("checkout")
    for path in (p for p in _workspace_files() if str(p).startswith("data")):
        assert os.stat(path).st_nlink == 1 and stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_unknown_cache_type_is_a_config_error(repo, cli, tree):
    set_cache_type(repo.root, ["teleport"])
    tree({"x.txt": "x"})
    result = cli("add", "x.txt", code=2)
    assert "cache.type" in result.stderr and "config.yaml" in result.stderr


def test_symlinked_executable_file_keeps_its_exec_bit(repo, cli, tree):
    set_cache_type(repo.root, ["symlink", "copy"])
    tree({"tools/run.sh": "#!/bin/sh\necho hi\n"})
    os.chmod("tools/run.sh", 0o755)
    cli("add", "tools")
    assert os.stat("tools/run.sh").st_mode & stat.S_IXUSR
    cli("status", "--check")


def test_hardlinked_same_bytes_different_exec_bits_stay_clean(repo, cli, tree):
    set_cache_type(repo.root, ["hardlink", "copy"])
    tree({"d/run.sh": "same\n", "d/plain.txt": "same\n"})
    os.chmod("d/run.sh", 0o755)
    cli("add", "d")
    cli("status", "--check")
    shutil.rmtree("d")
    cli("checkout")
    assert os.stat("d/run.sh").st_mode & stat.S_IXUSR and not os.stat("d/plain.txt").st_mode & stat.S_IXUSR
    cli("status", "--check")


def test_relative_cache_dir_is_relative_to_the_repository(repo, cli, tree):
    import yaml

    config = Path(".mlops/config.yaml")
    doc = yaml.safe_load(config.read_text())
    doc["cache"]["dir"] = "shared-cache"
    config.write_text(yaml.safe_dump(doc))
    tree({"sub/d/a.txt": "a"})
    os.chdir("sub")
    cli("add", "d")
    os.chdir(repo.root)
    assert not Path("sub/shared-cache").exists()
    shutil.rmtree("sub/d")
    cli("checkout")
    assert Path("sub/d/a.txt").read_text() == "a"
