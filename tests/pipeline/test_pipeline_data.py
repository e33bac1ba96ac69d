"""The data commands see pipeline outputs: checkout, gc, push/pull, and status (--check)."""

from __future__ import annotations

import json
import shutil

import pytest
from pipekit import cache_has, cache_objects, commit_all, counts, git, mlops, run_json, statuses, xxh

PARAMS = "lr: {lr}\n"


@pytest.fixture
def built(proj):
    proj.write({"params.yaml": PARAMS.format(lr=0.1), "raw.txt": "raw\n"})
    proj.pipeline(
        {
            "prep": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:raw.txt=prep/clean.txt", "write:prep/extra.txt=e"),
                "deps": ["raw.txt"],
                "outs": ["prep"],
            },
            "train": {
                "cmd": proj.cmd(f"count:{proj.counter}", "param:lr=model.txt", "write:metrics.json={}"),
                "deps": ["prep"],
                "params": ["lr"],
                "outs": ["model.txt"],
                "metrics": ["metrics.json"],
            },
        }
    )
    proj.run()
    proj.counter.write_text("")
    return proj


def _set_lr(p, lr):
    (p.root / "params.yaml").write_text(PARAMS.format(lr=lr))


def test_checkout_restores_deleted_pipeline_outputs(built):
    shutil.rmtree(built.root / "prep")
    (built.root / "model.txt").unlink()
    doc = json.loads(built.cli("checkout", "--json").stdout)
    assert doc["changed_files"] == 3
    assert built.read("prep/clean.txt") == "raw\n" and built.read("prep/extra.txt") == "e\n"
    assert built.read("model.txt") == "lr=0.1\n"
    assert statuses(built.dry()) == {"prep": "skipped", "train": "skipped"}
    assert json.loads(built.cli("checkout", "--json").stdout)["changed_files"] == 0
    assert counts(built.counter) == []


def test_checkout_leaves_git_tracked_metrics_alone(built):
    (built.root / "metrics.json").write_text('{"edited": true}\n')
    built.cli("checkout")
    # metrics are git's business (not cached): checkout does not overwrite them
    assert built.read("metrics.json") == '{"edited": true}\n'


def test_checkout_refuses_to_lose_an_edited_output_unless_forced(built):
    path = built.root / "model.txt"
    path.unlink()
    path.write_text("hand edit\n")
    proc = built.mlops("checkout", code=2)
    assert "model.txt" in proc.stderr
    assert built.read("model.txt") == "hand edit\n"
    built.mlops("checkout", "--force")
    assert built.read("model.txt") == "lr=0.1\n"


def test_gc_keeps_lock_and_run_cache_objects(built):
    old_model = xxh("lr=0.1\n")
    _set_lr(built, 0.2)
    built.run()
    new_model = xxh("lr=0.2\n")
    assert cache_has(built.root, old_model) and cache_has(built.root, new_model)
    # an object nobody references: added, then its pointer file removed
    built.write({"junk.bin": "junk-data\n"})
    built.cli("add", "junk.bin")
    (built.root / "junk.bin.mlops").unlink()
    assert cache_has(built.root, xxh("junk-data\n"))

    doc = json.loads(built.cli("gc", "--json").stdout)
    assert doc["removed"] == 1
    assert not cache_has(built.root, xxh("junk-data\n"))
    assert cache_has(built.root, new_model)  # named by pipeline.lock
    assert cache_has(built.root, old_model)  # named only by the run cache
    assert cache_has(built.root, xxh("raw\n")) and cache_has(built.root, xxh("e\n"))  # inside the prep folder
    assert cache_has(built.root, xxh("{}\n"))  # git-tracked metrics are stored too
    # and the run cache still works after gc
    _set_lr(built, 0.1)
    assert statuses(built.run()) == {"prep": "skipped", "train": "restored"}
    assert built.read("model.txt") == "lr=0.1\n"
    assert counts(built.counter) == ["train"]  # only the lr=0.2 run
    # deleted outputs still come back
    shutil.rmtree(built.root / "prep")
    built.cli("checkout")
    assert built.read("prep/clean.txt") == "raw\n"
    assert json.loads(built.cli("gc", "--json").stdout)["removed"] == 0


def test_push_pull_carries_pipeline_outputs(built, remote_dir, tmp_path):
    built.cli("remote", "add", "store", str(remote_dir), "--default")
    pushed = json.loads(built.cli("push", "--json").stdout)
    assert pushed["transferred"] >= 4
    for digest in (xxh("raw\n"), xxh("e\n"), xxh("lr=0.1\n")):
        assert (remote_dir / digest[:2] / digest[2:]).is_file()
    commit_all(built.root, "pipeline and lock")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(built.root), str(clone))
    assert (clone / "pipeline.lock").is_file() and not (clone / "model.txt").exists() and not (clone / "prep").exists()
    mlops("pull", cwd=clone)
    assert (clone / "prep/clean.txt").read_text() == "raw\n"
    assert (clone / "prep/extra.txt").read_text() == "e\n"
    assert (clone / "model.txt").read_text() == "lr=0.1\n"
    dry = run_json("--dry-run", cwd=clone)
    assert statuses(dry) == {"prep": "skipped", "train": "skipped"}
    mlops("status", "--check", cwd=clone)
    # the clone's run needs no command at all
    assert statuses(run_json(cwd=clone)) == {"prep": "skipped", "train": "skipped"}
    assert counts(built.counter) == []


def test_push_sends_run_cache_objects_too(built, remote_dir):
    _set_lr(built, 0.2)
    built.run()
    built.cli("remote", "add", "store", str(remote_dir), "--default")
    built.cli("push")
    # the lr=0.1 model is only in the run cache now; it still travels
    digest = xxh("lr=0.1\n")
    assert (remote_dir / digest[:2] / digest[2:]).is_file()
    remote = {p.parent.name + p.name for p in remote_dir.glob("??/*")}
    assert cache_objects(built.root) <= remote


def test_status_lists_out_of_date_stages(built):
    proc = built.mlops("status")
    assert "pipeline is up to date (2 stage(s))" in proc.stderr
    built.mlops("status", "--check")
    _set_lr(built, 0.3)
    proc = built.mlops("status")
    assert "stage\ttrain\tparam lr 0.1 -> 0.3" in proc.stdout.splitlines()
    assert "prep" not in proc.stdout
    doc = json.loads(built.mlops("status", "--json").stdout)
    assert doc["clean"] is False
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["train"] == {
        "name": "train",
        "status": "would run",
        "reasons": ["param lr 0.1 -> 0.3"],
        "has_run": True,
    }
    assert stages["prep"]["status"] == "skipped"
    proc = built.mlops("status", "--check", code=1)
    assert "1 tracked path(s) or stage(s) changed" in proc.stderr
    built.run()
    built.mlops("status", "--check")


def test_status_check_ignores_stages_that_never_ran(proj):
    proj.write({"in.txt": "1\n"})
    proj.pipeline(
        {
            "done": {"cmd": proj.cmd("copy:in.txt=done.txt"), "deps": ["in.txt"], "outs": ["done.txt"]},
            "later": {"cmd": proj.cmd("copy:done.txt=later.txt"), "deps": ["done.txt"], "outs": ["later.txt"]},
        }
    )
    # nothing ran yet: listed, but not a failed check
    proc = proj.mlops("status", "--check")
    assert "stage\tdone\tnever run" in proc.stdout.splitlines()
    doc = json.loads(proj.mlops("status", "--json").stdout)
    assert doc["clean"] is True and {s["name"]: s["has_run"] for s in doc["stages"]} == {"done": False, "later": False}
    proj.run("done")
    proj.mlops("status", "--check")  # 'later' never ran: still not a failure
    (proj.root / "in.txt").write_text("2\n")
    proc = proj.mlops("status", "--check", code=1)
    assert "stage\tdone\tdep in.txt changed" in proc.stdout.splitlines()
    assert "stage\tlater\tupstream done will run; never run" in proc.stdout.splitlines()


def test_status_check_counts_data_changes_too(built):
    built.write({"data.csv": "a,b\n"})
    built.cli("add", "data.csv")
    built.mlops("status", "--check")
    (built.root / "data.csv").write_text("a,b\n1,2\n")
    proc = built.mlops("status", "--check", code=1)
    assert "data.csv" in proc.stdout
    doc = json.loads(built.mlops("status", "--json").stdout)
    assert doc["clean"] is False and all(s["status"] == "skipped" for s in doc["stages"])
    # a tracked file as a stage dependency: both views agree
    built.cli("add", "data.csv")
    built.pipeline({"use": {"cmd": built.cmd("copy:data.csv=used.csv"), "deps": ["data.csv"], "outs": ["used.csv"]}})
    built.run()
    built.mlops("status", "--check")
    (built.root / "data.csv").write_text("changed\n")
    proc = built.mlops("status", "--check", code=1)
    assert "stage\tuse\tdep data.csv changed" in proc.stdout.splitlines()
    assert "2 tracked path(s) or stage(s) changed" in proc.stderr


def test_gc_all_commits_keeps_outputs_named_by_other_commits_locks(built, remote_dir, tmp_path):
    built.cli("remote", "add", "store", str(remote_dir), "--default")
    commit_all(built.root, "lr 0.1")
    git(built.root, "checkout", "-q", "-b", "exp")
    _set_lr(built, 0.2)
    built.run()
    commit_all(built.root, "lr 0.2")
    built.cli("push")
    git(built.root, "checkout", "-q", "main")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(built.root), str(clone))
    git(clone, "checkout", "-q", "exp")
    mlops("pull", cwd=clone)
    assert (clone / "model.txt").read_text() == "lr=0.2\n"
    git(clone, "checkout", "-q", "main")
    mlops("pull", cwd=clone)
    assert (clone / "model.txt").read_text() == "lr=0.1\n"

    mlops("gc", "--all-commits", cwd=clone)
    assert cache_has(clone, xxh("lr=0.2\n")), "gc --all-commits removed the model that exp's pipeline.lock names"
    git(clone, "checkout", "-q", "exp")
    mlops("checkout", cwd=clone)
    assert (clone / "model.txt").read_text() == "lr=0.2\n"
