"""lineage (model <- run <- params, data snapshots <- git commit) and the model card, from a real run."""

from __future__ import annotations

from regkit import git, js

from mlops.registry import approve, promote


def test_lineage_of_a_registered_run_text_and_json(trained, cli) -> None:
    repo, run_id = trained
    cli("register", "churn", "models/model.pkl", "--run", run_id)
    promote(repo, "churn", 1, "production", actor="ci")
    commit = git(repo.root, "rev-parse", "HEAD~1").strip()  # the run ran on the commit before "trained"
    doc = js(cli("lineage", "churn@production", "--json"))
    assert doc["model"]["ref"] == "churn:1" and doc["model"]["stage"] == "production"
    assert doc["run"]["id"] == run_id and doc["run"]["status"] == "finished"
    assert doc["params"]["train.C"] == 1.0
    assert doc["git_commit"] == commit
    assert [s["stage"] for s in doc["stages"]] == ["train", "prepare"]
    assert doc["stages"][0]["made_artifact"] and not doc["stages"][1]["made_artifact"]
    assert [d["path"] for d in doc["data"]] == ["data/prepared"]
    text = cli("lineage", "churn@production").stdout.splitlines()
    assert text[0].startswith("churn:1 (production) model.pkl sklearn")
    assert text[1] == f"└─ run {run_id} 'prepare, train' (finished)"  # named after the stages that ran
    assert any("params: " in line and "train.C=1" in line for line in text)
    assert any("stage train (made the artifact)" in line for line in text)
    assert any("<- data data/prepared (dir" in line for line in text)
    assert any("<- data data/raw.csv (file" in line for line in text)
    assert text[-1].strip() == f"└─ git commit {commit}"


def test_lineage_without_a_run_says_so(repo, tree, cli) -> None:
    tree({"w.bin": b"w"})
    cli("register", "m", "w.bin")
    assert "no run linked" in cli("lineage", "m:1").stdout
    assert js(cli("lineage", "m:1", "--json"))["run"] is None


def test_model_card_has_every_section(trained, cli, tmp_path) -> None:
    repo, run_id = trained
    cli("register", "churn", "models/model.pkl", "--run", run_id, "-d", "Predicts churn for the retention team.")
    promote(repo, "churn", 1, "staging", actor="ann", reason="looks fine")
    approve(repo, "churn", 1, "production", by="alice", comment="reviewed metrics")
    out = tmp_path / "cards" / "MODEL_CARD.md"
    out.parent.mkdir()
    cli("card", "churn", "1", "-o", str(out))
    card = out.read_text()
    for heading in (
        "# Model card: churn:1",
        "## Purpose",
        "## Facts",
        "## Metrics",
        "## Data",
        "## Signature",
        "## Lineage",
        "## Approvals",
        "## Stage history",
        "## Drift checks",
    ):
        assert heading in card, heading
    assert "Predicts churn for the retention team." in card
    assert "| test_accuracy |" in card
    assert "`data/prepared`" in card
    assert "| input | tenure | int64 |" in card and "| output | prediction | int64 |" in card
    assert f"run `{run_id}`" in card and "stage `train` (made the artifact)" in card
    assert "| production | alice |" in card and "reviewed metrics" in card
    assert "| none | staging | ann | looks fine |" in card
    assert js(cli("card", "churn@staging", "--json"))["markdown"] == card
    assert cli("card", "churn:1").stdout == card  # without -o: stdout
