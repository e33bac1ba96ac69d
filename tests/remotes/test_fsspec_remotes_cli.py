"""push/pull --run-cache through the real CLI on gs://, azure:// and ssh:// remotes, against real servers on 127.0.0.1.

Credentials come from each ecosystem's usual place, never from the committed config:
``STORAGE_EMULATOR_HOST`` (GCS), ``AZURE_STORAGE_CONNECTION_STRING`` (Azure), ``~/.ssh/config``
naming the key and the known_hosts file (SSH, with HOME pointed at a throwaway one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlops.remotes.base import open_remote
from mlops.store.hashing import hash_bytes

BACKENDS = ["gcs", "azure", "ssh"]
# each stage appends its name to ../counts.txt, beside the clones: an execution anywhere is seen
PREP = "open('../counts.txt', 'a').write('prep\\\\n'); open('clean.txt', 'w').write(open('data.csv').read().upper())"
TRAIN = "import os; open('../counts.txt', 'a').write('train\\\\n'); open('model.bin', 'wb').write(os.urandom(64))"
PIPELINE = """stages:
  prep:
    cmd: {py} -c "{prep}"
    deps: [data.csv]
    outs: [clean.txt]
  train:
    cmd: {py} -c "{train}"
    deps: [clean.txt]
    outs: [model.bin]
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def as_json(proc: Any) -> dict[str, Any]:
    return json.loads(proc.stdout)


def store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A fresh, empty remote of ``kind``: its URL and the environment that reaches it."""
    if kind == "gcs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        bucket = f"mlops-{uuid.uuid4().hex[:12]}"
        from gcsfs.core import GCSFileSystem

        GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True).mkdir(bucket)
        return f"gs://{bucket}/store", {"STORAGE_EMULATOR_HOST": endpoint}
    if kind == "azure":
        server = request.getfixturevalue("azure_server")
        container = f"mlops-{uuid.uuid4().hex[:12]}"
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(server.connection_string).create_container(container)
        return f"azure://{container}/store", {"AZURE_STORAGE_CONNECTION_STRING": server.connection_string}
    server = request.getfixturevalue("ssh_server")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host {server.host}\n  IdentityFile {server.key_file}\n  UserKnownHostsFile {server.known_hosts}\n"
    )
    return server.url(tmp_path / "srv" / "store"), {"HOME": str(home)}


@pytest.fixture(params=BACKENDS)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    return store(request.param, request, tmp_path)


@pytest.mark.timeout(240)
def test_push_pull_and_a_corrupt_object(shared: tuple[str, dict[str, str]], tmp_path: Path, mlops_bin: Any) -> None:
    url, env = shared
    project = tmp_path / "project"
    git(tmp_path, "init", "-q", "-b", "main", str(project))
    files = {f"data/{i}.bin": f"{i}".encode() * 300 for i in range(12)}
    for rel, data in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(data)

    def run(*args: str, cwd: Path = project, code: int = 0) -> Any:
        return mlops_bin(*args, cwd=cwd, code=code, env=env)

    run("init")
    run("add", "data")
    added = as_json(run("remote", "add", "team", url, "--default", "--json"))
    assert added["conditional_writes"] is True and added["warnings"] == []
    config = (project / ".mlops" / "config.yaml").read_text()
    assert "AccountKey" not in config and "IdentityFile" not in config  # nothing secret committed
    pushed = as_json(run("push", "--json"))
    assert pushed["transferred"] == 12 + 1 and pushed["present"] == 0  # 12 files + their manifest
    assert as_json(run("push", "--json"))["transferred"] == 0

    git(project, "add", "-A")
    git(project, "commit", "-qm", "v1")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert as_json(run("pull", "--json", cwd=clone))["transferred"] == 13  # into an empty cache
    for rel, data in files.items():
        assert (clone / rel).read_bytes() == data
    run("verify", cwd=clone)

    # one object's bytes replaced on the store: refused on arrival, with one line, nothing placed
    remote = open_remote("team", {"url": url, **_settings(url, env)}, root=project)
    digest = hash_bytes(files["data/3.bin"])
    remote.fs.pipe_file(remote._key(digest), b"X" * len(files["data/3.bin"]))  # type: ignore[attr-defined]
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(project), str(other))
    refused = run("pull", cwd=other, code=3)
    assert "corrupt" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stderr.count("error:") == 1
    assert not (other / "data" / "3.bin").exists()


def _settings(url: str, env: dict[str, str]) -> dict[str, str]:
    """The settings a test process needs to reach the store directly (the CLI gets them from ``env``)."""
    if url.startswith("gs://"):
        return {"endpoint_url": env["STORAGE_EMULATOR_HOST"]}
    if url.startswith("azure://"):
        return {"connection_string": env["AZURE_STORAGE_CONNECTION_STRING"]}
    config = (Path(env["HOME"]) / ".ssh" / "config").read_text().split()
    return {"key_file": config[config.index("IdentityFile") + 1], "known_hosts": config[-1]}


@pytest.mark.timeout(240)
def test_run_cache_through_the_remote(shared: tuple[str, dict[str, str]], tmp_path: Path, mlops_bin: Any) -> None:
    url, env = shared
    team = tmp_path / "team"
    git(tmp_path, "init", "-q", "-b", "main", str(team))

    def run(*args: str, cwd: Path = team, code: int = 0) -> Any:
        return mlops_bin(*args, cwd=cwd, code=code, env=env)

    run("init")
    run("remote", "add", "team", url, "--default")
    (team / "data.csv").write_text("a,b\n1,2\n")
    run("add", "data.csv")
    (team / "pipeline.yaml").write_text(PIPELINE.format(py=sys.executable, prep=PREP, train=TRAIN))
    git(team, "add", "-A")
    git(team, "commit", "-qm", "project")
    run("run")
    pushed = as_json(run("push", "--run-cache", "--json"))
    assert pushed["run_cache"]["created"] == 2
    assert as_json(run("push", "--run-cache", "--json"))["run_cache"]["created"] == 0  # create-once: already there

    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(team), str(mate))
    before = (tmp_path / "counts.txt").read_text()
    pulled = as_json(run("pull", "--run-cache", "--json", cwd=mate))
    assert pulled["run_cache"]["created"] == 2 and pulled["run_cache"]["warnings"] == []
    ran = as_json(run("run", "--json", cwd=mate))
    assert {s["name"]: s["status"] for s in ran["stages"]} == {"prep": "restored", "train": "restored"}
    assert (tmp_path / "counts.txt").read_text() == before  # no stage ran on the teammate's machine
    assert (mate / "model.bin").read_bytes() == (team / "model.bin").read_bytes()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_store_that_is_down_is_one_line(kind: str, tmp_path: Path, mlops_bin: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = tmp_path / "project"
    git(tmp_path, "init", "-q", "-b", "main", str(project))
    (project / "data.bin").write_bytes(b"payload")
    url, env = {
        "gcs": ("gs://bucket/x", {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}),
        "azure": (
            "azure://container/x",
            {
                "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            },
        ),
        "ssh": (f"ssh://nobody@127.0.0.1:{port}/srv/x", {"HOME": str(tmp_path)}),
    }[kind]
    mlops_bin("init", cwd=project, env=env)
    mlops_bin("add", "data.bin", cwd=project, env=env)
    added = mlops_bin("remote", "add", "down", url, "--default", cwd=project, env=env)
    assert "could not probe" in added.stderr  # added all the same, with a warning
    proc = mlops_bin("push", cwd=project, code=3, env=env)
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1
