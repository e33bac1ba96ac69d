"""The Python API in a real temporary git repo: what lands on disk, and what a failure leaves."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from trackkit import git, run_script

import mlops
from mlops.errors import UsageError
from mlops.tracking import api, store
from mlops.tracking.store import list_summaries, load_run


def _only_run(repo) -> str:
    ids = store.run_ids(repo)
    assert len(ids) == 1, ids
    return ids[0]


def test_start_run_logs_everything_to_disk(repo, tree):
    tree({"reports/confusion.txt": "tp fp\nfn tn\n"})
    with mlops.start_run(name="rf-baseline") as run:
        assert mlops.active_run() is run
        mlops.log_params({"n_estimators": 100, "max_depth": 10, "model": {"kind": "rf"}})
        mlops.log_param("seed", 7)
        for epoch in range(10):
            mlops.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlops.log_metric("test_accuracy", 0.93)
        mlops.log_metrics({"f1": 0.8, "auc": 0.9})
        record = mlops.log_artifact("reports/confusion.txt")
    assert mlops.active_run() is None
    assert run.status == "finished" and run.persisted

    run_id = _only_run(repo)
    assert run_id == run.id
    folder = repo.dot / "runs" / run_id
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "finished" and info["name"] == "rf-baseline"
    assert info["pid"] == os.getpid() and info["host"] and info["user"] is not None
    assert info["start_time"] <= info["end_time"]
    assert "git_commit" in info and "git_dirty" in info
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 13 and set(lines[0]) >= {"key", "value", "step", "timestamp"}

    data = load_run(repo, run_id)
    assert data.params == {"n_estimators": 100, "max_depth": 10, "model.kind": "rf", "seed": 7}
    assert data.metrics["loss"] == pytest.approx(0.1) and data.metrics["test_accuracy"] == 0.93
    assert [h["step"] for h in data.history["loss"]] == list(range(10))
    # the artifact is in the object store, and the workspace file is still a plain writable file
    assert record and record["hash"] and repo.objects.path(record["hash"]).is_file()
    assert data.artifacts[0]["path"] == "reports/confusion.txt"
    assert os.access("reports/confusion.txt", os.W_OK)
    # the run ended: its summary is in the index
    index = store.read_index(repo)
    assert index[run_id]["metrics"]["test_accuracy"] == 0.93 and index[run_id]["status"] == "finished"


def test_git_commit_and_dirty_flag(repo, tree):
    tree({"train.py": "x = 1\n"})
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "one")
    head = git(repo.root, "rev-parse", "HEAD").strip()
    with mlops.start_run() as clean:
        pass
    tree({"train.py": "x = 2\n"})
    with mlops.start_run() as dirty:
        pass
    a, b = load_run(repo, clean.id).info, load_run(repo, dirty.id).info
    assert a["git_commit"] == head and a["git_dirty"] is False
    assert b["git_commit"] == head and b["git_dirty"] is True


def test_exception_marks_failed_and_is_reraised(repo):
    with pytest.raises(ZeroDivisionError):
        with mlops.start_run(name="boom") as run:
            mlops.log_metric("x", 1.0)
            1 / 0  # noqa: B018
    data = load_run(repo, run.id)
    assert data.status == "failed" and data.metrics == {"x": 1.0}
    assert store.read_index(repo)[run.id]["status"] == "failed"


def test_keyboard_interrupt_marks_interrupted(repo):
    with pytest.raises(KeyboardInterrupt):
        with mlops.start_run() as run:
            raise KeyboardInterrupt
    assert load_run(repo, run.id).status == "interrupted"


def test_end_run_without_with_and_second_start_refused(repo):
    run = mlops.start_run(name="manual")
    with pytest.raises(UsageError):
        mlops.start_run()
    mlops.log_metric("m", 2)
    mlops.end_run()
    assert load_run(repo, run.id).status == "finished"
    mlops.end_run()  # no active run: nothing happens


def test_non_numeric_metric_is_refused(repo):
    with mlops.start_run():
        with pytest.raises(UsageError, match="not a number"):
            mlops.log_metric("acc", "high")


def test_artifact_outside_the_repo_is_refused_with_a_warning(repo, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    with mlops.start_run() as run:
        with pytest.warns(api.TrackingWarning, match="outside the repository"):
            assert mlops.log_artifact(str(outside)) is None
    assert load_run(repo, run.id).artifacts == []


def test_joined_run_is_not_finished_by_the_script(repo, monkeypatch):
    owner = store.create_run(repo, "20260101-000000-pipeline", "pipe", stages=["train"])
    monkeypatch.setenv("MLOPS_RUN_ID", owner["id"])
    monkeypatch.setenv("MLOPS_STAGE", "train")
    with mlops.start_run(name="ignored") as run:
        mlops.log_metric("acc", 0.5)
    assert run.joined and run.id == owner["id"]
    data = load_run(repo, owner["id"])
    assert data.status == "running"  # the pipeline (this test process) owns it and is alive
    assert data.metrics == {"acc": 0.5}
    store.finish_run(repo, owner["id"], "finished", stages=["train"], metrics={"pipeline_metric": 1})
    data = load_run(repo, owner["id"])
    assert data.status == "finished" and data.metrics == {"acc": 0.5, "pipeline_metric": 1}


def test_auto_started_run_ends_when_the_script_exits(repo):
    run_script("import mlops\nmlops.log_metric('a', 1)\nmlops.log_param('p', 'x')\n", cwd=repo.root)
    # sys.exit inside `with start_run()`: a non-zero code is a failure, zero is not
    proc = run_script(
        "import mlops, sys\nwith mlops.start_run():\n    mlops.log_metric('a', 2)\n    sys.exit(4)\n",
        cwd=repo.root,
        check=False,
    )
    assert proc.returncode == 4
    run_script(
        "import mlops, sys\nwith mlops.start_run():\n    mlops.log_metric('a', 4)\n    sys.exit(0)\n", cwd=repo.root
    )
    proc = run_script("import mlops\nmlops.log_metric('a', 3)\nraise ValueError('x')\n", cwd=repo.root, check=False)
    assert proc.returncode == 1 and "ValueError" in proc.stderr
    statuses = sorted((s["metrics"]["a"], s["status"]) for s in list_summaries(repo))
    assert statuses == [(1, "finished"), (2, "failed"), (3, "failed"), (4, "finished")]


# --- the API never breaks the script ---------------------------------------------------------


def _log_a_lot() -> object:
    with mlops.start_run(name="x") as run:
        mlops.log_params({"lr": 0.1})
        for step in range(5):
            mlops.log_metric("loss", 1.0 - step / 10, step=step)
    return run


def test_no_repository_warns_once_and_keeps_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _log_a_lot()
        run2 = _log_a_lot()
    ours = [w for w in caught if issubclass(w.category, api.TrackingWarning)]
    assert len(ours) == 1 and "not an mlops repository" in str(ours[0].message)
    assert not run.persisted and run.params == {"lr": 0.1}
    assert [v for v, _, _ in run.metrics["loss"]] == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6])
    assert run.status == "finished" and run2.status == "finished"


def test_unwritable_run_store_warns_once_and_keeps_values(repo):
    (repo.dot / "runs").write_text("not a folder")  # nothing can be created under it, even by root
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _log_a_lot()
    ours = [w for w in caught if issubclass(w.category, api.TrackingWarning)]
    assert len(ours) == 1
    assert run.params == {"lr": 0.1} and len(run.metrics["loss"]) == 5 and run.status == "finished"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_repository_warns_once_and_keeps_values(repo):
    os.chmod(repo.dot, 0o555)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = _log_a_lot()
    finally:
        os.chmod(repo.dot, 0o755)
    assert len([w for w in caught if issubclass(w.category, api.TrackingWarning)]) == 1
    assert run.params == {"lr": 0.1} and len(run.metrics["loss"]) == 5


def test_store_fails_mid_run_warns_once_and_keeps_values(repo, monkeypatch):
    run = mlops.start_run()
    mlops.log_metric("before", 1)
    from mlops.errors import StorageError

    def refuse(*args, **kwargs):
        raise StorageError("disk full while writing metrics.jsonl")

    monkeypatch.setattr(store, "append_record", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            mlops.log_metric("after", i, step=i)
        mlops.end_run()
    assert len([w for w in caught if issubclass(w.category, api.TrackingWarning)]) == 1
    assert len(run.metrics["after"]) == 3 and run.status == "finished"
    assert load_run(repo, run.id).metrics == {"before": 1}  # what was written before stays


def test_import_mlops_is_light():
    import subprocess
    import sys

    code = (
        "import sys, mlops\n"
        "assert 'mlops.tracking.api' not in sys.modules\n"
        "f = mlops.start_run\n"
        "assert 'mlops.tracking.api' in sys.modules and f is mlops.start_run\n"
        "assert set(['start_run','log_param','log_params','log_metric','log_metrics',"
        "'log_artifact','active_run','end_run']) <= set(mlops.__all__)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pandas','sklearn','typer','rich','scipy','pyarrow','git'))\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout


def test_artifact_roots_name_every_stored_artifact(repo, tree):
    tree({"model/w.bin": "weights", "report.txt": "r"})
    with mlops.start_run() as run:
        folder = mlops.log_artifact("model")
        single = mlops.log_artifact("report.txt")
    roots = store.artifact_roots(repo)
    assert {(r.hash, r.is_dir) for r in roots} == {(folder["hash"], True), (single["hash"], False)}
    assert all(r.label.startswith(f"run {run.id}:") for r in roots)
