"""`stage exec` and `stage collect` read content other machines wrote: `--upstream` manifests
(through an engine's XCom or output parameters) and run-cache entries on the shared remote.
Neither may name a path outside what the stage declares, nor an object by anything but its hash.
(Hostile entries as such: tests/security/test_malicious_runcache.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import RemoteError, UsageError
from mlops.pipeline.graph import build_graph
from mlops.pipeline.runcache import ref_name
from mlops.pipeline.spec import load_pipeline
from mlops.pipeline.stage_exec import check_manifest_outputs, exec_stage, parse_manifest
from mlops.repo.repo import Repo

SHA = "a" * 40
GOOD = {
    "format": 1,
    "stage": "prep",
    "rev": SHA,
    "key": "0" * 32,
    "status": "ran",
    "run_id": None,
    "seconds": 1.0,
    "deps": [],
    "params": {},
    "env": {},
    "outs": [{"path": "prep", "hash": "1" * 32, "kind": "dir", "size": 3, "files": 1}],
}


def _out(**changes: Any) -> dict[str, Any]:
    return {**GOOD, "outs": [{**GOOD["outs"][0], **changes}]}


@pytest.mark.parametrize(
    "doc",
    [
        _out(path="../outside"),
        _out(path="/etc/passwd"),
        _out(path="prep/../../x"),
        _out(path=".git/hooks"),
        _out(path=".MLOPS/config.yaml"),
        _out(path="a\nb"),
        _out(hash="../../../../etc/passwd"),
        _out(hash="1" * 31 + "G"),
        _out(hash=None),
        _out(kind="link"),
        _out(size=-1),
        _out(size=True),
        {**GOOD, "rev": "HEAD"},
        {**GOOD, "rev": "-" + "a" * 39},
        {**GOOD, "format": 2},
        {**GOOD, "status": "whatever"},
        {**GOOD, "run_id": "../../runs"},
        {**GOOD, "outs": {"path": "prep"}},
        [GOOD],
    ],
)
def test_a_hostile_manifest_is_refused_as_a_usage_error(doc: Any) -> None:
    with pytest.raises(UsageError) as refused:
        parse_manifest(json.dumps(doc), "--upstream")
    assert refused.value.exit_code == 2 and "not a stage manifest" in refused.value.message


def test_a_manifest_is_bounded_in_size_and_depth() -> None:
    with pytest.raises(UsageError, match="larger than"):
        parse_manifest(json.dumps({**GOOD, "pad": "x" * (1 << 20)}), "--upstream")
    with pytest.raises(UsageError):
        parse_manifest("[" * 100_000 + "]" * 100_000, "--upstream")
    with pytest.raises(UsageError):
        parse_manifest(b"\xff\xfe not utf-8", "--upstream")


def test_a_manifest_names_exactly_the_outputs_its_stage_declares(repo: Repo) -> None:
    (repo.root / "pipeline.yaml").write_text(
        "stages:\n  prep:\n    cmd: echo\n    outs: [prep]\n"
        "  train:\n    cmd: echo\n    deps: [prep]\n    outs: [model]\n"
    )
    graph = build_graph(load_pipeline(repo.root), repo.root)
    check_manifest_outputs(graph, parse_manifest(json.dumps(GOOD), "m"), "m")  # the good one passes
    for doc in (
        _out(path="model"),  # another stage's output: would overwrite what train makes
        _out(path="prep/inner"),  # under a declared output, not it
        {**GOOD, "outs": [GOOD["outs"][0], GOOD["outs"][0]]},
        {**GOOD, "outs": []},
        {**GOOD, "stage": "nope"},
    ):
        with pytest.raises(UsageError):
            check_manifest_outputs(graph, parse_manifest(json.dumps(doc), "m"), "m")


@pytest.mark.timeout(120)
def test_a_planted_remote_entry_is_never_restored(repo: Repo, tmp_path: Path) -> None:
    """An attacker rewrites the entry of a key on a shared local remote to name a path outside the
    repository: the next machine treats it as a miss, runs the stage, and refuses to adopt it."""
    root = repo.root
    (root / "in.txt").write_text("in\n")
    (root / "pipeline.yaml").write_text(
        "stages:\n  prep:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
    )
    remote = tmp_path / "remote"
    with repo.editing_config() as config:
        config.shared["remotes"] = {"shared": {"url": str(remote)}}
        config.shared["core"] = {"remote": "shared"}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "p"], cwd=root, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout
    first = exec_stage(Repo(root), "prep", rev=sha.strip())
    assert first.status == "ran"
    ref = remote / "refs" / ref_name(first.key)
    hostile = {"format": 1, "outs": [{"path": "../../victim.txt", "hash": "1" * 32, "kind": "file", "size": 1}]}
    os.chmod(ref, 0o644)
    ref.write_text(json.dumps(hostile))
    shutil.rmtree(root / ".mlops" / "runcache")  # this machine's own entry: as if another machine
    with pytest.raises(RemoteError, match="cannot be used"):
        exec_stage(Repo(root), "prep", rev=sha.strip())
    assert not (root / "out.txt").exists()  # the workspace untouched
    assert not (root.parent / "victim.txt").exists() and not (root.parent.parent / "victim.txt").exists()
