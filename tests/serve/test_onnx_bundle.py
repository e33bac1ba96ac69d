"""A scikit-learn bundle's ONNX form (issue 15's start-up bound): `mlops export model --onnx` compiles
the registered pickle, checks it answers like the pickle on real rows, and `mlops serve --model-dir`
runs it with onnxruntime, without importing scikit-learn, SciPy or pandas."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servekit import ROW, mlops, start_server, training_frame

from mlops.exporters.bundle import plan_bundle, write_bundle
from mlops.repo.repo import Repo
from mlops.serve.bundle import BundleSource, open_bundle

ROWS = [
    ROW,
    {"tenure": 40, "plan": "pro", "monthly_charges": 20.5},
    {"tenure": 7, "plan": "family", "monthly_charges": 99.0},
]
V2_INPUTS = [
    {"name": "tenure", "shape": [3], "datatype": "INT64", "data": [r["tenure"] for r in ROWS]},
    {"name": "plan", "shape": [3], "datatype": "BYTES", "data": [r["plan"] for r in ROWS]},
    {"name": "monthly_charges", "shape": [3], "datatype": "FP64", "data": [r["monthly_charges"] for r in ROWS]},
]
HEAVY = ("sklearn", "scipy", "pandas")


def pickled(bundle: Path) -> Any:
    return pickle.loads(next((bundle / "artifact").iterdir()).read_bytes())


@pytest.fixture
def onnx_bundle(model_repo: Path, tmp_path: Path) -> Path:
    """churn@production (a strict pipeline: an unknown plan makes it raise) exported with --onnx, through the CLI."""
    out = tmp_path / "outside" / "bundle"
    proc = mlops(
        model_repo,
        *("export", "model", "churn@production", "-o", str(out), "--onnx"),
        *("--check-data", str(model_repo / "models" / "train.parquet"), "--json"),
    )
    result = json.loads(proc.stdout)
    assert result["compiled"]["path"] == "compiled/model.onnx" and result["compiled"]["source"] == "train.parquet"
    return out


def test_the_onnx_form_is_a_listed_file_beside_the_pickle_with_what_it_was_checked_on(onnx_bundle: Path) -> None:
    import onnxruntime

    manifest = json.loads((onnx_bundle / "mlops-bundle.json").read_text())
    assert {"artifact/churn-v1.pkl", "compiled/model.onnx"} <= set(manifest["files"])
    compiled = json.loads((onnx_bundle / "model.json").read_text())["compiled"]
    assert compiled["check"]["rows"] == 50 and compiled["check"]["largest_difference"] < 1e-4
    assert compiled["classes"] == [0, 1] and compiled["probabilities"]
    by_name = {i["name"]: i for i in compiled["inputs"]}
    # the strict encoder's categories: the form refuses what the pickle refuses
    assert by_name["plan"]["categories"] == ["basic", "family", "pro"]
    assert by_name["monthly_charges"]["nulls"] is False
    pins = dict(
        line.split("==") for line in (onnx_bundle / "requirements.txt").read_text().splitlines() if "==" in line
    )
    assert pins["onnxruntime"] == onnxruntime.__version__


@pytest.mark.timeout(180)
def test_an_onnx_bundle_answers_like_its_pickle_in_all_three_protocols_without_scikit_learn(
    onnx_bundle: Path, tmp_path: Path
) -> None:
    model = pickled(onnx_bundle)
    frame = pd.DataFrame(ROWS)
    want = model.predict(frame).tolist()
    want_proba = model.predict_proba(frame)
    # without the request log, whose Parquet writer is pyarrow (and pyarrow imports pandas when it builds arrays)
    server = start_server(
        tmp_path, f"--model-dir={onnx_bundle}", "--no-request-log", env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    try:
        assert "its ONNX form by onnxruntime" in server.stderr()
        with server.client() as c:
            assert c.post("/predict", json={"records": ROWS}).json()["predictions"] == want
            assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": want}
            answer = c.post("/v2/models/churn/infer", json={"inputs": V2_INPUTS}).json()
            assert answer["outputs"][0]["data"] == want
            assert c.get("/v2/models/churn").json()["platform"] == "onnxruntime_onnx"
            assert c.get("/metadata").json()["runtime"] == "onnxruntime"
            asked = {"inputs": V2_INPUTS, "outputs": [{"name": "probabilities"}]}
            proba = c.post("/v2/models/churn/infer", json=asked).json()["outputs"][0]
            assert proba["shape"] == [3, 2]
            assert np.allclose(np.array(proba["data"]).reshape(3, 2), want_proba, atol=1e-5)
            # the pickle raises on a plan it never saw (a 500): so does its ONNX form, rather than answer
            unknown = c.post("/predict", json={"records": [{**ROW, "plan": "gold"}]})
            assert unknown.status_code == 500, unknown.text
            gold = [{**i, "data": ["gold"] * 3} if i["name"] == "plan" else i for i in V2_INPUTS]
            asked = {"inputs": gold, "outputs": [{"name": "prediction"}, {"name": "probabilities"}]}
            assert c.post("/v2/models/churn/infer", json=asked).status_code == 500
    finally:
        assert server.stop() == 0, server.stderr()
    imported = {line.rsplit("|", 1)[-1].strip() for line in server.stderr().splitlines() if "import time:" in line}
    assert "onnxruntime" in imported  # the log sees imports: the one that serves
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, "served without scikit-learn, SciPy or pandas"
    assert "Found unknown categories ['gold'] in column 'plan'" in server.stderr()
    assert "never retrieved" not in server.stderr() and "Traceback" not in server.stderr()


def _rewrite(bundle: Path, rel: str, data: bytes) -> None:
    """Change one file and its manifest entry consistently: the manifest no longer catches it."""
    (bundle / rel).write_bytes(data)
    manifest = json.loads((bundle / "mlops-bundle.json").read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (bundle / "mlops-bundle.json").write_text(json.dumps(manifest))


def test_a_changed_onnx_form_or_description_is_refused_with_exit_3(onnx_bundle: Path, tmp_path: Path) -> None:
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(onnx_bundle, changed)
    data = bytearray((changed / "compiled" / "model.onnx").read_bytes())
    data[-1] ^= 1
    (changed / "compiled" / "model.onnx").write_bytes(bytes(data))
    proc = mlops(tmp_path, "serve", "--model-dir", str(changed), "--port", "0", code=3)
    assert "compiled/model.onnx does not match its hash" in proc.stderr and "Traceback" not in proc.stderr

    facts = json.loads((onnx_bundle / "model.json").read_text())
    inputs = facts["compiled"]["inputs"]

    def changed_input(name: str, **change: Any) -> list[dict[str, Any]]:
        return [{**item, **change} if item["name"] == name else item for item in inputs]

    for entry_change, named in (
        ({"path": "../../etc/passwd"}, "model.json has a 'compiled' entry that names '../../etc/passwd'"),
        ({"inputs": [{"name": "plan", "element": "pickle", "columns": ["plan"]}]}, "without a known element"),
        ({"label": "no-such-output"}, "names outputs compiled/model.onnx does not have"),
        ({"inputs": changed_input("tenure", columns=["no_such_column"])}, "feeds columns the signature lacks"),
        ({"inputs": changed_input("monthly_charges", element="int64")}, "does not describe input monthly_charges"),
        ({"inputs": changed_input("plan", columns=["plan", "plan"])}, "does not describe input plan"),
        ({"classes": [0, 1, 2]}, "another number of classes than the probabilities have"),
    ):
        moved = tmp_path / f"moved-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(onnx_bundle, moved)
        facts = json.loads((moved / "model.json").read_text())
        facts["compiled"].update(entry_change)
        _rewrite(moved, "model.json", json.dumps(facts).encode())
        proc = mlops(tmp_path, "serve", "--model-dir", str(moved), "--port", "0", code=3)
        assert named in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


def test_runtime_chooses_the_pickle_or_insists_on_the_onnx_form(
    onnx_bundle: Path, model_repo: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    state = tmp_path / "state"
    server = start_server(tmp_path, f"--model-dir={onnx_bundle}", "--state-dir", str(state))
    try:
        with server.client() as c:
            assert c.post("/predict", json={"records": ROWS}).status_code == 200
    finally:
        assert server.stop() == 0, server.stderr()
    # the request log keeps the form's probabilities by class, as it does the pickle's (estimated quality)
    (logged,) = (state / ".mlops" / "serve" / "churn" / "requests").glob("*.parquet")
    probabilities = pq.read_table(logged).column("probabilities").to_pylist()
    want = pickled(onnx_bundle).predict_proba(pd.DataFrame(ROWS))
    assert [dict(row)["1"] for row in probabilities] == pytest.approx(want[:, 1].tolist(), abs=1e-5)

    server = start_server(tmp_path, f"--model-dir={onnx_bundle}", "--runtime", "pickle", "--no-request-log")
    try:
        assert "ONNX" not in server.stderr()
        with server.client() as c:
            assert c.get("/metadata").json()["runtime"] == "python"
            assert (
                c.post("/predict", json={"records": ROWS}).json()["predictions"]
                == pickled(onnx_bundle).predict(pd.DataFrame(ROWS)).tolist()
            )
    finally:
        assert server.stop() == 0, server.stderr()
    plain = tmp_path / "plain"
    mlops(model_repo, "export", "model", "churn@production", "-o", str(plain))
    proc = mlops(tmp_path, "serve", "--model-dir", str(plain), "--runtime", "onnx", code=2)
    assert "the bundle at" in proc.stderr and "has no ONNX form" in proc.stderr
    proc = mlops(tmp_path, "serve", "--model-dir", str(plain), "--runtime", "fast", code=2)
    assert "--runtime fast: not one of auto, pickle, onnx" in proc.stderr
    proc = mlops(model_repo, "serve", "churn@production", "--runtime", "onnx", code=2)
    assert "--runtime goes with --model-dir" in proc.stderr


def test_export_onnx_says_in_one_line_what_it_cannot_do(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = mlops(model_repo, "export", "model", "churn@production", "-o", str(out), "--onnx", code=2)
    assert "no training table with its input columns is recorded" in proc.stderr and "--check-data" in proc.stderr
    proc = mlops(model_repo, "export", "model", "churn@production", "-o", str(out), "--check-data", "x.csv", code=2)
    assert "--check-data goes with --onnx" in proc.stderr
    proc = mlops(model_repo, "export", "model", "churn@production", "-o", str(out), "--tolerance", "0.01", code=2)
    assert "--tolerance goes with --onnx" in proc.stderr
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("tenure,plan\n3,basic\n")
    proc = mlops(
        model_repo, "export", "model", "churn@production", "-o", str(out), "--onnx", "--check-data", str(wrong), code=2
    )
    assert "no column 'monthly_charges'" in proc.stderr
    assert not out.exists()


# --- in-process: what compiles, what is refused ----------------------------------------------


def _register(repo: Repo, name: str, model: Any, frame: pd.DataFrame) -> Path:
    from mlops import registry

    root = Path(repo.root)
    (root / f"{name}.pkl").write_bytes(pickle.dumps(model))
    frame.to_parquet(root / f"{name}.parquet")
    registry.register(repo, name, root / f"{name}.pkl", signature_from=root / f"{name}.parquet", actor="tests")
    return root / f"{name}.parquet"


def _served(repo: Repo, name: str, rows: Path, tmp_path: Path) -> tuple[Any, Any]:
    out = tmp_path / f"{name}-bundle"
    write_bundle(plan_bundle(repo, name, onnx=True, check_data=str(rows)), out)
    source = BundleSource(open_bundle(out))
    info = source.resolve(name)
    return source.load(info), pickled(out)


def test_a_regressor_a_plain_estimator_and_text_labels_compile_and_answer_like_their_pickles(
    repo: Repo, tmp_path: Path
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import LinearSVC

    frame = training_frame(rows=300, seed=3)
    numbers = frame[["tenure", "monthly_charges"]]
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]), ("n", StandardScaler(), ["tenure"])]
    )
    models = {
        "charges": (Pipeline([("c", columns), ("m", LinearRegression())]).fit(frame, frame["monthly_charges"]), frame),
        # fitted on a DataFrame of numbers without a ColumnTransformer: one stacked [rows, 2] input;
        # its classes are True and False, which the form must answer as such (JSON true, not 1)
        "plain": (LogisticRegression().fit(numbers, frame["tenure"] > 30), numbers),
        # classifiers without predict_proba: their second output is decision scores, never served as probabilities
        "ridge": (RidgeClassifier().fit(numbers, frame["tenure"] > 30), numbers),
        "svc": (LinearSVC().fit(numbers, frame["tenure"] > 30), numbers),
        "worded": (
            RandomForestClassifier(n_estimators=5, random_state=0).fit(
                numbers, np.where(frame["tenure"] > 30, "stays", "leaves")
            ),
            numbers,
        ),
    }
    for name, (model, rows) in models.items():
        served, original = _served(repo, name, _register(repo, name, model, rows), tmp_path)
        assert type(served).__name__ == "OnnxModel"
        check = rows.head(20).reset_index(drop=True)
        as_columns = {c: check[c].tolist() for c in check.columns}  # what the server hands it
        got, want = np.asarray(served.predict(as_columns)), np.asarray(original.predict(check))
        if name == "charges":
            assert np.allclose(got, want, rtol=1e-4)
            continue
        assert [(type(v), v) for v in got.tolist()] == [(type(v), v) for v in want.tolist()]
        assert list(served.classes_) == list(original.classes_)
        if name in ("ridge", "svc"):
            assert served.predict_proba is None and served.form.probabilities is None
        else:
            assert np.allclose(served.predict_proba(as_columns), original.predict_proba(check), atol=1e-5)
    # an unseen plan: the pickle's encoder ignores it (all zeros), and so does the form (checked at export)
    charges, original = _served(repo, "charges", Path(repo.root) / "charges.parquet", tmp_path / "again")
    unseen = pd.DataFrame([{"tenure": 5, "plan": "gold", "monthly_charges": 1.0}])
    assert np.allclose(charges.predict(unseen), original.predict(unseen), rtol=1e-4)


def test_a_form_that_answers_differently_is_a_failed_check_and_no_bundle_is_written(repo: Repo, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    # numbers near 1e9 that differ by less than float32 can tell apart: ONNX computes in float32
    x = pd.DataFrame({"stamp": 1_000_000_000.0 + np.arange(200, dtype=float)})
    rows = _register(repo, "stamps", LinearRegression().fit(x, x["stamp"] - 1e9), x)
    out = tmp_path / "stamps"
    from mlops.errors import CheckFailed

    with pytest.raises(CheckFailed) as failed:
        write_bundle(plan_bundle(repo, "stamps", onnx=True, check_data=str(rows)), out)
    assert "its ONNX form answers differently on" in failed.value.message and "from the pickle" in failed.value.message
    assert failed.value.exit_code == 1 and not out.exists()
    # the command prints no report before it: with --json the error is the one document on stdout
    proc = mlops(Path(repo.root), "export", "model", "stamps", "-o", str(out), "--onnx", "--check-data", str(rows),
                 "--json", code=1)  # fmt: skip
    document = json.loads(proc.stdout)
    assert (document["error"], document["exit_code"]) == ("check_failed", 1) and document["rows"] > 0


def test_numbers_past_the_tolerance_are_refused_with_the_tolerance_that_would_accept_them(
    repo: Repo, tmp_path: Path
) -> None:
    from sklearn.linear_model import LinearRegression

    from mlops.errors import CheckFailed

    # y = x - 100000 for x in [100000, 100001): float32 holds x to 1/128, so the form is off by up to ~0.004
    x = pd.DataFrame({"x": 100_000.0 + np.random.default_rng(0).random(300)})
    rows = _register(repo, "offsets", LinearRegression().fit(x, x["x"] - 100_000.0), x)
    with pytest.raises(CheckFailed) as failed:
        plan_bundle(repo, "offsets", onnx=True, check_data=str(rows))
    assert "tolerance 0.0001" in failed.value.message
    suggested = float(re.search(r"--tolerance (\S+)", failed.value.hint or "").group(1))
    assert 1e-4 < suggested < 0.05
    plan = plan_bundle(repo, "offsets", onnx=True, check_data=str(rows), tolerance=suggested)
    check = json.loads(plan.files["model.json"])["compiled"]["check"]
    assert check["tolerance"] == suggested and 1e-4 < check["largest_difference"] <= suggested


def test_a_missing_value_the_form_would_answer_otherwise_is_refused_with_a_warning(repo: Repo, tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    # a tree that saw no missing value sends one to its larger child (here the left: x <= 89.5, class 0);
    # onnxruntime's comparison with NaN is false, so its form would take the right branch (class 1)
    x = pd.DataFrame({"x": np.arange(100, dtype=float)})
    rows = _register(repo, "tree", DecisionTreeClassifier(max_depth=1).fit(x, (x["x"] >= 90).astype(int)), x)
    plan = plan_bundle(repo, "tree", onnx=True, check_data=str(rows))
    (warning,) = [w for w in plan.warnings if "ONNX form" in w]
    assert warning.startswith("x: the pickle answers a missing value and the ONNX form would answer it otherwise")
    (entry,) = json.loads(plan.files["model.json"])["compiled"]["inputs"]
    assert entry["nulls"] is False
    out = tmp_path / "tree-bundle"
    write_bundle(plan, out)
    source = BundleSource(open_bundle(out))
    served = source.load(source.resolve("tree"))
    assert served.predict({"x": [3.0, 95.0]}).tolist() == [0, 1]
    with pytest.raises(ValueError, match="contains NaN"):
        served.predict({"x": [None]})


def test_a_model_skl2onnx_cannot_convert_is_a_usage_error(repo: Repo, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from mlops.errors import UsageError

    x = training_frame(rows=100)[["tenure", "monthly_charges"]]
    model = Pipeline([("f", FunctionTransformer(np.log1p)), ("m", LinearRegression())]).fit(x, x["tenure"])
    rows = _register(repo, "logs", model, x)
    with pytest.raises(UsageError) as refused:
        plan_bundle(repo, "logs", onnx=True, check_data=str(rows))
    assert "skl2onnx cannot compile Pipeline" in refused.value.message and "without --onnx" in refused.value.hint
    assert "FunctionTransformer" in refused.value.message  # the converter's own words name the step


def test_check_rows_are_typed_as_the_signature_says_and_refused_when_the_pickle_refuses_them(
    repo: Repo, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression, Ridge

    from mlops.errors import UsageError

    # trained on fractional charges; the CSV check rows happen to hold whole numbers, which pandas reads as int64:
    # the form's input must still be a float (the signature's "number"), or 20.9 would be served as 20
    x = pd.DataFrame({"charges": np.linspace(10.5, 120.5, 80)})
    _register(repo, "ridge", Ridge().fit(x, x["charges"] * 2), x)
    whole = tmp_path / "whole.csv"
    whole.write_text("charges\n" + "\n".join(str(v) for v in range(10, 120, 5)) + "\n")
    out = tmp_path / "ridge-bundle"
    write_bundle(plan_bundle(repo, "ridge", onnx=True, check_data=str(whole)), out)
    (item,) = json.loads((out / "model.json").read_text())["compiled"]["inputs"]
    assert item["element"] == "float"
    source = BundleSource(open_bundle(out))
    served = source.load(source.resolve("ridge"))
    assert served.predict({"charges": [20.9]})[0] == pytest.approx(
        pickled(out).predict(pd.DataFrame({"charges": [20.9]}))[0], rel=1e-5
    )

    classes = pd.DataFrame({"charges": np.linspace(10, 120, 80)})
    _register(repo, "strict", LogisticRegression().fit(classes, classes["charges"] > 60), classes)
    huge = tmp_path / "huge.csv"
    huge.write_text("charges\n10.5\n1e39\n")  # the pickle answers it; float32 cannot hold it
    with pytest.raises(UsageError) as failed:
        plan_bundle(repo, "ridge", onnx=True, check_data=str(huge))
    assert failed.value.message.startswith("huge.csv: the ONNX form refuses a row the pickle answers (")
    assert "past float32's range" in failed.value.message

    refused = tmp_path / "refused.csv"
    refused.write_text("charges\n10\nNaN\n30\n")  # a missing value: LogisticRegression refuses NaN
    with pytest.raises(UsageError) as failed:
        plan_bundle(repo, "strict", onnx=True, check_data=str(refused))
    assert failed.value.message.startswith("refused.csv, row 2: the pickle itself refuses it (")


def test_the_form_never_answers_otherwise_where_the_pickle_answers_or_refuses(repo: Repo, tmp_path: Path) -> None:
    """Beyond the check rows: a missing value in any column, a category no row had (text or whole number), a
    number past float32's range, labels of the pickle's type. Each either answered as the pickle answers it,
    or refused with a ValueError (a 500, as the pickle's own refusals are)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro"], 300),
            "bucket": rng.integers(0, 3, 300).astype("int64"),
            "monthly": rng.uniform(10, 120, 300),
            "usage": rng.uniform(0, 50, 300),
        }
    )
    target = (frame["monthly"] + frame["usage"] > 90).astype(int)
    forest = Pipeline(
        [
            (
                "c",
                ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"),
            ),
            ("m", RandomForestClassifier(n_estimators=25, random_state=0)),
        ]
    ).fit(frame, target)
    served, original = _served(repo, "forest", _register(repo, "forest", forest, frame), tmp_path)
    inputs = {item.name: item for item in served.form.inputs}
    everyday = {c: frame[c].tolist() for c in frame.columns}
    probabilities = served.predict_proba(everyday)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0  # float32 sums of votes, clipped
    for column in ("monthly", "usage"):
        rows = frame.head(100).assign(**{column: np.nan})
        as_columns = {c: [None if v != v else v for v in rows[c].tolist()] for c in rows.columns}
        if not inputs[column].nulls:
            with pytest.raises(ValueError, match=f"Input '{column}' contains NaN"):
                served.predict(as_columns)
        else:
            assert np.allclose(served.predict_proba(as_columns), original.predict_proba(rows), atol=1e-4)

    strict = Pipeline(
        [
            ("c", ColumnTransformer([("oh", OneHotEncoder(handle_unknown="error"), ["bucket"])], remainder="drop")),
            ("m", LogisticRegression()),
        ]
    ).fit(frame, target.astype(float))  # float classes: answered 0.0/1.0 as the pickle does, not 0/1
    served, original = _served(repo, "strict", _register(repo, "strict", strict, frame), tmp_path)
    row = {"plan": ["pro"], "bucket": [1], "monthly": [50.0], "usage": [3.0]}
    assert [(type(v), v) for v in served.predict(row).tolist()] == [
        (type(v), v) for v in original.predict(pd.DataFrame(row)).tolist()
    ]
    with pytest.raises(ValueError, match=r"Found unknown categories \['99'\] in column 'bucket'"):
        served.predict({**row, "bucket": [99]})

    numbers = frame[["monthly", "usage"]]
    ridge, _ = _served(
        repo, "ridge", _register(repo, "ridge", Ridge().fit(numbers, frame["monthly"]), numbers), tmp_path
    )
    with pytest.raises(ValueError, match="Input 'usage' holds a value past float32's range"):
        ridge.predict({"monthly": [50.0], "usage": [1e39]})
    assert ridge.predict({"monthly": [50.0], "usage": [3.0]})[0] == pytest.approx(50.0, abs=0.5)

    # a classifier without predict_proba inside a pipeline converts (no zipmap option given to it)
    svc = make_pipeline(StandardScaler(), LinearSVC()).fit(numbers, target)
    served, original = _served(repo, "svc", _register(repo, "svc", svc, numbers), tmp_path)
    assert (
        served.predict({"monthly": [10.0, 119.0], "usage": [1.0, 49.0]}).tolist()
        == original.predict(pd.DataFrame({"monthly": [10.0, 119.0], "usage": [1.0, 49.0]})).tolist()
    )
