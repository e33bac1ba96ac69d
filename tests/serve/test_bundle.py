"""Model bundles (issue 15): `mlops export model` writes a folder that `mlops serve --model-dir`
serves with no repository; a bundle changed after export is refused (exit 3) naming the file."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from servekit import ROW, mlops, serve_env, start_server

from mlops.exporters.bundle import plan_bundle, write_bundle
from mlops.repo.repo import Repo

ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]


@pytest.fixture
def bundle(model_repo: Path, tmp_path: Path) -> Path:
    """churn@production exported to a folder outside the repository (through the real CLI)."""
    out = tmp_path / "outside" / "bundle"
    proc = mlops(model_repo, "export", "model", "churn@production", "-o", str(out), "--json")
    result = json.loads(proc.stdout)
    assert result["ref"] == "churn:1" and result["path"] == str(out)
    return out


def expected(model_repo: Path, rows: list[dict]) -> list[int]:
    model = pickle.loads((model_repo / "models" / "churn-v1.pkl").read_bytes())
    return model.predict(pd.DataFrame(rows)).tolist()


def test_bundle_holds_hashes_facts_card_and_pinned_requirements(bundle: Path, model_repo: Path) -> None:
    import sklearn

    manifest = json.loads((bundle / "mlops-bundle.json").read_text())
    assert set(manifest["files"]) == {"artifact/churn-v1.pkl", "model.json", "card.md", "requirements.txt"}
    assert (bundle / "artifact" / "churn-v1.pkl").read_bytes() == (model_repo / "models" / "churn-v1.pkl").read_bytes()
    facts = json.loads((bundle / "model.json").read_text())
    assert (facts["name"], facts["version"], facts["stage"], facts["flavor"]) == ("churn", 1, "production", "sklearn")
    assert [c["name"] for c in facts["signature"]["inputs"]] == ["tenure", "plan", "monthly_charges"]
    # registration recorded the libraries the pickle imports; the bundle pins exactly those versions
    registered = facts["environment"]["packages"]
    assert registered["scikit-learn"] == sklearn.__version__
    lines = (bundle / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    assert pins["scikit-learn"] == sklearn.__version__ and "numpy" in pins and "uvicorn" in pins
    assert "mlops" not in pins  # installed beside them (the comment says how)
    assert "# Model card: churn:1" in (bundle / "card.md").read_text()


@pytest.mark.timeout(180)
def test_a_bundle_serves_from_a_folder_outside_any_repository_in_all_three_protocols(
    bundle: Path, model_repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # no .mlops/ and no .git/ on the way up from here to the bundle
    elsewhere.mkdir()
    shutil.rmtree(model_repo)  # the repository is gone: the bundle carries everything
    state = tmp_path / "state"
    server = start_server(elsewhere, f"--model-dir={bundle}", "--state-dir", str(state))
    try:
        want = [1 if v else 0 for v in expected_from_bundle(bundle, ROWS)]
        with server.client() as c:
            assert c.post("/predict", json={"records": ROWS}).json()["predictions"] == want
            assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": want}
            infer = {
                "inputs": [
                    {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
                    {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
                    {"name": "monthly_charges", "shape": [2], "datatype": "FP64", "data": [80.0, 20.5]},
                ]
            }
            answer = c.post("/v2/models/churn/infer", json=infer).json()
            assert answer["model_version"] == "1" and answer["outputs"][0]["data"] == want
            assert c.get("/v2/models/churn").json()["versions"] == ["1"]
            assert c.get("/v2/health/live").status_code == 200
        assert (state / ".mlops" / "serve" / "churn").is_dir()  # the server's own state, not the bundle's folder
        assert sorted(p.name for p in bundle.iterdir()) == [
            "artifact",
            "card.md",
            "mlops-bundle.json",
            "model.json",
            "requirements.txt",
        ]
    finally:
        assert server.stop() == 0, server.stderr()


OPEN_LOGGER = """\
import os, sys

_root, _log = os.environ["OPENED_UNDER"], open(os.environ["OPENED_LOG"], "a", buffering=1)


def _note(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(_root):
        _log.write(args[0] + "\\n")


sys.addaudithook(_note)
"""


@pytest.mark.timeout(180)
def test_a_served_bundle_is_verified_once(bundle: Path, tmp_path: Path) -> None:
    """From the command to the first answer, each file of the bundle is read once (its hash checked)
    and the artifact once more (read, its hash checked again, loaded from those bytes): the server
    starts from what the command verified and loaded, it does not open the bundle again."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(OPEN_LOGGER)  # Python's audit events: every open() of the process
    log = tmp_path / "opened.log"
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{serve_env()['PYTHONPATH']}", "OPENED_UNDER": f"{bundle}/"}
    server = start_server(
        tmp_path, f"--model-dir={bundle}", "--state-dir", str(tmp_path / "state"), env={**env, "OPENED_LOG": str(log)}
    )
    try:
        with server.client() as c:
            assert c.post("/predict", json={"records": ROWS}).json()["predictions"] == expected_from_bundle(
                bundle, ROWS
            )
    finally:
        assert server.stop() == 0, server.stderr()
    opened = Counter(Path(line).relative_to(bundle).as_posix() for line in log.read_text().splitlines())
    assert opened == {
        "mlops-bundle.json": 1,
        "model.json": 1,
        "card.md": 1,
        "requirements.txt": 1,
        "artifact/churn-v1.pkl": 2,
    }


def test_serving_a_bundle_loads_none_of_the_registry_verbs(bundle: Path) -> None:
    """The serve path of a bundle (command, verification, model, app) imports the registry's pickle and
    class loaders, not its gates, approvals, registration or reads: start-up pays for what it runs."""
    code = (
        "import sys\n"
        "import mlops.cli.main, mlops.cli.serve, mlops.serve.app, mlops.serve.runtime, mlops.serve.server\n"
        "from mlops.serve.bundle import BundleSource, open_bundle\n"
        f"source = BundleSource(open_bundle({str(bundle)!r}))\n"
        "source.load(source.resolve(source.bundle.info().ref()))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mlops.registry.'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=serve_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert {"mlops.registry.flavors", "mlops.registry.refs"} <= loaded  # the check can see what it looks for
    assert not loaded & {f"mlops.registry.{m}" for m in ("transitions", "approvals", "registration", "policy", "read")}


def expected_from_bundle(bundle: Path, rows: list[dict]) -> list[int]:
    model = pickle.loads((bundle / "artifact" / "churn-v1.pkl").read_bytes())
    return model.predict(pd.DataFrame(rows)).tolist()


def _tamper_artifact(b: Path) -> str:
    path = b / "artifact" / "churn-v1.pkl"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    return "artifact/churn-v1.pkl"


def _tamper_facts(b: Path) -> str:
    path = b / "model.json"
    facts = json.loads(path.read_text())
    facts["signature"] = None  # the checks a caller relies on, quietly removed
    path.write_text(json.dumps(facts))
    return "model.json"


def _extra_file(b: Path) -> str:
    (b / "artifact" / "sitecustomize.py").write_text("import os\n")
    return "artifact/sitecustomize.py"


def _missing_file(b: Path) -> str:
    (b / "card.md").unlink()
    return "card.md"


def _symlinked_file(b: Path) -> str:
    target = b.parent / "elsewhere.md"
    shutil.copyfile(b / "card.md", target)
    (b / "card.md").unlink()
    os.symlink(target, b / "card.md")
    return "card.md"


def _unsafe_name(b: Path) -> str:
    path = b / "mlops-bundle.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["../outside.txt"] = {"sha256": "0" * 64, "size": 1}
    path.write_text(json.dumps(manifest))
    return "../outside.txt"


@pytest.mark.parametrize(
    "tamper", [_tamper_artifact, _tamper_facts, _extra_file, _missing_file, _symlinked_file, _unsafe_name]
)
def test_a_changed_extra_or_missing_file_is_refused_with_exit_3_naming_it(
    model_repo: Path, tmp_path: Path, tamper
) -> None:
    out = tmp_path / "bundle"
    write_bundle(plan_bundle(Repo(model_repo), "churn@production"), out)
    named = tamper(out)
    proc = mlops(tmp_path, "serve", "--model-dir", str(out), "--port", "0", code=3)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert "serving" not in proc.stderr


def test_a_bundle_other_than_the_expected_digest_is_refused(model_repo: Path, tmp_path: Path) -> None:
    first = write_bundle(plan_bundle(Repo(model_repo), "churn:1"), tmp_path / "one")
    second = write_bundle(plan_bundle(Repo(model_repo), "churn:3"), tmp_path / "three")
    assert first.digest != second.digest
    proc = mlops(tmp_path, "serve", "--model-dir", second.path, "--expect-digest", first.digest, code=3)
    assert first.digest in proc.stderr and "refusing" in proc.stderr


def test_export_refuses_a_folder_that_is_not_empty(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "used"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = mlops(model_repo, "export", "model", "churn@production", "-o", str(out), code=2)
    assert "not an empty folder" in proc.stderr and (out / "notes.txt").read_text() == "mine"


def test_serve_without_ref_or_bundle_is_a_usage_error(tmp_path: Path) -> None:
    proc = mlops(tmp_path, "serve", code=2)
    assert "--model-dir" in proc.stderr


@pytest.mark.parametrize("kind", ["empty folder", "model folder of another tool", "a file"])
def test_a_folder_that_is_not_a_bundle_is_bad_input_exit_2(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "model"
    if kind == "a file":
        target.write_bytes(pickle.dumps({"not": "a bundle"}))
    else:
        target.mkdir()
        if kind == "model folder of another tool":  # what `mlflow models serve -m` would take
            (target / "MLmodel").write_text("flavors:\n  python_function: {}\n")
            (target / "model.pkl").write_bytes(pickle.dumps({"not": "a bundle"}))
    proc = mlops(tmp_path, "serve", "--model-dir", str(target), "--port", "0", code=2)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(target) in errors[0], proc.stderr
    assert "mlops export model" in proc.stderr and "serving" not in proc.stderr


@pytest.mark.timeout(400)
def test_the_scratch_state_folder_goes_on_exit_and_a_killed_servers_at_the_next_start(
    bundle: Path, tmp_path: Path
) -> None:
    import signal

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}

    def scratch() -> list[Path]:
        return sorted(temp.glob("mlops-serve-*"))

    for sig in (signal.SIGTERM, signal.SIGINT):
        server = start_server(tmp_path, f"--model-dir={bundle}", env=env)
        try:
            assert len(scratch()) == 1 and (scratch()[0] / "mlops-serve.owner").is_file()
            assert server.stop(sig) == 0, server.stderr()
        finally:
            server.kill()
        assert scratch() == [], server.stderr()

    killed = start_server(tmp_path, f"--model-dir={bundle}", env=env)
    killed.kill()  # SIGKILL: no chance to clean up
    (stale,) = scratch()
    alive = temp / "mlops-serve-alive"  # a live process owns this one (this test's): kept
    alive.mkdir()
    (alive / "mlops-serve.owner").write_text(f"{os.getpid()}\n")
    server = start_server(tmp_path, f"--model-dir={bundle}", env=env)
    try:
        assert not stale.exists()
        assert len(scratch()) == 2 and alive.exists()
    finally:
        server.stop()
    assert scratch() == [alive]
