"""The Python class flavor (issue 15): a pure-Python model class registered from a file and an
artifacts folder, its code snapshotted and hash-checked, served through all three protocols, and
refused when the snapshot's code is altered."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servekit import ROW, Server, mlops, start_server, training_frame

from mlops.store.hashing import hash_bytes

CODE = '''\
"""A pure-Python churn model: a logistic score over two numbers, its weights in the artifacts folder."""

import json
import math
import os


class ChurnModel:
    classes_ = [0, 1]

    def load(self, artifacts_dir):
        with open(os.path.join(artifacts_dir, "weights.json")) as handle:
            self.weights = json.load(handle)

    def _score(self, row):
        w = self.weights
        z = w["bias"] + w["tenure"] * row["tenure"] + w["charges"] * row["monthly_charges"]
        return 1 / (1 + math.exp(-z))

    def predict_proba(self, frame):
        return [[1 - p, p] for p in (self._score(r) for r in frame.to_dict("records"))]

    def predict(self, frame):
        return [int(p >= 0.5) for p in (self._score(r) for r in frame.to_dict("records"))]
'''
WEIGHTS = {"bias": -1.0, "tenure": -0.1, "charges": 0.05}
ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]


def score(row: dict) -> float:
    import math

    z = WEIGHTS["bias"] + WEIGHTS["tenure"] * row["tenure"] + WEIGHTS["charges"] * row["monthly_charges"]
    return 1 / (1 + math.exp(-z))


@pytest.fixture
def py_repo(repo) -> Path:
    root = Path(repo.root)
    (root / "src").mkdir()
    (root / "src" / "model.py").write_text(CODE)
    (root / "weights").mkdir()
    (root / "weights" / "weights.json").write_text(json.dumps(WEIGHTS))
    training_frame(rows=20).to_parquet(root / "sample.parquet")
    proc = mlops(
        root,
        "register",
        "pychurn",
        "src/model.py:ChurnModel",
        "--artifacts",
        "weights",
        "--signature-from",
        "sample.parquet",
        "--json",
    )
    version = json.loads(proc.stdout)
    assert version["flavor"] == "python" and version["kind"] == "dir"
    assert [c["name"] for c in version["signature"]["inputs"]] == ["tenure", "plan", "monthly_charges"]
    assert version["signature"]["outputs"] == [{"name": "prediction", "dtype": "int64"}]
    return root


@pytest.fixture
def server(py_repo: Path) -> Iterator[Server]:
    started = start_server(py_repo, "pychurn:1")
    yield started
    started.kill()


def test_a_python_class_model_serves_in_all_three_protocols(server: Server, py_repo: Path) -> None:
    # the file changes after registration: the server runs the registered snapshot, not the working copy
    (py_repo / "src" / "model.py").write_text(CODE.replace("int(p >= 0.5)", "7"))
    want = [int(score(r) >= 0.5) for r in ROWS]
    assert want == [1, 0]
    with server.client() as c:
        body = c.post("/predict", json={"records": ROWS, "outputs": ["probabilities"]}).json()
        assert body["predictions"] == want and body["classes"] == [0, 1]
        assert [round(p[1], 9) for p in body["probabilities"]] == [round(score(r), 9) for r in ROWS]
        assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": want}
        infer = {
            "inputs": [
                {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
                {"name": "monthly_charges", "shape": [2], "datatype": "FP64", "data": [80.0, 20.5]},
            ]
        }
        assert c.post("/v2/models/pychurn/infer", json=infer).json()["outputs"][0]["data"] == want
        # the signature inferred from the sample checks requests as for any model
        r = c.post("/predict", json={"records": [{**ROW, "tenure": "three"}]})
        assert r.status_code == 400 and "tenure" in r.text


def test_altered_snapshot_code_is_refused(py_repo: Path) -> None:
    from mlops.repo.repo import Repo

    objects = Repo(py_repo).objects
    code_object = objects.path(hash_bytes(CODE.encode()))
    assert code_object.exists()  # the module's bytes are an object of the store
    os.chmod(code_object, 0o644)
    code_object.write_text(CODE.replace("int(p >= 0.5)", "1"))  # always predicts churn
    proc = mlops(py_repo, "serve", "pychurn:1", "--port", "0", code=3)
    assert "code/model.py" in proc.stderr and "serving" not in proc.stderr


def test_a_materialized_copy_changed_on_disk_is_rebuilt_from_the_checked_snapshot(py_repo: Path) -> None:
    from mlops import registry
    from mlops.registry.pyfunc import load_python_model
    from mlops.repo.repo import Repo

    repo = Repo(py_repo)
    mv = registry.resolve(repo, "pychurn:1")
    folder = registry.artifact_path(repo, mv)
    code = folder / "code" / "model.py"
    os.chmod(code, 0o644)
    code.write_text(CODE.replace("int(p >= 0.5)", "1"))
    model = registry.load_model(mv, repo=repo)  # rehashes the copy, rebuilds it from the cache
    assert code.read_text() == CODE
    import pandas as pd

    assert list(model.predict(pd.DataFrame(ROWS))) == [1, 0]
    assert load_python_model(folder, "pychurn:1").instance.weights == WEIGHTS


def test_a_python_class_model_travels_as_a_bundle(py_repo: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    mlops(py_repo, "export", "model", "pychurn:1", "-o", str(bundle))
    assert (bundle / "artifact" / "code" / "model.py").read_text() == CODE
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = start_server(elsewhere, f"--model-dir={bundle}")
    try:
        with server.client() as c:
            assert c.post("/predict", json={"records": ROWS}).json()["predictions"] == [1, 0]
    finally:
        server.kill()
    code = bundle / "artifact" / "code" / "model.py"
    code.write_text(CODE.replace("int(p >= 0.5)", "1"))
    proc = mlops(elsewhere, "serve", "--model-dir", str(bundle), "--port", "0", code=3)
    assert "artifact/code/model.py" in proc.stderr


def test_artifacts_without_a_class_is_a_usage_error(py_repo: Path) -> None:
    proc = mlops(py_repo, "register", "other", "sample.parquet", "--artifacts", "weights", code=2)
    assert "FILE.py:Class" in proc.stderr


CLASSES = """\
import pathlib
import sklearn.base

pathlib.Path("executed.txt").write_text("the file ran")  # registration must not run it


class NoPredict:
    def load(self, artifacts_dir):
        pass


class Base:
    def predict(self, frame):
        return [0] * len(frame)


class Child(Base):
    pass


class Foreign(sklearn.base.BaseEstimator):
    pass
"""


def test_a_class_without_predict_is_refused_at_registration_without_running_its_file(repo) -> None:
    root = Path(repo.root)
    (root / "pymodel").mkdir()
    (root / "pymodel" / "bad.py").write_text(CLASSES)
    proc = mlops(root, "register", "bad", "pymodel/bad.py:NoPredict", code=2)
    assert "error: pymodel/bad.py:7: class NoPredict has no predict(frame) method" in proc.stderr, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error")]) == 1, proc.stderr
    # a predict inherited from a class of the same file is found; one from elsewhere is a warning
    assert json.loads(mlops(root, "register", "child", "pymodel/bad.py:Child", "--json").stdout)["flavor"] == "python"
    foreign = json.loads(mlops(root, "register", "foreign", "pymodel/bad.py:Foreign", "--json").stdout)
    assert any("sklearn.base.BaseEstimator" in w and "Foreign" in w for w in foreign["warnings"]), foreign
    assert not (root / "executed.txt").exists()
    models = json.loads(mlops(root, "models", "--json").stdout)["models"]
    assert sorted(m["name"] for m in models) == ["child", "foreign"]
