"""When is a stage out of date? Every kind of change, seen through `run --dry-run --json`, then a real run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pipekit import counts, reasons, statuses

PARAMS = "train:\n  lr: 0.1\n  epochs: 3\nother:\n  x: 1\n"


@pytest.fixture
def base(proj):
    """prep(data.txt, data/) -> prep.txt ; train(prep.txt, train.lr) -> model.txt + metrics.json."""
    proj.write({"params.yaml": PARAMS, "data.txt": "hello\n", "data/a.txt": "a\n", "data/b.txt": "b\n"})
    proj.pipeline(
        {
            "prep": {
                "cmd": proj.cmd(f"count:{proj.counter}", "cat:data.txt+data=prep.txt"),
                "deps": ["data.txt", "data"],
                "outs": ["prep.txt"],
            },
            "train": {
                "cmd": proj.cmd(
                    f"count:{proj.counter}", "cat:prep.txt=model.txt", "param:train.lr=lr.txt", "write:metrics.json={}"
                ),
                "deps": ["prep.txt"],
                "params": ["train.lr"],
                "outs": ["model.txt", "lr.txt"],
                "metrics": ["metrics.json"],
            },
        }
    )
    return proj


def _run_all(p):
    doc = p.run()
    assert statuses(doc) == {"prep": "ran", "train": "ran"}
    p.counter.write_text("")
    assert statuses(p.dry()) == {"prep": "skipped", "train": "skipped"}
    return doc


def test_never_run_then_run_then_up_to_date(base):
    dry = base.dry()
    assert dry["dry_run"] is True
    assert dry["run_id"] is None  # a dry run records no run: no id that `mlops runs show` could not find
    assert statuses(dry) == {"prep": "would run", "train": "would run"}
    assert reasons(dry) == {"prep": ["never run"], "train": ["upstream prep will run", "never run"]}
    assert not (base.root / "prep.txt").exists()  # a dry run runs nothing
    assert counts(base.counter) == []

    doc = base.run()
    assert doc["ok"] is True and doc["dry_run"] is False and doc["run_id"]
    assert statuses(doc) == {"prep": "ran", "train": "ran"}
    assert reasons(doc)["prep"] == ["never run"]
    assert counts(base.counter) == ["prep", "train"]
    assert base.read("prep.txt") == "hello\na\nb\n"
    assert base.read("model.txt") == "hello\na\nb\n"
    assert base.read("lr.txt") == "train.lr=0.1\n"

    again = base.run()
    assert statuses(again) == {"prep": "skipped", "train": "skipped"}
    assert counts(base.counter) == ["prep", "train"]


def test_cmd_changed(base):
    _run_all(base)
    text = (base.root / "pipeline.yaml").read_text().replace("write:metrics.json={}", "write:metrics.json={} print:hi")
    (base.root / "pipeline.yaml").write_text(text)
    assert reasons(base.dry()) == {"prep": [], "train": ["cmd changed"]}
    doc = base.run()
    assert statuses(doc) == {"prep": "skipped", "train": "ran"}
    assert counts(base.counter) == ["train"]


def test_dep_file_changed_propagates_upstream(base):
    _run_all(base)
    (base.root / "data.txt").write_text("HELLO\n")
    dry = base.dry()
    assert reasons(dry) == {"prep": ["dep data.txt changed"], "train": ["upstream prep will run"]}
    assert statuses(dry) == {"prep": "would run", "train": "would run"}
    doc = base.run()
    assert statuses(doc) == {"prep": "ran", "train": "ran"}
    assert reasons(doc)["train"] == ["dep prep.txt changed"]
    assert base.read("model.txt") == "HELLO\na\nb\n"
    assert counts(base.counter) == ["prep", "train"]


def test_dep_dir_changed_one_file_inside(base):
    _run_all(base)
    (base.root / "data/b.txt").write_text("B\n")  # same size, other bytes
    assert reasons(base.dry())["prep"] == ["dep data changed"]
    doc = base.run()
    assert statuses(doc)["prep"] == "ran"
    assert base.read("prep.txt") == "hello\na\nB\n"
    # a new file inside the folder is a change too
    (base.root / "data/c.txt").write_text("c\n")
    assert reasons(base.dry())["prep"] == ["dep data changed"]


def test_dep_missing(base):
    _run_all(base)
    # a dependency that a stage produces may go missing (one nobody produces is refused up front)
    (base.root / "prep.txt").unlink()
    dry = base.dry()
    # as the run will do: prep restored from the run cache, train then up to date
    assert reasons(dry) == {"prep": ["out prep.txt missing"], "train": []}
    assert statuses(dry) == {"prep": "would restore", "train": "skipped"}
    doc = base.run()
    # prep's inputs did not change: its output comes back from the run cache, and train then matches its lock
    assert statuses(doc) == {"prep": "restored", "train": "skipped"}
    assert base.read("prep.txt") == "hello\na\nb\n"
    assert counts(base.counter) == []
    # with --single-stage the missing dependency is what train sees
    (base.root / "prep.txt").unlink()
    assert reasons(base.dry("train", "--single-stage")) == {"train": ["dep prep.txt missing"]}
    failed = base.run("train", "--single-stage", code=3)
    assert statuses(failed) == {"train": "failed"}
    assert "command exited with code 1" in failed["stages"][0]["error"]


def test_param_value_changed(base):
    _run_all(base)
    (base.root / "params.yaml").write_text(PARAMS.replace("0.1", "0.2"))
    assert reasons(base.dry()) == {"prep": [], "train": ["param train.lr 0.1 -> 0.2"]}
    doc = base.run()
    assert statuses(doc) == {"prep": "skipped", "train": "ran"}
    assert base.read("lr.txt") == "train.lr=0.2\n"
    assert base.lock()["train"]["params"] == {"params.yaml": {"train.lr": 0.2}}
    # a key the stage does not declare changes nothing
    (base.root / "params.yaml").write_text(PARAMS.replace("0.1", "0.2").replace("epochs: 3", "epochs: 9"))
    assert statuses(base.dry()) == {"prep": "skipped", "train": "skipped"}


def test_whole_section_params(proj):
    proj.write({"params.yaml": PARAMS})
    proj.pipeline({"fit": {"cmd": proj.cmd("write:out.txt=x"), "params": ["train"], "outs": ["out.txt"]}})
    proj.run()
    assert proj.lock()["fit"]["params"] == {"params.yaml": {"train.epochs": 3, "train.lr": 0.1}}
    (proj.root / "params.yaml").write_text(PARAMS.replace("epochs: 3", "epochs: 4"))
    assert reasons(proj.dry())["fit"] == ["param train.epochs 3 -> 4"]
    assert statuses(proj.run())["fit"] == "ran"
    # another section is not the stage's business
    (proj.root / "params.yaml").write_text(PARAMS.replace("epochs: 3", "epochs: 4").replace("x: 1", "x: 2"))
    assert statuses(proj.dry())["fit"] == "skipped"
    # a key added inside the section is
    (proj.root / "params.yaml").write_text(
        PARAMS.replace("epochs: 3", "epochs: 4\n  momentum: 0.9").replace("x: 1", "x: 2")
    )
    assert reasons(proj.dry())["fit"] == ["param train.momentum added"]


def test_params_from_another_file(proj):
    proj.write({"params.yaml": PARAMS, "other.yaml": "seed: 7\nunused: 1\n"})
    proj.pipeline(
        {"fit": {"cmd": proj.cmd("write:out.txt=x"), "params": [{"other.yaml": ["seed"]}], "outs": ["out.txt"]}}
    )
    proj.run()
    assert proj.lock()["fit"]["params"] == {"other.yaml": {"seed": 7}}
    (proj.root / "other.yaml").write_text("seed: 7\nunused: 2\n")
    assert statuses(proj.dry())["fit"] == "skipped"
    (proj.root / "other.yaml").write_text("seed: 8\nunused: 2\n")
    assert reasons(proj.dry())["fit"] == ["param seed 7 -> 8"]
    assert statuses(proj.run())["fit"] == "ran"
    # params.yaml is not a dependency of this stage
    (proj.root / "params.yaml").write_text(PARAMS.replace("0.1", "0.5"))
    assert statuses(proj.dry())["fit"] == "skipped"


def test_params_whole_file_and_json_file(proj):
    proj.write({"conf.yaml": "a: 1\nb:\n  c: 2\n", "cfg.json": '{"model": {"depth": 3, "name": "x"}}'})
    proj.pipeline(
        {
            "fit": {
                "cmd": proj.cmd("write:out.txt=x"),
                "params": [{"conf.yaml": None}, {"cfg.json": ["model.depth"]}],
                "outs": ["out.txt"],
            }
        }
    )
    proj.run()
    assert proj.lock()["fit"]["params"] == {"cfg.json": {"model.depth": 3}, "conf.yaml": {"a": 1, "b.c": 2}}
    (proj.root / "cfg.json").write_text('{"model": {"depth": 3, "name": "y"}}')
    assert statuses(proj.dry())["fit"] == "skipped"
    (proj.root / "cfg.json").write_text('{"model": {"depth": 4, "name": "y"}}')
    (proj.root / "conf.yaml").write_text("a: 1\nb:\n  c: 5\nd: new\n")
    assert sorted(reasons(proj.dry())["fit"]) == ["param b.c 2 -> 5", "param d added", "param model.depth 3 -> 4"]


def test_env_var_dependency(proj, monkeypatch):
    monkeypatch.setenv("FOO", "one")
    proj.pipeline(
        {"fit": {"cmd": proj.cmd(f"count:{proj.counter}", "write:out.txt=x"), "env": ["FOO"], "outs": ["out.txt"]}}
    )
    proj.run()
    lock = proj.lock()["fit"]
    assert set(lock["env"]) == {"FOO"} and "one" not in str(lock["env"])  # a hash, never the value
    assert statuses(proj.dry())["fit"] == "skipped"
    monkeypatch.setenv("FOO", "two")
    assert reasons(proj.dry())["fit"] == ["env FOO changed"]
    assert statuses(proj.run())["fit"] == "ran"
    monkeypatch.delenv("FOO")
    assert reasons(proj.dry())["fit"] == ["env FOO changed"]
    assert counts(proj.counter) == ["fit", "fit"]
    # an undeclared variable changes nothing
    monkeypatch.setenv("FOO", "two")
    monkeypatch.setenv("BAR", "whatever")
    assert statuses(proj.dry())["fit"] == "skipped"


def test_output_deleted_then_restored_without_running(base):
    _run_all(base)
    (base.root / "model.txt").unlink()
    assert reasons(base.dry()) == {"prep": [], "train": ["out model.txt missing"]}
    doc = base.run()
    # same inputs as the recorded run: the outputs come back from the run cache
    assert statuses(doc) == {"prep": "skipped", "train": "restored"}
    assert base.read("model.txt") == "hello\na\nb\n"
    assert counts(base.counter) == []


def test_output_modified(base):
    _run_all(base)
    path = base.root / "model.txt"
    os.chmod(path, 0o644)
    path.unlink()
    path.write_text("tampered\n")
    assert reasons(base.dry()) == {"prep": [], "train": ["out model.txt changed"]}
    doc = base.run()
    assert statuses(doc)["train"] in ("restored", "ran")
    assert base.read("model.txt") == "hello\na\nb\n"
    assert statuses(base.dry()) == {"prep": "skipped", "train": "skipped"}


def test_always_changed_runs_every_time(proj):
    proj.pipeline(
        {
            "probe": {
                "cmd": proj.cmd(f"count:{proj.counter}", "write:out.txt=x"),
                "outs": ["out.txt"],
                "always_changed": True,
            }
        }
    )
    assert statuses(proj.run())["probe"] == "ran"
    assert reasons(proj.dry())["probe"] == ["always changed"]
    assert statuses(proj.run())["probe"] == "ran"
    assert statuses(proj.run())["probe"] == "ran"
    assert counts(proj.counter) == ["probe"] * 3


def test_frozen_stage_never_runs(proj):
    proj.write({"in.txt": "1\n"})
    proj.pipeline(
        {
            "cold": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:in.txt=cold.txt"),
                "deps": ["in.txt"],
                "outs": ["cold.txt"],
                "frozen": True,
            },
            "warm": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:in.txt=warm.txt"),
                "deps": ["in.txt"],
                "outs": ["warm.txt"],
            },
        }
    )
    dry = proj.dry()
    assert statuses(dry) == {"cold": "frozen", "warm": "would run"}
    doc = proj.run()
    assert statuses(doc) == {"cold": "frozen", "warm": "ran"}
    assert not (proj.root / "cold.txt").exists()
    assert "cold" not in proj.lock()
    (proj.root / "in.txt").write_text("2\n")
    assert statuses(proj.run()) == {"cold": "frozen", "warm": "ran"}
    assert statuses(proj.run("--force")) == {"cold": "frozen", "warm": "ran"}
    assert counts(proj.counter) == ["warm", "warm", "warm"]


def test_persist_output_is_kept_and_appended(proj):
    proj.write({"in.txt": "1\n"})
    proj.pipeline(
        {
            "log": {
                "cmd": proj.cmd("append:history.txt=run"),
                "deps": ["in.txt"],
                "outs": [{"history.txt": {"persist": True}}],
            },
            "fresh": {"cmd": proj.cmd("append:fresh.txt=run"), "deps": ["in.txt"], "outs": ["fresh.txt"]},
        }
    )
    proj.run()
    assert proj.read("history.txt") == "run\n" and proj.read("fresh.txt") == "run\n"
    (proj.root / "in.txt").write_text("2\n")
    assert statuses(proj.run()) == {"log": "ran", "fresh": "ran"}
    assert proj.read("history.txt") == "run\nrun\n"  # not deleted before the run
    assert proj.read("fresh.txt") == "run\n"  # deleted before the run
    (proj.root / "in.txt").write_text("3\n")
    proj.run()
    assert proj.read("history.txt") == "run\nrun\nrun\n"
    assert statuses(proj.dry()) == {"log": "skipped", "fresh": "skipped"}


def _ignored(root: Path, rel: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", rel], cwd=root).returncode == 0


def test_gitignore_cached_outputs_only(proj):
    proj.pipeline(
        {
            "fit": {
                "cmd": proj.cmd(
                    "write:models/model.bin=m",
                    "write:models/notes.txt=n",
                    "write:out/m.json={}",
                    "write:plots/p.csv=a",
                    "write:top.txt=t",
                    "write:dir/x/y.txt=y",
                ),
                "outs": ["models/model.bin", {"models/notes.txt": {"cache": False}}, "top.txt", "dir/x"],
                "metrics": ["out/m.json"],
                "plots": ["plots/p.csv"],
            }
        }
    )
    proj.run()
    assert (proj.root / "models/.gitignore").read_text().splitlines() == ["/model.bin"]
    assert "/top.txt" in (proj.root / ".gitignore").read_text().splitlines()
    assert (proj.root / "dir/.gitignore").read_text().splitlines() == ["/x"]
    assert (
        _ignored(proj.root, "models/model.bin")
        and _ignored(proj.root, "top.txt")
        and _ignored(proj.root, "dir/x/y.txt")
    )
    # cache: false and metrics/plots (uncached by default) stay for git
    assert not _ignored(proj.root, "models/notes.txt")
    assert not _ignored(proj.root, "out/m.json") and not (proj.root / "out/.gitignore").exists()
    assert not _ignored(proj.root, "plots/p.csv")
    # they stay plain writable files, not links into the cache
    for rel in ("models/notes.txt", "out/m.json", "plots/p.csv"):
        path = proj.root / rel
        assert not path.is_symlink() and os.access(path, os.W_OK) and path.stat().st_nlink == 1
    # running again does not repeat entries
    proj.run("--force")
    assert (proj.root / "models/.gitignore").read_text().splitlines() == ["/model.bin"]
    # git sees exactly the files meant for it
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "-uall"], cwd=proj.root, capture_output=True, text=True
    ).stdout
    listed = {line[3:] for line in untracked.splitlines()}
    assert "models/notes.txt" in listed and "out/m.json" in listed and "plots/p.csv" in listed
    assert "models/model.bin" not in listed and "top.txt" not in listed and "dir/x/y.txt" not in listed


def test_metrics_uncached_by_default_lock_records_them(proj):
    proj.pipeline({"ev": {"cmd": proj.cmd('write:m.json={"acc": 1}'), "metrics": ["m.json"]}})
    # no cached outputs at all: nothing goes in .gitignore
    proj.run()
    assert not (proj.root / ".gitignore").exists() or "/m.json" not in (proj.root / ".gitignore").read_text()
    locked = proj.lock()["ev"]["outs"]
    assert [o["path"] for o in locked] == ["m.json"] and locked[0]["hash"]
    (proj.root / "m.json").write_text('{"acc": 2}\n')
    assert reasons(proj.dry())["ev"] == ["out m.json changed"]


def test_dep_added_and_removed(proj):
    proj.write({"a.txt": "a\n", "b.txt": "b\n"})
    proj.pipeline({"s": {"cmd": proj.cmd("write:o.txt=x"), "deps": ["a.txt"], "outs": ["o.txt"]}})
    proj.run()
    proj.pipeline({"s": {"cmd": proj.cmd("write:o.txt=x"), "deps": ["a.txt", "b.txt"], "outs": ["o.txt"]}})
    assert reasons(proj.dry())["s"] == ["dep b.txt added"]
    proj.run()
    proj.pipeline({"s": {"cmd": proj.cmd("write:o.txt=x"), "deps": ["b.txt"], "outs": ["o.txt"]}})
    assert reasons(proj.dry())["s"] == ["dep a.txt removed"]


def test_dropped_output_makes_the_stage_out_of_date(proj):
    proj.pipeline({"s": {"cmd": proj.cmd("write:a.txt=a", "write:b.txt=b"), "outs": ["a.txt", "b.txt"]}})
    proj.run()
    proj.pipeline({"s": {"cmd": proj.cmd("write:a.txt=a", "write:b.txt=b"), "outs": ["a.txt"]}})
    assert reasons(proj.dry())["s"] == ["out b.txt removed"]
