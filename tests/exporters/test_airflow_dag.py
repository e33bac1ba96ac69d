"""`mlops export airflow`: a DAG file ruff accepts, Airflow parses, and Airflow runs for real.

Airflow is never a dependency of mlops: the suite builds it once in a virtual environment of its
own (cached under ~/.cache/mlops-tests, or $MLOPS_TEST_CACHE; a file lock keeps two pytest
workers from building it at once), and runs the exported DAG there with Airflow's own
``dag.test()`` on SQLite in a temporary AIRFLOW_HOME. Every stage goes through the real
`mlops stage exec` against the moto S3 server; then a fresh clone restores everything.
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops.exporters.stage_tasks import DNS1123_LABEL, DNS1123_MAX
from tests.conftest import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV, GIT_IDENTITY, MLOPS_BIN, git
from tests.exporters.conftest import MEMBERS, PIPELINE, UPSTREAM

AIRFLOW_VERSION = "3.3.2"
# pinned together: the provider's newest release may ask for a newer Airflow than the pin
AIRFLOW_PACKAGES = (f"apache-airflow=={AIRFLOW_VERSION}", "apache-airflow-providers-cncf-kubernetes==10.25.0")
RUFF = str(Path(sys.executable).with_name("ruff"))
#: a project's usual ruff settings, beside ruff's own defaults: the file passes both
PROJECT_RUFF = ["--select", "E,F,W,I,UP,B", "--line-length", "120", "--target-version", "py313"]


# --- the Airflow environment, built once ---------------------------------------------------
def _cache_root() -> Path:
    return Path(os.environ.get("MLOPS_TEST_CACHE") or Path.home() / ".cache" / "mlops-tests")


def airflow_python() -> Path:
    """The Python of a virtualenv holding Airflow (and the cncf.kubernetes provider), built on first
    use under a lock; a build that died half way (no marker) is removed and done again."""
    root = _cache_root()
    home = root / f"airflow-{AIRFLOW_VERSION}"
    python = home / "bin" / "python"
    marker = home / ".complete"
    if marker.is_file():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"airflow-{AIRFLOW_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here, then finds it built
        if marker.is_file():
            return python
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *AIRFLOW_PACKAGES]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, f"installing Airflow failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        marker.write_text(" ".join(AIRFLOW_PACKAGES) + "\n")
    return python


@pytest.fixture(scope="session")
def airflow() -> Path:
    return airflow_python()


def airflow_env(home: Path, dags: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH="10000000",  # the rendered env, manifests whole
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:1/execution/",  # dag.test() needs none
        NO_COLOR="1",
    )
    return env


# what runs inside Airflow's environment: parse the folder, report every DAG's tasks
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for task in dag.tasks:
        info = {"upstream": sorted(task.upstream_task_ids), "retries": task.retries, "type": type(task).__name__}
        if hasattr(task, "pod_template_file"):  # a KubernetesPodOperator: its pod's name
            info["pod"] = task.name
        resources = getattr(task, "container_resources", None)
        if resources is not None:
            info["resources"] = {"requests": resources.requests, "limits": resources.limits}
        tasks[task.task_id] = info
    dags[dag_id] = {"tasks": tasks, "schedule": str(getattr(dag, "schedule", None)), "catchup": dag.catchup}
errors = {k: str(v) for k, v in bag.import_errors.items()}
print("RESULT=" + json.dumps({"errors": errors, "dags": dags}))
"""

# dag.test(): every task run by Airflow itself; the rendered env shows what passed through XCom
RUN = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.dags[sys.argv[2]].test()
from airflow.models.renderedtifields import RenderedTaskInstanceFields
tasks = {}
for ti in run.get_task_instances():
    fields = RenderedTaskInstanceFields.get_templated_fields(ti) or {}
    tasks[ti.task_id] = {"state": str(ti.state), "env": fields.get("env") or {}}
print("RESULT=" + json.dumps({"state": str(run.state), "tasks": tasks}, default=str))
"""


def _result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT=")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return json.loads(lines[-1].removeprefix("RESULT="))


# --- fast: the file itself -----------------------------------------------------------------
def _imports(text: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def _ruff_clean(path: Path) -> None:
    for extra in ([], PROJECT_RUFF):
        done = subprocess.run([RUFF, "check", "--isolated", *extra, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    for extra in ([], ["--line-length", "120"]):
        done = subprocess.run(
            [RUFF, "format", "--isolated", *extra, "--diff", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_dag_files_are_clean_python_importing_only_airflow(project: Path, cli) -> None:
    head = git(project, "rev-parse", "HEAD").strip()
    bash = project.parent / "dags" / "churn.py"
    cli("export", "airflow", "-o", str(bash), "--schedule", "@daily", "--retries", "3")
    pods = project.parent / "dags" / "churn_k8s.py"
    cli(
        "export", "airflow", "-o", str(pods), "--kubernetes", "--image", "ghcr.io/team/mlops:1.0",
        "--secret", "mlops-remote", "--dag-id", "churn_k8s", "--schedule", "0 3 * * *",
    )  # fmt: skip
    for path in (bash, pods):
        text = path.read_text()
        _ruff_clean(path)
        assert _imports(text) <= {"datetime", "airflow", "kubernetes"}, _imports(text)
        assert f'    "REV": "{head}",' in text and 'REV = EXPORTED["REV"]' in text
        assert "catchup=False" in text
        assert text.count("mlops stage exec ") == len(MEMBERS)
        assert "mlops stage collect" in text
    assert '"retries": 3' in bash.read_text() and "BashOperator" in bash.read_text()
    assert 'schedule="@daily"' in bash.read_text()
    k8s_text = pods.read_text()
    assert "KubernetesPodOperator" in k8s_text and "BashOperator" not in k8s_text
    assert "https://git.example.com/team/churn.git" in k8s_text and 'name="mlops-remote"' in k8s_text
    assert "| tojson" in k8s_text and 'schedule="0 3 * * *"' in k8s_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "@sometimes"], "preset"),
        (["--schedule", "0 3 * *"], "cron"),
        (["--kubernetes"], "--image"),
        (["--image", "img:1"], "--kubernetes"),
        (["--kubernetes", "--image", "img:1", "--secret", "Bad_Name"], "Secret"),
        (["--kubernetes", "--image", "img:1", "--repo-url", "https://u:p@h/r.git"], "credentials"),
        (["--dag-id", "no spaces"], "--dag-id"),
        # Airflow renders bash_command and env through Jinja, which runs code: no template may ride in
        (["--clone", "/srv/{{ conf }}"], "template"),
        (["--kubernetes", "--image", "img:{{conf}}"], "template"),
        (["--kubernetes", "--image", "img:1", "--repo-url", "https://h/{% raw %}.git"], "template"),
    ],
)
def test_bad_options_are_usage_errors(project: Path, cli, args: list[str], message: str) -> None:
    result = cli("export", "airflow", "-o", "dag.py", *args, code=2)
    assert message in result.stderr
    assert not (project / "dag.py").exists()


# --- slow: Airflow itself ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a fresh machine builds Airflow's environment first (a minute or more)
def test_exported_dags_parse_in_airflow(project: Path, cli, airflow: Path, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    cli("export", "airflow", "-o", str(dags / "churn.py"), "--schedule", "@daily")
    cli("export", "airflow", "-o", str(dags / "pods.py"), "--kubernetes", "--image", "img:1", "--dag-id", "pods")
    done = subprocess.run(
        [str(airflow), "-c", PARSE, str(dags)],
        capture_output=True,
        text=True,
        timeout=600,
        env=airflow_env(tmp_path / "airflow-home", dags),
    )
    result = _result(done)
    assert result["errors"] == {}
    assert set(result["dags"]) == {"project", "pods"}
    for dag_id, operator in (("project", "BashOperator"), ("pods", "KubernetesPodOperator")):
        dag = result["dags"][dag_id]
        assert dag["catchup"] is False
        tasks = dag["tasks"]
        assert len(tasks) == len(MEMBERS) + 1
        for info in tasks.values():
            assert info["type"] == operator and info["retries"] == 2
        # Airflow refuses '@' in a task id: the members are renamed, uniquely, and the edges hold
        by_stage = {
            stage: next(t for t in tasks if t == stage or t.startswith(stage.replace("@", "-"))) for stage in MEMBERS
        }
        assert len(set(by_stage.values())) == len(MEMBERS)
        for stage, needs in UPSTREAM.items():
            assert tasks[by_stage[stage]]["upstream"] == sorted(by_stage[n] for n in needs), stage
        assert tasks["collect"]["upstream"] == sorted(by_stage.values())
    # each pod is named at export, a DNS-1123 label of its own (stage_tasks spells them, as for Argo)
    pod_names = [info["pod"] for info in result["dags"]["pods"]["tasks"].values()]
    assert len(set(pod_names)) == len(pod_names)
    assert all(DNS1123_LABEL.match(name) and len(name) <= DNS1123_MAX for name in pod_names), pod_names
    pods = result["dags"]["pods"]["tasks"]
    train = pods[next(t for t in pods if t.startswith("train-small"))]
    assert train["resources"]["requests"] == {"cpu": "2", "memory": "4000000000", "nvidia.com/gpu": "1"}
    assert train["resources"]["limits"] == {"memory": "4000000000", "nvidia.com/gpu": "1"}


# --- slow: the DAG run for real --------------------------------------------------------------
@dataclass
class AirflowRun:
    origin: Path
    worker: Path
    env: dict[str, str]
    bucket: str
    client: Any
    sha: str
    result: dict[str, Any]
    tmp: Path

    def mlops(self, *args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([MLOPS_BIN, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == code, f"mlops {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_TO_CLEAR and not k.startswith("AIRFLOW")}
    env.update(DUMMY_AWS_ENV)
    env.update(GIT_IDENTITY)
    env.update(AWS_CONFIG_FILE=str(tmp / "absent"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "absent"), NO_COLOR="1")
    env.pop("MLOPS_DEBUG", None)
    # the `mlops` console script first on PATH: the one every task runs
    env["PATH"] = f"{Path(MLOPS_BIN).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def airflow_run(tmp_path_factory: pytest.TempPathFactory, s3_server: str, airflow: Path) -> Iterator[AirflowRun]:
    import boto3

    tmp = tmp_path_factory.mktemp("airflow-run")
    env = _clean_env(tmp)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"mlops-airflow-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    origin = tmp / "origin"
    origin.mkdir()
    run = AirflowRun(origin, tmp / "airflow-worker", env, bucket, client, "", {}, tmp)
    try:
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=origin, check=True)
        (origin / "pipeline.yaml").write_text(PIPELINE)
        (origin / "params.yaml").write_text("train:\n  lr: 0.1\n")
        (origin / "raw.csv").write_text("a,b\n1,2\n3,4\n")
        run.mlops("init", cwd=origin)
        run.mlops("add", "raw.csv", cwd=origin)  # data by pointer: the tasks fetch it from the remote
        run.mlops("remote", "add", "storage", f"s3://{bucket}/store", "--default", cwd=origin)
        run.mlops("remote", "modify", "storage", "endpoint_url", s3_server, cwd=origin)
        run.mlops("push", cwd=origin)
        subprocess.run(["git", "add", "-A"], cwd=origin, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "pipeline"], cwd=origin, check=True, env=env)
        run.sha = git(origin, "rev-parse", "HEAD").strip()
        # the worker's clone: what Airflow runs in, apart from the developer's workspace
        subprocess.run(["git", "clone", "-q", str(origin), str(run.worker)], check=True, env=env)
        dags = tmp / "dags"
        run.mlops(
            "export", "airflow", "-o", str(dags / "churn.py"), "--retries", "0", "--clone", str(run.worker),
            "--dag-id", "churn", cwd=origin,
        )  # fmt: skip
        home = tmp / "airflow-home"
        aenv = airflow_env(home, dags, env)
        migrate = subprocess.run(
            [str(airflow), "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600, env=aenv
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        done = subprocess.run(
            [str(airflow), "-c", RUN, str(dags / "churn.py"), "churn"],
            capture_output=True,
            text=True,
            timeout=1200,
            env=aenv,
            cwd=tmp,
        )
        run.result = _result(done)
        run.result["log"] = done.stdout[-20000:] + done.stderr[-20000:]
        yield run
    finally:
        keys = sorted(run.keys(""))
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})
        client.delete_bucket(Bucket=bucket)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_airflow_runs_every_stage_through_stage_exec(airflow_run: AirflowRun) -> None:
    result = airflow_run.result
    tasks = result["tasks"]
    assert result["state"].endswith("success"), {k: v["state"] for k, v in tasks.items()}
    assert len(tasks) == len(MEMBERS) + 1
    assert all(t["state"].endswith("success") for t in tasks.values()), {k: v["state"] for k, v in tasks.items()}
    # the manifests passed through XCom: each downstream task got its upstream's manifest as --upstream
    manifests = {}
    for task_id, task in tasks.items():
        assert isinstance(task["env"], dict), repr(task["env"])[:3000]
        for name, value in task["env"].items():
            if name.startswith("MLOPS_UPSTREAM_") or name.startswith("MLOPS_MANIFEST_"):
                doc = json.loads(value)
                assert doc["rev"] == airflow_run.sha and doc["status"] in ("ran", "restored", "adopted"), doc
                manifests[doc["stage"]] = doc
                if name.startswith("MLOPS_UPSTREAM_"):
                    assert task_id != "collect"
    assert sorted(manifests) == sorted(MEMBERS)
    assert all(m["status"] == "ran" for m in manifests.values())  # nothing was in the shared cache before
    collect_env = tasks["collect"]["env"]
    assert sum(name.startswith("MLOPS_MANIFEST_") for name in collect_env) == len(MEMBERS)
    # one shared run-cache entry per stage on the remote; the collect task wrote the state and pushed the run
    entries = airflow_run.keys("store/refs/runcache/")
    assert len(entries) == len(MEMBERS), entries
    lock = (airflow_run.worker / "pipeline.lock").read_text()
    for stage in MEMBERS:
        assert stage in lock
    assert (airflow_run.worker / "reports" / "Large_v2-b.txt").read_text().startswith("a,b")
    # ... and its one run record went to the remote, for the team to see
    local_runs = [p.name for p in (airflow_run.worker / ".mlops" / "runs").iterdir() if p.is_dir()]
    assert len(local_runs) == 1, local_runs
    assert f"store/refs/runs/{local_runs[0]}.json" in airflow_run.keys("store/refs/runs/")
    # the developer's workspace was never touched
    assert not (airflow_run.origin / "pipeline.lock").exists()
    assert git(airflow_run.origin, "status", "--porcelain") == ""


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_fresh_clone_restores_everything_and_runs_nothing(airflow_run: AirflowRun) -> None:
    fresh = airflow_run.tmp / "teammate"
    subprocess.run(["git", "clone", "-q", str(airflow_run.origin), str(fresh)], check=True, env=airflow_run.env)
    airflow_run.mlops("pull", "--run-cache", cwd=fresh)
    done = airflow_run.mlops("run", "--json", cwd=fresh)
    report = json.loads(done.stdout)
    statuses = {s["name"]: s["status"] for s in report["stages"]}
    assert sorted(statuses) == sorted(MEMBERS)
    assert set(statuses.values()) == {"restored"}, statuses
    assert (fresh / "reports" / "small-a.txt").read_text() == (
        airflow_run.worker / "reports" / "small-a.txt"
    ).read_text()


def test_long_values_stay_format_clean(tmp_path: Path) -> None:
    """A clone path or image of any length is written as ruff format writes it, at its default
    line length and at a project's 120 (a pytest temporary path once made the DAG's CLONE line
    90 characters long: parenthesized at 88, joined again at 120)."""
    from mlops.exporters.airflow import py_constants, py_str

    for n in range(40, 140, 3):
        module = "\n".join(py_constants({"CLONE": py_str("/" + "p" * n), "REV": py_str("a" * 40)})) + "\n"
        (tmp_path / f"values_{n}.py").write_text(module)
    for settings in ([], ["--line-length", "120"]):
        done = subprocess.run(
            [RUFF, "format", "--isolated", *settings, "--diff", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
