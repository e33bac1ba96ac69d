"""metrics show/diff and params diff across real git commits; --fail-if gates."""

from __future__ import annotations

import json

import pytest
from trackkit import commit_all

from mlops.errors import UsageError
from mlops.tracking.diff import check_rules, diff_files, parse_rule

PIPELINE = """\
stages:
  train:
    cmd: python train.py
    params: [train.lr, train.depth]
    metrics: [metrics/train.json]
  evaluate:
    cmd: python eval.py
    params:
      - eval.yaml: [threshold]
    metrics:
      - metrics/eval.yaml: {cache: false}
"""


def _metrics(tree, acc, latency, f1, extra=None):
    doc = {"test_accuracy": acc, "nested": {"f1": f1}}
    if extra:
        doc.update(extra)
    tree({"metrics/train.json": json.dumps(doc), "metrics/eval.yaml": f"latency_ms: {latency}\nthroughput: 100\n"})


@pytest.fixture
def history(repo, tree):
    tree({"pipeline.yaml": PIPELINE, "params.yaml": "train:\n  lr: 0.1\n  depth: 8\n", "eval.yaml": "threshold: 0.5\n"})
    _metrics(tree, 0.90, 100, 0.80)
    first = commit_all(repo.root, "first")
    tree({"params.yaml": "train:\n  lr: 0.05\n  depth: 8\n"})
    _metrics(tree, 0.92, 104, 0.81)
    second = commit_all(repo.root, "second")
    return repo, first, second


def test_metrics_show(history, cli):
    doc = json.loads(cli("metrics", "show", "--json").stdout)
    assert doc["files"] == {
        "metrics/train.json": {"test_accuracy": 0.92, "nested.f1": 0.81},
        "metrics/eval.yaml": {"latency_ms": 104, "throughput": 100},
    }
    plain = cli("metrics", "show").stdout.splitlines()
    assert "metrics/train.json\tnested.f1\t0.81" in plain


def test_metrics_diff_between_commits(history, cli):
    repo, first, second = history
    doc = json.loads(cli("metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    assert doc["a_commit"] == first and doc["b_commit"] == second and doc["ok"] is True
    changes = {c["key"]: c for c in doc["changes"]}
    assert set(changes) == {"test_accuracy", "nested.f1", "latency_ms"}  # throughput did not change
    assert changes["test_accuracy"]["old"] == 0.90 and changes["test_accuracy"]["new"] == 0.92
    assert changes["test_accuracy"]["delta"] == pytest.approx(0.02)
    assert changes["latency_ms"]["pct"] == pytest.approx(4.0)
    every = json.loads(cli("metrics", "diff", first, second, "--all", "--json").stdout)
    assert "throughput" in {c["key"] for c in every["changes"]}


def test_metrics_diff_default_is_head_against_the_workspace(history, cli, tree):
    _metrics(tree, 0.85, 120, 0.81, extra={"brand_new": 1})
    doc = json.loads(cli("metrics", "diff", "--json").stdout)
    assert doc["a"] == "HEAD" and doc["b"] == "workspace" and doc["b_commit"] is None
    changes = {c["key"]: c for c in doc["changes"]}
    assert changes["test_accuracy"]["delta"] == pytest.approx(-0.07)
    assert changes["brand_new"]["old"] is None and changes["brand_new"]["new"] == 1
    plain = cli("metrics", "diff").stdout
    assert plain.splitlines()[0].split("\t") == ["file", "metric", "HEAD", "workspace", "delta", "change"]


def test_fail_if_names_each_regression(history, cli, tree):
    _metrics(tree, 0.85, 120, 0.81)  # accuracy -0.07, latency +15.4 %
    result = cli(
        "metrics",
        "diff",
        "--fail-if",
        "test_accuracy < -0.01",
        "--fail-if",
        "latency_ms > 5%",
        "--fail-if",
        "nested.f1 < -0.05",
        code=1,
    )
    assert "2 metric regression(s)" in result.stderr
    assert "test_accuracy: 0.92 -> 0.85 (delta -0.07" in result.stderr
    assert "latency_ms: 104 -> 120 (+15.38%, rule latency_ms > 5%)" in result.stderr
    assert "nested.f1" not in result.stderr.split("error:")[1]
    doc = json.loads(
        cli(
            "metrics", "diff", "--json", "--fail-if", "test_accuracy < -0.01", "--fail-if", "latency_ms > 5%", code=1
        ).stdout
    )
    assert doc["ok"] is False and [r["key"] for r in doc["regressions"]] == ["test_accuracy", "latency_ms"]
    # tolerances that the change stays within pass
    result = cli("metrics", "diff", "--fail-if", "test_accuracy < -0.1", "--fail-if", "latency_ms > 20%")
    assert "2 --fail-if rule(s) passed" in result.stderr


def test_fail_if_across_commits_and_qualified_keys(history, cli):
    _, first, second = history
    cli("metrics", "diff", first, second, "--fail-if", "metrics/eval.yaml:latency_ms > 3%", code=1)
    cli("metrics", "diff", first, second, "--fail-if", "metrics/eval.yaml:latency_ms > 5%")
    cli("metrics", "diff", first, second, "--fail-if", "latency_ms >= 4", code=1)  # absolute: +4 ms


def test_fail_if_usage_errors(history, cli):
    cli("metrics", "diff", "--fail-if", "test_accuracy drops", code=2)
    result = cli("metrics", "diff", "--fail-if", "accuracy < 0", code=2)
    assert "no metric 'accuracy'" in result.stderr
    cli("metrics", "diff", "no-such-rev", code=2)


def test_missing_metric_in_new_revision_is_a_regression(history, tree):
    repo, _, _ = history
    tree({"metrics/train.json": json.dumps({"nested": {"f1": 0.81}})})
    result = diff_files(repo, ["metrics/train.json"], "HEAD", None)
    found = check_rules(result, [parse_rule("test_accuracy < -0.5")])
    assert len(found) == 1 and "missing in workspace" in found[0].reason
    with pytest.raises(UsageError):
        parse_rule("x <")


def test_params_diff(history, cli, tree):
    _, first, second = history
    doc = json.loads(cli("params", "diff", first, second, "--json").stdout)
    assert doc["files"] == ["params.yaml", "eval.yaml"]
    assert [(c["file"], c["key"], c["old"], c["new"]) for c in doc["changes"]] == [
        ("params.yaml", "train.lr", 0.1, 0.05)
    ]
    tree({"eval.yaml": "threshold: 0.7\n"})
    doc = json.loads(cli("params", "diff", "--json").stdout)
    assert [(c["key"], c["old"], c["new"]) for c in doc["changes"]] == [("threshold", 0.5, 0.7)]
    everything = json.loads(cli("params", "diff", "--all", "--json").stdout)
    assert {c["key"] for c in everything["changes"]} == {"train.lr", "train.depth", "threshold"}
    plain = cli("params", "diff").stdout
    assert "eval.yaml\tthreshold\t0.5\t0.7\t+0.2" in plain


def test_params_diff_without_pipeline_uses_params_yaml(repo, tree, cli):
    tree({"params.yaml": "lr: 1\n"})
    commit_all(repo.root, "one")
    tree({"params.yaml": "lr: 2\nnew: x\n"})
    doc = json.loads(cli("params", "diff", "--json").stdout)
    assert {c["key"]: (c["old"], c["new"]) for c in doc["changes"]} == {"lr": (1, 2), "new": (None, "x")}


def test_params_diff_reads_toml_and_python_params_as_the_pipeline_does(repo, tree, cli, tmp_path):
    """A stage's params in TOML or Python are diffed by their format, not as YAML (which refused
    TOML tables and read a .py file as one string); the .py file is read, never run."""
    marker = tmp_path / "ran"
    tree(
        {
            "train.toml": "[train]\nlr = 0.1\n",
            "cfg.py": f"EPOCHS = 10\nclass Opt:\n    name = 'adam'\nopen({str(marker)!r}, 'w')\n",
            "pipeline.yaml": (
                "stages:\n  train:\n    cmd: echo\n    params:\n      - train.toml:\n          - train.lr\n"
                "      - cfg.py:\n          - EPOCHS\n          - Opt.name\n"
            ),
        }
    )
    commit_all(repo.root, "one")
    tree({"train.toml": "[train]\nlr = 0.05\n", "cfg.py": "EPOCHS = 20\nclass Opt:\n    name = 'adam'\n"})
    doc = json.loads(cli("params", "diff", "--json").stdout)
    assert {(c["file"], c["key"], c["old"], c["new"]) for c in doc["changes"]} == {
        ("train.toml", "train.lr", 0.1, 0.05),
        ("cfg.py", "EPOCHS", 10, 20),
    }
    assert not marker.exists()
