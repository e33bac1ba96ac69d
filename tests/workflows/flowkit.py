"""A small real project for the workflow tests: tracked data, a one-stage pipeline run, a model."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlops import registry
from mlops.data.add import add
from mlops.data.pointer import read_pointer
from mlops.pipeline.lock import read_lock
from mlops.repo.repo import Repo

PIPELINE = "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def project(repo: Repo, cli) -> dict[str, str]:  # noqa: ANN001
    """data.txt tracked, out.txt made by `mlops run`, model.bin registered as m:1; all committed.
    Returns the object hashes by what they are."""
    root = repo.root
    (root / "data.txt").write_text("tracked data\n")
    (root / "in.txt").write_text("pipeline input\n")
    (root / "pipeline.yaml").write_text(PIPELINE)
    add(repo, ["data.txt"])
    cli("run")
    (root / "model.bin").write_bytes(b"a model's bytes")
    mv = registry.register(repo, "m", "model.bin").version
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    data_hash = read_pointer(root, "data.txt.mlops").hash
    out_hash = next(o.hash for entry in read_lock(root).values() for o in entry.outs if o.path == "out.txt")
    return {"data": data_hash, "output": out_hash, "model": mv.artifact}


def with_remote(repo: Repo, cli, folder: Path) -> Repo:  # noqa: ANN001
    """``folder`` as the default remote; the repository opened again to read the new config."""
    from mlops.repo.repo import find_repo

    cli("remote", "add", "origin", str(folder), "--default")
    return find_repo(repo.root)
