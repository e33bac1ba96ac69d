"""A second red-team pass (issue 12): attacks beyond the first pass's suites.

Each test is one attack by someone who can write to the team's remote, get a commit merged, or
reach `mlops serve` on 127.0.0.1. A refused attack stays here as a regression test: the exit
code, the one line that says why, and the proof that nothing changed (``guard``: the sentinel
tree beside the repository and ``.git``). What this pass found and fixed:

- params files (``mlops/pipeline/params.py``): a TOML file nested past Python's recursion
  limit, a Python params file whose expression chain overflows the parser, and Python literals
  YAML cannot hold (``1j``, ``b"..."``) were tracebacks or "internal error"; a committed
  ``params.yaml`` symlink copied a file from outside the repository (``~/.kube/config``) into
  pipeline.yaml and pipeline.lock (``paths.check_readable``);
- a committed ``cache.dir`` inside ``.dvc/`` made ``mlops gc`` delete DVC's cache, which has
  the object store's very layout (``repo._cache_dir_problem``);
- a committed ``plots.html`` symlink into ``.git/hooks`` made ``mlops plots`` replace a hook,
  keeping its executable bit (``fsio._output_plan``);
- a ``Host``/``Origin`` port of non-ASCII digits (``:٨٠``) parsed as a number (``serve/trust.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops.store.hashing import hash_bytes

MARKER = "PWNED-MARKER"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def commit(root: Path, guard: Any, *paths: str) -> None:
    git(root, "add", "-f", *paths)
    git(root, "commit", "-q", "-m", "received")
    guard.expect_git_change()


def error_line(stderr: str) -> str:
    """The one error line of a refusal; never a traceback or an internal error."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def files_of(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` outside .git and .mlops/tmp, with its bytes."""
    out: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git" and not (d == "tmp" and folder.endswith(".mlops"))]
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


# --- params files: read, never run; every problem one line ------------------------------------

STAGE_WITH_PARAMS = """stages:
  train:
    cmd: echo trained > model.txt
    params:
    - {file}: [{key}]
    outs: [model.txt]
"""

BAD_PARAMS = [
    pytest.param("params.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n", "a", "nested too deep", id="toml-deep-array"),
    pytest.param(
        "params.toml", "a = " + "{b=" * 2000 + "1" + "}" * 2000 + "\n", "a", "nested too deep", id="toml-deep-table"
    ),
    pytest.param("params.toml", "a = " + "1" * 5000 + "\n", "a", "not valid TOML", id="toml-huge-int"),
    pytest.param("params.toml", "a = [" + "[" * 80 + "1" + "]" * 80 + "]\n", "a", "nested deeper", id="toml-65-deep"),
    pytest.param("params.py", "a = " + "+".join(["1"] * 100_000) + "\n", "a", "not valid Python", id="py-chain"),
    pytest.param("params.py", "a = " + "-" * 100_000 + "1\n", "a", "not valid Python", id="py-unary-chain"),
    pytest.param("params.py", "a = 1\x00\n", "a", "not valid Python", id="py-nul"),
    pytest.param("params.py", "a = 1j\n", "a", "'a' not found in params.py", id="py-complex"),
    pytest.param("params.py", "a = b'x'\n", "a", "'a' not found in params.py", id="py-bytes"),
    pytest.param("params.py", "a = {(1, 2): 3}\n", "a", "'a' not found in params.py", id="py-tuple-key"),
    pytest.param("params.py", "a = {'x': {b'y'}}\n", "a", "'a' not found in params.py", id="py-nested-bytes"),
]


@pytest.mark.parametrize(("name", "text", "key", "problem"), BAD_PARAMS)
def test_a_crafted_params_file_is_one_line(repo, guard, mlops_bin, name, text, key, problem) -> None:
    """Each was a traceback or "internal error" (RecursionError, MemoryError, a RepresenterError
    writing pipeline.lock) before this pass."""
    (repo.root / "pipeline.yaml").write_text(STAGE_WITH_PARAMS.format(file=name, key=key))
    (repo.root / name).write_text(text)
    proc = mlops_bin("run", cwd=repo.root, code=2)
    assert problem in error_line(proc.stderr)
    assert not (repo.root / "pipeline.lock").exists() and not (repo.root / "model.txt").exists()
    guard.check()


def test_python_literals_yaml_can_hold_are_parameters(repo, mlops_bin) -> None:
    """The other side of the rule: sets and tuples become lists, nested ones too."""
    (repo.root / "pipeline.yaml").write_text(STAGE_WITH_PARAMS.format(file="params.py", key="a"))
    (repo.root / "params.py").write_text("a = {'x': ({1}, (2, 3)), 'y': None}\n")
    mlops_bin("run", cwd=repo.root)
    lock = (repo.root / "pipeline.lock").read_text()
    assert "- 1" in lock and "- 2" in lock and "- 3" in lock


EXECUTES = f"import pathlib\npathlib.Path({MARKER!r}).write_text('ran')\nLR = 0.1\n"


def test_a_committed_python_params_file_is_never_run(repo, guard, mlops_bin) -> None:
    (repo.root / "pipeline.yaml").write_text(STAGE_WITH_PARAMS.format(file="params.py", key="LR"))
    (repo.root / "params.py").write_text(EXECUTES)
    mlops_bin("run", cwd=repo.root)
    mlops_bin("status", cwd=repo.root)
    assert not (repo.root / MARKER).exists()
    assert "LR: 0.1" in (repo.root / "pipeline.lock").read_text()


def test_mlops_import_dvc_never_runs_a_python_params_file(repo, guard, mlops_bin) -> None:
    (repo.root / ".dvc").mkdir()
    (repo.root / ".dvc" / "config").write_text("")
    (repo.root / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: echo train > m.txt\n    params:\n    - params.py: [LR]\n    outs: [m.txt]\n"
    )
    (repo.root / "params.py").write_text(EXECUTES)
    sub = repo.root / "sub"
    sub.mkdir()
    (sub / "dvc.yaml").write_text(
        "vars: [conf.py]\nstages:\n  s:\n    foreach: ${ITEMS}\n    do:\n      cmd: echo ${item}\n"
    )
    (sub / "conf.py").write_text(EXECUTES.replace("LR = 0.1", "ITEMS = ['a', 'b']"))
    mlops_bin("import", "dvc", cwd=repo.root)
    assert not (repo.root / MARKER).exists() and not (sub / MARKER).exists()
    text = (repo.root / "pipeline.yaml").read_text()
    assert "sub.s" in text and "- a" in text


SECRET = "users:\n  admin: SECRET-TOKEN-123\n"


def test_a_committed_params_symlink_out_of_the_repository_is_not_read(repo, guard, mlops_bin, tmp_path) -> None:
    """params.yaml -> ~/.kube/config: its values would be copied into pipeline.lock, which is committed."""
    outside = tmp_path / "sentinel" / "kubeconfig.yaml"
    outside.write_text(SECRET)
    guard.take()
    (repo.root / "pipeline.yaml").write_text(STAGE_WITH_PARAMS.format(file="params.yaml", key="users"))
    (repo.root / "params.yaml").symlink_to(outside)
    commit(repo.root, guard, "pipeline.yaml", "params.yaml")
    for command in (["run"], ["status"], ["params", "diff"]):
        proc = mlops_bin(*command, cwd=repo.root, code=3)
        line = error_line(proc.stderr)
        assert "refused 'params.yaml'" in line and "leads outside the repository" in line, line
    assert not (repo.root / "pipeline.lock").exists()
    assert "SECRET" not in json.dumps({k: v.decode(errors="replace") for k, v in files_of(repo.root).items()})


def test_a_committed_params_symlink_is_not_copied_by_import_dvc(repo, guard, mlops_bin, tmp_path) -> None:
    """A nested dvc.yaml's own params.yaml resolves ``foreach: ${users}``: the secret would land in pipeline.yaml."""
    outside = tmp_path / "sentinel" / "kubeconfig.yaml"
    outside.write_text(SECRET)
    guard.take()
    sub = repo.root / "sub"
    sub.mkdir()
    (repo.root / ".dvc").mkdir()
    (repo.root / ".dvc" / "config").write_text("")
    (sub / "dvc.yaml").write_text("stages:\n  leak:\n    foreach: ${users}\n    do:\n      cmd: echo ${item}\n")
    (sub / "params.yaml").symlink_to(outside)
    proc = mlops_bin("import", "dvc", cwd=repo.root, code=2)
    line = error_line(proc.stderr)
    assert "refused 'sub/params.yaml'" in line and "leads outside the repository" in line, line
    assert not (repo.root / "pipeline.yaml").exists()
    assert "SECRET" not in proc.stderr


@pytest.mark.parametrize("var", ["../../sentinel/kubeconfig.yaml", "/etc/hostname"])
def test_a_nested_dvc_vars_file_outside_the_repository_is_refused(repo, guard, mlops_bin, tmp_path, var) -> None:
    (tmp_path / "sentinel" / "kubeconfig.yaml").write_text(SECRET)
    guard.take()
    sub = repo.root / "sub"
    sub.mkdir()
    (sub / "dvc.yaml").write_text(
        f"vars: [{json.dumps(var)}]\nstages:\n  leak:\n    foreach: ${{users}}\n    do:\n      cmd: echo ${{item}}\n"
    )
    proc = mlops_bin("import", "dvc", cwd=repo.root, code=2)
    assert "nothing was written" in error_line(proc.stderr)
    assert not (repo.root / "pipeline.yaml").exists()
    assert "SECRET" not in proc.stderr


# --- a committed config choosing a cache folder that holds someone else's files ----------------


@pytest.mark.parametrize("cache_dir", [".dvc/cache/files/md5", ".dvc/cache", ".DVC/cache"])
def test_a_committed_cache_dir_in_dvc_s_folder_is_refused_before_gc(repo, guard, mlops_bin, cache_dir) -> None:
    """DVC's cache has the object store's layout (``ab/`` + 30 hex): gc would delete all of it."""
    dvc_file = repo.root / cache_dir / "ab" / ("c" * 30)
    dvc_file.parent.mkdir(parents=True)
    dvc_file.write_bytes(b"a teammate's only copy\n")
    config = repo.root / ".mlops" / "config.yaml"
    config.write_text(f"format: 1\ncache:\n  dir: {cache_dir}\n")
    commit(repo.root, guard, ".mlops/config.yaml")
    for command in (["gc"], ["gc", "--all-commits"], ["gc", "--dry-run"]):
        line = error_line(mlops_bin(*command, cwd=repo.root, code=2).stderr)
        assert f"cache.dir '{cache_dir}' is inside .dvc/" in line, line
    assert dvc_file.read_bytes() == b"a teammate's only copy\n"


@pytest.mark.parametrize("folder", ["vendor/objects", "build/cache"])
def test_a_committed_cache_dir_naming_a_folder_mlops_did_not_make_is_refused(repo, guard, mlops_bin, folder) -> None:
    """Any folder with files named like objects (another tool's content-addressed store, a
    vendored tree) is not mlops' to sweep: without the marker mlops writes into a cache it
    makes, every command refuses it (exit 2) and gc deletes nothing."""
    other = repo.root / folder / "ab" / ("c" * 30)
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not mlops' file\n")
    (repo.root / ".mlops" / "config.yaml").write_text(f"format: 1\ncache:\n  dir: {folder}\n")
    commit(repo.root, guard, ".mlops/config.yaml")
    for command in (["gc"], ["gc", "--dry-run"], ["add", "data.txt"]):
        (repo.root / "data.txt").write_text("x\n")
        line = error_line(mlops_bin(*command, cwd=repo.root, code=2).stderr)
        assert f"cache.dir '{folder}' holds files mlops did not put there" in line, line
    assert other.read_bytes() == b"not mlops' file\n"


def test_a_committed_cache_dir_mlops_makes_carries_its_marker_and_works(repo, mlops_bin) -> None:
    (repo.root / ".mlops" / "config.yaml").write_text("format: 1\ncache:\n  dir: shared-cache\n")
    (repo.root / "data.txt").write_text("x\n")
    mlops_bin("add", "data.txt", cwd=repo.root)
    assert (repo.root / "shared-cache" / ".mlops-cache").is_file()
    assert len(list((repo.root / "shared-cache").glob("??/*"))) == 1
    mlops_bin("gc", cwd=repo.root)
    mlops_bin("status", cwd=repo.root)


def test_the_same_cache_dir_set_for_this_machine_is_used(repo, mlops_bin) -> None:
    """config.local.yaml is the user's own choice: a shared DVC/mlops cache is theirs to make."""
    (repo.root / ".mlops" / "config.local.yaml").write_text("cache:\n  dir: .dvc/cache\n")
    (repo.root / "data.txt").write_text("x\n")
    mlops_bin("add", "data.txt", cwd=repo.root)
    assert len(list((repo.root / ".dvc" / "cache").glob("??/*"))) == 1


# --- outputs under default names: a committed symlink into .git --------------------------------


@pytest.fixture
def run_id(repo) -> str:
    from mlops.tracking import store

    info = store.create_run(repo, name="curve")
    store.log_metrics(repo, info["id"], {"loss": 0.5}, step=0)
    store.finish_run(repo, info["id"])
    return info["id"]


@pytest.mark.parametrize("target", [".git/hooks/pre-commit", ".git/config", ".mlops/config.yaml"])
def test_plots_never_replaces_a_file_in_git_through_a_committed_link(repo, guard, mlops_bin, run_id, target) -> None:
    """``plots.html`` is where `mlops plots` writes when not told: the user never named the link."""
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    (repo.root / "plots.html").symlink_to(os.path.relpath(repo.root / target, repo.root))
    commit(repo.root, guard, "plots.html")
    before = (repo.root / target).read_bytes()
    line = error_line(mlops_bin("plots", run_id, cwd=repo.root, code=2).stderr)
    assert "plots.html: the default output name is a symlink" in line, line
    # even named by the user, a link into what git or mlops manage is not written through
    line = error_line(mlops_bin("plots", run_id, "-o", "plots.html", cwd=repo.root, code=2).stderr)
    assert "plots.html: is reached through a symlink into" in line, line
    assert (repo.root / target).read_bytes() == before
    guard.check()


def test_a_linked_output_folder_into_git_is_refused_too(repo, guard, mlops_bin, run_id) -> None:
    (repo.root / "reports").symlink_to(".git/hooks")
    commit(repo.root, guard, "reports")
    line = error_line(mlops_bin("plots", run_id, "-o", "reports/pre-push", cwd=repo.root, code=2).stderr)
    assert "symlink into" in line
    assert not (repo.root / ".git" / "hooks" / "pre-push").exists()
    guard.check()


# --- YAML: tags that would build objects, keys past the scanner's limit ------------------------

PYTHON_TAG = f"!!python/object/apply:os.system [touch {MARKER}]"

TAGGED_FILES = [
    pytest.param("pipeline.yaml", f"stages: {PYTHON_TAG}\n", ["status"], id="pipeline-yaml"),
    pytest.param("params.yaml", f"lr: {PYTHON_TAG}\n", ["run"], id="params-yaml"),
    pytest.param("data.txt.mlops", f"format: 1\npath: {PYTHON_TAG}\n", ["status"], id="pointer"),
    pytest.param(".mlops/config.yaml", f"format: 1\ncache: {PYTHON_TAG}\n", ["gc"], id="config"),
    pytest.param("pipeline.yaml", "stages:\n  " + "k" * 5000 + ": {cmd: x}\n", ["status"], id="long-key"),
    pytest.param("pipeline.yaml", "stages: !!set {a, b}\n", ["status"], id="set-tag"),
    pytest.param("pipeline.yaml", "stages:\n  ? [a, b]\n  : {cmd: x}\n", ["status"], id="list-key"),
]


@pytest.mark.parametrize(("rel", "text", "command"), TAGGED_FILES)
def test_yaml_tags_and_odd_keys_are_one_line(repo, guard, mlops_bin, rel, text, command) -> None:
    if rel == "params.yaml":
        (repo.root / "pipeline.yaml").write_text(STAGE_WITH_PARAMS.format(file="params.yaml", key="lr"))
    (repo.root / rel).write_text(text)
    proc = mlops_bin(*command, cwd=repo.root, code=None)
    assert proc.returncode == 2, proc.stderr
    error_line(proc.stderr)
    assert not (repo.root / MARKER).exists()
    guard.check()


# --- pointer files: hashes that only look like hashes, a path: that is not the file's name ------

ODD_HASHES = [
    pytest.param("A" * 32, id="upper-case"),
    pytest.param("\u0661" * 32, id="arabic-indic-digits"),
    pytest.param("\uff41" * 32, id="fullwidth-a"),
    pytest.param("a" * 31 + "\n", id="trailing-newline"),
]


@pytest.mark.parametrize("digest", ODD_HASHES)
def test_a_pointer_hash_that_only_looks_like_one_is_refused(repo, guard, mlops_bin, digest) -> None:
    pointer = f"format: 1\npath: data.txt\nkind: file\nhash: {json.dumps(digest)}\nsize: 3\n"
    (repo.root / "data.txt.mlops").write_text(pointer)
    commit(repo.root, guard, "data.txt.mlops")
    for command in (["checkout"], ["status"], ["checkout", "--rev", "HEAD"]):
        proc = mlops_bin(*command, cwd=repo.root, code=2)  # a damaged pointer file: the user restores it
        assert "field 'hash' is not a xxh3-128 hash" in error_line(proc.stderr)
    assert not (repo.root / "data.txt").exists()
    assert not [p for p in (repo.root / ".mlops" / "cache").rglob("*") if p.is_file()]
    guard.check()


@pytest.mark.parametrize("target", ["pipeline.yaml", "pipeline.lock"])
def test_a_pointer_never_places_what_the_pipeline_runs(repo, guard, mlops_bin, target) -> None:
    """``innocent.mlops`` with ``path: pipeline.yaml``, pipeline.yaml deleted in the same commit:
    checkout would place a pipeline whose commands no review saw (its text is on the remote)."""
    evil = f"stages:\n  x: {{cmd: touch {MARKER}}}\n".encode()
    with repo.objects.batch() as batch:
        batch.add_bytes(evil)
    (repo.root / "innocent.mlops").write_text(
        f"format: 1\npath: {target}\nkind: file\nhash: {hash_bytes(evil)}\nsize: {len(evil)}\n"
    )
    commit(repo.root, guard, "innocent.mlops")
    for command in (["checkout"], ["checkout", "--force"], ["checkout", "--rev", "HEAD"], ["status"]):
        line = error_line(mlops_bin(*command, cwd=repo.root, code=3).stderr)
        assert f"refused path '{target}' in pointer file innocent.mlops" in line, line
        assert "says what the pipeline runs" in line
    assert not (repo.root / target).exists()
    mlops_bin("run", cwd=repo.root, code=None)
    assert not (repo.root / MARKER).exists()


def test_a_lock_output_under_a_committed_symlinked_folder_is_refused(repo, guard, mlops_bin, tmp_path) -> None:
    """pipeline.yaml declares ``out/model.pkl``; git carries ``out -> ../../sentinel`` (a symlink)."""
    data = b"#!/bin/sh\necho pwned\n"
    with repo.objects.batch() as batch:
        batch.add_bytes(data)
    (repo.root / "pipeline.yaml").write_text("stages:\n  train:\n    cmd: python train.py\n    outs: [out/model.pkl]\n")
    (repo.root / "pipeline.lock").write_text(
        "format: 1\nstages:\n  train:\n    cmd: python train.py\n    outs:\n"
        f"    - path: out/model.pkl\n      hash: {hash_bytes(data)}\n      kind: file\n      size: {len(data)}\n"
    )
    (repo.root / "out").symlink_to(os.path.relpath(tmp_path / "sentinel", repo.root))
    commit(repo.root, guard, "pipeline.yaml", "pipeline.lock", "out")
    line = error_line(mlops_bin("checkout", cwd=repo.root, code=3).stderr)
    assert "out is a symlink" in line, line
    assert not (tmp_path / "sentinel" / "model.pkl").exists()
    guard.check()


# --- mlops serve: header values a browser never sends, HTTP/1.1 tricks ------------------------

SERVE_TESTS = Path(__file__).resolve().parent.parent / "serve"


@pytest.mark.parametrize(
    "value", ["127.0.0.1:\u00b2", "[::1]:\u00b9", "localhost:\u0668\u0660", "127.0.0.1:+80", "127.0.0.1: 80"]
)
def test_a_port_that_is_not_ascii_digits_is_no_port(value: str) -> None:
    """``str.isdigit`` takes "²" (``int`` then raised: a 500 from one header) and "٨٠" (read as 80)."""
    from mlops.serve.trust import host_and_port, request_refusal

    assert host_and_port(value) is None
    refusal = request_refusal({"host": value}, server_port=80, token_set=False, bound_loopback=True)
    assert refusal is not None and refusal.status == 403
    origin = {"host": "127.0.0.1", "origin": "http://" + value}
    refusal = request_refusal(origin, server_port=80, token_set=False, bound_loopback=True)
    assert refusal is not None and refusal.rule == "same-origin"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1.evil.example", "127.0.0.1@evil.example", "evil.example#127.0.0.1", "localhost.", "0x7f000001", "127.1"],
)
def test_host_names_that_merely_contain_loopback_are_foreign(host: str) -> None:
    from mlops.serve.trust import request_refusal

    refusal = request_refusal({"host": host}, server_port=80, token_set=False, bound_loopback=True)
    assert refusal is not None and refusal.rule == "loopback-host"


@pytest.fixture
def served(repo) -> Any:
    """`mlops serve churn@production` on 127.0.0.1 (the serving tests' helpers and model)."""
    import sys

    sys.path.insert(0, str(SERVE_TESTS))
    import servekit

    servekit.register(repo.root, "churn", 1, servekit.fit_pipeline(), stage="production")
    server = servekit.start_server(repo.root, "churn@production")
    yield server, servekit.ROW
    server.kill()


def _open(port: int, data: bytes) -> Any:
    import socket

    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(data)
    return conn


def _first_line(conn: Any) -> bytes:
    try:
        return conn.recv(4096).split(b"\r\n", 1)[0]
    finally:
        conn.close()


def test_serve_keeps_answering_through_stalled_and_hostile_connections(served) -> None:
    """64 idle connections, 8 slowloris headers, a chunked body that never ends, a body far
    shorter than its Content-Length, on model and admin routes: every other request is still
    answered, each within 10 s, and odd header values are a 403, never a 500."""
    import httpx

    server, row = served
    port = server.port
    get = b"GET /metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for header in (b"Host: 127.0.0.1:\xb2", b"Host: [::1]:\xb9"):
        assert (
            _first_line(_open(port, b"GET /metadata HTTP/1.1\r\n" + header + b"\r\n\r\n")) == b"HTTP/1.1 403 Forbidden"
        )
    origin = get + b"Origin: http://127.0.0.1:\xb2\r\n\r\n"
    assert _first_line(_open(port, origin)) == b"HTTP/1.1 403 Forbidden"
    assert _first_line(_open(port, get + b"Origin: null\r\n\r\n")) == b"HTTP/1.1 403 Forbidden"
    held = [_open(port, b"") for _ in range(64)]
    slow_headers = [_open(port, get) for _ in range(8)]
    post = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    for route in (b"/predict", b"/invocations", b"/admin/rollback"):
        held.append(_open(port, post % route + b'Transfer-Encoding: chunked\r\n\r\n5\r\n[{"a"\r\n'))
        held.append(_open(port, post % route + b'Content-Length: 1000000\r\n\r\n{"records": ['))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):
                for conn in slow_headers:
                    conn.sendall(b"X-Slow: 1\r\n")
                assert client.post("/predict", json={"records": [row]}).status_code == 200
                assert client.get("/v2/health/ready").status_code == 200
            assert client.post("/admin/reload", json={}).status_code == 200
    finally:
        for conn in held + slow_headers:
            conn.close()
    stderr = server.stderr()
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr[-2000:]
    assert server.proc.poll() is None


def test_plots_never_writes_outside_through_a_committed_default_name(repo, mlops_bin, run_id, tmp_path) -> None:
    """``plots.html -> ~/.bashrc`` committed: `mlops plots RUN`, no -o, refuses the link (exit 2);
    the same link named with -o is the user's choice and followed (tests/cli test_outputs)."""
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=$HOME/bin:$PATH\n")
    (repo.root / "plots.html").symlink_to(victim)
    git(repo.root, "add", "plots.html")
    git(repo.root, "commit", "-q", "-m", "received")
    proc = mlops_bin("plots", run_id, cwd=repo.root, code=2)
    assert "default output name is a symlink" in proc.stderr
    assert victim.read_text() == "export PATH=$HOME/bin:$PATH\n"


def test_a_body_that_never_arrives_is_a_408_and_the_connection_closes(repo) -> None:
    """A stalled or never-ending body holds no connection for good: after --body-timeout the
    request is a 408 (model and admin routes) and the server closes the connection."""
    import sys

    sys.path.insert(0, str(SERVE_TESTS))
    import servekit

    servekit.register(repo.root, "churn", 1, servekit.fit_pipeline(), stage="production")
    server = servekit.start_server(repo.root, "churn@production", "--body-timeout", "1s")
    try:
        post = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        stalled = []
        for route in (b"/predict", b"/invocations", b"/admin/rollback"):
            stalled.append(_open(server.port, post % route + b'Transfer-Encoding: chunked\r\n\r\n5\r\n[{"a"\r\n'))
            stalled.append(_open(server.port, post % route + b'Content-Length: 1000\r\n\r\n{"records": ['))
        for conn in stalled:
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(4096)  # the socket's own 10 s timeout bounds the wait
                assert chunk, "the server closed the connection without an answer"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            conn.settimeout(10)
            while conn.recv(4096):  # the rest of the answer, then the server's close (b"")
                pass
            conn.close()
        assert server.proc.poll() is None
        stderr = server.stderr()
        assert "Traceback" not in stderr, stderr[-2000:]
    finally:
        server.kill()


def test_a_renamed_pointer_over_a_users_file_is_named_in_the_hint(repo, guard, mlops_bin) -> None:
    """``innocent.mlops`` with ``path: notes.txt`` over the user's own committed notes.txt: checkout
    refuses to lose it and the hint names the pointer file that asked (not notes.txt.mlops)."""
    (repo.root / "notes.txt").write_text("mine\n")
    commit(repo.root, guard, "notes.txt")
    data = b"theirs\n"
    with repo.objects.batch() as batch:
        batch.add_bytes(data)
    (repo.root / "innocent.mlops").write_text(
        f"format: 1\npath: notes.txt\nkind: file\nhash: {hash_bytes(data)}\nsize: {len(data)}\n"
    )
    commit(repo.root, guard, "innocent.mlops")
    proc = mlops_bin("checkout", cwd=repo.root, code=2)
    error_line(proc.stderr)
    assert "check where innocent.mlops came from" in proc.stderr, proc.stderr
    assert "--force" not in proc.stderr
    assert (repo.root / "notes.txt").read_text() == "mine\n"
