"""`mlops import dvc` carries dvc.yaml's top-level params, metrics, plots and artifacts into
pipeline.yaml, and metrics, params diff, plots and register read them from there."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from pipekit import assert_one_error, commit_all

from tests.conftest import write_tree

DVC_YAML = """\
params:
- config/train.yaml
metrics:
- eval/metrics.json
plots:
- eval/loss.csv:
    x: step
    y: loss
    title: Training loss
- roc:
    x: fpr
    y:
      eval/roc_train.json: tpr
      eval/roc_test.yaml: tpr
artifacts:
  churn-model:
    path: models/model.pkl
    type: model
    desc: Predicts churn from usage
    labels:
    - tabular
    - churn
stages:
  train:
    cmd: python train.py
    deps:
    - config/train.yaml
    outs:
    - models/model.pkl
    metrics:
    - eval/metrics.json:
        cache: false
"""

NESTED_DVC_YAML = """\
metrics:
- metrics.json
plots:
- curve.tsv:
    x: epoch
    y: [acc, val_acc]
"""


def _project(root: Path) -> None:
    write_tree(
        root,
        {
            "dvc.yaml": DVC_YAML,
            "sub/dvc.yaml": NESTED_DVC_YAML,
            "train.py": "print('train')\n",
            "config/train.yaml": "lr: 0.1\nepochs: 3\n",
            "models/model.pkl": "not really a pickle\n",
            "eval/metrics.json": '{"auc": 0.87, "test": {"f1": 0.61}}\n',
            "eval/loss.csv": "step,loss\n0,0.93\n1,0.41\n2,0.27\n",
            "eval/roc_train.json": '[{"fpr": 0, "tpr": 0}, {"fpr": 0.25, "tpr": 0.77}, {"fpr": 1, "tpr": 1}]\n',
            "eval/roc_test.yaml": "- fpr: 0\n  tpr: 0\n- fpr: 0.5\n  tpr: 0.66\n- fpr: 1\n  tpr: 1\n",
            "sub/metrics.json": '{"nested_score": 12.5}\n',
            "sub/curve.tsv": "epoch\tacc\tval_acc\n1\t0.51\t0.49\n2\t0.72\t0.64\n",
        },
    )


def _tips(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for c in root.iter("circle") for t in c.iter("title")]


def test_import_carries_top_level_sections_and_every_reader_uses_them(repo, cli):
    _project(repo.root)
    cli("import", "dvc")
    doc = yaml.safe_load((repo.root / "pipeline.yaml").read_text())
    # the nested dvc.yaml's paths are rebased to the repository root
    assert doc["params"] == ["config/train.yaml"]
    assert doc["metrics"] == ["eval/metrics.json", "sub/metrics.json"]
    assert doc["plots"] == [
        {"eval/loss.csv": {"x": "step", "y": "loss", "title": "Training loss"}},
        {"roc": {"x": "fpr", "y": {"eval/roc_train.json": "tpr", "eval/roc_test.yaml": "tpr"}}},
        {"sub/curve.tsv": {"x": "epoch", "y": ["acc", "val_acc"]}},
    ]
    assert doc["artifacts"] == {
        "churn-model": {
            "path": "models/model.pkl",
            "type": "model",
            "desc": "Predicts churn from usage",
            "labels": ["tabular", "churn"],
        }
    }

    # metrics show: the stage's metrics file and the top-level ones, the nested file's too
    shown = json.loads(cli("metrics", "show", "--json").stdout)
    assert shown["files"]["eval/metrics.json"] == {"auc": 0.87, "test.f1": 0.61}
    assert shown["files"]["sub/metrics.json"] == {"nested_score": 12.5}

    # params diff: a top-level params file no stage reads by key
    commit_all(repo.root, "imported")
    (repo.root / "config/train.yaml").write_text("lr: 0.05\nepochs: 3\n")
    (repo.root / "sub/metrics.json").write_text('{"nested_score": 13.0}\n')
    diff = json.loads(cli("params", "diff", "--json").stdout)
    assert [(c["file"], c["key"], c["old"], c["new"]) for c in diff["changes"]] == [
        ("config/train.yaml", "lr", 0.1, 0.05)
    ]
    metrics = json.loads(cli("metrics", "diff", "--json").stdout)
    assert [(c["file"], c["key"], c["delta"]) for c in metrics["changes"]] == [
        ("sub/metrics.json", "nested_score", 0.5)
    ]

    # plots with no run: one SVG per declared plot, the files' values in it
    result = cli("plots", "-o", "report.html")
    assert "3 plot(s)" in result.stderr
    text = (repo.root / "report.html").read_text()
    assert not re.search(r"https?://", text) and "<script" not in text
    svgs = re.findall(r"<svg\b.*?</svg>", text, flags=re.S)
    assert len(svgs) == 3
    loss, roc, curve = (_tips(s) for s in svgs)
    assert loss == [
        "eval/loss.csv: loss at step 0: 0.93",
        "eval/loss.csv: loss at step 1: 0.41",
        "eval/loss.csv: loss at step 2: 0.27",
    ]
    assert "eval/roc_train.json: tpr at fpr 0.25: 0.77" in roc and "eval/roc_test.yaml: tpr at fpr 0.5: 0.66" in roc
    assert "sub/curve.tsv: val_acc at epoch 2: 0.64" in curve and "sub/curve.tsv: acc at epoch 1: 0.51" in curve
    assert "<h2>Training loss</h2>" in text

    # register NAME without a path: the declared artifact, its desc, type and labels
    registered = json.loads(cli("register", "churn-model", "--json", "--no-signature").stdout)
    assert registered["source"] == "models/model.pkl"
    assert registered["description"] == "Predicts churn from usage"
    assert registered["declared"] == {"type": "model", "labels": ["tabular", "churn"]}
    shown_model = json.loads(cli("models", "show", "churn-model", "--json").stdout)
    assert "Predicts churn from usage" in json.dumps(shown_model) and "tabular" in json.dumps(shown_model)
    cli("audit", "verify")
    missing = cli("register", "other-model", code=2)
    assert "declares no artifact 'other-model'" in missing.stderr and "churn-model" in missing.stderr


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        (
            "plots:\n- confusion:\n    template: confusion\n    x: actual\n    y:\n      eval/cm.json: predicted\n",
            "dvc.yaml:3:15: plot 'confusion': template 'confusion' is not one mlops draws",
        ),
        (
            "plots:\n- eval/loss.csv:\n    x: step\n    smooth: 3\n",
            "dvc.yaml:4:5: plot 'eval/loss.csv': unknown option",
        ),
        ("artifacts:\n  bad/name:\n    path: model.pkl\n", "dvc.yaml:2:3: artifact 'bad/name': a model name is"),
        ("metrics:\n- ../outside.json\n", "dvc.yaml:2:3: '../outside.json' is outside the repository"),
    ],
)
def test_what_cannot_be_carried_is_named_and_nothing_is_written(repo, cli, section, needle):
    write_tree(repo.root, {"dvc.yaml": section})
    before = sorted(p.relative_to(repo.root).as_posix() for p in repo.root.rglob("*"))
    result = cli("import", "dvc", code=2)
    assert_one_error(result.stderr, "nothing was written", needle)
    assert sorted(p.relative_to(repo.root).as_posix() for p in repo.root.rglob("*")) == before


def test_a_stage_plot_with_a_template_mlops_cannot_draw_is_refused(repo, cli):
    write_tree(
        repo.root,
        {
            "dvc.yaml": "stages:\n  ev:\n    cmd: echo\n    plots:\n    - cm.json:\n"
            "        template: confusion\n        x: actual\n        y: predicted\n"
        },
    )
    result = cli("import", "dvc", code=2)
    assert_one_error(result.stderr, "dvc.yaml:6:19: plot 'cm.json': template 'confusion' is not one mlops draws")
    assert not (repo.root / "pipeline.yaml").exists() and not (repo.root / ".mlops/dvc-import.json").exists()
