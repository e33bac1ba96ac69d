"""Choosing stages (targets, --downstream, --single-stage, foreach groups) and drawing the graph."""

from __future__ import annotations

import json

import pytest
from pipekit import assert_one_error, counts, statuses


@pytest.fixture
def chain(proj):
    """prep -> train -> evaluate@{small,large} -> summary ; lint (alone)."""
    proj.write({"raw.txt": "raw\n"})
    proj.pipeline(
        {
            "prep": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:raw.txt=prep.txt"),
                "deps": ["raw.txt"],
                "outs": ["prep.txt"],
            },
            "train": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:prep.txt=model.txt"),
                "deps": ["prep.txt"],
                "outs": ["model.txt"],
            },
            "evaluate": {
                "foreach": ["small", "large"],
                "do": {
                    "cmd": proj.cmd(f"count:{proj.counter}", "cat:model.txt=eval/${item}.txt"),
                    "deps": ["model.txt"],
                    "outs": ["eval/${item}.txt"],
                },
            },
            "summary": {
                "cmd": proj.cmd(f"count:{proj.counter}", "cat:eval=summary.txt"),
                "deps": ["eval/small.txt", "eval/large.txt"],
                "outs": ["summary.txt"],
            },
            "lint": {"cmd": proj.cmd(f"count:{proj.counter}", "write:lint.txt=ok"), "outs": ["lint.txt"]},
        }
    )
    return proj


ALL = ["prep", "train", "evaluate@small", "evaluate@large", "summary", "lint"]


def test_no_target_runs_everything_in_order(chain):
    doc = chain.run("-j", "1")
    assert [s["name"] for s in doc["stages"]] == ALL
    assert counts(chain.counter) == ALL


def test_target_runs_it_and_what_it_needs_only(chain):
    doc = chain.run("train")
    assert statuses(doc) == {"prep": "ran", "train": "ran"}
    assert sorted(counts(chain.counter)) == ["prep", "train"]
    assert not (chain.root / "eval").exists() and not (chain.root / "lint.txt").exists()
    assert sorted(chain.lock()) == ["prep", "train"]
    # the dry run of a target lists the same selection
    assert [s["name"] for s in chain.dry("summary")["stages"]] == [
        "prep",
        "train",
        "evaluate@small",
        "evaluate@large",
        "summary",
    ]


def test_downstream(chain):
    chain.run()
    chain.counter.write_text("")
    doc = chain.run("train", "--downstream", "--force")
    assert [s["name"] for s in doc["stages"]] == ["train", "evaluate@small", "evaluate@large", "summary"]
    assert set(statuses(doc).values()) == {"ran"}
    assert "prep" not in counts(chain.counter) and "lint" not in counts(chain.counter)
    assert [s["name"] for s in chain.dry("evaluate@large", "--downstream")["stages"]] == ["evaluate@large", "summary"]


def test_single_stage(chain):
    chain.run()
    chain.counter.write_text("")
    (chain.root / "raw.txt").write_text("new\n")
    doc = chain.run("train", "--single-stage")
    # prep is out of date but not selected: train runs on the prep.txt that is there
    assert statuses(doc) == {"train": "skipped"}
    (chain.root / "model.txt").unlink()
    doc = chain.run("train", "-s")
    assert statuses(doc) == {"train": "restored"}
    assert statuses(chain.run("-s", "prep", "lint")) == {"prep": "ran", "lint": "skipped"}
    assert counts(chain.counter) == ["prep"]


def test_foreach_group_name_selects_every_member(chain):
    doc = chain.run("evaluate")
    assert [s["name"] for s in doc["stages"]] == ["prep", "train", "evaluate@small", "evaluate@large"]
    assert (chain.root / "eval/small.txt").read_text() == "raw\n"
    one = chain.dry("evaluate@small", "--force", "--single-stage")
    assert [s["name"] for s in one["stages"]] == ["evaluate@small"]
    group = chain.dry("evaluate", "--single-stage")
    assert [s["name"] for s in group["stages"]] == ["evaluate@small", "evaluate@large"]


def test_unknown_stage_is_usage_error(chain):
    proc = chain.mlops("run", "nosuch", code=2)
    assert_one_error(proc.stderr, "no stage named 'nosuch'")
    chain.mlops("run", "--dry-run", "evaluate@medium", code=2)
    chain.mlops("dag", "nosuch", code=2)
    assert counts(chain.counter) == []


def test_dag_text(chain):
    out = chain.cli("dag").stdout
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == "prep"
    table = {
        line.split("<-")[0].strip(): [x.strip() for x in line.split("<-")[1].split(",")]
        for line in lines
        if "<-" in line
    }
    assert table == {
        "train": ["prep"],
        "evaluate@small": ["train"],
        "evaluate@large": ["train"],
        "summary": ["evaluate@small", "evaluate@large"],
    }
    assert "lint" in lines
    # a target limits the graph to it and what it needs
    assert chain.cli("dag", "train").stdout.splitlines() == ["prep", "train  <- prep"]


def test_dag_mermaid(chain):
    out = chain.cli("dag", "--mermaid").stdout
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    ids = {}
    for line in lines[1:]:
        if "[" in line:
            ident, label = line.strip().split("[", 1)
            ids[label.strip('"]')] = ident
    assert set(ids) == set(ALL)
    edges = {line.strip() for line in lines if "-->" in line}
    expected = {
        ("prep", "train"),
        ("train", "evaluate@small"),
        ("train", "evaluate@large"),
        ("evaluate@small", "summary"),
        ("evaluate@large", "summary"),
    }
    assert edges == {f"{ids[a]} --> {ids[b]}" for a, b in expected}


def test_dag_dot(chain):
    out = chain.cli("dag", "--dot").stdout
    assert out.startswith("digraph")
    assert out.rstrip().endswith("}")
    edges = {line.strip() for line in out.splitlines() if "->" in line}
    assert edges == {
        '"prep" -> "train";',
        '"train" -> "evaluate@small";',
        '"train" -> "evaluate@large";',
        '"evaluate@small" -> "summary";',
        '"evaluate@large" -> "summary";',
    }
    assert '"lint";' in out


def test_dag_json(chain):
    doc = json.loads(chain.cli("dag", "--json").stdout)
    assert doc["stages"] == ALL
    assert sorted((e["from"], e["to"]) for e in doc["edges"]) == sorted(
        [
            ("prep", "train"),
            ("train", "evaluate@small"),
            ("train", "evaluate@large"),
            ("evaluate@small", "summary"),
            ("evaluate@large", "summary"),
        ]
    )
    part = json.loads(chain.cli("dag", "--json", "evaluate").stdout)
    assert part["stages"] == ["prep", "train", "evaluate@small", "evaluate@large"]
    assert len(part["edges"]) == 3


def test_dag_dir_dependency_edge(proj):
    """A stage depending on a folder depends on the stage writing a file inside it, and the reverse."""
    proj.pipeline(
        {
            "make": {"cmd": proj.cmd("write:out/a.txt=a"), "outs": ["out/a.txt"]},
            "use": {"cmd": proj.cmd("cat:out=all.txt"), "deps": ["out"], "outs": ["all.txt"]},
            "mk2": {"cmd": proj.cmd("write:folder/x.txt=x"), "outs": ["folder"]},
            "use2": {"cmd": proj.cmd("copy:folder/x.txt=y.txt"), "deps": ["folder/x.txt"], "outs": ["y.txt"]},
        }
    )
    doc = json.loads(proj.cli("dag", "--json").stdout)
    assert sorted((e["from"], e["to"]) for e in doc["edges"]) == [("make", "use"), ("mk2", "use2")]
    assert statuses(proj.run()) == {"make": "ran", "use": "ran", "mk2": "ran", "use2": "ran"}
