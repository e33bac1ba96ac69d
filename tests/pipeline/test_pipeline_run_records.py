"""What `mlops run` records as a tracking run: nothing when nothing ran, a name saying what ran,
and, for a stage restored or skipped, the run that produced its outputs."""

from __future__ import annotations

import json

from pipekit import statuses

from mlops.pipeline.executor import RAN, RESTORED, StageResult
from mlops.tracking.store import list_summaries, load_run


def _two_stages(proj) -> None:
    proj.write({"raw.txt": "r\n", "extra.txt": "e1\n", "params.yaml": "train:\n  lr: 0.1\n"})
    proj.pipeline(
        {
            "prep": {"cmd": proj.cmd("copy:raw.txt=prepared.txt"), "deps": ["raw.txt"], "outs": ["prepared.txt"]},
            "train": {
                "cmd": proj.cmd("param:train.lr=model.txt", "cat:prepared.txt+extra.txt=notes.txt"),
                "deps": ["prepared.txt", "extra.txt"],
                "params": ["train.lr"],
                "outs": ["model.txt", "notes.txt"],
            },
        }
    )


def _runs(repo) -> dict[str, dict]:
    return {s["id"]: s for s in list_summaries(repo)}


def test_a_run_with_nothing_to_do_records_no_run_and_says_so(proj, repo, cli) -> None:
    _two_stages(proj)
    first = proj.run()
    assert first["name"] == "prep, train"
    assert list(_runs(repo)) == [first["run_id"]]

    again = proj.run()
    assert statuses(again) == {"prep": "skipped", "train": "skipped"}
    assert again["run_id"] is None and again["up_to_date"] is True and again["last_run"] == first["run_id"]
    assert list(_runs(repo)) == [first["run_id"]]  # no second run

    text = cli("run")
    assert f"nothing to run: every stage is up to date; last run {first['run_id']}" in text.stderr
    assert list(_runs(repo)) == [first["run_id"]]


def test_a_run_is_named_after_the_stage_that_ran(proj, repo, cli) -> None:
    _two_stages(proj)
    proj.run()
    (proj.root / "extra.txt").write_text("e2\n")  # only train's input changed
    doc = proj.run()
    assert statuses(doc) == {"prep": "skipped", "train": "ran"}
    assert doc["name"] == "train"
    assert _runs(repo)[doc["run_id"]]["name"] == "train"
    listed = cli("runs", "list").stdout
    assert any(line.split("\t")[:2] == [doc["run_id"], "train"] for line in listed.splitlines()), listed
    # the run's stage records keep every status; the skipped stage names the run that made its output
    records = {r["stage"]: r for r in load_run(repo, doc["run_id"]).stages}
    assert records["prep"]["status"] == "skipped" and records["train"]["status"] == "ran"
    first_id = [i for i in _runs(repo) if i != doc["run_id"]][0]
    assert records["prep"]["produced_by"] == first_id


def test_a_restored_stage_names_the_run_that_produced_its_outputs(proj, repo) -> None:
    _two_stages(proj)
    first = proj.run()
    (proj.root / "params.yaml").write_text("train:\n  lr: 0.2\n")
    second = proj.run()
    (proj.root / "params.yaml").write_text("train:\n  lr: 0.1\n")
    third = proj.run()
    assert statuses(third) == {"prep": "skipped", "train": "restored"}
    assert third["name"] == "train (restored)"
    stages = {s["name"]: s for s in third["stages"]}
    assert stages["train"]["produced_by"] == first["run_id"]
    records = {r["stage"]: r for r in load_run(repo, third["run_id"]).stages}
    assert records["train"]["status"] == "restored" and records["train"]["produced_by"] == first["run_id"]
    assert len({first["run_id"], second["run_id"], third["run_id"]}) == 3
    cache_entries = [json.loads(p.read_text()) for p in (repo.dot / "runcache").glob("*/*.json")]
    assert {e.get("run_id") for e in cache_entries} >= {first["run_id"], second["run_id"]}


def test_run_names_stay_short() -> None:
    from mlops.pipeline.executor import NAME_LIMIT, run_name

    ran = [StageResult(f"featurize_with_a_long_name_{i}", RAN) for i in range(6)]
    name = run_name([*ran, StageResult("restored_one", RESTORED)])
    assert len(name) <= NAME_LIMIT
    assert name.startswith("featurize_with_a_long_name_0") and name.endswith(" more (+1 restored)")
    assert run_name([StageResult("prep", RAN), StageResult("train", RAN)]) == "prep, train"
    assert run_name([StageResult("x" * 100, RAN)]).endswith("...")
