"""`mlops drift`: exit codes, the table, --json, --html, options, the config file, model quality."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pytest
from driftkit import base_columns, strict_json, write_csv, write_parquet


@pytest.fixture
def drifted_pair(tmp_path):
    """amount and plan drifted, age clean: 2 of 3 columns."""
    ref = base_columns(4000, seed=1)
    cur = base_columns(4000, seed=2, shift=0.6)
    cur["plan"] = np.random.default_rng(3).choice(["basic", "standard", "premium"], 4000, p=[0.2, 0.3, 0.5])
    return str(write_parquet(tmp_path / "ref.parquet", ref)), str(write_parquet(tmp_path / "cur.parquet", cur))


@pytest.fixture
def clean_pair(tmp_path):
    return (
        str(write_parquet(tmp_path / "clean" / "ref.parquet", base_columns(4000, seed=1))),
        str(write_parquet(tmp_path / "clean" / "cur.parquet", base_columns(4000, seed=2))),
    )


def test_exit_codes_with_and_without_fail_on_drift(drifted_pair, clean_pair, cli) -> None:
    result = cli("drift", *drifted_pair, code=0)  # drifted, but no --fail-on-drift: 0
    assert "dataset drifted: 2 of 3 columns drifted" in result.stdout
    result = cli("drift", *drifted_pair, "--fail-on-drift", code=1)
    assert "error: dataset drifted" in result.stderr
    result = cli("drift", *clean_pair, "--fail-on-drift", code=0)
    assert "no dataset drift: 0 of 3 columns drifted" in result.stdout
    cli("drift", *drifted_pair, "--fail-on-drift", "--drift-share", "0.9", code=0)


def test_the_table_lists_drifted_columns_first(drifted_pair, cli) -> None:
    lines = cli("drift", *drifted_pair).stdout.splitlines()
    assert lines[0].split("\t") == ["column", "type", "method", "statistic", "threshold", "drifted"]
    rows = [line.split("\t") for line in lines[1:4]]
    assert [r[0] for r in rows] == ["amount", "plan", "age"]
    assert [r[-1] for r in rows] == ["yes", "yes", "no"]
    assert rows[0][1:3] == ["numeric", "Wasserstein distance (normed)"] and rows[0][4] == "score >= 0.1"
    assert rows[1][1:3] == ["categorical", "Jensen-Shannon distance"]


def test_json_is_one_document_with_every_number(drifted_pair, mlops_bin) -> None:
    proc = mlops_bin("drift", *drifted_pair, "--json", "--fail-on-drift", code=1)
    doc = strict_json(proc.stdout)
    assert doc["verdict"] == {
        "drifted": True,
        "drifted_columns": 2,
        "tested_columns": 3,
        "share": 2 / 3,
        "drift_share": 0.5,
        "reasons": ["2 of 3 columns drifted (67% >= drift share 50%)"],
        "key_columns": [],
    }
    amount = doc["columns"][0]
    assert amount["column"] == "amount" and amount["method"] == "wasserstein"
    for key in ("score", "threshold", "effect", "rule"):
        assert amount[key] is not None
    for key in ("rows", "values", "missing", "nan", "inf", "mean", "std", "min", "median", "max", "distinct"):
        assert key in amount["reference"] and key in amount["current"]
    assert amount["distribution"]["kind"] == "histogram" and len(amount["distribution"]["edges"]) == 31
    assert doc["reference"]["rows"] == 4000 and doc["settings"]["preset"] == "default"
    assert "error: dataset drifted" in proc.stderr


def test_html_report_is_self_contained_with_the_verdict_first(drifted_pair, cli, tmp_path) -> None:
    out = tmp_path / "reports" / "drift.html"
    out.parent.mkdir()
    cli("drift", *drifted_pair, "--html", str(out))
    text = out.read_text()

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict]] = []
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

        def handle_data(self, data):
            self.text.append(data)

    page = Collect()
    page.feed(text)
    tags = [t for t, _ in page.tags]
    assert tags.count("svg") == 3 and "script" not in tags and "link" not in tags and "img" not in tags
    assert not any(k in ("src", "href") for _, attrs in page.tags for k in attrs)
    assert "http" not in text and "@import" not in text and "url(" not in text
    verdict = next(attrs for t, attrs in page.tags if attrs.get("id") == "verdict")
    assert "drifted" in verdict["class"]
    body = "".join(page.text)
    assert body.index("Dataset drift detected") < body.index("Columns") < body.index("Distributions")
    assert {attrs.get("id") for _, attrs in page.tags} >= {"col-amount", "col-plan", "col-age"}


def test_method_threshold_columns_exclude_and_key_columns(drifted_pair, drift_json) -> None:
    doc, _ = drift_json(*drifted_pair, "--method", "psi", "--threshold", "0.2", "--exclude", "plan")
    assert [c["column"] for c in doc["columns"]] == ["amount", "age"]
    assert {c["method"] for c in doc["columns"]} == {"psi"} and {c["threshold"] for c in doc["columns"]} == {0.2}
    doc, _ = drift_json(*drifted_pair, "--columns", "age,plan", "--drift-share", "0.9")
    assert sorted(c["column"] for c in doc["columns"]) == ["age", "plan"] and doc["verdict"]["drifted"] is False
    doc, _ = drift_json(*drifted_pair, "--columns", "age,plan", "--drift-share", "0.9", "--key-columns", "plan")
    assert doc["verdict"]["drifted"] is True and doc["verdict"]["reasons"] == ["key column 'plan' drifted"]
    doc, _ = drift_json(
        *drifted_pair, "--numeric-method", "ks", "--categorical-method", "hellinger", "--categorical-threshold", "0.5"
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["amount"]["method"] == "ks" and by["plan"]["method"] == "hellinger" and by["plan"]["threshold"] == 0.5
    assert by["plan"]["drifted"] is False


def test_a_method_that_does_not_fit_a_column_falls_back_with_a_note(drifted_pair, drift_json) -> None:
    doc, _ = drift_json(*drifted_pair, "--method", "ks")
    plan = next(c for c in doc["columns"] if c["column"] == "plan")
    assert plan["method"] == "jensenshannon"
    assert "ks tests numeric columns, not categorical (asked for all columns): used jensenshannon" in plan["notes"]
    # a threshold given with the asked method is on that method's scale: the fallback keeps its own default
    doc, _ = drift_json(*drifted_pair, "--method", "wasserstein", "--threshold", "0.3")
    by = {c["column"]: c for c in doc["columns"]}
    assert by["amount"]["method"] == "wasserstein" and by["amount"]["threshold"] == 0.3
    assert by["plan"]["method"] == "jensenshannon" and by["plan"]["threshold"] == 0.1
    assert "the threshold 0.3 was given for wasserstein: jensenshannon uses its default 0.1" in by["plan"]["notes"]
    # a threshold given for the categorical type applies to whatever tests categorical columns
    doc, _ = drift_json(*drifted_pair, "--method", "wasserstein", "--categorical-threshold", "0.5")
    assert next(c for c in doc["columns"] if c["column"] == "plan")["threshold"] == 0.5


def test_bad_options_are_usage_errors(drifted_pair, cli) -> None:
    assert "unknown method 'bogus'" in cli("drift", *drifted_pair, "--method", "bogus", code=2).stderr
    assert "unknown preset" in cli("drift", *drifted_pair, "--preset", "lax", code=2).stderr
    assert "--correction must be one of" in cli("drift", *drifted_pair, "--correction", "holm", code=2).stderr
    assert "column 'nope' is in neither data set" in cli("drift", *drifted_pair, "--key-columns", "nope", code=2).stderr
    assert "column 'nope' is in neither data set" in cli("drift", *drifted_pair, "--columns", "nope", code=2).stderr
    for flag in ("--threshold", "--numeric-threshold", "--categorical-threshold", "--min-effect", "--drift-share"):
        for value in ("nan", "-0.5", "inf"):
            result = cli("drift", *drifted_pair, flag, value, code=2)
            assert f"{flag} must be" in result.stderr.splitlines()[0], (flag, value, result.stderr)


def test_json_is_valid_with_huge_and_infinite_values(tmp_path, mlops_bin) -> None:
    rng = np.random.default_rng(2)
    n = 500
    ref = {
        "big": rng.normal(0, 1, n) * 1e200,
        "huge": np.r_[rng.uniform(1e307, 1.7e308, n - 1), -1.7e308],
        "withinf": np.where(rng.random(n) < 0.1, np.inf, rng.normal(0, 1, n)),
    }
    cur = {
        "big": rng.normal(0, 1, n) * 1e200,
        "huge": rng.uniform(1e307, 1.7e308, n),
        "withinf": np.where(rng.random(n) < 0.1, -np.inf, rng.normal(0, 1, n)),
    }
    proc = mlops_bin(
        "drift",
        str(write_parquet(tmp_path / "r.parquet", ref)),
        str(write_parquet(tmp_path / "c.parquet", cur)),
        "--json",
        "--method",
        "wasserstein",
    )
    doc = strict_json(proc.stdout)
    by = {c["column"]: c for c in doc["columns"]}
    big = by["big"]["reference"]
    assert math.isfinite(big["mean"]) and big["std"] == pytest.approx(np.std(ref["big"] / 1e200) * 1e200, rel=1e-9)
    assert math.isfinite(by["huge"]["reference"]["std"]) and math.isfinite(by["huge"]["reference"]["mean"])
    assert by["withinf"]["reference"]["inf"] > 0


def test_small_references_get_evidentlys_p_value_tests(tmp_path, drift_json) -> None:
    rng = np.random.default_rng(6)
    ref = {
        "x": rng.normal(size=800),
        "few": rng.integers(0, 4, 800).astype(float),
        "two": rng.choice(["a", "b"], 800),
        "three": rng.choice(["a", "b", "c"], 800),
    }
    cur = {
        "x": rng.normal(size=900),
        "few": rng.integers(0, 4, 900).astype(float),
        "two": rng.choice(["a", "b"], 900),
        "three": rng.choice(["a", "b", "c"], 900),
    }
    doc, _ = drift_json(
        str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", cur))
    )
    by = {c["column"]: c for c in doc["columns"]}
    assert by["x"]["method"] == "ks" and by["x"]["rule"] == "p <= 0.05" and 0 <= by["x"]["p_value"] <= 1
    assert by["few"]["method"] == "chisquare" and by["few"]["tested_by_values"] is True
    assert by["two"]["method"] == "z" and by["three"]["method"] == "chisquare" and by["three"]["rule"] == "p < 0.05"


def test_strict_preset_and_corrections(tmp_path, drift_json) -> None:
    rng = np.random.default_rng(8)
    n = 200_000
    ref = {"tiny_shift": rng.normal(0, 1, n), "real_shift": rng.normal(0, 1, n)}
    cur = {"tiny_shift": rng.normal(0.02, 1, n), "real_shift": rng.normal(0.15, 1, n)}
    paths = str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", cur))
    doc, _ = drift_json(*paths, "--method", "ks")
    assert all(c["drifted"] for c in doc["columns"])  # a p-value alone flags a 0.02-sd shift at 200k rows
    doc, result = drift_json(*paths, "--preset", "strict")
    by = {c["column"]: c for c in doc["columns"]}
    assert by["real_shift"]["drifted"] is True
    assert by["tiny_shift"]["drifted"] is False and by["tiny_shift"]["p_value"] < 0.05
    assert "below the floor 0.05" in by["tiny_shift"]["reason"]
    assert by["tiny_shift"]["adjusted_p_value"] >= by["tiny_shift"]["p_value"]
    doc, _ = drift_json(*paths, "--method", "ks", "--correction", "bonferroni")
    for c in doc["columns"]:
        assert c["adjusted_p_value"] == pytest.approx(min(1.0, c["p_value"] * 2), rel=1e-9)
    doc, _ = drift_json(*paths, "--method", "ks", "--min-effect", "0.1")
    assert {c["column"]: c["drifted"] for c in doc["columns"]} == {"tiny_shift": False, "real_shift": True}


def test_config_file_per_column_methods_thresholds_and_types(drifted_pair, tmp_path, drift_json, cli) -> None:
    config = tmp_path / "drift.yaml"
    config.write_text(
        "format: 1\n"
        "drift_share: 0.9\n"
        "key_columns: [age]\n"
        "numeric: {method: ks}\n"
        "per_column:\n"
        "  amount: {method: psi, threshold: 5.0}\n"
        "  age: {type: categorical, method: chisquare, threshold: 0.01}\n"
        "  plan: {type: skip}\n"
    )
    doc, _ = drift_json(*drifted_pair, "--config", str(config))
    by = {c["column"]: c for c in doc["columns"]}
    assert by["amount"]["method"] == "psi" and by["amount"]["threshold"] == 5.0 and by["amount"]["drifted"] is False
    assert by["age"]["method"] == "chisquare" and by["age"]["type"] == "categorical" and by["age"]["threshold"] == 0.01
    assert by["plan"]["status"] == "skipped" and by["plan"]["reason"] == "skipped by the config file"
    assert doc["settings"]["drift_share"] == 0.9 and doc["settings"]["key_columns"] == ["age"]
    doc, _ = drift_json(*drifted_pair, "--config", str(config), "--drift-share", "0.5")  # the command line wins
    assert doc["settings"]["drift_share"] == 0.5
    config.write_text("format: 1\nper_column:\n  plan: {method: wasserstein}\n")
    result = cli("drift", *drifted_pair, "--config", str(config), code=2)
    assert "column 'plan': wasserstein tests numeric columns, not categorical" in result.stderr
    config.write_text("format: 1\nmethods: {}\n")
    assert "unknown key 'methods'" in cli("drift", *drifted_pair, "--config", str(config), code=2).stderr
    config.write_text("format: 9\n")
    assert "newer mlops" in cli("drift", *drifted_pair, "--config", str(config), code=2).stderr


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_target_prediction_drift_and_classification_quality(tmp_path, drift_json, fmt) -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(11)

    def table(n: int, noise: float) -> dict:
        x = rng.normal(size=n)
        y = (x + rng.normal(0, 0.5, n) > 0).astype(int)
        score = 1 / (1 + np.exp(-(x + rng.normal(0, noise, n)) * 2))
        return {"x": x, "churned": y, "pred": score}

    ref, cur = table(3000, 0.3), table(3000, 1.5)
    write = write_parquet if fmt == "parquet" else write_csv  # CSV: columns parsed once, released after use
    doc, result = drift_json(
        str(write(tmp_path / f"r.{fmt}", ref)),
        str(write(tmp_path / f"c.{fmt}", cur)),
        "--target",
        "churned",
        "--prediction",
        "pred",
    )
    assert doc["target_drift"]["column"] == "churned" and doc["prediction_drift"]["column"] == "pred"
    roles = {c["column"]: c["role"] for c in doc["columns"]}
    assert roles == {"x": "feature", "churned": "target", "pred": "prediction"}
    q = doc["quality"]
    assert q["task"] == "classification" and q["prediction_is"] == "probability" and q["positive_label"] == 1
    m = {row["metric"]: row for row in q["metrics"]}
    for side, data in (("reference", ref), ("current", cur)):
        labels = (data["pred"] >= 0.5).astype(int)
        assert m["accuracy"][side] == pytest.approx(accuracy_score(data["churned"], labels), abs=1e-12)
        assert m["f1"][side] == pytest.approx(f1_score(data["churned"], labels), abs=1e-12)
        assert m["roc_auc"][side] == pytest.approx(roc_auc_score(data["churned"], data["pred"]), abs=1e-12)
    assert m["accuracy"]["change"] == pytest.approx(m["accuracy"]["current"] - m["accuracy"]["reference"])
    assert m["roc_auc"]["change"] < 0


def test_regression_quality(tmp_path, drift_json, cli) -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(size=2000)
    ref = {"x": x, "y": 3 * x + rng.normal(0, 1, 2000), "yhat": 3 * x}
    x2 = rng.normal(size=2000)
    cur = {"x": x2, "y": 3 * x2 + rng.normal(0.5, 2, 2000), "yhat": 3 * x2}
    paths = str(write_parquet(tmp_path / "r.parquet", ref)), str(write_parquet(tmp_path / "c.parquet", cur))
    doc, _ = drift_json(*paths, "--target", "y", "--prediction", "yhat")
    q = {row["metric"]: row for row in doc["quality"]["metrics"]}
    assert doc["quality"]["task"] == "regression"
    err = cur["y"] - cur["yhat"]
    assert q["mae"]["current"] == pytest.approx(np.mean(np.abs(err)), rel=1e-9)
    assert q["rmse"]["current"] == pytest.approx(math.sqrt(np.mean(err**2)), rel=1e-9)
    assert q["r2"]["current"] == pytest.approx(1 - np.sum(err**2) / np.sum((cur["y"] - cur["y"].mean()) ** 2), rel=1e-9)
    assert q["rmse"]["change"] > 0
    table = cli("drift", *paths, "--target", "y", "--prediction", "yhat").stdout
    assert "model quality (regression):" in table and "\nrmse\t" in table


def test_csv_and_folder_inputs(tmp_path, drift_json) -> None:
    ref = write_csv(tmp_path / "ref.csv", base_columns(3000, seed=1))
    for day in range(3):
        write_parquet(tmp_path / "current" / f"day={day}" / "part.parquet", base_columns(1000, seed=10 + day))
    doc, _ = drift_json(str(ref), str(tmp_path / "current"))
    assert doc["current"]["rows"] == 3000 and len(doc["current"]["files"]) == 3
    assert doc["verdict"]["drifted_columns"] == 0
