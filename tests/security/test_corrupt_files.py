"""The corrupt-file matrix: every state and committed file mlops reads, damaged every way a disk,
a crash or a hostile commit can damage it, under every command that reads it.

Whatever the damage, a command ends with the exit code the contract allows (0 or 1 only where the
file is a cache that is rebuilt, or optional, or a check reports it; else 2 or 3), never an
"internal error" or a traceback, never a hang, and a failure names the file. Adding a file is one
line in TARGETS; adding a kind of damage is one entry in DAMAGE.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli.main import app

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))

PREP = """
import json, shutil
import mlops
with mlops.start_run():
    mlops.log_params({"scale": 2})
    shutil.copy("data/raw.csv", "out.csv")
    json.dump({"acc": 0.5}, open("metrics.json", "w"))
    mlops.log_metrics({"acc": 0.5})
"""
PIPELINE = """stages:
  prep:
    cmd: python prep.py
    deps: [data/raw.csv, prep.py]
    params: [prep.scale]
    outs: [out.csv]
    metrics: [metrics.json]
"""
POLICY = "format: 1\nstages:\n  staging:\n    no_failed_drift_check: true\n"
STATS = '{"format":1,"host":"elsewhere","pid":1,"written":0,"variants":[],"counters":{}}'
RUN_ID = "20240101-000000-0badc0de"  # a second, hand-made run, so that its files have a fixed name

# --- the commands ----------------------------------------------------------------------------------

STATUS = ("status",)
ADD = ("add", "data/raw.csv")
CHECKOUT = ("checkout", "--force")
PUSH = ("push",)
PULL = ("pull",)
GC = ("gc", "--dry-run")
VERIFY = ("verify",)
DRY_RUN = ("run", "--dry-run")
DAG = ("dag",)
RUNS_LIST = ("runs", "list")
RUNS_SHOW = ("runs", "show", RUN_ID)
METRICS_DIFF = ("metrics", "diff")
PARAMS_DIFF = ("params", "diff")
MODELS_LIST = ("models",)
MODELS_SHOW = ("models", "show", "churn")
HISTORY = ("history", "churn")
PROMOTE = ("promote", "churn", "2", "--to", "staging")
AUDIT_VERIFY = ("audit", "verify")
DRIFT = ("drift", "data/raw.csv", "data/raw.csv", "--config", "drift.yaml")
VALIDATE = ("validate", "data/raw.csv", "--schema", "schema.yaml")
CANARY = ("canary", "status", "churn")
REMOTE_LIST = ("remote", "list")
SERVE = ("serve", "churn@production", "--port", "0")  # a real, short-lived server process
FETCH = ("fetch",)
LINEAGE = ("lineage", "churn:2")
CARD = ("card", "churn", "2")
PREDICT = ("predict", "churn@production", "data/raw.csv", "-o", "predicted.csv")
IMPORT_DVC = ("import", "dvc", "--force")  # --force: the import's pipeline.yaml replaces the template's
DRIFT_SERVING = ("drift", "data/raw.csv", "serving:churn")  # the request logs `mlops serve` wrote
DIFF = ("diff",)
METRICS_SHOW = ("metrics", "show")
PLOTS = ("plots", RUN_ID, "-o", "plots-out.html")
# the registry's writers last in each list: they change what the commands after them would read
ALIAS = ("alias", "churn", "2", "champion")
APPROVE = ("approve", "churn", "2", "--to", "production", "--by", "reviewer@example.com")
CANARY_ROLLBACK = ("canary", "rollback", "churn")
REGISTRY_WRITERS = {PROMOTE, ALIAS, APPROVE, CANARY_ROLLBACK}


@dataclass(frozen=True)
class Target:
    path: str  # relative to the project root
    syntax: str  # yaml, json, jsonl, sqlite, text, parquet, blob: what the "bomb" damage looks like
    commands: tuple[tuple[str, ...], ...]
    cache: bool = False  # rebuilt silently: every command ends as it did on the intact project
    skipped: bool = False  # one of many logs: skipped with a warning naming it, the command ends as before
    prepare: Callable[[Path], None] | None = None  # run on the copy before the commands (e.g. uncache an object)


# the tracked data/raw.csv's object (its content is fixed, so is its digest)
RAW_OBJECT = "63/b4903174a37bded5342d880b6e5946"
REQUEST_LOG = ".mlops/serve/churn/requests/20240101T000001Z-host-1-0001.parquet"


def _uncache_raw(root: Path) -> None:
    """Make fetch and pull read data/raw.csv's object from the remote: the cache lacks it."""
    (root / ".mlops" / "cache" / RAW_OBJECT).unlink()


TARGETS = [
    Target(".mlops/config.yaml", "yaml", (STATUS, PUSH, FETCH, REMOTE_LIST, GC, PREDICT)),
    Target(".mlops/config.local.yaml", "yaml", (STATUS, PULL, FETCH, REMOTE_LIST)),
    Target("data/raw.csv.mlops", "yaml", (STATUS, DIFF, ADD, CHECKOUT, PUSH, FETCH, GC, VERIFY, DRY_RUN)),
    Target("data/imgs.mlops", "yaml", (STATUS, DIFF, CHECKOUT, PULL, FETCH, GC)),
    Target(f"../remote/{RAW_OBJECT}", "blob", (FETCH, PULL), prepare=_uncache_raw),
    Target("pipeline.yaml", "yaml", (DRY_RUN, DAG, STATUS, GC, METRICS_SHOW, METRICS_DIFF, FETCH, IMPORT_DVC)),
    Target("pipeline.lock", "yaml", (DRY_RUN, STATUS, CHECKOUT, PUSH, FETCH, GC, VERIFY)),
    Target("params.yaml", "yaml", (DRY_RUN, PARAMS_DIFF)),
    Target("metrics.json", "json", (METRICS_SHOW, METRICS_DIFF)),
    Target(".mlops/policy.yaml", "yaml", (PROMOTE, APPROVE)),
    Target(
        ".mlops/registry/models/churn.json",
        "json",
        (MODELS_LIST, MODELS_SHOW, GC, LINEAGE, CARD, PREDICT, FETCH, SERVE, PROMOTE, ALIAS, APPROVE),
    ),
    Target(".mlops/registry/audit.jsonl", "jsonl", (AUDIT_VERIFY, HISTORY, CARD, PREDICT, PROMOTE, ALIAS)),
    Target(".mlops/registry/audit.head", "json", (AUDIT_VERIFY, PREDICT, PROMOTE, APPROVE)),
    Target(".mlops/allowed_signers", "text", (AUDIT_VERIFY, CARD)),
    Target(".mlops/deployments/churn.yaml", "yaml", (CANARY, SERVE, CANARY_ROLLBACK)),
    Target(".mlops/serve/churn/stats/elsewhere-1.json", "json", (CANARY,), cache=True),
    Target(REQUEST_LOG, "parquet", (DRIFT_SERVING,), skipped=True),
    Target("schema.yaml", "yaml", (VALIDATE,)),
    Target("drift.yaml", "yaml", (DRIFT,)),
    Target(".mlops/runs/index.jsonl", "jsonl", (RUNS_LIST, GC)),
    Target(f".mlops/runs/{RUN_ID}/run.json", "json", (RUNS_LIST, RUNS_SHOW, PLOTS)),
    Target(f".mlops/runs/{RUN_ID}/metrics.jsonl", "jsonl", (RUNS_SHOW, PLOTS)),
    Target(f".mlops/runs/{RUN_ID}/params.jsonl", "jsonl", (RUNS_SHOW,)),
    Target(f".mlops/runs/{RUN_ID}/stages.jsonl", "jsonl", (RUNS_SHOW,)),
    Target("dvcproj/dvc.yaml", "yaml", (IMPORT_DVC,)),
    Target("dvcproj/dvc.lock", "yaml", (IMPORT_DVC,)),
    Target("dvcproj/table.csv.dvc", "yaml", (IMPORT_DVC,)),
    Target("dvcproj/params.yaml", "yaml", (IMPORT_DVC,)),
    Target("dvcproj/.dvc/config", "text", (IMPORT_DVC,)),
    Target(".mlops/dvc-import.json", "json", (STATUS, DAG, IMPORT_DVC)),
    Target("data/.gitignore", "text", (ADD,)),
    Target(".mlops/tmp/state.db", "sqlite", (STATUS, ADD, CHECKOUT), cache=True),
    Target(".mlops/tmp/state.tick", "text", (STATUS, ADD), cache=True),
    Target(".mlops/tmp/locks/store.lock", "json", (ADD, GC, PUSH, FETCH)),
    Target(".mlops/tmp/locks/registry.lock", "json", (PROMOTE,)),
    Target(".mlops/runcache/index", "json", (DRY_RUN, GC), cache=True),  # stands for every run-cache entry
]

# --- the damage ------------------------------------------------------------------------------------

FOLDER = object()  # a folder where the file should be

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)


def _bomb(original: bytes, syntax: str) -> bytes:
    if syntax == "yaml":
        return BILLION_LAUGHS.encode()
    if syntax == "jsonl":
        return original + b"[" * 100_000 + b"]" * 100_000 + b"\n" + original
    return b"[" * 100_000 + b"]" * 100_000


DAMAGE: dict[str, Callable[[bytes, str], bytes | object]] = {
    "empty": lambda original, syntax: b"",
    "truncated": lambda original, syntax: original[: max(1, len(original) // 2)],
    "garbage": lambda original, syntax: b'}{ ]: - &x *y !!python/object "unterminated \x00 \t\n' * 3,
    "not-utf8": lambda original, syntax: b"\xff\xfe\x80" + original + b"\xc3\x28",
    "folder": lambda original, syntax: FOLDER,
    "bomb": _bomb,
}


# --- one prepared project per session, copied per case ------------------------------------------


IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


def _mlops(root: Path, *args: str) -> None:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **IDENTITY, "PATH": path, "NO_COLOR": "1"}
    proc = subprocess.run([MLOPS_BIN, *args], cwd=root, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"mlops {' '.join(args)}: {proc.stdout}{proc.stderr}"


def _fit_model(path: Path, constant: int) -> None:
    """A small real sklearn model over columns a and b, pickled (what serve can load)."""
    import pickle

    import pandas as pd
    from sklearn.dummy import DummyClassifier

    frame = pd.DataFrame({"a": [1, 3, 5, 7], "b": [2, 4, 6, 9]})
    model = DummyClassifier(strategy="constant", constant=constant).fit(frame, [0, 1, 0, 1])
    path.write_bytes(pickle.dumps(model))


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env={**os.environ, **IDENTITY})


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, ...], int]]:
    """The template project and each command's exit code on it, built once per test session:
    xdist workers share them (the first builds under a lock, the others wait and reuse)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this session's folder, common to its workers
    folder = base / "corrupt-files"
    folder.mkdir(exist_ok=True)
    with open(folder / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "baseline.json"
        if not done.exists():
            for leftover in ("project", "remote", "baseline"):  # from a worker whose build failed
                shutil.rmtree(folder / leftover, ignore_errors=True)
            for leftover in ("key", "key.pub"):
                (folder / leftover).unlink(missing_ok=True)
            root = _build_template(folder)
            codes = _baseline(root, folder)
            done.write_text(json.dumps([[list(c), code] for c, code in codes.items()]))
        codes = {tuple(c): code for c, code in json.loads(done.read_text())}
    return folder / "project", codes


def _build_template(base: Path) -> Path:
    """A project that has every file of TARGETS: tracked data pushed to a local remote, a pipeline
    run (lock, run, run cache), two registered versions with production and a canary, a policy,
    a schema, a drift config, a serving statistics file, all committed."""
    root = base / "project"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _mlops(root, "init")
    (root / "data" / "imgs").mkdir(parents=True)
    (root / "data" / "raw.csv").write_text("a,b\n1,2\n3,4\n5,6\n7,9\n")
    (root / "data" / "imgs" / "1.txt").write_text("one\n")
    (root / "data" / "imgs" / "2.txt").write_text("two\n")
    _mlops(root, "add", "data/raw.csv", "data/imgs")
    # relative to the project: each case's copy of the project meets its own copy of the remote
    _mlops(root, "remote", "add", "origin", "../remote", "--default")
    (root / ".mlops" / "config.local.yaml").write_text("format: 1\ncore:\n  remote: origin\n")
    (root / "params.yaml").write_text("prep:\n  scale: 2\n")
    (root / "prep.py").write_text(PREP)
    (root / "pipeline.yaml").write_text(PIPELINE)
    _mlops(root, "run")
    runs = root / ".mlops" / "runs"
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    shutil.copytree(run, runs / RUN_ID)
    text = (runs / RUN_ID / "run.json").read_text().replace(run.name, RUN_ID)
    (runs / RUN_ID / "run.json").write_text(text)
    (runs / "index.jsonl").write_text((runs / "index.jsonl").read_text() + text.strip() + "\n")
    _fit_model(root / "model.pkl", constant=1)
    _mlops(root, "register", "churn", "model.pkl", "--signature-from", "data/raw.csv")
    _fit_model(root / "model.pkl", constant=0)  # version 2 has lineage: a run and a data snapshot
    _mlops(root, "register", "churn", "model.pkl", "--signature-from", "data/raw.csv", "--run", RUN_ID)
    _mlops(root, "promote", "churn", "1", "--to", "production")
    # a signed approval: audit verify checks it against .mlops/allowed_signers
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key"), "-C", "t@e"], check=True)
    public = (base / "key.pub").read_text().split()
    (root / ".mlops" / "allowed_signers").write_text(f"t@e {public[0]} {public[1]}\n")
    _mlops(root, "approve", "churn", "2", "--to", "production", "--sign", "--key", str(base / "key"), "--by", "t@e")
    _mlops(root, "deploy", "churn", "--canary", "2", "--weight", "10")
    _mlops(root, "push")
    (root / ".mlops" / "policy.yaml").write_text(POLICY)
    (root / "schema.yaml").write_text(
        "format: 1\ncolumns:\n  a: {type: integer, nullable: false}\n  b: {type: integer, nullable: false}\n"
    )
    (root / "drift.yaml").write_text("format: 1\nmethod: ks\n")
    stats = root / ".mlops" / "serve" / "churn" / "stats"
    stats.mkdir(parents=True)
    (stats / "elsewhere-1.json").write_text(STATS)
    _write_request_logs(root / Path(REQUEST_LOG).parent)
    _import_dvc_project(root)
    (entry,) = (root / ".mlops" / "runcache").glob("*/*.json")
    shutil.copy(entry, root / ".mlops" / "runcache" / "index")  # a stand-in name the table can use
    (root / ".mlops" / "runcache" / "ab").mkdir()
    (root / ".mlops" / "runcache" / "ab" / "cdef.json").symlink_to(root / ".mlops" / "runcache" / "index")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "the project")
    missing = [t.path for t in TARGETS if not (root / t.path).exists()]
    assert not missing, f"the template lacks {missing}"
    return root


def _write_request_logs(folder: Path) -> None:
    """Two finished request logs as `mlops serve` writes them (inputs, then the meta columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for seq, (a, b) in enumerate((([1, 3, 5, 7], [2, 4, 6, 9]), ([2, 4, 6, 8], [1, 3, 5, 9])), 1):
        table = pa.table(
            {
                "a": pa.array(a, pa.int64()),
                "b": pa.array(b, pa.int64()),
                "prediction": pa.array([1] * 4, pa.int64()),
                "variant": ["production"] * 4,
                "version": pa.array([1] * 4, pa.int64()),
                "latency_ms": [1.0] * 4,
                "time": pa.array([1_700_000_000_000_000] * 4, pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(table, folder / f"20240101T00000{seq}Z-host-1-000{seq}.parquet", compression="zstd")


DVC_CONFIG = "[core]\n    remote = store\n['remote \"store\"']\n    url = ../../dvc-store\n"
DVC_YAML = """stages:
  copy:
    cmd: cp table.csv copied.csv
    deps: [table.csv]
    params: [train.seed]
    outs: [copied.csv]
"""


def _import_dvc_project(root: Path) -> None:
    """A DVC project in dvcproj/ (as `dvc init --subdir` and `dvc repro` leave it, written by hand:
    DVC itself is not needed), imported once so that .mlops/dvc-import.json exists; the template's
    own pipeline.yaml and pipeline.lock are put back afterwards."""
    import hashlib

    project = root / "dvcproj"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc" / "config").write_text(DVC_CONFIG)
    (project / "table.csv").write_text("x,y\n1,2\n")
    (project / "copied.csv").write_text("x,y\n1,2\n")
    md5 = hashlib.md5(b"x,y\n1,2\n").hexdigest()
    (project / "table.csv.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 8\n  path: table.csv\n")
    (project / "params.yaml").write_text("train:\n  seed: 1\n")
    (project / "dvc.yaml").write_text(DVC_YAML)
    entry = f"md5: {md5}\n      size: 8"
    (project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  copy:\n    cmd: cp table.csv copied.csv\n"
        f"    deps:\n    - path: table.csv\n      {entry}\n"
        "    params:\n      params.yaml:\n        train.seed: 1\n"
        f"    outs:\n    - path: copied.csv\n      {entry}\n"
    )
    kept = {name: (root / name).read_bytes() for name in ("pipeline.yaml", "pipeline.lock")}
    _mlops(root, "import", "dvc", "--force")
    for name, data in kept.items():
        (root / name).write_bytes(data)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def _run(root: Path, args: tuple[str, ...]) -> Outcome:
    if args[0] == "serve":
        return _serve(root, args)
    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    assert crash is None, f"mlops {' '.join(args)} raised {crash!r}"
    return Outcome(result.exit_code, result.stdout, result.stderr)


def _serve(root: Path, args: tuple[str, ...], wait: float = 20.0) -> Outcome:
    """Start a real server; it either fails at start-up (its outcome is returned) or announces
    its address (then it is stopped and counts as exit 0)."""
    proc = subprocess.Popen(
        [MLOPS_BIN, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    deadline = time.monotonic() + wait
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "http://" in line:
                return Outcome(0, "".join(lines), "".join(lines))
            if time.monotonic() > deadline:
                break
        code = proc.wait(timeout=wait)
        return Outcome(code, "", "".join(lines))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _baseline(template: Path, base: Path) -> dict[tuple[str, ...], int]:
    """Each command's exit code on an intact copy of the project (0 or 1: it works as it is)."""
    codes: dict[tuple[str, ...], int] = {}
    commands = {c for t in TARGETS for c in t.commands}
    copy = _copy_template(template, base / "baseline")
    before = Path.cwd()
    os.chdir(copy)
    try:
        # commands that change the project last, the import (which replaces pipeline.yaml) at the very end
        for command in sorted(
            commands,
            key=lambda c: (
                c[0] == "import",
                c[0] in ("add", "checkout", "gc", "push", "pull", "fetch") or c in REGISTRY_WRITERS,
                c,
            ),
        ):
            outcome = _run(copy, command)
            assert outcome.code in (0, 1), f"intact project: mlops {' '.join(command)} -> {outcome.code}\n{outcome}"
            codes[command] = outcome.code
    finally:
        os.chdir(before)
    return codes


def _copy_template(template: Path, into: Path) -> Path:
    """A copy of the project and, beside it, of its remote (the project names it ../remote)."""
    shutil.copytree(template, into / "project", symlinks=True)
    shutil.copytree(template.parent / "remote", into / "remote")
    return into / "project"


NO_BOMB = ("sqlite", "text", "parquet", "blob")  # formats without aliases or nesting

CASES = [
    pytest.param(target, damage, id=f"{target.path}-{damage}")
    for target in TARGETS
    for damage in DAMAGE
    if not (damage == "bomb" and target.syntax in NO_BOMB)
]


@pytest.mark.parametrize(("target", "damage"), CASES)
def test_damaged_file(
    target: Target,
    damage: str,
    prepared: tuple[Path, dict[tuple[str, ...], int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template, baseline = prepared
    root = _copy_template(template, tmp_path)
    if target.prepare is not None:
        target.prepare(root)
    path = root / target.path
    damaged = DAMAGE[damage](path.read_bytes(), target.syntax)
    path.unlink()
    if damaged is FOLDER:
        path.mkdir()
        (path / "inside.txt").write_text("a file in a folder where a file should be\n")
    else:
        assert isinstance(damaged, bytes)
        path.write_bytes(damaged)
    monkeypatch.chdir(root)
    name = Path(target.path).name
    for command in target.commands:
        outcome = _run(root, command)
        said = f"mlops {' '.join(command)} -> {outcome.code}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
        assert "internal error" not in outcome.stderr, said
        assert "Traceback" not in outcome.stderr + outcome.stdout, said
        if target.cache:
            assert outcome.code == baseline[command], said
            continue
        if target.skipped:  # a warning names the file, and the rest is read as before
            assert outcome.code == baseline[command], said
            assert name in outcome.stderr, said
            continue
        assert outcome.code in (0, 1, 2, 3), said
        # an empty or cut file may still parse: it then lacks something (a remote, an entry), and
        # the error says what; a file that cannot be read at all is named
        if outcome.code in (2, 3) and outcome.code != baseline[command] and damage not in ("empty", "truncated"):
            error = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
            assert error, said
            assert name in error[0] or target.path in error[0], said


def test_matrix_covers_every_damage_of_every_target() -> None:
    # the table is the test: a target without a command, or a damage never applied, is a gap
    assert all(t.commands for t in TARGETS)
    assert len(CASES) == sum(len(DAMAGE) - (t.syntax in NO_BOMB) for t in TARGETS)
