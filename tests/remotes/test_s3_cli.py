"""push/pull/fetch through the real CLI against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mlops.store.hashing import hash_bytes


def _project(root: Path, files: dict[str, bytes]) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_push_clone_pull_through_s3(tmp_path: Path, s3_bucket: Any, mlops_bin: Any) -> None:
    project = tmp_path / "project"
    files = {f"data/images/{d}/{i}.bin": f"{d}-{i}".encode() * 50 for d in ("a", "b") for i in range(30)}
    files["data/raw.csv"] = b"x,y\n1,2\n"
    _project(project, files)
    run = lambda *args, cwd=project, code=0: mlops_bin(*args, cwd=cwd, code=code)  # noqa: E731
    run("init")
    run("add", "data/images", "data/raw.csv")
    url = f"s3://{s3_bucket.name}/store"
    run("remote", "add", "s3", url, "--default")
    run("remote", "modify", "s3", "endpoint_url", s3_bucket.endpoint_url)
    pushed = json.loads(run("push", "-j", "8", "--json").stdout)
    assert pushed["transferred"] == 61 + 3 and pushed["present"] == 0  # 61 files + 3 manifests
    keys = s3_bucket.keys("store/")
    assert len(keys) == 64
    for key in keys:  # every object under its own hash: nothing partial, nothing misnamed
        body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
        assert hash_bytes(body) == key.split("/")[1] + key.split("/")[2]
    assert json.loads(run("push", "--json").stdout)["transferred"] == 0

    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "v1"], cwd=project, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    assert not (clone / "data" / "images").exists()
    fetched = json.loads(run("pull", "--json", cwd=clone).stdout)
    assert fetched["transferred"] == 64
    for rel, data in files.items():
        assert (clone / rel).read_bytes() == data
    run("status", "--check", cwd=clone)
    run("verify", cwd=clone)

    # fetch fills only the cache; the workspace stays as it is
    shutil.rmtree(clone / ".mlops" / "cache")
    shutil.rmtree(clone / "data" / "images")
    assert json.loads(run("fetch", "--json", cwd=clone).stdout)["transferred"] == 64
    assert not (clone / "data" / "images").exists()
    run("checkout", cwd=clone)
    assert (clone / "data/images/a/0.bin").read_bytes() == files["data/images/a/0.bin"]


def test_unreachable_s3_remote_is_one_clear_line(tmp_path: Path, aws_env: None, mlops_bin: Any) -> None:
    project = tmp_path / "project"
    _project(project, {"data.bin": b"payload"})
    mlops_bin("init", cwd=project)
    mlops_bin("add", "data.bin", cwd=project)
    mlops_bin("remote", "add", "s3", "s3://bucket/x", "--default", cwd=project)
    mlops_bin("remote", "modify", "s3", "endpoint_url", "http://127.0.0.1:9", cwd=project)  # discard port: closed
    proc = mlops_bin("push", cwd=project, code=3)
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
