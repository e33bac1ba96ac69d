"""pipeline.yaml comes through git from other people: what its paths may make a stage touch.

Every path it names goes through the one containment rule, refused with a located error
(file:line:col, exit 2) before anything runs; no output may be a file the pipeline stands on;
and before a stage deletes or writes its outputs, their real locations (symlinks resolved)
must be inside the repository and outside .git/ and .mlops/ (exit 2 before the run, a failed
stage if a link appears during it). ``guard`` proves nothing beside the repository or in
.git changed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.repo.repo import Repo

LOCATED = re.compile(r"^error: pipeline\.yaml:\d+:\d+: ")


def write_pipeline(root: Path, doc: dict[str, Any]) -> None:
    (root / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


def one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def stage(**body: Any) -> dict[str, Any]:
    return {"cmd": "echo hi > out.txt", **body}


BAD_PIPELINES = {
    "out-outside": ({"stages": {"s": stage(outs=["../victim.txt"])}}, "is outside the repository"),
    "out-in-git": ({"stages": {"s": stage(outs=[".git/hooks/pre-commit"])}}, "is inside .git/"),
    "out-nested-git-any-case": ({"stages": {"s": stage(outs=["sub/.GIT/config"])}}, "managed by git or mlops"),
    "out-in-mlops-any-case": ({"stages": {"s": stage(outs=[".Mlops/config.yaml"])}}, "managed by git or mlops"),
    "out-newline": ({"stages": {"s": stage(outs=["a\nb"])}}, "may not contain"),
    "metric-escape": ({"stages": {"s": stage(metrics=["m/../../../victim.json"])}}, "is outside the repository"),
    "plot-in-git": ({"stages": {"s": stage(plots=["x/../.git/config"])}}, "is inside .git/"),
    "dep-nested-mlops": ({"stages": {"s": stage(deps=["data/.mlops/cache"])}}, "managed by git or mlops"),
    "wdir-git": ({"stages": {"s": stage(wdir=".git")}}, "is inside .git/"),
    "params-file-outside": ({"stages": {"s": stage(params=[{"../secret.yaml": ["key"]}])}}, "outside the repository"),
    "default-params-outside": ({"params": "../secret.yaml", "stages": {"s": stage()}}, "outside the repository"),
    "vars-file-outside": ({"vars": ["../secret.yaml"], "stages": {"s": stage()}}, "outside the repository"),
    "out-is-pipeline-yaml": ({"stages": {"s": stage(outs=["pipeline.yaml"])}}, "is the pipeline file"),
    "out-is-lock": ({"stages": {"s": stage(outs=["pipeline.lock"])}}, "is the lock file"),
    "out-is-default-params": ({"stages": {"s": stage(outs=["params.yaml"])}}, "is a parameter file"),
    "out-holds-params-file": (
        {"stages": {"s": stage(params=[{"conf/train.yaml": ["lr"]}]), "t": stage(outs=["conf"])}},
        "contains conf/train.yaml, a parameter file",
    ),
    "out-is-vars-file": ({"vars": ["v.yaml"], "stages": {"s": stage(outs=["v.yaml"])}}, "is a parameter file"),
    "out-is-pointer": ({"stages": {"s": stage(outs=["data.mlops"])}}, "is a pointer file"),
    "metric-is-pointer": ({"stages": {"s": stage(metrics=["m/scores.mlops"])}}, "is a pointer file"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIPELINES))
def test_paths_in_pipeline_yaml_are_refused_with_a_location(repo: Repo, guard: Any, cli: Any, case: str) -> None:
    doc, needle = BAD_PIPELINES[case]
    (repo.root / "conf").mkdir()
    (repo.root / "conf" / "train.yaml").write_text("lr: 0.1\n")
    (repo.root / "v.yaml").write_text("x: 1\n")
    write_pipeline(repo.root, doc)
    before = sorted(p.name for p in repo.root.iterdir())
    for command in (["run"], ["dag"], ["status"]):
        result = cli(*command, code=2)
        line = one_error(result.stderr)
        assert LOCATED.match(line), line
        assert needle in line, line
    assert sorted(p.name for p in repo.root.iterdir()) == before  # nothing ran, nothing was written
    guard.check()


def _planted(repo: Repo, outs: list[Any], cmd: str = "echo new > model") -> None:
    write_pipeline(repo.root, {"stages": {"train": {"cmd": cmd, "outs": outs}}})


@pytest.mark.parametrize("persist", [False, True])
def test_a_planted_output_symlink_leading_outside_is_refused(
    repo: Repo, guard: Any, cli: Any, tmp_path: Path, persist: bool
) -> None:
    os.symlink("../sentinel/keep.txt", repo.root / "model")
    _planted(repo, [{"model": {"persist": True}}] if persist else ["model"])
    line = one_error(cli("run", code=2).stderr)
    assert "output model refused: it is a symlink and it leads outside the repository" in line, line
    assert LOCATED.match(line), line
    assert os.readlink(repo.root / "model") == "../sentinel/keep.txt"
    assert (tmp_path / "sentinel" / "keep.txt").read_text() == "must never change\n"
    guard.check()


@pytest.mark.parametrize(
    ("link", "target", "needle"),
    [
        ("out", "../sentinel", "it leads outside the repository"),
        ("out", "../sentinel/nested", "it leads outside the repository"),
        ("out", ".git", "it leads into .git/"),
        ("out", ".mlops", "it leads into .mlops/"),
    ],
)
def test_a_planted_parent_symlink_is_refused(
    repo: Repo, guard: Any, cli: Any, tmp_path: Path, link: str, target: str, needle: str
) -> None:
    os.symlink(target, repo.root / link)
    for name in ("deep", "hooks"):  # what the stage would delete and write through the link
        _planted(repo, [f"out/{name}"], cmd=f"mkdir -p out/{name} && echo owned > out/{name}/x")
        line = one_error(cli("run", code=2).stderr)
        assert f"output out/{name} refused: {needle}" in line, line
    assert not (tmp_path / "sentinel" / "deep").exists()
    guard.check()


def test_a_link_planted_during_the_run_is_refused_before_the_stage_deletes(
    repo: Repo, guard: Any, cli: Any, tmp_path: Path
) -> None:
    """An upstream stage links the downstream stage's output folder outside: checked again just before deleting."""
    write_pipeline(
        repo.root,
        {
            "stages": {
                "plant": {"cmd": "echo a > a.txt && ln -s ../sentinel/nested linked", "outs": ["a.txt"]},
                "victim": {"cmd": "echo b > linked/deep", "deps": ["a.txt"], "outs": ["linked/deep"]},
            }
        },
    )
    result = cli("run", code=3)
    assert "output linked/deep refused: it leads outside the repository" in result.stdout + result.stderr
    assert (tmp_path / "sentinel" / "nested" / "deep" / "file.bin").read_text() == "x" * 100
    guard.check()


def test_links_inside_the_repository_still_work(repo: Repo, guard: Any, cli: Any) -> None:
    """A folder the user links inside the repository is not an attack: the stage runs through it."""
    (repo.root / "real").mkdir()
    os.symlink("real", repo.root / "out")
    _planted(repo, ["out/model"], cmd="echo v1 > out/model")
    cli("run")
    assert (repo.root / "real" / "model").read_text() == "v1\n"
    _planted(repo, ["out/model"], cmd="echo v2 > out/model")
    cli("run")
    assert (repo.root / "real" / "model").read_text() == "v2\n"
    guard.check()


def test_a_symlink_inside_a_persistent_output_is_not_copied_in(
    repo: Repo, guard: Any, cli: Any, tmp_path: Path
) -> None:
    (repo.root / "state").mkdir()
    os.symlink("../../sentinel/keep.txt", repo.root / "state" / "secret")
    _planted(repo, [{"state": {"persist": True}}], cmd="echo run >> state/log")
    result = cli("run", code=3)
    line = one_error(result.stderr)
    assert "state/secret" in line and "symlink" in line and "outside the repository" in line, line
    assert not (repo.root / "state" / "log").exists()  # the command never ran
    assert os.path.islink(repo.root / "state" / "secret")
    guard.check()
