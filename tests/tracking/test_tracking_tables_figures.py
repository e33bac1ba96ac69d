"""mlops.log_table and mlops.log_figure: artifacts stored straight into the object store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlops.repo.repo import Repo

SCRIPT = """
import json
import pandas as pd
import mlops
with mlops.start_run(name="t") as run:
    a = mlops.log_table(pd.DataFrame({"k": ["a", "b"], "v": [1.5, None]}), "eval/table.json")
    b = mlops.log_table({"k": ["x"], "n": [3]}, "eval/table.csv")
    c = mlops.log_figure('<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>', "plots/f.svg")
    try:
        mlops.log_table({"k": [1]}, "../escape.json")
    except mlops.errors.UsageError:
        print("refused")
print(run.id)
print(json.dumps([a, b, c]))
"""


@pytest.mark.timeout(120)
def test_tables_and_figures_are_run_artifacts(repo, mlops_bin) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import mlops.errors\n" + SCRIPT], cwd=repo.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    refused, run_id, records_text = done.stdout.strip().splitlines()
    assert refused == "refused"
    table, csv_table, figure = json.loads(records_text)
    store = Repo(repo.root).objects
    assert json.loads(store.read_bytes(table["hash"])) == {"columns": ["k", "v"], "data": [["a", 1.5], ["b", None]]}
    assert store.read_bytes(csv_table["hash"]).decode().splitlines() == ["k,n", "x,3"]
    assert store.read_bytes(figure["hash"]).startswith(b"<svg")
    shown = json.loads(mlops_bin("runs", "show", run_id, "--json").stdout)
    assert [a["path"] for a in shown["artifacts"]] == ["eval/table.json", "eval/table.csv", "plots/f.svg"]
    assert not (repo.root / "eval").exists()  # nothing written into the workspace
    mlops_bin("gc", "--force")
    assert store.exists(figure["hash"])  # kept as a run artifact
