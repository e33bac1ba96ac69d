"""`mlops import dvc`: dvc.yaml -> pipeline.yaml, and the parts of dvc.lock the workspace still matches."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from pipekit import assert_one_error, counts, md5, reasons, statuses


def _dir_entry(root, rel):
    """A folder as DVC records it: the md5 of its .dir listing (sorted {md5, relpath} as JSON)."""
    files = sorted(p for p in (root / rel).rglob("*") if p.is_file())
    listing = [{"md5": md5(p), "relpath": p.relative_to(root / rel).as_posix()} for p in files]
    return {
        "path": rel,
        "md5": hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir",
        "size": sum(p.stat().st_size for p in files),
        "nfiles": len(files),
    }


def _file_entry(root, rel):
    path = root / rel
    return {"path": rel, "md5": md5(path), "size": path.stat().st_size}


@pytest.fixture
def dvc_project(proj):
    """A DVC project as `dvc repro` left it: outputs on disk, dvc.lock describing them."""
    c = proj.counter
    proj.write(
        {
            "params.yaml": "prep:\n  split: 0.2\ntrain:\n  lr: 0.1\n  epochs: 2\n",
            "raw.txt": "raw data\n",
            "train_input.txt": "changed since the lock\n",
            # what the stages produced back then
            "prepared.txt": "raw data\n",
            "features/f1.txt": "f1\n",
            "features/f2.txt": "f22\n",
            "eval/small.json": '{"small": 1}\n',
            "eval/large.json": '{"large": 1}\n',
            "model.txt": "old model\n",
        }
    )
    dvc_yaml = {
        "stages": {
            "prepare": {
                "cmd": proj.cmd(f"count:{c}", "copy:raw.txt=prepared.txt"),
                "deps": ["raw.txt"],
                "params": ["prep.split"],
                "outs": ["prepared.txt"],
            },
            "featurize": {
                "cmd": [proj.cmd(f"count:{c}", "write:features/f1.txt=f1"), proj.cmd("write:features/f2.txt=f22")],
                "deps": ["prepared.txt"],
                "params": ["train"],
                "outs": ["features"],
            },
            "evaluate": {
                "foreach": ["small", "large"],
                "do": {
                    "cmd": proj.cmd(f"count:{c}", 'write:eval/${item}.json={"${item}": 1}'),
                    "deps": ["features"],
                    "metrics": [{"eval/${item}.json": {"cache": False}}],
                },
            },
            "train": {
                "cmd": proj.cmd(f"count:{c}", "copy:train_input.txt=model.txt"),
                "deps": ["train_input.txt"],
                "params": ["train"],
                "outs": ["model.txt"],
            },
        },
        "plots": [{"eval/small.json": {"x": "step"}}],
        "artifacts": {"model": {"path": "model.txt"}},
    }
    (proj.root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False, width=1000))
    r = proj.root
    stage_cmds = dvc_yaml["stages"]
    lock = {
        "schema": "2.0",
        "stages": {
            "prepare": {
                "cmd": stage_cmds["prepare"]["cmd"],
                "deps": [_file_entry(r, "raw.txt")],
                "params": {"params.yaml": {"prep.split": 0.2}},
                "outs": [_file_entry(r, "prepared.txt")],
            },
            "featurize": {
                "cmd": stage_cmds["featurize"]["cmd"],
                "deps": [_file_entry(r, "prepared.txt")],
                "params": {
                    "params.yaml": {"train": {"lr": 0.1, "epochs": 2}}
                },  # a whole section, nested as DVC keeps it
                "outs": [_dir_entry(r, "features")],
            },
            **{
                f"evaluate@{item}": {
                    "cmd": stage_cmds["evaluate"]["do"]["cmd"].replace("${item}", item),
                    "deps": [_dir_entry(r, "features")],
                    "outs": [_file_entry(r, f"eval/{item}.json")],
                }
                for item in ("small", "large")
            },
            "train": {
                "cmd": stage_cmds["train"]["cmd"],
                # recorded before train_input.txt was edited
                "deps": [{"path": "train_input.txt", "md5": "5d41402abc4b2a76b9719d911017c592", "size": 6}],
                "params": {"params.yaml": {"train": {"lr": 0.1, "epochs": 2}}},
                "outs": [_file_entry(r, "model.txt")],
            },
        },
    }
    (proj.root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False, width=1000))
    proj.dvc_yaml = dvc_yaml
    return proj


def test_import_writes_equivalent_pipeline_and_matching_lock(dvc_project):
    p = dvc_project
    proc = p.mlops("import", "dvc")
    assert "wrote pipeline.yaml (5 stages)" in proc.stdout
    assert "wrote pipeline.lock (4 stages whose files still match dvc.lock)" in proc.stdout
    assert "stage 'train': the workspace does not match dvc.lock; it will run" in proc.stderr
    # the top-level sections pipeline.yaml has no place for are carried in the import's record
    record = json.loads((p.root / ".mlops/dvc-import.json").read_text())
    assert record["sections"] == [
        {"file": "dvc.yaml", "base": "", "plots": p.dvc_yaml["plots"], "artifacts": p.dvc_yaml["artifacts"]}
    ]

    imported = yaml.safe_load((p.root / "pipeline.yaml").read_text())
    expected = json.loads(json.dumps(p.dvc_yaml["stages"]))
    # ... and pipeline.yaml has its own place for them too
    assert imported == {"plots": p.dvc_yaml["plots"], "artifacts": p.dvc_yaml["artifacts"], "stages": expected}
    dag = json.loads(p.cli("dag", "--json").stdout)
    assert dag["stages"] == ["prepare", "featurize", "evaluate@small", "evaluate@large", "train"]
    assert {(e["from"], e["to"]) for e in dag["edges"]} == {
        ("prepare", "featurize"),
        ("featurize", "evaluate@small"),
        ("featurize", "evaluate@large"),
    }

    lock = p.lock()
    assert list(lock) == ["prepare", "featurize", "evaluate@small", "evaluate@large"]  # pipeline order; no train
    assert lock["prepare"]["params"] == {"params.yaml": {"prep.split": 0.2}}
    assert lock["featurize"]["params"] == {"params.yaml": {"train.epochs": 2, "train.lr": 0.1}}
    assert lock["featurize"]["cmd"] == " && ".join(p.dvc_yaml["stages"]["featurize"]["cmd"])
    assert lock["featurize"]["outs"][0]["kind"] == "dir" and lock["featurize"]["outs"][0]["files"] == 2

    # the lock is mlops' own now: matching stages are up to date, train will run
    dry = p.dry()
    assert statuses(dry) == {
        "prepare": "skipped",
        "featurize": "skipped",
        "evaluate@small": "skipped",
        "evaluate@large": "skipped",
        "train": "would run",
    }
    assert reasons(dry)["train"] == ["never run"]
    doc = p.run()
    assert statuses(doc)["train"] == "ran"
    assert counts(p.counter) == ["train"]
    assert p.read("model.txt") == "changed since the lock\n"
    # the imported outputs are in the cache: checkout brings them back
    (p.root / "prepared.txt").unlink()
    p.cli("checkout")
    assert p.read("prepared.txt") == "raw data\n"


def test_import_leaves_out_a_stage_whose_output_changed(dvc_project):
    p = dvc_project
    (p.root / "features/f2.txt").write_text("f2-changed-size\n")
    (p.root / "prepared.txt").write_text("raw data\n")  # rewritten, same bytes: still matches
    proc = p.mlops("import", "dvc")
    assert "stage 'featurize': the workspace does not match dvc.lock; it will run" in proc.stderr
    # its dependents recorded the old folder as their dependency: they do not match either
    assert "stage 'evaluate@small': the workspace does not match dvc.lock; it will run" in proc.stderr
    assert list(p.lock()) == ["prepare"]
    dry = p.dry()
    assert statuses(dry)["prepare"] == "skipped"
    assert statuses(dry)["featurize"] == "would run"
    assert reasons(dry)["evaluate@small"][0] == "upstream featurize will run"


def test_import_without_a_lock(dvc_project):
    p = dvc_project
    (p.root / "dvc.lock").unlink()
    proc = p.mlops("import", "dvc")
    assert "wrote pipeline.yaml (5 stages)" in proc.stdout and "pipeline.lock" not in proc.stdout
    assert not (p.root / "pipeline.lock").exists()
    assert set(statuses(p.dry()).values()) == {"would run"}


def test_existing_pipeline_yaml_needs_force(dvc_project):
    p = dvc_project
    (p.root / "pipeline.yaml").write_text("stages: {}\n")
    proc = p.mlops("import", "dvc", code=2)
    assert_one_error(proc.stderr, "pipeline.yaml already exists")
    assert (p.root / "pipeline.yaml").read_text() == "stages: {}\n"
    assert not (p.root / "pipeline.lock").exists()
    p.mlops("import", "dvc", "--force")
    assert "prepare" in yaml.safe_load((p.root / "pipeline.yaml").read_text())["stages"]
    assert "prepare" in p.lock()


def test_no_dvc_yaml_is_usage_error(proj):
    proc = proj.mlops("import", "dvc", code=2)
    assert_one_error(proc.stderr, "no dvc.yaml or .dvc file")


def test_force_overwrites_an_existing_pipeline_lock(dvc_project):
    p = dvc_project
    (p.root / "pipeline.lock").write_text("format: 1\nstages: {}\n")
    p.mlops("import", "dvc", "--force")
    assert "prepare" in p.lock()


def test_import_stage_with_wdir(proj):
    proj.write({"sub/in.txt": "in\n", "sub/out.txt": "in\n"})
    (proj.root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "copy": {
                        "wdir": "sub",
                        "cmd": proj.cmd("copy:in.txt=out.txt"),
                        "deps": ["in.txt"],
                        "outs": ["out.txt"],
                    }
                }
            },
            width=1000,
        )
    )
    (proj.root / "dvc.lock").write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "copy": {
                        "cmd": proj.cmd("copy:in.txt=out.txt"),
                        "deps": [{"path": "in.txt", "md5": md5(proj.root / "sub/in.txt"), "size": 3}],
                        "outs": [{"path": "out.txt", "md5": md5(proj.root / "sub/out.txt"), "size": 3}],
                    }
                },
            },
            width=1000,
        )
    )
    proj.mlops("import", "dvc")
    assert "copy" in proj.lock()
    assert statuses(proj.dry()) == {"copy": "skipped"}


def test_import_dvc_plots_with_options(proj):
    (proj.root / "dvc.yaml").write_text(
        "stages:\n"
        "  train:\n"
        f"    cmd: {proj.cmd('write:model.pkl=m', 'write:metrics.json={}', 'write:plots/loss.csv=step,loss')}\n"
        "    outs:\n    - model.pkl\n"
        "    metrics:\n    - metrics.json:\n        cache: false\n"
        "    plots:\n    - plots/loss.csv:\n        x: step\n        y: loss\n"
        "        template: linear\n        cache: false\n"
    )
    proc = proj.mlops("import", "dvc", code=None)
    assert proc.returncode == 0, proc.stderr
    # the plot's presentation options become a top-level plot of pipeline.yaml (as DVC merges them)
    imported = yaml.safe_load((proj.root / "pipeline.yaml").read_text())
    assert imported["plots"] == [{"plots/loss.csv": {"x": "step", "y": "loss", "template": "linear"}}]
    assert imported["stages"]["train"]["plots"] == [{"plots/loss.csv": {"cache": False}}]
    # and they are kept in the import's record
    record = json.loads((proj.root / ".mlops/dvc-import.json").read_text())
    assert record["output_options"] == [
        {
            "stage": "train",
            "path": "plots/loss.csv",
            "base": "",
            "options": {"x": "step", "y": "loss", "template": "linear"},
        }
    ]
    proj.mlops("dag")
    assert statuses(proj.run()) == {"train": "ran"}
