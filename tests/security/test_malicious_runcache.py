"""A hostile remote serves crafted shared run-cache entries (issue 14): each is a miss with one
warning naming it, never a path. Nothing is written outside the repository or in .git, no entry
reaches the local run cache, and `mlops run --dry-run --remote` says the stage would run.
Both remote kinds (a local folder and the moto S3 server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlops.data.transfer import get_remote
from mlops.pipeline import runcache
from mlops.pipeline.executor import WOULD_RUN, plan
from mlops.pipeline.graph import build_graph
from mlops.pipeline.params import ParamFiles
from mlops.pipeline.spec import load_pipeline
from mlops.pipeline.state import read_inputs
from mlops.repo.repo import Repo, find_repo
from mlops.store.hashing import hash_bytes

GOOD_HASH = hash_bytes(b"model\n")


def entry(**out: Any) -> bytes:
    return json.dumps(
        {"format": 1, "outs": [{"path": "model.txt", "hash": GOOD_HASH, "kind": "file", "size": 6, **out}]}
    ).encode()


def deep(levels: int) -> bytes:
    return b'{"format": 1, "outs": ' + b"[" * levels + b"]" * levels + b"}"


CRAFTED: dict[str, bytes | int] = {
    "dotdot": entry(path="../x"),
    "absolute": entry(path="/tmp/x"),
    "git-hook": entry(path=".git/hooks/x"),
    "mlops-folder": entry(path=".mlops/config.yaml"),
    "not-declared": entry(path="src/train.py"),
    "pointer-file": entry(path="data.mlops"),
    "hash-path": entry(hash="../../../../etc/passwd"),
    "hash-short": entry(hash="abc"),
    "hash-number": entry(hash=12345),
    "size-text": entry(size="big"),
    "kind-odd": entry(kind="symlink"),
    "bad-json": b'{"format": 1, "outs": [',
    "not-an-object": b"[1, 2, 3]",
    "deep-nesting": deep(100_000),
    "two-megabytes": json.dumps({"format": 1, "outs": [], "pad": "x" * (2 << 20)}).encode(),
    "hundred-megabytes": 100 << 20,  # a 100 MB entry: never read whole
}


@pytest.fixture
def repo(repo: Repo, hostile_remote: Any) -> Repo:
    return find_repo(repo.root)  # opened again: it reads the remote the fixture added


@pytest.fixture
def stage_key(repo: Repo) -> str:
    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  train:\n    cmd: echo model > model.txt\n    outs: [model.txt]\n"
    )
    stage = load_pipeline(repo.root).stages["train"]
    return read_inputs(repo, stage, ParamFiles(repo.root)).run_key(stage)


def plant(hostile: Any, key: str, content: bytes | int, tmp_path: Path) -> None:
    name = f"refs/{runcache.ref_name(key)}"
    if isinstance(content, bytes):
        hostile.put_key(name, content)
    elif hostile.kind == "local":  # a sparse file: 100 MB without writing them
        path = hostile.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(content)
    else:
        big = tmp_path / "big"
        with open(big, "wb") as handle:
            handle.truncate(content)
        hostile.bucket.client.upload_file(str(big), hostile.bucket.name, f"{hostile.prefix}{name}")
        big.unlink()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_entry_is_a_miss_with_a_warning(
    case: str, repo: Repo, hostile_remote: Any, guard: Any, stage_key: str, tmp_path: Path
) -> None:
    plant(hostile_remote, stage_key, CRAFTED[case], tmp_path)
    remote = get_remote(repo, hostile_remote.name)

    warnings: list[str] = []
    assert runcache.remote_lookup(remote, stage_key, outs=["model.txt"], warnings=warnings) is None
    assert len(warnings) == 1 and stage_key in warnings[0] and "miss" in warnings[0], warnings

    pulled = runcache.pull_entries(repo, hostile_remote.name)
    assert pulled.created == () and len(pulled.warnings) == 1
    assert runcache.local_keys(repo) == []  # nothing reached the local run cache

    graph = build_graph(load_pipeline(repo.root), repo.root)
    (result,) = plan(repo, graph, ["train"], remote=remote)
    assert result.status == WOULD_RUN and any("shared run cache" in r for r in result.reasons)

    for name in ("x", "etc", ".git/hooks/x", "src"):
        assert not os.path.lexists(repo.root / name)
    guard.check()


def test_a_good_entry_beside_them_is_a_hit(repo: Repo, hostile_remote: Any, stage_key: str) -> None:
    """The control: the same planting of a well-formed entry is used (so the cases above fail for their content)."""
    hostile_remote.put_key(f"refs/{runcache.ref_name(stage_key)}", entry())
    remote = get_remote(repo, hostile_remote.name)
    hit = runcache.remote_lookup(remote, stage_key, outs=["model.txt"])
    assert hit is not None and [(o.path, o.hash) for o in hit.outs] == [("model.txt", GOOD_HASH)]
    assert runcache.pull_entries(repo, hostile_remote.name).created == (stage_key,)
    assert runcache.lookup_entry(repo, stage_key, need_objects=False) == hit


@pytest.mark.parametrize("hostile_remote", ["local"], indirect=True)
def test_a_local_entry_naming_other_outputs_is_not_restored(repo: Repo, stage_key: str, cli: Any) -> None:
    """An entry that reached .mlops/runcache/ by other means, naming a file the stage does not declare."""
    (repo.root / "src").mkdir()
    (repo.root / "src/train.py").write_text("print('mine')\n")
    with repo.objects.batch() as batch:
        digest = batch.add_bytes(b"evil\n")
    runcache.record(repo, stage_key, (runcache.LockedPath("src/train.py", digest, "file", 5),))
    result = json.loads(cli("run", "--json").stdout)
    assert [s["status"] for s in result["stages"]] == ["ran"]
    assert (repo.root / "src/train.py").read_text() == "print('mine')\n"
    assert (repo.root / "model.txt").read_text() == "model\n"
