"""pipeline.lock: its content after success and failure, its layout, and merging it with git."""

from __future__ import annotations

import json
import subprocess

import pytest
from pipekit import assert_one_error, cache_has, commit_all, counts, git, reasons, runcache_entries, statuses, xxh


@pytest.fixture
def three(proj):
    """Written out of run order on purpose: report (needs train), prep, train (needs prep)."""
    proj.write(
        {
            "params.yaml": "train:\n  lr: 0.1\n  layers: [8, 4]\nseed: 3\n",
            "raw.txt": "raw\n",
            "imgs/1.txt": "one\n",
            "imgs/2.txt": "two\n",
        }
    )
    proj.pipeline(
        {
            "report": {"cmd": proj.cmd("cat:model.txt=report.txt"), "deps": ["model.txt"], "outs": ["report.txt"]},
            "prep": {
                "cmd": proj.cmd("copy:raw.txt=prep.txt", "cat:imgs=feat/all.txt"),
                "deps": ["raw.txt", "imgs"],
                "outs": ["prep.txt", "feat"],
            },
            "train": {
                "cmd": proj.cmd("cat:prep.txt=model.txt", "write:m.json=1"),
                "deps": ["prep.txt", "feat"],
                "params": ["train", "seed"],
                "outs": ["model.txt"],
                "metrics": ["m.json"],
            },
        }
    )
    return proj


def test_lock_content_after_success(three):
    doc = three.run()
    assert [s["name"] for s in doc["stages"]] == ["prep", "train", "report"]  # run order
    lock = three.lock()
    assert list(lock) == ["report", "prep", "train"]  # pipeline.yaml order, not run order
    prep = lock["prep"]
    assert prep["cmd"] == three.cmd("copy:raw.txt=prep.txt", "cat:imgs=feat/all.txt")
    assert prep["deps"][0] == {"path": "raw.txt", "hash": xxh("raw\n"), "kind": "file", "size": 4}
    assert prep["deps"][1]["path"] == "imgs" and prep["deps"][1]["kind"] == "dir" and prep["deps"][1]["files"] == 2
    assert prep["deps"][1]["size"] == 8
    assert prep["outs"][0] == {"path": "prep.txt", "hash": xxh("raw\n"), "kind": "file", "size": 4}
    assert prep["outs"][1]["path"] == "feat" and prep["outs"][1]["kind"] == "dir" and prep["outs"][1]["files"] == 1
    assert "params" not in prep and "env" not in prep
    train = lock["train"]
    assert train["params"] == {"params.yaml": {"seed": 3, "train.layers": [8, 4], "train.lr": 0.1}}
    assert [d["path"] for d in train["deps"]] == ["prep.txt", "feat"]
    assert train["deps"][1]["hash"] == prep["outs"][1]["hash"]  # what train read is what prep wrote
    assert [o["path"] for o in train["outs"]] == ["model.txt", "m.json"]
    assert train["outs"][0]["hash"] == xxh("raw\n") and train["outs"][1]["hash"] == xxh("1\n")
    assert lock["report"]["deps"][0]["hash"] == train["outs"][0]["hash"]
    # every cached output's object is in the cache
    for entry in lock.values():
        for out in entry["outs"]:
            assert cache_has(three.root, out["hash"]), out


def test_lock_layout_blank_line_between_blocks_and_stable(three):
    three.run()
    text = (three.root / "pipeline.lock").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("#") and "format: 1" in lines
    starts = [
        i for i, line in enumerate(lines) if line.startswith("  ") and not line.startswith("   ") and line.endswith(":")
    ]
    assert [lines[i].strip() for i in starts] == ["report:", "prep:", "train:"]
    for i in starts:
        assert lines[i - 1] == "", f"no blank line before {lines[i]!r}:\n{text}"
    # no blank line inside a block
    blanks = [i for i, line in enumerate(lines) if line == ""]
    assert blanks == [i - 1 for i in starts]
    # rerunning everything on the same inputs writes the very same bytes
    three.run("--force")
    assert (three.root / "pipeline.lock").read_text() == text
    # and running one stage rewrites only its block's neighbourhood (others stay byte-identical)
    (three.root / "params.yaml").write_text("train:\n  lr: 0.2\n  layers: [8, 4]\nseed: 3\n")
    three.run()
    new = (three.root / "pipeline.lock").read_text()
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=False) if a != b]
    assert changed == [("        train.lr: 0.1", "        train.lr: 0.2")]


def test_failing_stage_records_nothing_earlier_ones_keep_theirs(proj):
    proj.write({"in.txt": "in\n"})
    proj.pipeline(
        {
            "first": {"cmd": proj.cmd("copy:in.txt=first.txt"), "deps": ["in.txt"], "outs": ["first.txt"]},
            "broken": {
                "cmd": proj.cmd("write:partial.txt=half-written-output", "fail:4"),
                "deps": ["first.txt"],
                "outs": ["partial.txt"],
            },
            "after": {"cmd": proj.cmd("copy:partial.txt=after.txt"), "deps": ["partial.txt"], "outs": ["after.txt"]},
        }
    )
    doc = proj.run("-j", "1", code=3)
    assert statuses(doc) == {"first": "ran", "broken": "failed", "after": "not run"}
    broken = {s["name"]: s for s in doc["stages"]}["broken"]
    assert broken["returncode"] == 4 and broken["error"] == "command exited with code 4"
    lock = proj.lock()
    assert list(lock) == ["first"]
    assert lock["first"]["outs"][0]["hash"] == xxh("in\n")
    # the partial output was left where the command wrote it, but never taken into the cache
    assert (proj.root / "partial.txt").read_text() == "half-written-output\n"
    assert not cache_has(proj.root, xxh("half-written-output\n"))
    assert len(runcache_entries(proj.root)) == 1  # first's only
    ignored = subprocess.run(["git", "check-ignore", "-q", "partial.txt"], cwd=proj.root).returncode == 0
    assert not ignored
    # the human report names the failure on stderr
    assert "failed broken" in doc["_stderr"] and "[broken] failing on purpose" in doc["_stderr"]
    # fixing the command: first is not rerun, broken and after run
    text = (proj.root / "pipeline.yaml").read_text().replace(" fail:4", "")
    (proj.root / "pipeline.yaml").write_text(text)
    assert reasons(proj.dry()) == {
        "first": [],
        "broken": ["never run"],
        "after": ["upstream broken will run", "never run"],
    }
    again = proj.run()
    assert statuses(again) == {"first": "skipped", "broken": "ran", "after": "ran"}
    assert list(proj.lock()) == ["first", "broken", "after"]


def test_command_that_does_not_produce_its_output_fails(proj):
    proj.pipeline({"lazy": {"cmd": proj.cmd("write:other.txt=x"), "outs": ["wanted.txt"]}})
    doc = proj.run(code=3)
    assert statuses(doc) == {"lazy": "failed"}
    assert "did not produce wanted.txt" in doc["stages"][0]["error"]
    assert proj.lock() == {}


def test_run_json_is_one_document_on_failure(proj):
    proj.pipeline({"bad": {"cmd": proj.cmd("fail:1"), "outs": ["x.txt"]}})
    out = proj.mlops("run", "--json", code=3).stdout
    json.loads(out)  # the whole of stdout is one document


def test_two_branches_changing_different_stages_merge_cleanly(proj):
    proj.write({"a.txt": "a1\n", "b.txt": "b1\n", "c.txt": "c1\n"})
    stages = {
        name: {
            "cmd": proj.cmd(f"count:{proj.counter}", f"copy:{name}.txt={name}.out"),
            "deps": [f"{name}.txt"],
            "outs": [f"{name}.out"],
        }
        for name in ("a", "b", "c")
    }
    proj.pipeline(stages)
    proj.run()
    commit_all(proj.root, "pipeline v1")
    base_lock = (proj.root / "pipeline.lock").read_text()

    git(proj.root, "checkout", "-q", "-b", "feature")
    (proj.root / "a.txt").write_text("a2\n")
    assert statuses(proj.run()) == {"a": "ran", "b": "skipped", "c": "skipped"}
    commit_all(proj.root, "a changed")

    git(proj.root, "checkout", "-q", "main")
    proj.cli("checkout")
    (proj.root / "b.txt").write_text("b2\n")
    assert statuses(proj.run()) == {"a": "skipped", "b": "ran", "c": "skipped"}
    commit_all(proj.root, "b changed")
    # two adjacent blocks changed: a's outputs at its end, b's dependency at its start
    assert (proj.root / "pipeline.lock").read_text() != base_lock

    merged = subprocess.run(
        ["git", "merge", "--no-edit", "-q", "feature"], cwd=proj.root, capture_output=True, text=True
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    text = (proj.root / "pipeline.lock").read_text()
    assert "<<<<<<<" not in text and ">>>>>>>" not in text
    lock = proj.lock()
    assert list(lock) == ["a", "b", "c"]
    assert lock["a"]["deps"][0]["hash"] == xxh("a2\n") and lock["a"]["outs"][0]["hash"] == xxh("a2\n")
    assert lock["b"]["deps"][0]["hash"] == xxh("b2\n") and lock["b"]["outs"][0]["hash"] == xxh("b2\n")
    # the merged lock describes the merged workspace once its outputs are checked out
    proj.cli("checkout")
    assert proj.read("a.out") == "a2\n" and proj.read("b.out") == "b2\n"
    proj.counter.write_text("")
    assert statuses(proj.dry()) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert statuses(proj.run()) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert counts(proj.counter) == []


def test_renamed_stage_does_not_leave_a_stale_block_that_checkout_restores(proj):
    proj.pipeline({"zeta": {"cmd": proj.cmd("write:out.txt=old"), "outs": ["out.txt"]}})
    proj.run()
    proj.pipeline({"alpha": {"cmd": proj.cmd("write:out.txt=new"), "outs": ["out.txt"]}})
    proj.run()
    assert proj.read("out.txt") == "new\n"
    (proj.root / "out.txt").unlink()
    proj.cli("checkout")
    assert proj.read("out.txt") == "new\n"
    assert statuses(proj.dry()) == {"alpha": "skipped"}
    assert list(proj.lock()) == ["alpha"]


CONFLICTED = "<<<<<<< HEAD\nformat: 1\n=======\nformat: 1\n>>>>>>> feature\n"


def test_conflicted_lock_is_a_located_error_for_dry_run_and_status(proj):
    proj.pipeline({"a": {"cmd": proj.cmd("write:a.txt=a"), "outs": ["a.txt"]}})
    proj.run()
    (proj.root / "pipeline.lock").write_text(CONFLICTED)
    for args in (["run", "--dry-run"], ["status"], ["checkout"]):
        proc = proj.mlops(*args, code=2)
        assert_one_error(proc.stderr, "pipeline.lock:2:7: not valid YAML")


def test_conflicted_lock_refuses_run_before_anything_runs(proj):
    proj.pipeline({"a": {"cmd": proj.cmd(f"count:{proj.counter}", "write:a.txt=a"), "outs": ["a.txt"]}})
    proj.run()
    (proj.root / "pipeline.lock").write_text(CONFLICTED)
    proc = proj.mlops("run", "--force", code=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pipeline.lock:2:7" in proc.stderr and "fix the command" not in proc.stderr
    assert counts(proj.counter) == ["a"]
