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


MATPLOTLIB_SCRIPT = """
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlops
figure, axes = plt.subplots()
axes.plot([1, 2, 3], [0.9, 0.7, 0.4])
with mlops.start_run(name="fig") as run:
    png = mlops.log_figure(figure, "plots/loss.png")
    svg = mlops.log_figure(figure, "plots/loss.svg")
print(run.id)
print(json.dumps([png, svg]))
"""


@pytest.mark.timeout(120)
def test_a_matplotlib_figure_is_saved_in_the_format_its_name_says(repo, mlops_bin) -> None:
    pytest.importorskip("matplotlib")  # a test dependency; the feature is for users who have it
    done = subprocess.run(
        [sys.executable, "-c", MATPLOTLIB_SCRIPT], cwd=repo.root, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    run_id, records_text = done.stdout.strip().splitlines()
    png, svg = json.loads(records_text)
    store = Repo(repo.root).objects
    assert store.read_bytes(png["hash"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in store.read_bytes(svg["hash"])[:400]
    shown = json.loads(mlops_bin("runs", "show", run_id, "--json").stdout)
    assert [a["path"] for a in shown["artifacts"]] == ["plots/loss.png", "plots/loss.svg"]
