"""pipeline.yaml's own top-level metrics, params, plots and artifacts (no DVC involved)."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from pipekit import assert_one_error, commit_all

from mlops.errors import UsageError
from mlops.paths import model_name_problem
from mlops.registry.refs import check_name
from tests.conftest import write_tree

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

PIPELINE = """\
stages:
  train:
    cmd: echo ${lr}
    params: [lr]
    outs: [model.bin]
    plots: [live/stage_plot.csv]
params:
- tuning.json
metrics:
- reports/scores.yaml
plots:
- live/plots:
    x: step
- live/points.csv:
    template: scatter
    header: false
    x: "0"
    y: "1"
artifacts:
  ranker:
    path: model.bin
    desc: Ranks things
    meta: {owner: search}
"""


def test_native_sections_are_read_by_metrics_params_plots_and_register(repo, cli, tmp_path):
    write_tree(
        repo.root,
        {
            "pipeline.yaml": PIPELINE,
            "params.yaml": "lr: 0.1\n",
            "tuning.json": '{"search": {"trials": 20}}\n',
            "model.bin": "weights\n",
            "reports/scores.yaml": "ndcg: 0.71\n",
            "live/plots/loss.tsv": "step\tloss\n0\t2.5\n1\t1.25\n",
            "live/plots/acc.tsv": "step\tacc\n0\t0.3\n1\t0.6\n",
            "live/plots/images/sample.png": PNG,
            "live/points.csv": "1,10\n2,20\n3,15\n",
            "live/stage_plot.csv": "epoch,gain\n0,4\n1,8\n",
        },
    )
    shown = json.loads(cli("metrics", "show", "--json").stdout)
    assert shown["files"] == {"reports/scores.yaml": {"ndcg": 0.71}}

    commit_all(repo.root, "pipeline")
    (repo.root / "tuning.json").write_text('{"search": {"trials": 50}}\n')
    diff = json.loads(cli("params", "diff", "--json").stdout)
    assert [(c["file"], c["key"], c["old"], c["new"]) for c in diff["changes"]] == [
        ("tuning.json", "search.trials", 20, 50)
    ]

    # a folder plot: a chart per data file, its images embedded; a scatter has no line; the
    # stage's own plots output is drawn too
    cli("plots", "-o", "p.html")
    html = (repo.root / "p.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", html)
    assert heads == [
        "live/plots/acc.tsv",
        "live/plots/loss.tsv",
        "live/plots/images/sample.png",
        "live/points.csv",
        "live/stage_plot.csv",
    ]
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html
    assert "live/plots/loss.tsv: loss at step 1: 1.25" in html
    assert "live/stage_plot.csv: gain at step 1: 8" in html  # no options: x the row, y the last column
    points = re.search(r"<h2>live/points.csv</h2>.*?</svg>", html, flags=re.S).group(0)
    assert "<polyline" not in points and "live/points.csv: 1 at 0 3: 15" in points

    registered = json.loads(cli("register", "ranker", "--json", "--no-signature").stdout)
    assert registered["description"] == "Ranks things" and registered["declared"] == {"meta": {"owner": "search"}}
    # one locked change, one audit entry: the declaration is part of the registration
    events = json.loads(cli("history", "ranker", "--json").stdout)["entries"]
    assert [e["event"] for e in events] == ["registered"]
    assert events[0]["declared"] == {"meta": {"owner": "search"}}


def test_a_plot_file_that_leads_outside_the_repository_is_not_read(repo, cli, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("step,token\n0,4242424242\n")
    write_tree(repo.root, {"pipeline.yaml": "plots:\n- leak.csv\n"})
    os.symlink(secret, repo.root / "leak.csv")
    result = cli("plots", "-o", "p.html")
    assert "leak.csv: not read: it leads outside the repository" in result.stderr
    assert "4242424242" not in (repo.root / "p.html").read_text()


@pytest.mark.parametrize(
    ("text", "where", "needle"),
    [
        ("metrics: results.json\n", "1:10", "'metrics' must be a list of files"),
        ("params:\n- 3\n", "2:3", "each entry of 'params' is a file"),
        ("metrics:\n- ../up.json\n", "2:3", "'../up.json' is outside the repository"),
        ("plots:\n- a.csv: {template: confusion}\n", "2:21", "template 'confusion' is not one mlops draws"),
        ("plots:\n- a.csv: {colour: red}\n", "2:11", "plot 'a.csv': unknown option 'colour'"),
        ("plots:\n- a.csv\n- a.csv\n", "3:3", "plot 'a.csv' is declared twice"),
        ("plots:\n- roc: {y: {a.json: [1, true]}}\n", "2:21", "'y' is a column name or a list of them"),
        ("artifacts:\n  -bad:\n    path: m.pkl\n", "2:3", "artifact '-bad': a model name is"),
        ("artifacts:\n  ok:\n    path: m.pkl\n    owner: me\n", "4:5", "artifact 'ok': unknown key 'owner'"),
        ("artifacts:\n  ok:\n    type: model\n", "3:5", "artifact 'ok' needs a 'path'"),
        ("artifacts:\n  ok:\n    path: .git/config\n", "3:11", "'.git/config' is inside .git/"),
    ],
)
def test_sections_are_validated_with_file_line_col(repo, cli, text, where, needle):
    write_tree(repo.root, {"pipeline.yaml": text})
    result = cli("metrics", "show", code=2)
    assert_one_error(result.stderr, f"pipeline.yaml:{where}: ", needle)


ACCEPTED = ["churn", "a", "A.b-c_d", "9lives", "x" * 100]
REFUSED = ["x" * 101, "-lead", ".hidden", "a/b", "a b", "m.tmp", "", "..", "a\nb"]


@pytest.mark.parametrize("name", ACCEPTED + REFUSED)
def test_artifact_names_follow_the_registry_rule(name):
    """One rule for a model name, whether pipeline.yaml declares it or the registry receives it."""
    try:
        check_name(name)
        registry_ok = True
    except UsageError:
        registry_ok = False
    assert registry_ok == (name in ACCEPTED)
    assert (model_name_problem(name) is None) == (name in ACCEPTED)
