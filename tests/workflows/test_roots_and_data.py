"""workflows.roots and workflows.data as a library: what gc, verify, push, fetch and pull keep
beyond the pointer files, on a real repository with a pipeline run and a registered model."""

from __future__ import annotations

import inspect

import pytest
from flowkit import git, project, with_remote

from mlops.data import maintenance
from mlops.data.add import add
from mlops.workflows import data, roots


def test_the_data_rooms_gc_requires_its_roots(repo) -> None:
    assert inspect.signature(maintenance.gc).parameters["extra_roots"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="extra_roots"):
        maintenance.gc(repo)  # type: ignore[call-arg]


def test_gc_through_the_workflow_keeps_pipeline_outputs_and_registry_artifacts(repo, cli) -> None:
    kept = project(repo, cli)
    (repo.root / "scratch.txt").write_text("nobody keeps this\n")
    add(repo, ["scratch.txt"])
    (repo.root / "scratch.txt.mlops").unlink()  # its object is referenced by nothing now
    before = set(repo.objects.iter_digests())
    # the data room alone would take the pipeline's output and the model: what the roots are for
    blind = maintenance.gc(repo, extra_roots=(), dry_run=True)
    assert blind.removed == 3

    result = data.gc(repo)
    after = set(repo.objects.iter_digests())
    assert result.removed == 1 and len(before - after) == 1
    assert set(kept.values()) <= after  # tracked data, the lock file's output, the registered model


def test_keep_roots_name_the_lock_output_and_the_model(repo, cli) -> None:
    kept = project(repo, cli)
    named = {r.hash: r.label for r in roots.keep_roots(repo)}
    assert kept["output"] in named and kept["model"] in named
    assert kept["data"] not in named  # the pointer files are the data room's own roots
    assert [p.target for p in roots.lock_outputs(repo)] == ["out.txt"]
    assert [p.target for p in roots.lock_outputs(repo, "HEAD")] == ["out.txt"]


def test_lock_outputs_without_a_lock_file_are_none(repo) -> None:
    assert roots.lock_outputs(repo) == []


def test_pushed_roots_are_what_the_commits_reference(repo, cli) -> None:
    kept = project(repo, cli)
    tip = git(repo.root, "rev-parse", "HEAD")
    named = {r.hash for r in roots.pushed_roots(repo, [tip], [])}
    assert set(kept.values()) <= named
    # a commit the remote already has adds nothing, but the tip's own tree still counts
    assert {r.hash for r in roots.pushed_roots(repo, [tip], ["^" + tip])} == named


def test_push_and_pull_carry_the_pipeline_output_and_the_model(repo, cli, tmp_path) -> None:
    kept = project(repo, cli)
    repo = with_remote(repo, cli, tmp_path / "store")
    moved = data.push(repo)
    assert moved.objects.transferred == 3 and moved.runs is None and moved.checkout is None

    for digest in kept.values():
        repo.objects.remove(digest)
    (repo.root / "out.txt").unlink()
    pulled = data.pull(repo)
    assert pulled.objects.transferred == 3
    assert set(kept.values()) <= set(repo.objects.iter_digests())
    assert (repo.root / "out.txt").read_text() == "pipeline input\n"  # the lock output checked out
    assert data.verify(repo).ok
