"""Real `mlops run` processes: Ctrl-C (SIGINT) and locks per output between concurrent runs."""

from __future__ import annotations

import json
import os
import signal

import pytest
from pipekit import (
    LiveRun,
    assert_one_error,
    cache_has,
    counts,
    first_json,
    group_members,
    pid_alive,
    runcache_entries,
    statuses,
    wait_for,
    xxh,
)


def _drop_spawn(p):
    import re

    path = p.root / "pipeline.yaml"
    path.write_text(re.sub(r" spawn:\S+", "", path.read_text()))


@pytest.fixture
def hanging(proj):
    """before -> hang1, hang2: each hang spawns a grandchild `sleep` and waits for a release file."""
    release = proj.tmp / "release"
    stages = {"before": {"cmd": proj.cmd(f"count:{proj.counter}", "write:before.txt=b"), "outs": ["before.txt"]}}
    for n in (1, 2):
        stages[f"hang{n}"] = {
            "cmd": proj.cmd(
                f"count:{proj.counter}",
                f"pid:{proj.tmp}/stage{n}.pid",
                f"spawn:{proj.tmp}/grandchild{n}.pid",
                f"write:hang{n}.txt=partial",
                "print:marker",
                f"waitfor:{release}",
                f"write:hang{n}.txt=done",
            ),
            "deps": ["before.txt"],
            "outs": [f"hang{n}.txt"],
        }
    proj.pipeline(stages)
    proj.release = release
    return proj


def test_sigint_stops_stage_process_groups_and_records_nothing(hanging):
    p = hanging
    run = LiveRun("run", "-j", "4", cwd=p.root)
    try:
        run.wait_line("[hang1] marker")
        run.wait_line("[hang2] marker")
        pids = [int((p.tmp / f"{kind}{n}.pid").read_text()) for kind in ("stage", "grandchild") for n in (1, 2)]
        assert all(pid_alive(pid) for pid in pids)
        # each stage runs in a process group of its own (not mlops'), holding the stage and its grandchild
        groups = {os.getpgid(pid) for pid in pids}
        assert len(groups) == 2 and os.getpgid(run.pid) not in groups
        for group in groups:
            assert len(group_members(group)) >= 2
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(timeout=30)
    finally:
        run.kill()
    assert code == 130, run.stdout + run.stderr
    assert "interrupted" in run.stderr
    assert "Traceback" not in run.stderr
    # every process of both stages' groups is gone, grandchildren included
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=10, what="stage processes to end")
    wait_for(lambda: not any(group_members(g) for g in groups), timeout=10, what="stage process groups to empty")
    # nothing recorded for the interrupted stages; the finished one keeps its block
    assert list(p.lock()) == ["before"]
    assert len(runcache_entries(p.root)) == 1
    assert p.read("hang1.txt") == "partial\n" and not cache_has(p.root, xxh("partial\n"))
    assert sorted(counts(p.counter)) == ["before", "hang1", "hang2"]
    # the next run completes (locks released), reruns only what was interrupted
    # (without the grandchild this time: a stage's leftover background process would hold its output pipe)
    _drop_spawn(p)
    p.release.write_text("")
    doc = p.run()
    assert statuses(doc) == {"before": "skipped", "hang1": "ran", "hang2": "ran"}
    assert p.read("hang1.txt") == "done\n" and p.read("hang2.txt") == "done\n"
    assert list(p.lock()) == ["before", "hang1", "hang2"]


def test_sigint_during_a_single_stage(proj):
    release = proj.tmp / "release"
    proj.pipeline(
        {
            "only": {
                "cmd": proj.cmd(f"spawn:{proj.tmp}/gc.pid", "print:marker", f"waitfor:{release}", "write:o.txt=o"),
                "outs": ["o.txt"],
            },
        }
    )
    run = LiveRun("run", cwd=proj.root)
    try:
        run.wait_line("[only] marker")
        grandchild = int((proj.tmp / "gc.pid").read_text())
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(timeout=30)
    finally:
        run.kill()
    assert code == 130
    wait_for(lambda: not pid_alive(grandchild), timeout=10, what="grandchild to end")
    assert not (proj.root / "pipeline.lock").exists() or proj.lock() == {}
    assert runcache_entries(proj.root) == []
    _drop_spawn(proj)
    release.write_text("")
    assert statuses(proj.run()) == {"only": "ran"}


@pytest.fixture
def slow_and_other(proj):
    release = proj.tmp / "release"
    proj.pipeline(
        {
            "slow": {
                "cmd": proj.cmd(f"count:{proj.counter}", "print:holding", f"waitfor:{release}", "write:slow.txt=s"),
                "outs": ["slow.txt"],
            },
            "other": {"cmd": proj.cmd(f"count:{proj.counter}", "write:other.txt=o"), "outs": ["other.txt"]},
        }
    )
    proj.release = release
    return proj


def test_output_locks_let_disjoint_runs_through_and_stop_the_same_output(slow_and_other):
    p = slow_and_other
    first = LiveRun("run", "slow", cwd=p.root)
    try:
        first.wait_line("[slow] holding")

        # a disjoint target runs to the end while slow holds its output's lock
        p.mlops("run", "other")
        assert p.read("other.txt") == "o\n"
        assert first.proc.poll() is None

        # the same output: waits the bounded time, then that stage fails (exit 3) naming the holder
        second = p.mlops("run", "slow", code=3, env={"MLOPS_LOCK_TIMEOUT": "1"})
        line = assert_one_error(
            second.stderr, "another mlops process (pid", f"pid {first.pid}", "output slow.txt", only=False
        )
        assert "stage(s) failed: slow" in line
        assert "failed slow" in second.stdout
        assert first.proc.poll() is None

        # read-only commands do not wait for the run either
        status = p.mlops("status")
        assert "slow" in status.stdout
        dag = p.mlops("dag", "--json")
        assert json.loads(dag.stdout)["stages"] == ["slow", "other"]
        dry = p.mlops("run", "--dry-run", "--json")
        assert json.loads(dry.stdout)["stages"][0]["name"] == "slow"
        assert first.proc.poll() is None  # all of the above finished while slow was still running

        p.release.write_text("")
        assert first.finish(timeout=30) == 0, first.stdout + first.stderr
    finally:
        first.kill()
    assert counts(p.counter).count("slow") == 1  # the refused run never started the command
    assert counts(p.counter).count("other") == 1
    # both runs landed in pipeline.lock
    assert list(p.lock()) == ["slow", "other"]
    assert statuses(p.run()) == {"slow": "skipped", "other": "skipped"}


def test_lock_error_in_json_report(slow_and_other):
    p = slow_and_other
    first = LiveRun("run", "slow", cwd=p.root)
    try:
        first.wait_line("[slow] holding")
        second = p.mlops("run", "--json", "slow", code=3, env={"MLOPS_LOCK_TIMEOUT": "1"})
        doc = first_json(second.stdout)
        stage = doc["stages"][0]
        assert stage["status"] == "failed" and stage["returncode"] is None
        assert stage["error"].startswith(f"another mlops process (pid {first.pid}")
        p.release.write_text("")
        assert first.finish(timeout=30) == 0
    finally:
        first.kill()


def test_two_concurrent_runs_of_disjoint_stages_both_land_in_the_lock(proj):
    gate = proj.tmp / "gate"
    stages = {
        f"s{n}": {"cmd": proj.cmd("print:ready", f"waitfor:{gate}", f"write:s{n}.txt={n}"), "outs": [f"s{n}.txt"]}
        for n in (1, 2, 3)
    }
    proj.pipeline(stages)
    runs = [LiveRun("run", f"s{n}", cwd=proj.root) for n in (1, 2, 3)]
    try:
        for n, run in enumerate(runs, 1):
            run.wait_line(f"[s{n}] ready")
        gate.write_text("")  # all three finish at about the same time and rewrite pipeline.lock
        assert [run.finish(timeout=30) for run in runs] == [0, 0, 0]
    finally:
        for run in runs:
            run.kill()
    assert list(proj.lock()) == ["s1", "s2", "s3"]
    assert statuses(proj.dry()) == {"s1": "skipped", "s2": "skipped", "s3": "skipped"}
