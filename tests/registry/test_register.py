"""register: from a real `mlops run` (metrics, params, commit, data, lineage, signature), any
file or folder, version numbers, and what is refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from regkit import audit_entries, git, js, write_pickle

from mlops.errors import InvalidPathError, UsageError
from mlops.pipeline.lock import read_lock
from mlops.registry import artifact_path, load_model, register, resolve, training_data


def test_register_from_a_real_run_links_metrics_params_commit_data_and_signature(trained, cli) -> None:
    repo, run_id = trained
    doc = js(cli("register", "churn", "models/model.pkl", "--run", run_id, "-d", "LR baseline", "--json"))
    assert doc["ref"] == "churn:1" and doc["version"] == 1 and doc["stage"] == "none" and doc["new_model"]
    assert doc["flavor"] == "sklearn" and doc["filename"] == "model.pkl" and doc["description"] == "LR baseline"
    assert doc["run_id"] == run_id
    # metrics from the metrics file the stage declared, params from the stage and the API
    assert 0.0 <= doc["metrics"]["test_accuracy"] <= 1.0
    assert doc["params"]["train.C"] == 1.0 and doc["params"]["C"] == 1.0
    run = js(cli("runs", "show", run_id, "--json"))
    assert doc["git_commit"] == run["git_commit"] and doc["git_commit"]
    # the data behind it: the producing stage's data dependency, with the lock file's hash
    lock = read_lock(repo.root)
    prepared = next(o for o in lock["prepare"].outs if o.path.rstrip("/") == "data/prepared")
    assert doc["data"] == [{"path": "data/prepared", "hash": prepared.hash, "kind": "dir", "stage": "train"}]
    # upstream lineage: train <- data/prepared <- prepare <- data/raw.csv (pointer tracked); code is not data
    stages = {s["stage"]: s for s in doc["lineage"]["stages"]}
    assert doc["lineage"]["stage"] == "train" and set(stages) == {"train", "prepare"}
    prepare_data = {d["path"]: d["data"] for d in stages["prepare"]["deps"]}
    assert prepare_data == {"data/raw.csv": True, "src/prepare.py": False}
    assert stages["train"]["params"] == {"train.C": 1.0, "C": 1.0}  # declared, and logged by the stage
    # the signature: feature names from the model, dtypes from the training data, output from predict
    assert doc["signature"]["inputs"] == [{"name": "tenure", "dtype": "int64"}, {"name": "charges", "dtype": "float64"}]
    assert doc["signature"]["outputs"] == [{"name": "prediction", "dtype": "int64"}]
    assert doc["signature"]["from"] == "data/prepared/train.csv"
    # the artifact is in the object store, hashed twice; the registry file is plain JSON under .mlops/registry
    mv = resolve(repo, "churn:1")
    assert artifact_path(repo, mv).read_bytes() == (repo.root / "models" / "model.pkl").read_bytes()
    assert mv.sha256 and len(mv.sha256) == 64
    on_disk = json.loads((repo.root / ".mlops" / "registry" / "models" / "churn.json").read_text())
    assert on_disk["versions"][0]["artifact"]["hash"] == mv.artifact
    assert [e["event"] for e in audit_entries(repo.root)] == ["registered"]
    assert audit_entries(repo.root)[0]["run_id"] == run_id
    # the training data is readable through the registry, for drift
    files = dict(training_data(repo, mv))
    assert set(files) == {"data/prepared/train.csv", "data/prepared/test.csv"}
    assert files["data/prepared/train.csv"].read_text().startswith("customer_id,tenure,charges,churned")
    model = load_model("churn:1", repo)
    assert list(model.feature_names_in_) == ["tenure", "charges"]


def test_registry_files_are_committed_not_ignored(trained, cli) -> None:
    repo, run_id = trained
    cli("register", "churn", "models/model.pkl", "--run", run_id)
    (repo.root / ".mlops" / "policy.yaml").write_text("format: 1\n")
    status = git(repo.root, "status", "--porcelain", "--untracked-files=all", ".mlops")
    for name in ("registry/models/churn.json", "registry/audit.jsonl", "registry/audit.head", "policy.yaml"):
        assert f".mlops/{name}" in status, status


def test_a_model_changed_after_the_run_is_not_linked_to_it(trained, cli) -> None:
    repo, run_id = trained
    write_pickle(repo.root / "models" / "model.pkl", {"not": "the trained one"})
    result = cli("register", "churn", "models/model.pkl", "--run", run_id, code=2)
    assert "not what run" in result.stderr and "models/model.pkl" in result.stderr
    assert not (repo.root / ".mlops" / "registry" / "models" / "churn.json").exists()


def test_versions_number_up_and_are_never_reused(repo, tree, cli) -> None:
    tree({"a.bin": b"one", "b.bin": b"two"})
    assert js(cli("register", "m", "a.bin", "--json"))["version"] == 1
    assert js(cli("register", "m", "b.bin", "--json"))["version"] == 2
    assert js(cli("register", "m", "a.bin", "--json"))["version"] == 3  # the same bytes again: a new version
    assert js(cli("register", "other", "a.bin", "--json"))["version"] == 1
    doc = json.loads((repo.root / ".mlops/registry/models/m.json").read_text())
    assert doc["next_version"] == 4 and [v["version"] for v in doc["versions"]] == [1, 2, 3]


def test_any_file_or_folder_registers_without_a_signature(repo, tree, cli) -> None:
    tree({"weights.bin": b"\x00\x01binary", "bundle/config.json": "{}", "bundle/sub/w.npy": b"123"})
    file_doc = js(cli("register", "raw", "weights.bin", "--json"))
    assert (file_doc["flavor"], file_doc["kind"], file_doc["signature"]) == ("file", "file", None)
    dir_doc = js(cli("register", "bundle", "bundle", "--json"))
    assert (dir_doc["flavor"], dir_doc["kind"], dir_doc["signature"], dir_doc["files"]) == ("dir", "dir", None, 2)
    mv = resolve(repo, "bundle")
    folder = artifact_path(repo, mv)
    assert (folder / "config.json").read_text() == "{}" and (folder / "sub" / "w.npy").read_bytes() == b"123"
    assert artifact_path(repo, mv) == folder  # checked again, not rebuilt
    os.chmod(folder / "config.json", 0o644)
    (folder / "config.json").write_text('{"changed": true}')  # someone edits the checked copy
    assert (artifact_path(repo, mv) / "config.json").read_text() == "{}"  # rebuilt from the cache
    assert sorted(p.name for p in folder.parent.iterdir()) == [mv.artifact]  # no temp or old folders left
    with pytest.raises(UsageError, match="directory artifact"):
        load_model(mv, repo)
    with pytest.raises(UsageError, match="not a pickle"):
        load_model("raw", repo)


def test_a_plain_pickle_is_flavor_file_and_loads(repo, tree) -> None:
    write_pickle(repo.root / "thing.pkl", {"weights": [1, 2, 3]})
    mv = register(repo, "thing", "thing.pkl").version
    assert mv.flavor == "file" and mv.signature is None
    assert load_model(mv, repo) == {"weights": [1, 2, 3]}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda payload: payload,
        # strings that look like scikit-learn's module names, as values: they import nothing
        lambda payload: {"framework": "sklearn", "module": "sklearn.linear_model", "m": payload},
        lambda payload: ["sklearn", "sklearn.tree._classes", "DecisionTreeClassifier", payload],
    ],
    ids=["bare", "sklearn-strings-in-a-dict", "sklearn-strings-in-a-list"],
)
def test_registering_never_runs_a_pickle_that_is_not_scikit_learn(repo, tmp_path, wrap) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 - the classic pickle exploit
            import os

            return (os.system, (f"touch {marker}",))

    for protocol in (2, 4, 5):
        (repo.root / "evil.pkl").write_bytes(pickle.dumps(wrap(Payload()), protocol=protocol))
        mv = register(repo, "evil", "evil.pkl").version
        assert mv.flavor == "file" and not marker.exists()  # detected by reading opcodes, never unpickled


def test_a_sklearn_model_outside_a_run_gets_dtypes_from_signature_from(repo, tree, cli) -> None:
    from regkit import small_sklearn_model

    write_pickle(repo.root / "m.pkl", small_sklearn_model())
    tree({"sample.csv": "a,b,extra\n1,0.5,x\n2,0.7,y\n"})
    doc = js(cli("register", "tree", "m.pkl", "--signature-from", "sample.csv", "--json"))
    assert doc["flavor"] == "sklearn"
    assert doc["signature"]["inputs"] == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "float64"}]
    assert doc["signature"]["outputs"] == [{"name": "prediction", "dtype": "int64"}]
    bare = js(cli("register", "tree", "m.pkl", "--json"))  # no data: names known, dtypes not
    assert bare["signature"]["inputs"] == [{"name": "a", "dtype": "unknown"}, {"name": "b", "dtype": "unknown"}]
    assert any("dtypes unknown" in w for w in bare["warnings"])


def test_register_with_tracked_data_named_by_hand(repo, tree, cli) -> None:
    tree({"data/train.csv": "a,b\n1,2\n", "w.bin": b"w"})
    cli("add", "data/train.csv")
    doc = js(cli("register", "m", "w.bin", "--data", "data/train.csv", "--json"))
    assert doc["data"][0]["path"] == "data/train.csv" and doc["data"][0]["source"] == "pointer"
    assert "untracked.csv" in cli("register", "m", "w.bin", "--data", "untracked.csv", code=2).stderr


@pytest.mark.parametrize("name", ["bad name", "a:b", "a@b", "-x", ""])
def test_bad_model_names_are_refused(repo, tree, name) -> None:
    tree({"w.bin": b"w"})
    with pytest.raises(UsageError, match="model name"):
        register(repo, name, "w.bin")


def test_a_missing_artifact_or_one_inside_mlops_is_refused(repo, cli) -> None:
    assert "no such file" in cli("register", "m", "nothing.pkl", code=2).stderr
    with pytest.raises(InvalidPathError, match="inside .mlops"):
        register(repo, "m", repo.root / ".mlops" / "config.yaml")


def test_a_file_outside_the_repo_registers(repo, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"outside bytes")
    mv = register(repo, "ext", outside).version
    assert artifact_path(repo, mv).read_bytes() == b"outside bytes" and mv.source == str(outside)
