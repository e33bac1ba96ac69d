"""Scheduling: independent stages in parallel, dependents after their upstream, failures."""

from __future__ import annotations

import json
import os

import pytest
from pipekit import by_name, counts, run_json, statuses

NAMES = ["w1", "w2", "w3", "w4"]


def _times(p, name):
    return json.loads((p.root / "times" / f"{name}.json").read_text())


@pytest.fixture
def four(proj):
    proj.pipeline(
        {name: {"cmd": proj.cmd(f"times:times/{name}.json=1"), "outs": [f"times/{name}.json"]} for name in NAMES}
    )
    return proj


def test_four_independent_stages_overlap_with_j4(four):
    doc = run_json("-j", "4", cwd=four.root)
    assert statuses(doc) == {n: "ran" for n in NAMES}
    spans = [_times(four, n) for n in NAMES]
    assert max(s["start"] for s in spans) < min(s["end"] for s in spans), spans
    # the run report's own timestamps agree: all four were running at one moment
    stages = by_name(doc)
    assert max(stages[n]["started"] for n in NAMES) < min(stages[n]["ended"] for n in NAMES)


def test_j1_runs_one_stage_at_a_time(four):
    (four.root / "pipeline.yaml").write_text((four.root / "pipeline.yaml").read_text().replace("=1", "=0.3"))
    doc = run_json("-j", "1", cwd=four.root)
    assert statuses(doc) == {n: "ran" for n in NAMES}
    spans = sorted((_times(four, n) for n in NAMES), key=lambda s: s["start"])
    for before, after in zip(spans, spans[1:], strict=False):
        assert before["end"] <= after["start"], spans


def test_dependent_stages_start_after_upstream_ended(proj):
    # a diamond: top -> (left, right) -> bottom, plus an independent slow stage
    proj.pipeline(
        {
            "top": {"cmd": proj.cmd("times:t/top.json=0.8"), "outs": ["t/top.json"]},
            "left": {"cmd": proj.cmd("times:l/left.json=0.3"), "deps": ["t/top.json"], "outs": ["l/left.json"]},
            "right": {"cmd": proj.cmd("times:r/right.json=0.3"), "deps": ["t/top.json"], "outs": ["r/right.json"]},
            "bottom": {
                "cmd": proj.cmd("times:b/bottom.json=0"),
                "deps": ["l/left.json", "r/right.json"],
                "outs": ["b/bottom.json"],
            },
            "alone": {"cmd": proj.cmd("times:a/alone.json=0.2"), "outs": ["a/alone.json"]},
        }
    )
    doc = run_json("-j", "4", cwd=proj.root)
    assert set(statuses(doc).values()) == {"ran"}
    t = {
        n: json.loads((proj.root / p).read_text())
        for n, p in [
            ("top", "t/top.json"),
            ("left", "l/left.json"),
            ("right", "r/right.json"),
            ("bottom", "b/bottom.json"),
            ("alone", "a/alone.json"),
        ]
    }
    assert t["left"]["start"] >= t["top"]["end"] and t["right"]["start"] >= t["top"]["end"]
    assert t["bottom"]["start"] >= max(t["left"]["end"], t["right"]["end"])
    # the independent stage did not wait for the chain
    assert t["alone"]["start"] < t["top"]["end"]
    # left and right overlapped each other
    assert max(t["left"]["start"], t["right"]["start"]) < min(t["left"]["end"], t["right"]["end"])
    # run order in the report is topological
    names = [s["name"] for s in doc["stages"]]
    assert names.index("top") < names.index("left") < names.index("bottom")


def test_output_lines_prefixed_with_stage_name_when_piped(proj):
    proj.pipeline(
        {
            "alpha": {
                "cmd": proj.cmd("print:hello-from-alpha", "print:second-line", "write:a.txt=a"),
                "outs": ["a.txt"],
            },
            "beta": {"cmd": proj.cmd("print:hello-from-beta", "write:b.txt=b"), "outs": ["b.txt"]},
        }
    )
    proc = proj.mlops("run", "-j", "2")
    lines = proc.stdout.splitlines()
    assert "[alpha] hello-from-alpha" in lines and "[alpha] second-line" in lines
    assert "[beta] hello-from-beta" in lines
    assert lines.index("[alpha] hello-from-alpha") < lines.index("[alpha] second-line")
    assert not any(line.startswith("hello-from") for line in lines)  # never unprefixed
    assert "running alpha: never run" in lines and "running beta: never run" in lines
    assert "\x1b" not in proc.stdout
    # with --json the stage lines go to stderr; stdout is the report only
    (proj.root / "a.txt").unlink()
    proc = proj.mlops("run", "--json", "--force")
    assert "[alpha] hello-from-alpha" in proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_stage_environment_and_working_directory(proj):
    proj.write({"sub/in.txt": "x\n"})
    proj.pipeline(
        {
            "one": {"cmd": proj.cmd("env:e/one.json"), "outs": ["e/one.json"]},
            "two": {"cmd": proj.cmd("env:e/two.json"), "outs": ["e/two.json"]},
            "inside": {
                "cmd": proj.cmd("env:here.json", "copy:in.txt=copy.txt"),
                "wdir": "sub",
                "deps": ["in.txt"],
                "outs": ["here.json", "copy.txt"],
            },
        }
    )
    doc = run_json("-j", "3", cwd=proj.root)
    root = os.path.realpath(proj.root)
    seen = {
        "one": json.loads((proj.root / "e/one.json").read_text()),
        "two": json.loads((proj.root / "e/two.json").read_text()),
        "inside": json.loads((proj.root / "sub/here.json").read_text()),
    }
    assert {n: s["stage"] for n, s in seen.items()} == {"one": "one", "two": "two", "inside": "inside"}
    assert {s["run_id"] for s in seen.values()} == {doc["run_id"]}
    assert os.path.realpath(seen["one"]["cwd"]) == root and os.path.realpath(seen["two"]["cwd"]) == root
    assert os.path.realpath(seen["inside"]["cwd"]) == os.path.join(root, "sub")
    assert os.path.realpath(seen["one"]["root"]) == root
    assert (proj.root / "sub/copy.txt").read_text() == "x\n"
    # a second run gets a new run id
    second = run_json("--force", "one", cwd=proj.root)
    assert second["run_id"] != doc["run_id"]
    assert json.loads((proj.root / "e/one.json").read_text())["run_id"] == second["run_id"]


def test_run_from_a_subdirectory_runs_stages_at_the_root(proj):
    proj.write({"deep/er/keep.txt": "k\n"})
    proj.pipeline({"one": {"cmd": proj.cmd("env:e/one.json"), "outs": ["e/one.json"]}})
    doc = run_json(cwd=proj.root / "deep" / "er")
    assert statuses(doc) == {"one": "ran"}
    seen = json.loads((proj.root / "e/one.json").read_text())
    assert os.path.realpath(seen["cwd"]) == os.path.realpath(proj.root)
    assert not (proj.root / "deep/er/e").exists()
    assert "one" in proj.lock()


@pytest.fixture
def two_branches(proj):
    """a1 -> a2 (a1 fails) and b1 -> b2, independent of each other."""
    failing = proj.tmp / "a1-failing"
    proj.pipeline(
        {
            "a1": {
                "cmd": proj.cmd(f"count:{proj.counter}", "sleep:0.1", f"write:{failing}=x", "fail:2"),
                "outs": ["a1.txt"],
            },
            "a2": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:a1.txt=a2.txt"),
                "deps": ["a1.txt"],
                "outs": ["a2.txt"],
            },
            # b1 ends only after a1 has failed (it waits for a1's last words), so the order is certain
            "b1": {
                "cmd": proj.cmd(f"count:{proj.counter}", f"waitfor:{failing}", "sleep:0.4", "write:b1.txt=b"),
                "outs": ["b1.txt"],
            },
            "b2": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:b1.txt=b2.txt"),
                "deps": ["b1.txt"],
                "outs": ["b2.txt"],
            },
        }
    )
    return proj


def test_keep_going_runs_the_other_branch(two_branches):
    p = two_branches
    doc = run_json("--keep-going", "-j", "2", cwd=p.root, code=3)
    assert statuses(doc) == {"a1": "failed", "a2": "not run", "b1": "ran", "b2": "ran"}
    assert by_name(doc)["a2"]["reasons"] == ["an upstream stage failed"]
    assert (p.root / "b2.txt").read_text() == "b\n"
    assert sorted(counts(p.counter)) == ["a1", "b1", "b2"]
    assert sorted(p.lock()) == ["b1", "b2"]
    assert "stage(s) failed: a1" in doc["_stderr"]


def test_keep_going_with_one_worker(two_branches):
    p = two_branches
    doc = run_json("-k", "-j", "1", cwd=p.root, code=3)
    assert statuses(doc) == {"a1": "failed", "a2": "not run", "b1": "ran", "b2": "ran"}


def test_fail_fast_stops_starting_new_stages(two_branches):
    p = two_branches
    # one worker: a1 runs first and fails; nothing else is started
    doc = run_json("-j", "1", cwd=p.root, code=3)
    assert statuses(doc) == {"a1": "failed", "a2": "not run", "b1": "not run", "b2": "not run"}
    assert counts(p.counter) == ["a1"]
    assert by_name(doc)["b1"]["reasons"] == ["stopped after a failure"]
    assert by_name(doc)["a2"]["reasons"] in (["an upstream stage failed"], ["stopped after a failure"])
    assert p.lock() == {}


def test_fail_fast_lets_running_stages_finish(two_branches):
    p = two_branches
    # two workers: a1 and b1 start together; a1 fails first, b1 (already running) finishes and is recorded,
    # b2 (not started yet) is not run
    doc = run_json("-j", "2", cwd=p.root, code=3)
    assert statuses(doc) == {"a1": "failed", "a2": "not run", "b1": "ran", "b2": "not run"}
    assert sorted(counts(p.counter)) == ["a1", "b1"]
    assert list(p.lock()) == ["b1"]
    # the next run picks up where this one stopped
    text = (p.root / "pipeline.yaml").read_text().replace(" fail:2", " write:a1.txt=a")
    assert text != (p.root / "pipeline.yaml").read_text()
    (p.root / "pipeline.yaml").write_text(text)
    again = run_json("-j", "2", cwd=p.root)
    assert statuses(again) == {"a1": "ran", "a2": "ran", "b1": "skipped", "b2": "ran"}
