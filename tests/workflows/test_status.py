"""workflows.status as a library: the stages against pipeline.lock, beside the tracked data."""

from __future__ import annotations

from flowkit import PIPELINE

from mlops.data.add import add
from mlops.workflows.status import stage_status, status


def test_no_pipeline_no_stages(repo) -> None:
    assert stage_status(repo) == ()
    assert status(repo).clean and status(repo).problems == 0


def test_stage_status_before_a_run_after_it_and_after_a_change(repo, cli) -> None:
    (repo.root / "in.txt").write_text("one\n")
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    (first,) = stage_status(repo)
    assert (first.name, first.status, first.has_run, first.stale) == ("copy", "would run", False, False)
    assert status(repo).problems == 0  # a stage never run is nothing recorded that went stale

    cli("run")
    (ran,) = stage_status(repo)
    assert ran.status != "would run" and ran.has_run and not ran.stale

    (repo.root / "in.txt").write_text("two\n")
    (stale,) = stage_status(repo)
    assert stale.stale and any("in.txt" in reason for reason in stale.reasons)
    assert stale.to_dict() == {"name": "copy", "status": "would run", "reasons": list(stale.reasons), "has_run": True}
    found = status(repo)
    assert found.stale == (stale,) and found.problems == 1 and not found.clean


def test_targets_leave_the_stages_out(repo, cli) -> None:
    (repo.root / "d.txt").write_text("d\n")
    add(repo, ["d.txt"])
    (repo.root / "d.txt").write_text("changed\n")
    (repo.root / "in.txt").write_text("one\n")
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    cli("run")
    (repo.root / "in.txt").write_text("two\n")
    only = status(repo, ["d.txt"])
    assert only.stages == () and [t.path for t in only.changed] == ["d.txt"] and only.problems == 1
    assert status(repo).problems == 2
