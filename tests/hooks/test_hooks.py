"""Git hooks with real `git commit`, `git checkout` and `git push` (to a bare repo in a temp folder)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.repo.repo import Repo

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run_mlops(
    *args: str, cwd: Path, code: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `mlops` console script, as git's hooks run it."""
    proc = subprocess.run(
        [MLOPS_BIN, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
    assert proc.returncode == code, (
        f"mlops {' '.join(args)} -> {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)


@pytest.fixture(autouse=True)
def _mlops_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # git runs the hooks with our environment: they must find this venv's mlops
    monkeypatch.setenv("PATH", f"{Path(MLOPS_BIN).parent}{os.pathsep}{os.environ['PATH']}")


def git_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def tracked(repo: Repo, files: dict[str, str]) -> None:
    write_tree(repo.root, files)
    run_mlops("add", "data", cwd=repo.root)
    git(repo.root, "add", "-A")


def test_install_chains_an_existing_hook_and_uninstall_restores_it(repo: Repo) -> None:
    hooks = repo.root / ".git" / "hooks"
    theirs = "#!/bin/sh\necho THEIR HOOK RAN\n"
    (hooks / "pre-commit").write_text(theirs)
    (hooks / "pre-commit").chmod(0o755)
    run_mlops("hooks", "install", cwd=repo.root)
    for name in ("pre-commit", "post-checkout", "pre-push"):
        assert (hooks / name).stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
    assert (hooks / "pre-commit.pre-mlops").read_text() == theirs
    states = {s["name"]: s for s in json.loads(run_mlops("hooks", "status", "--json", cwd=repo.root).stdout)["hooks"]}
    assert states["pre-commit"] == {**states["pre-commit"], "state": "installed", "mode": "block", "chained": True}
    assert states["pre-push"]["chained"] is False

    tracked(repo, {"data/a.txt": "one\n"})
    done = git_run(repo.root, "commit", "-m", "data")
    assert done.returncode == 0, done.stderr
    assert "THEIR HOOK RAN" in done.stdout + done.stderr  # the chained hook still runs, first

    run_mlops("hooks", "install", "--pre-commit", "--mode", "warn", cwd=repo.root)  # re-install keeps the chain
    assert (hooks / "pre-commit.pre-mlops").read_text() == theirs
    run_mlops("hooks", "uninstall", cwd=repo.root)
    assert (hooks / "pre-commit").read_text() == theirs
    assert not (hooks / "pre-commit.pre-mlops").exists()
    assert not (hooks / "pre-push").exists() and not (hooks / "post-checkout").exists()


def test_a_failing_chained_hook_stops_the_commit(repo: Repo) -> None:
    hooks = repo.root / ".git" / "hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\necho no >&2\nexit 7\n")
    (hooks / "pre-commit").chmod(0o755)
    run_mlops("hooks", "install", "--pre-commit", cwd=repo.root)
    tracked(repo, {"data/a.txt": "one\n"})
    assert git_run(repo.root, "commit", "-m", "x").returncode != 0


def test_pre_commit_blocks_data_changed_without_its_pointer(repo: Repo) -> None:
    run_mlops("hooks", "install", cwd=repo.root)
    tracked(repo, {"data/a.txt": "one\n", "data/b.txt": "two\n"})
    assert git_run(repo.root, "commit", "-m", "first").returncode == 0

    (repo.root / "data" / "a.txt").write_text("changed\n")
    (repo.root / "notes.txt").write_text("unrelated\n")
    git(repo.root, "add", "notes.txt")
    refused = git_run(repo.root, "commit", "-m", "second")
    assert refused.returncode != 0
    assert "commit refused" in refused.stderr and "data" in refused.stderr and "mlops add" in refused.stderr
    assert git(repo.root, "rev-list", "--count", "HEAD").strip() == "1"

    run_mlops("add", "data", cwd=repo.root)
    git(repo.root, "add", "-A")
    assert git_run(repo.root, "commit", "-m", "second").returncode == 0


def test_warn_mode_reports_and_lets_the_commit_through(repo: Repo) -> None:
    run_mlops("hooks", "install", "--mode", "warn", cwd=repo.root)
    tracked(repo, {"data/a.txt": "one\n"})
    git_run(repo.root, "commit", "-m", "first")
    (repo.root / "data" / "a.txt").write_text("changed\n")
    done = git_run(repo.root, "commit", "--allow-empty", "-m", "second")
    assert done.returncode == 0
    assert "warn mode" in done.stderr and "commit refused" in done.stderr


def test_pre_commit_blocks_a_stale_pipeline_lock_but_not_a_stage_never_run(repo: Repo) -> None:
    write_tree(
        repo.root,
        {
            "params.yaml": "scale: 2\n",
            "pipeline.yaml": (
                "params: params.yaml\nstages:\n"
                "  make:\n    cmd: python3 -c \"open('out.txt','w').write('x')\"\n"
                "    params: [scale]\n    outs: [out.txt]\n"
                "  never:\n    cmd: python3 -c \"open('other.txt','w').write('y')\"\n    outs: [other.txt]\n"
            ),
        },
    )
    run_mlops("run", "make", cwd=repo.root)
    run_mlops("hooks", "install", "--pre-commit", cwd=repo.root)
    git(repo.root, "add", "-A")
    ok = git_run(repo.root, "commit", "-m", "pipeline")  # 'never' has not run: not a reason to refuse
    assert ok.returncode == 0, ok.stderr

    (repo.root / "params.yaml").write_text("scale: 3\n")
    git(repo.root, "add", "params.yaml")
    refused = git_run(repo.root, "commit", "-m", "new params")
    assert refused.returncode != 0
    assert "stage make is out of date" in refused.stderr and "mlops run" in refused.stderr
    assert "never" not in refused.stderr


def test_post_checkout_places_the_data_of_the_new_commit(repo: Repo) -> None:
    tracked(repo, {"data/a.txt": "v1\n", "data/sub/b.txt": "b\n"})
    git(repo.root, "commit", "-m", "v1")
    (repo.root / "data" / "a.txt").write_text("v2\n")
    (repo.root / "data" / "c.txt").write_text("new\n")
    run_mlops("add", "data", cwd=repo.root)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-m", "v2")
    run_mlops("hooks", "install", "--post-checkout", cwd=repo.root)

    done = git_run(repo.root, "checkout", "-q", "HEAD~1")
    assert done.returncode == 0, done.stderr
    assert (repo.root / "data" / "a.txt").read_text() == "v1\n"
    assert not (repo.root / "data" / "c.txt").exists()
    assert "checked out" in done.stderr
    git_run(repo.root, "checkout", "-q", "main")
    assert (repo.root / "data" / "c.txt").read_text() == "new\n"
    run_mlops("status", "--check", cwd=repo.root)


def test_pre_push_sends_what_the_pushed_commits_reference(repo: Repo, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo.root, "remote", "add", "origin", str(bare))
    store = tmp_path / "store"
    run_mlops("remote", "add", "store", str(store), "--default", cwd=repo.root)
    run_mlops("hooks", "install", "--pre-push", cwd=repo.root)

    tracked(repo, {"data/a.txt": "first\n"})
    git(repo.root, "commit", "-m", "one")
    (repo.root / "data" / "b.txt").write_text("second\n")
    run_mlops("add", "data", cwd=repo.root)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-m", "two")
    (repo.root / "data" / "c.txt").write_text("only in the workspace\n")
    run_mlops("add", "data", cwd=repo.root)  # recorded but not committed: not pushed

    done = git_run(repo.root, "push", "-q", "origin", "main")
    assert done.returncode == 0, done.stderr
    assert "pushed" in done.stderr

    # a teammate's `git clone && mlops pull` finds every committed object (both commits)
    clone = tmp_path / "clone"
    # the branch is named: a bare repository's HEAD follows git's init.defaultBranch, whatever it is here
    git(tmp_path, "clone", "-q", "-b", "main", str(bare), str(clone))
    run_mlops("pull", cwd=clone)  # the remote's settings came with the clone (.mlops/config.yaml)
    assert (clone / "data" / "b.txt").read_text() == "second\n"
    assert not (clone / "data" / "c.txt").exists()
    git(clone, "checkout", "-q", "HEAD~1")
    run_mlops("pull", cwd=clone)  # the earlier commit's objects went too
    assert (clone / "data" / "a.txt").read_text() == "first\n"
    from mlops.store.hashing import hash_bytes

    def on_remote(content: bytes) -> bool:
        digest = hash_bytes(content)
        return (store / digest[:2] / digest[2:]).is_file()

    assert on_remote(b"second\n") and on_remote(b"first\n")
    assert not on_remote(b"only in the workspace\n")  # recorded, never committed: stays home


def test_pre_push_without_a_default_remote_refuses_the_push(repo: Repo, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo.root, "remote", "add", "origin", str(bare))
    run_mlops("hooks", "install", "--pre-push", cwd=repo.root)
    tracked(repo, {"data/a.txt": "x\n"})
    git(repo.root, "commit", "-m", "one")
    refused = git_run(repo.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0
    assert "no default remote" in refused.stderr
    assert git_run(repo.root, "push", "-q", "--no-verify", "origin", "main").returncode == 0


def test_hooks_follow_core_hooks_path(repo: Repo) -> None:
    git(repo.root, "config", "core.hooksPath", "githooks")
    run_mlops("hooks", "install", "--pre-commit", cwd=repo.root)
    assert (repo.root / "githooks" / "pre-commit").is_file()
    assert not (repo.root / ".git" / "hooks" / "pre-commit").exists()
    tracked(repo, {"data/a.txt": "one\n"})
    git_run(repo.root, "commit", "-m", "one")
    (repo.root / "data" / "a.txt").write_text("two\n")
    assert git_run(repo.root, "commit", "--allow-empty", "-m", "two").returncode != 0


def test_pre_commit_framework_manifest_names_real_commands(repo: Repo) -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[2] / ".pre-commit-hooks.yaml").read_text())
    stages = {hook["id"]: hook for hook in manifest}
    assert {h["stages"][0] for h in manifest} == {"pre-commit", "post-checkout", "pre-push"}
    for hook in stages.values():
        argv = hook["entry"].split()
        assert argv[0] == "mlops"
        # the entry runs for real (pre-commit on a clean repo passes)
        if "pre-commit" in hook["stages"]:
            run_mlops(*argv[1:], cwd=repo.root)


def test_pre_push_reads_the_pre_commit_framework_variables(repo: Repo, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_mlops("remote", "add", "store", str(store), "--default", cwd=repo.root)
    tracked(repo, {"data/a.txt": "framework\n"})
    git(repo.root, "commit", "-m", "one")
    head = git(repo.root, "rev-parse", "HEAD").strip()
    env = {"PRE_COMMIT_TO_REF": head, "PRE_COMMIT_REMOTE_NAME": "origin"}
    done = run_mlops("hooks", "run", "pre-push", cwd=repo.root, env=env)
    assert "pushed" in done.stderr
    assert any(store.rglob("*"))


def test_unknown_hook_and_mode_are_usage_errors(repo: Repo) -> None:
    assert "unknown hook mode" in run_mlops("hooks", "install", "--mode", "loud", cwd=repo.root, code=2).stderr
    assert "unknown hook" in run_mlops("hooks", "run", "post-merge", cwd=repo.root, code=2).stderr


def test_hooks_need_git(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    run_mlops("init", "--no-git", cwd=root)
    assert "not a git repository" in run_mlops("hooks", "install", cwd=root, code=2).stderr


def test_missing_mlops_skips_the_hook_with_a_message(repo: Repo) -> None:
    run_mlops("hooks", "install", "--pre-commit", cwd=repo.root)
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text(
        hook.read_text().replace(f"mlops_bin='{Path(MLOPS_BIN).resolve()}'", "mlops_bin='/nonexistent/mlops'")
    )
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["git", "commit", "--allow-empty", "-m", "x"], cwd=repo.root, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0
    assert "mlops: not found" in done.stderr


def test_a_fresh_clone_before_pull_is_not_in_the_cache_not_changed(repo: Repo, tmp_path: Path) -> None:
    tracked(repo, {"data/a.txt": "first\n"})
    git(repo.root, "commit", "-m", "one")
    clone = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo.root), str(clone))
    shown = run_mlops("status", cwd=clone)
    assert "not in the cache (run 'mlops pull')" in shown.stdout + shown.stderr
    assert "deleted" not in shown.stdout
    run_mlops("status", "--check", cwd=clone)  # nothing to record: exit 0
    doc = json.loads(run_mlops("status", "--json", cwd=clone).stdout)
    assert doc["clean"] is True and doc["targets"][0]["state"] == "not in cache"
    run_mlops("hooks", "run", "pre-commit", cwd=clone)  # a fresh clone may commit
    (repo.root / "data" / "a.txt").unlink()
    assert "deleted" in run_mlops("status", cwd=repo.root).stdout  # in the cache: a real deletion
