"""Filter language and sorting, as functions and through `mlops runs list`."""

from __future__ import annotations

import json

import pytest

import mlops
from mlops.errors import UsageError
from mlops.tracking.query import parse_columns, parse_filter, parse_sort, select, varying_keys

RUNS = [
    {
        "id": "r1",
        "name": "a",
        "status": "finished",
        "start_time": 1.0,
        "end_time": 5.0,
        "params": {"max_depth": 10, "model": "rf"},
        "metrics": {"test_accuracy": 0.91, "loss": 0.3},
    },
    {
        "id": "r2",
        "name": "b",
        "status": "failed",
        "start_time": 2.0,
        "end_time": 3.0,
        "params": {"max_depth": 4, "model": "lr"},
        "metrics": {"test_accuracy": 0.95},
    },
    {
        "id": "r3",
        "name": "c",
        "status": "finished",
        "start_time": 3.0,
        "end_time": None,
        "params": {"max_depth": "8", "model": "rf"},
        "metrics": {"test_accuracy": 0.85, "loss": 0.1},
    },
    {"id": "r4", "name": "d's", "status": "running", "start_time": 4.0, "params": {}, "metrics": {}},
]


def ids(runs):
    return [r["id"] for r in runs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.max_depth>=8 and metrics.test_accuracy>0.9", ["r1"]),
        ("params.max_depth >= 8", ["r3", "r1"]),  # "8" logged as text still compares as a number
        ("metrics.test_accuracy > 0.9 or attributes.status = 'running'", ["r4", "r2", "r1"]),
        ("not (attributes.status == 'finished')", ["r4", "r2"]),
        ("status != 'finished'", ["r4", "r2"]),
        ('params.model == "rf" and (metrics.loss < 0.2 or metrics.test_accuracy >= 0.91)', ["r3", "r1"]),
        ("metrics.loss != 0.3", ["r3"]),  # a run without the key never matches, not even !=
        ("0.9 < metrics.test_accuracy", ["r2", "r1"]),
        ("name = 'd\\'s'", ["r4"]),
        ("attributes.duration > 3", ["r1"]),
        ("param.max_depth = 4 AND metric.test_accuracy = 0.95", ["r2"]),
        ("metrics.test_accuracy > 9e-1", ["r2", "r1"]),
    ],
)
def test_filters(text, expected):
    assert ids(select(RUNS, filter=text)) == expected


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("params.max_depth >= and x", 21, "expected a number or a quoted text"),
        ("params.max_depth 8", 18, "expected an operator"),
        ("metrics.acc > 0.9 and", 22, "ends too early"),
        ("(metrics.acc > 0.9", 19, "expected ')'"),
        ("foo > 1", 1, "unknown field 'foo'"),
        ("attributes.colour = 'red'", 1, "unknown attribute 'colour'"),
        ("metrics.acc > 'open", 15, "never closes"),
        ("metrics.acc > 0.9 metrics.b < 1", 19, "expected 'and', 'or'"),
        ("metrics.acc ~ 1", 13, "unexpected character"),
        ("", 1, "empty filter"),
    ],
)
def test_bad_filters_point_at_the_problem(text, column, reason):
    with pytest.raises(UsageError) as caught:
        parse_filter(text)
    message = caught.value.message
    assert f"column {column}" in message and reason in message
    lines = message.splitlines()
    assert lines[1] == "    " + text
    assert lines[2] == "    " + " " * (column - 1) + "^"


def test_sorting():
    assert ids(select(RUNS, sort="metrics.test_accuracy")) == ["r3", "r1", "r2", "r4"]  # ascending, missing last
    assert ids(select(RUNS, sort="-metrics.test_accuracy")) == ["r2", "r1", "r3", "r4"]
    assert ids(select(RUNS, sort="params.model,-metrics.test_accuracy")) == ["r2", "r1", "r3", "r4"]
    assert ids(select(RUNS)) == ["r4", "r3", "r2", "r1"]  # default: newest first
    assert ids(select(RUNS, sort="-metrics.test_accuracy", limit=2)) == ["r2", "r1"]
    assert ids(select(RUNS, sort="name")) == ["r1", "r2", "r3", "r4"]
    with pytest.raises(UsageError, match="unknown field"):
        parse_sort("accuracy")
    with pytest.raises(UsageError, match="empty sort key"):
        parse_sort("metrics.a,,")


@pytest.fixture
def logged_runs(repo):
    for name, depth, acc in (("small", 4, 0.80), ("mid", 8, 0.92), ("big", 12, 0.95), ("huge", 16, 0.88)):
        with mlops.start_run(name=name):
            mlops.log_params({"max_depth": depth})
            mlops.log_metric("test_accuracy", acc)
    return repo


def test_runs_list_cli(logged_runs, cli):
    doc = json.loads(
        cli(
            "runs",
            "list",
            "--filter",
            "params.max_depth>=8 and metrics.test_accuracy>0.9",
            "--sort",
            "-metrics.test_accuracy",
            "--json",
        ).stdout
    )
    assert [r["name"] for r in doc["runs"]] == ["big", "mid"] and doc["total"] == 4
    assert doc["runs"][0]["params"] == {"max_depth": 12} and doc["runs"][0]["status"] == "finished"
    plain = cli("runs", "list", "--sort=metrics.test_accuracy", "--limit", "2").stdout.splitlines()
    assert plain[0].split("\t")[:3] == ["id", "name", "status"] and "metrics.test_accuracy" in plain[0].split("\t")
    assert [line.split("\t")[1] for line in plain[1:]] == ["small", "huge"]
    result = cli("runs", "list", "--filter", "attributes.status = 'failed'")
    assert result.stdout == "" and "no runs match" in result.stderr


def test_bad_filter_exits_2_with_a_caret(logged_runs, cli):
    result = cli("runs", "list", "--filter", "params.max_depth >= and x", code=2)
    assert "    params.max_depth >= and x\n" in result.stderr
    assert "\n                        ^\n" in result.stderr  # under 'and', column 21
    cli("runs", "list", "--sort", "nonsense", code=2)


def test_runs_show_and_compare(logged_runs, cli):
    shown = json.loads(cli("runs", "show", "big", "--json").stdout)
    assert shown["name"] == "big" and shown["metrics"] == {"test_accuracy": 0.95} and shown["status"] == "finished"
    text = cli("runs", "show", shown["id"][:21]).stdout
    assert "big" in text and "test_accuracy" in text
    doc = json.loads(cli("runs", "compare", "big", "mid", "small", "--json").stdout)
    assert [r["name"] for r in doc["runs"]] == ["big", "mid", "small"]
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["params.max_depth"]["values"] == [12, 8, 4] and rows["params.max_depth"]["different"]
    plain = cli("runs", "compare", "big", "mid").stdout
    assert "* params.max_depth\t12\t8" in plain
    cli("runs", "compare", "big", code=2)
    cli("runs", "show", "nope", code=2)


def test_columns_parse_as_fields_with_a_caret_on_a_bad_one():
    assert [str(f) for f in parse_columns("params.train.max_depth, metrics.test_accuracy,status,status")] == [
        "params.train.max_depth",
        "metrics.test_accuracy",
        "attributes.status",
    ]
    with pytest.raises(UsageError) as caught:
        parse_columns("metrics.acc,,params.x")
    assert "bad --columns at column 13: empty column" in caught.value.message
    with pytest.raises(UsageError) as caught:
        parse_columns("metrics.acc, depth")
    assert "column 14" in caught.value.message and "unknown field 'depth'" in caught.value.message
    assert "--columns" in (caught.value.hint or "")


def test_varying_keys_are_those_that_tell_the_runs_apart():
    assert varying_keys(RUNS, "params") == ["max_depth", "model"]
    assert varying_keys(RUNS[:1] + RUNS[2:3], "params") == ["max_depth"]  # model is rf in both: left out
    assert varying_keys(RUNS[:1] + RUNS[2:3], "metrics") == ["loss", "test_accuracy"]
    same = [{"params": {"a": 8, "b": 1}}, {"params": {"a": "8", "b": 1}}, {"params": {"b": 1, "c": None}}]
    assert varying_keys(same, "params") == ["a", "c"]  # 8 and "8" differ; a key some runs lack varies
    assert varying_keys(RUNS[:1], "params") == ["max_depth", "model"]  # one run: nothing to compare, all shown


@pytest.fixture
def wide_runs(repo):
    """Runs with nested params (flattened to train.max_depth ...) and more varying keys than fit in six."""
    for i, depth in enumerate((4, 8, 12)):
        with mlops.start_run(name=f"run{i}"):
            mlops.log_params(
                {
                    "prepare": {"split": 0.8, "seed": 42},  # the same in every run
                    "train": {"max_depth": depth, "n_estimators": 100 + i, "lr": 0.1 * (i + 1), "min_leaf": i},
                }
            )
            mlops.log_metrics({"test_accuracy": 0.8 + i / 100, "loss": 1 - i / 10, "f1": 0.7 + i / 50, "auc": 0.9})
            mlops.log_metrics({"precision": 0.6 + i / 10, "recall": 0.5 + i / 10})
    return repo


def test_runs_list_columns_names_the_columns(wide_runs, cli):
    result = cli("runs", "list", "--columns", "params.train.max_depth,metrics.test_accuracy", "--sort", "name")
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0] == ["id", "params.train.max_depth", "metrics.test_accuracy"]
    assert [line[1:] for line in lines[1:]] == [["4", "0.8"], ["8", "0.81"], ["12", "0.82"]]
    picked = cli("runs", "list", "-c", "name,status,params.prepare.seed,metrics.nope", "--sort", "name")
    assert [line.split("\t")[1:] for line in picked.stdout.splitlines()][:2] == [
        ["name", "status", "params.prepare.seed", "metrics.nope"],
        ["run0", "finished", "42", "-"],
    ]
    assert "no listed run has metrics.nope" in picked.stderr
    bad = cli("runs", "list", "--columns", "params.train.max_depth,depth", code=2)
    assert "bad --columns at column 24" in bad.stderr and "unknown field 'depth'" in bad.stderr


def test_runs_list_shows_every_param_and_metric_that_differs(wide_runs, cli):
    result = cli("runs", "list")
    header = result.stdout.splitlines()[0].split("\t")
    varying = {
        *(f"params.train.{k}" for k in ("max_depth", "n_estimators", "lr", "min_leaf")),
        *(f"metrics.{k}" for k in ("test_accuracy", "loss", "f1", "precision", "recall")),
    }
    assert varying <= set(header)  # nine: more than the six the table used to stop at
    assert not {"params.prepare.split", "params.prepare.seed", "metrics.auc"} & set(header)  # equal everywhere
    assert "3 param(s) and metric(s) equal in every listed run not shown" in result.stderr
    # a key the filter names is shown even when it is the same in every listed run
    named = cli("runs", "list", "--filter", "params.prepare.seed = 42").stdout.splitlines()[0].split("\t")
    assert "params.prepare.seed" in named and varying <= set(named)
