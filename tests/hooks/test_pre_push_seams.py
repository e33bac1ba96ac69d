"""pre-push as real use meets it: through the pre-commit framework (the real `pre-commit` package,
installed as git's hook) on a repository's first push, and with registered models in the pushed
commits. Every push goes to a bare repository with no refs yet, made without relying on git's
default branch name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.repo.repo import Repo
from mlops.store.hashing import hash_bytes

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))
MANIFEST = Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def git_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def run_mlops(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([MLOPS_BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, f"mlops {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(autouse=True)
def _tools_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # git runs the hooks with our environment: they must find this venv's mlops; the framework
    # keeps its store in the test's folder, not the user's cache
    monkeypatch.setenv("PATH", f"{Path(MLOPS_BIN).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    for name in [n for n in os.environ if n.startswith("PRE_COMMIT")]:
        if name != "PRE_COMMIT_HOME":
            monkeypatch.delenv(name)


def empty_bare(tmp_path: Path, repo: Repo) -> Path:
    """A bare repository with no refs, added as `origin`."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo.root, "remote", "add", "origin", str(bare))
    assert git(bare, "for-each-ref") == ""
    return bare


def on_store(store: Path, content: bytes) -> bool:
    digest = hash_bytes(content)
    return (store / digest[:2] / digest[2:]).is_file()


def framework_config(repo: Repo, *, args: list[str] | None = None) -> None:
    """A .pre-commit-config.yaml with the hooks of this repository's .pre-commit-hooks.yaml as
    `repo: local` hooks: the same ids, entries and stages, run by the mlops on PATH
    (`language: system`), so the framework needs no network to set them up."""
    hooks = []
    for hook in yaml.safe_load(MANIFEST.read_text()):
        hooks.append({**hook, "language": "system", **({"args": args} if args else {})})
    (repo.root / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]}))
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pre_commit" in (repo.root / ".git" / "hooks" / "pre-push").read_text()  # the framework's own hook


def commit_data(repo: Repo, files: dict[str, str], message: str) -> None:
    for rel, content in files.items():
        (repo.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo.root / rel).write_text(content)
    run_mlops("add", "data", cwd=repo.root)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-q", "-m", message)


def test_first_push_through_the_pre_commit_framework_sends_what_the_commits_reference(
    repo: Repo, tmp_path: Path
) -> None:
    bare = empty_bare(tmp_path, repo)
    store = tmp_path / "store"
    run_mlops("remote", "add", "store", str(store), "--default", cwd=repo.root)
    framework_config(repo)
    commit_data(repo, {"data/a.txt": "first\n"}, "one")
    commit_data(repo, {"data/b.txt": "second\n"}, "two")

    # the remote has no refs: the framework passes no FROM_REF/TO_REF, only the branch pushed
    done = git_run(repo.root, "push", "origin", "HEAD:refs/heads/work")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mlops push before git push" in done.stdout + done.stderr  # the framework ran our hook
    assert on_store(store, b"first\n") and on_store(store, b"second\n")  # both commits' data

    # a second push bounds the range by what the remote has (FROM_REF): only the new data goes
    commit_data(repo, {"data/c.txt": "third\n"}, "three")
    done = git_run(repo.root, "push", "-v", "origin", "HEAD:refs/heads/work")
    assert done.returncode == 0, done.stdout + done.stderr
    assert on_store(store, b"third\n")
    assert git(bare, "rev-parse", "refs/heads/work").strip() == git(repo.root, "rev-parse", "HEAD").strip()


def test_first_push_through_the_framework_without_a_default_remote_is_refused(repo: Repo, tmp_path: Path) -> None:
    bare = empty_bare(tmp_path, repo)
    framework_config(repo)
    commit_data(repo, {"data/a.txt": "x\n"}, "one")
    refused = git_run(repo.root, "push", "origin", "HEAD:refs/heads/work")
    assert refused.returncode != 0
    assert "no default remote" in refused.stdout + refused.stderr
    assert git(bare, "for-each-ref") == ""  # git sent nothing either


def test_the_framework_naming_no_pushed_commit_refuses_instead_of_passing(repo: Repo) -> None:
    # what `pre-commit run --hook-stage pre-push` without --from-ref/--to-ref gives the hook
    env = {**os.environ, "PRE_COMMIT": "1", "PRE_COMMIT_REMOTE_NAME": "origin"}
    done = subprocess.run(
        [MLOPS_BIN, "hooks", "run", "pre-push"], cwd=repo.root, capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert "named no commit being pushed" in done.stderr and "mlops push" in done.stderr


def register_model(repo: Repo, content: bytes) -> str:
    (repo.root / "models").mkdir(exist_ok=True)
    (repo.root / "models" / "model.pkl").write_bytes(content)
    registered = json.loads(run_mlops("register", "churn", "models/model.pkl", "--json", cwd=repo.root).stdout)
    git(repo.root, "add", ".mlops")
    git(repo.root, "commit", "-q", "-m", f"register churn:{registered['version']}")
    return registered["artifact"]


@pytest.mark.parametrize("form", ["script", "framework"])
def test_pre_push_sends_the_registry_artifacts_the_pushed_commits_reference(
    repo: Repo, tmp_path: Path, form: str
) -> None:
    empty_bare(tmp_path, repo)
    store = tmp_path / "store"
    run_mlops("remote", "add", "store", str(store), "--default", cwd=repo.root)
    if form == "script":
        run_mlops("hooks", "install", "--pre-push", cwd=repo.root)
    else:
        framework_config(repo)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-q", "-m", "setup")
    first = register_model(repo, b"a model, version one")
    # a version registered and committed, then a newer one: both are named by pushed commits
    second = register_model(repo, b"a model, version two")
    (repo.root / "models" / "model.pkl").write_bytes(b"registered, never committed")
    run_mlops("register", "churn", "models/model.pkl", cwd=repo.root)

    done = git_run(repo.root, "push", "origin", "HEAD:refs/heads/work")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (store / first[:2] / first[2:]).is_file() and (store / second[:2] / second[2:]).is_file()
    assert not on_store(store, b"registered, never committed")

    # a teammate's clone loads the model the pushed registry names
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "-b", "work", str(tmp_path / "origin.git"), str(clone))
    run_mlops("pull", cwd=clone)
    cache = clone / ".mlops" / "cache"
    assert (cache / first[:2] / first[2:]).is_file() and (cache / second[:2] / second[2:]).is_file()


def test_these_tests_run_with_a_default_branch_neither_main_nor_master(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    head = subprocess.run(["git", "symbolic-ref", "HEAD"], cwd=bare, capture_output=True, text=True, check=True)
    assert head.stdout.strip() == "refs/heads/trunk"  # tests/hooks/conftest.py


def test_the_hook_manifest_is_valid_for_the_pre_commit_framework() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", str(MANIFEST)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_model_file_whose_hash_is_a_path_pushes_nothing_from_outside_the_cache(repo: Repo, tmp_path: Path) -> None:
    # a model file can come from anyone's commit: its "hash" must not become a path to read and send
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the remote\n")
    empty_bare(tmp_path, repo)
    store = tmp_path / "store"
    run_mlops("remote", "add", "store", str(store), "--default", cwd=repo.root)
    run_mlops("hooks", "install", "--pre-push", cwd=repo.root)
    commit_data(repo, {"data/a.txt": "tracked\n"}, "data")
    register_model(repo, b"a model")
    model_file = repo.root / ".mlops" / "registry" / "models" / "churn.json"
    doc = json.loads(model_file.read_text())
    doc["versions"][0]["artifact"]["hash"] = os.path.relpath(secret, repo.root / ".mlops" / "cache" / "xx")
    doc["versions"][0]["data"] = [{"path": "x", "hash": "../" * 12 + str(secret)[1:], "kind": "file"}]
    model_file.write_text(json.dumps(doc))
    git(repo.root, "commit", "-q", "-am", "a hostile model file")

    done = git_run(repo.root, "push", "origin", "HEAD:refs/heads/work")
    assert done.returncode == 0, done.stdout + done.stderr
    assert on_store(store, b"tracked\n")
    sent = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    assert b"not for the remote\n" not in sent and all(
        p.parent.parent == store for p in store.rglob("*") if p.is_file()
    )
