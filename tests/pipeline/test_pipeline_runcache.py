"""The run cache: a stage seen before with the same inputs is restored, not rerun."""

from __future__ import annotations

import json
import shutil

import pytest
from pipekit import commit_all, counts, git, reasons, runcache_entries, statuses

PARAMS = "train:\n  lr: {lr}\n"


@pytest.fixture
def fit(proj):
    proj.write({"params.yaml": PARAMS.format(lr=0.1), "data.txt": "d\n"})
    proj.pipeline(
        {
            "train": {
                "cmd": proj.cmd(
                    f"count:{proj.counter}",
                    "param:train.lr=model/lr.txt",
                    "copy:data.txt=model/data.txt",
                    "write:score.json=ok",
                ),
                "deps": ["data.txt"],
                "params": ["train.lr"],
                "outs": ["model"],
                "metrics": ["score.json"],
            },
            "report": {
                "cmd": proj.cmd(f"count:{proj.counter}", "cat:model=report.txt"),
                "deps": ["model"],
                "outs": ["report.txt"],
            },
        }
    )
    return proj


def _set_lr(p, lr):
    (p.root / "params.yaml").write_text(PARAMS.format(lr=lr))


def test_param_back_to_an_earlier_value_restores(fit):
    assert statuses(fit.run()) == {"train": "ran", "report": "ran"}
    _set_lr(fit, 0.2)
    assert statuses(fit.run()) == {"train": "ran", "report": "ran"}
    assert fit.read("model/lr.txt") == "train.lr=0.2\n"
    assert counts(fit.counter) == ["train", "report", "train", "report"]

    _set_lr(fit, 0.1)
    doc = fit.run()
    assert statuses(doc) == {"train": "restored", "report": "restored"}
    assert reasons(doc)["train"] == ["param train.lr 0.2 -> 0.1"]
    assert counts(fit.counter) == ["train", "report", "train", "report"]  # no command ran
    assert fit.read("model/lr.txt") == "train.lr=0.1\n"
    assert fit.read("model/data.txt") == "d\n"
    assert fit.read("report.txt") == "d\ntrain.lr=0.1\n"
    assert fit.read("score.json") == "ok\n"
    # the lock now describes the restored run, and everything is up to date
    assert fit.lock()["train"]["params"] == {"params.yaml": {"train.lr": 0.1}}
    assert statuses(fit.dry()) == {"train": "skipped", "report": "skipped"}


def test_force_ignores_the_run_cache(fit):
    fit.run()
    _set_lr(fit, 0.2)
    fit.run()
    _set_lr(fit, 0.1)
    doc = fit.run("--force")
    assert statuses(doc) == {"train": "ran", "report": "ran"}
    assert reasons(doc)["train"][0] == "forced"
    assert counts(fit.counter) == ["train", "report"] * 3
    assert fit.read("model/lr.txt") == "train.lr=0.1\n"


def test_restored_outputs_are_ignored_and_tracked_metrics_stay_plain(fit):
    fit.run()
    _set_lr(fit, 0.2)
    fit.run()
    (fit.root / ".gitignore").unlink()
    _set_lr(fit, 0.1)
    assert statuses(fit.run())["train"] == "restored"
    assert (fit.root / ".gitignore").read_text().splitlines() == ["/model", "/report.txt"]
    score = fit.root / "score.json"
    assert not score.is_symlink() and score.stat().st_nlink == 1


def test_run_cache_across_branches(fit):
    fit.run()
    commit_all(fit.root, "lr 0.1")
    git(fit.root, "checkout", "-q", "-b", "exp")
    _set_lr(fit, 0.2)
    fit.run()
    commit_all(fit.root, "lr 0.2")
    assert counts(fit.counter) == ["train", "report"] * 2

    # back to main: git brings params and lock back, mlops checkout the outputs
    git(fit.root, "checkout", "-q", "main")
    fit.cli("checkout")
    assert fit.read("model/lr.txt") == "train.lr=0.1\n"
    assert statuses(fit.run()) == {"train": "skipped", "report": "skipped"}

    # to exp without mlops checkout: the outputs in the workspace are main's, the run cache has exp's
    git(fit.root, "checkout", "-q", "exp")
    # the dry run says what the run does: both restored (report's key is computed on the model
    # train's restore would place, as the run computes it once placed)
    dry = fit.dry()
    assert reasons(dry) == {"train": ["out model changed"], "report": ["out report.txt changed"]}
    assert statuses(dry) == {"train": "would restore", "report": "would restore"}
    assert {s["restore_from"] for s in dry["stages"]} == {"local"}
    doc = fit.run()
    assert statuses(doc) == {"train": "restored", "report": "restored"}
    assert fit.read("model/lr.txt") == "train.lr=0.2\n"
    assert fit.read("report.txt") == "d\ntrain.lr=0.2\n"

    # a new branch off main that happens to pick exp's value: restored too, no command runs
    git(fit.root, "checkout", "-q", "main")
    fit.cli("checkout")
    git(fit.root, "checkout", "-q", "-b", "again")
    _set_lr(fit, 0.2)
    assert statuses(fit.run()) == {"train": "restored", "report": "restored"}
    assert counts(fit.counter) == ["train", "report"] * 2
    assert (fit.root / "pipeline.lock").read_text() == git(fit.root, "show", "exp:pipeline.lock")


def test_always_changed_never_restores(proj):
    proj.pipeline(
        {
            "probe": {
                "cmd": proj.cmd(f"count:{proj.counter}", "write:o.txt=x"),
                "outs": ["o.txt"],
                "always_changed": True,
            }
        }
    )
    proj.run()
    proj.run()
    assert statuses(proj.run()) == {"probe": "ran"}
    assert counts(proj.counter) == ["probe"] * 3
    assert runcache_entries(proj.root) == []  # never recorded in the run cache


def test_run_cache_miss_when_object_gone(fit):
    """A run-cache entry whose objects left the cache is a miss: the command runs."""
    fit.run()
    _set_lr(fit, 0.2)
    fit.run()
    shutil.rmtree(fit.root / ".mlops" / "cache")
    _set_lr(fit, 0.1)
    assert statuses(fit.run()) == {"train": "ran", "report": "ran"}
    assert fit.read("model/lr.txt") == "train.lr=0.1\n"


def test_torn_run_cache_entry_is_a_miss(fit):
    fit.run()
    entries = runcache_entries(fit.root)
    assert len(entries) == 2
    for entry in entries:
        entry.write_text("{not json")
    (fit.root / "score.json").unlink()
    (fit.root / "report.txt").unlink()
    doc = fit.run()
    assert statuses(doc) == {"train": "ran", "report": "ran"}
    assert counts(fit.counter) == ["train", "report"] * 2


def _set_cache_type(root, kinds):
    import yaml

    config = root / ".mlops" / "config.yaml"
    doc = yaml.safe_load(config.read_text())
    doc.setdefault("cache", {})["type"] = kinds
    config.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_link_cache_types_persist_and_downstream(proj, kind):
    """With outputs linked to the cache, an appending (persist) stage must not write into the cache."""
    _set_cache_type(proj.root, [kind, "copy"])
    proj.write({"in.txt": "a\n"})
    proj.pipeline(
        {
            "log": {
                "cmd": proj.cmd("cat:in.txt=tmp.txt", "append:hist.txt=line"),
                "deps": ["in.txt"],
                "outs": [{"hist.txt": {"persist": True}}, "tmp.txt"],
            },
            "copy": {"cmd": proj.cmd("copy:hist.txt=copy.txt"), "deps": ["hist.txt"], "outs": ["copy.txt"]},
        }
    )
    proj.run()
    hist = proj.root / "hist.txt"
    assert hist.is_symlink() if kind == "symlink" else hist.stat().st_nlink > 1
    (proj.root / "in.txt").write_text("b\n")
    assert statuses(proj.run()) == {"log": "ran", "copy": "ran"}
    assert proj.read("hist.txt") == "line\nline\n" and proj.read("copy.txt") == "line\nline\n"
    verify = json.loads(proj.cli("verify", "--json").stdout)
    assert verify["ok"] is True and verify["corrupt"] == []
    assert statuses(proj.dry()) == {"log": "skipped", "copy": "skipped"}


def test_persist_output_is_never_replaced_by_a_run_cache_entry(proj):
    proj.write({"in.txt": "a\n"})
    proj.pipeline(
        {
            "log": {
                "cmd": proj.cmd(f"count:{proj.counter}", "cat:hist.txt+in.txt=new.txt", "copy:new.txt=hist.txt"),
                "deps": ["in.txt"],
                "outs": [{"hist.txt": {"persist": True}}],
            }
        }
    )
    (proj.root / "hist.txt").write_text("")
    proj.run()
    (proj.root / "in.txt").write_text("b\n")
    proj.run()
    assert proj.read("hist.txt") == "a\nb\n"
    (proj.root / "in.txt").write_text("a\n")
    doc = proj.run()
    assert proj.read("hist.txt") == "a\nb\na\n", f"history lost: {proj.read('hist.txt')!r}, status {statuses(doc)}"


def test_restore_keeps_uncached_outputs_plain_files(proj):
    _set_cache_type(proj.root, ["symlink", "copy"])
    proj.write({"params.yaml": "lr: 0.1\n"})
    proj.pipeline(
        {
            "fit": {
                "cmd": proj.cmd("param:lr=model.txt", "param:lr=m.json"),
                "params": ["lr"],
                "outs": ["model.txt"],
                "metrics": ["m.json"],
            }
        }
    )
    proj.run()
    assert not (proj.root / "m.json").is_symlink() and (proj.root / "model.txt").is_symlink()
    (proj.root / "params.yaml").write_text("lr: 0.2\n")
    proj.run()
    (proj.root / "params.yaml").write_text("lr: 0.1\n")
    assert statuses(proj.run()) == {"fit": "restored"}
    assert proj.read("m.json") == "lr=0.1\n"
    assert not (proj.root / "m.json").is_symlink(), "a git-tracked metric became a symlink into .mlops/cache"
