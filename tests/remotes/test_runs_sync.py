"""Sharing experiment runs through a remote: `mlops push --runs`, `pull --runs`, `fetch --runs`.

Runs are made with the real Python API in a real git repo; the remote is a local folder or a
real S3-compatible server (moto, tests/remotes/conftest.py); the clone is a `git clone` that
runs the real `mlops` console script.
"""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import mlops
from mlops.data.transfer import get_remote
from mlops.errors import StorageError, UsageError
from mlops.remotes.local import LocalRemote
from mlops.repo.repo import Repo, find_repo
from mlops.tracking import store, sync

pytestmark = pytest.mark.usefixtures("fresh_tracking_api")


@pytest.fixture(params=["local", "s3"])
def remote_url(request: pytest.FixtureRequest, repo: Repo, cli: Any, tmp_path: Path) -> str:
    """The repo's default remote ('origin'): a local folder or a bucket on the moto server."""
    if request.param == "local":
        url = str(tmp_path / "remote")
        cli("remote", "add", "origin", url, "--default")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        url = f"s3://{bucket.name}/store"
        cli("remote", "add", "origin", url, "--default")
        cli("remote", "modify", "origin", "endpoint_url", bucket.endpoint_url)
    return url


def _origin(repo: Repo) -> Any:
    """The repo's 'origin' remote, from its config as it is now on disk."""
    return get_remote(find_repo(repo.root), "origin")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _make_runs(tree: Any) -> dict[str, Any]:
    """Two ended runs (one finished with an artifact, one failed) and one still running."""
    tree({"reports/summary.txt": "accuracy 0.93\n"})
    with mlops.start_run(name="baseline") as good:
        mlops.log_params({"max_depth": 8, "model": {"kind": "rf"}})
        for step in range(3):
            mlops.log_metric("loss", 1.0 / (step + 1), step=step)
        mlops.log_metric("accuracy", 0.93)
        artifact = mlops.log_artifact("reports/summary.txt")
    with pytest.raises(RuntimeError), mlops.start_run(name="broken") as bad:
        mlops.log_metric("loss", 9.5)
        raise RuntimeError("diverged")
    live = mlops.start_run(name="live")  # stays running: this process is alive
    mlops.log_metric("loss", 0.5)
    return {"good": good.id, "bad": bad.id, "live": live.id, "artifact": artifact}


def _clone(repo: Repo, tmp_path: Path) -> Path:
    _git(repo.root, "add", "-A")
    _git(repo.root, "commit", "-qm", "project")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.root), str(clone)], check=True)
    return clone


def _listing(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(stdout)["runs"]}


def test_push_and_pull_runs_between_clones(
    repo: Repo, cli: Any, tree: Any, mlops_bin: Any, remote_url: str, tmp_path: Path
) -> None:
    runs = _make_runs(tree)

    # without --runs nothing about runs moves (and the report has no "runs")
    plain = json.loads(cli("push", "--json").stdout)
    assert "runs" not in plain
    remote = _origin(repo)
    assert remote.list_refs("runs/") == []

    pushed = json.loads(cli("push", "--runs", "--json").stdout)
    assert pushed["runs"]["sent"] == 2 and pushed["runs"]["skipped_running"] == 1
    assert sorted(pushed["runs"]["sent_ids"]) == sorted([runs["good"], runs["bad"]])
    assert pushed["runs"]["running_ids"] == [runs["live"]]
    assert remote.list_refs("runs/") == sorted([f"runs/{runs['good']}.json", f"runs/{runs['bad']}.json"])
    assert list(remote.iter_digests())  # objects still listed as before; refs/ is not among them
    assert all(len(d) == 32 for d in remote.iter_digests())

    again = json.loads(cli("push", "--runs", "--json").stdout)
    assert again["runs"]["sent"] == 0 and again["runs"]["skipped_present"] == 2
    text = cli("push", "--runs").stdout
    assert "pushed 0 run(s) (2 already there, 1 still running (not sent))" in text

    origin = _listing(cli("runs", "list", "--json").stdout)
    clone = _clone(repo, tmp_path)
    assert json.loads(mlops_bin("runs", "list", "--json", cwd=clone).stdout)["runs"] == []
    pulled = json.loads(mlops_bin("pull", "--runs", "--json", cwd=clone).stdout)
    assert pulled["runs"]["received"] == 2 and pulled["runs"]["warnings"] == []
    assert "checkout" in pulled  # the data moved as before
    theirs = _listing(mlops_bin("runs", "list", "--json", cwd=clone).stdout)
    assert set(theirs) == {runs["good"], runs["bad"]}
    for run_id, mine in theirs.items():
        assert mine["metrics"] == origin[run_id]["metrics"]
        assert mine["params"] == origin[run_id]["params"]
        assert mine["status"] == origin[run_id]["status"]
        assert mine["name"] == origin[run_id]["name"]
    assert theirs[runs["good"]]["status"] == "finished" and theirs[runs["bad"]]["status"] == "failed"
    assert theirs[runs["good"]]["metrics"]["loss"] == pytest.approx(1 / 3)
    # the run's artifact came with it (roots were computed after the runs arrived)
    assert find_repo(clone).objects.exists(runs["artifact"]["hash"])
    # every file arrived, byte for byte; the index has the runs
    for run_id in theirs:
        for name in ("params.jsonl", "metrics.jsonl", "artifacts.jsonl"):
            src = repo.dot / "runs" / run_id / name
            if src.exists():
                assert (clone / ".mlops" / "runs" / run_id / name).read_bytes() == src.read_bytes()
    index = store.read_index(find_repo(clone))
    assert set(index) == set(theirs)
    show = json.loads(mlops_bin("runs", "show", runs["good"], "--json", cwd=clone).stdout)
    assert [h["step"] for h in show["history"]["loss"]] == [0, 1, 2]

    # pulling again receives nothing; fetch --runs says the same in its summary line
    again = json.loads(mlops_bin("fetch", "--runs", "--json", cwd=clone).stdout)
    assert again["runs"]["received"] == 0 and again["runs"]["present"] == 2
    assert "pulled 0 run(s) (2 already here)" in mlops_bin("pull", "--runs", cwd=clone).stdout

    # the running run ends; the next push sends it, and the clone gets it with fetch --runs
    mlops.end_run()
    assert json.loads(cli("push", "--runs", "--json").stdout)["runs"]["sent_ids"] == [runs["live"]]
    fetched = json.loads(mlops_bin("fetch", "--runs", "--json", cwd=clone).stdout)
    assert fetched["runs"]["received_ids"] == [runs["live"]]
    assert set(_listing(mlops_bin("runs", "list", "--json", cwd=clone).stdout)) == {
        runs["good"],
        runs["bad"],
        runs["live"],
    }


def test_a_local_run_is_never_overwritten(repo: Repo, cli: Any, tree: Any, remote_dir: Path) -> None:
    cli("remote", "add", "origin", str(remote_dir), "--default")
    runs = _make_runs(tree)
    mlops.end_run()
    remote = _origin(repo)
    assert len(sync.push_runs(repo, remote).sent) == 3
    # a teammate's bundle for the same id says something else: it must not replace ours
    bundle = json.loads(remote.get_ref(f"runs/{runs['good']}.json"))
    bundle["run"]["name"] = "theirs"
    bundle["files"]["metrics.jsonl"] = '{"key":"loss","value":42,"step":0,"timestamp":1}\n'
    remote.put_ref(f"runs/{runs['good']}.json", json.dumps(bundle).encode())
    before = {p.name: p.read_bytes() for p in (repo.dot / "runs" / runs["good"]).iterdir()}
    result = sync.pull_runs(repo, remote)
    assert result.received == () and set(result.present) == {runs["good"], runs["bad"], runs["live"]}
    assert {p.name: p.read_bytes() for p in (repo.dot / "runs" / runs["good"]).iterdir()} == before
    assert store.load_run(repo, runs["good"]).info["name"] == "baseline"


def test_corrupt_bundles_are_skipped_with_a_warning(
    repo: Repo, cli: Any, tree: Any, mlops_bin: Any, remote_url: str, tmp_path: Path
) -> None:
    runs = _make_runs(tree)
    mlops.end_run()
    cli("push", "--runs")
    remote = _origin(repo)
    good = json.loads(remote.get_ref(f"runs/{runs['good']}.json"))
    remote.put_ref("runs/20260101-000000-0badjson.json", b'{"format": 1, "run": {')
    remote.put_ref("runs/20260101-000000-000wrong.json", json.dumps(good).encode())  # id does not match
    newer = {**good, "format": 99, "run": {**good["run"], "id": "20260101-000000-00newer"}}
    remote.put_ref("runs/20260101-000000-00newer.json", json.dumps(newer).encode())
    evil = {**good, "run": {**good["run"], "id": "20260101-000000-0000evil"}, "files": {"../../escape": "x"}}
    remote.put_ref("runs/20260101-000000-0000evil.json", json.dumps(evil).encode())
    remote.put_ref("runs/README.txt", b"not a run")

    clone = _clone(repo, tmp_path)
    proc = mlops_bin("pull", "--runs", cwd=clone)
    assert "pulled 3 run(s)" in proc.stdout
    for bad in ("0badjson", "000wrong", "00newer", "0000evil"):
        assert f"20260101-000000-{bad}" in proc.stderr
    assert "not valid JSON" in proc.stderr and "newer mlops" in proc.stderr and "unknown file" in proc.stderr
    report = json.loads(mlops_bin("fetch", "--runs", "--json", cwd=clone).stdout)["runs"]
    assert report["received"] == 0 and len(report["warnings"]) == 5
    assert "runs/README.txt" in proc.stderr
    listed = _listing(mlops_bin("runs", "list", "--json", cwd=clone).stdout)
    assert set(listed) == {runs["good"], runs["bad"], runs["live"]}
    assert not (tmp_path / "escape").exists() and not (clone / "escape").exists()
    assert not [p for p in (clone / ".mlops" / "runs").iterdir() if p.name.startswith(".tmp")]


def test_an_interrupted_pull_leaves_no_half_run(
    repo: Repo, cli: Any, tree: Any, remote_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("remote", "add", "origin", str(remote_dir), "--default")
    runs = _make_runs(tree)
    mlops.end_run()
    remote = _origin(repo)
    sync.push_runs(repo, remote)
    clone_root = _clone(repo, tmp_path)
    clone = find_repo(clone_root)
    folder = clone.dot / "runs"

    real_write = sync._write_file

    def failing(path: Path, data: bytes) -> None:
        if path.name == "metrics.jsonl":  # the disk fills up half way through a run
            real_write(path, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(sync, "_write_file", failing)
    with pytest.raises(StorageError, match="disk full"):
        sync.pull_runs(clone, remote)
    assert store.run_ids(clone) == [] and store.read_index(clone) == {}
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]  # the temp folder is gone

    # a crash (SIGKILL) that left a temp folder behind: readers never see it; the next pull removes it
    stale = folder / f"{sync.TEMP_RUN_PREFIX}{runs['good']}.x1y2z3"
    stale.mkdir()
    (stale / "params.jsonl").write_text('{"key": "max_depth", "value": 8, "timestamp": 1}\n')
    assert store.run_ids(clone) == [] and store.list_summaries(clone) == []
    monkeypatch.setattr(sync, "_write_file", real_write)
    result = sync.pull_runs(clone, remote)
    assert set(result.received) == {runs["good"], runs["bad"], runs["live"]}
    assert not stale.exists()
    for run_id in result.received:  # every run folder whole: the same files as the origin's
        mine = {p.name for p in (folder / run_id).iterdir()}
        theirs = {p.name for p in (repo.dot / "runs" / run_id).iterdir() if p.name != ".lock"}
        assert mine == theirs
        assert oct((folder / run_id).stat().st_mode & 0o777) == oct(0o755)
    assert store.load_run(clone, runs["good"]).metrics == store.load_run(repo, runs["good"]).metrics


def test_a_dead_runs_bundle_says_failed(repo: Repo, cli: Any, remote_dir: Path) -> None:
    """A run whose owner died (run.json still says running) is pushed with its effective status."""
    cli("remote", "add", "origin", str(remote_dir), "--default")
    info = store.create_run(repo, name="killed", source="api")
    proc = subprocess.Popen(["true"])
    proc.wait()
    path = repo.dot / "runs" / info["id"] / "run.json"
    path.write_text(json.dumps({**info, "pid": proc.pid, "pid_start": None}))
    result = sync.push_runs(find_repo(repo.root), "origin")
    assert result.sent == (info["id"],)
    remote = _origin(repo)
    assert json.loads(remote.get_ref(f"runs/{info['id']}.json"))["run"]["status"] == "failed"


# --- refs on the remotes themselves ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["..", "../x", "runs/../../x", "runs/..", "/etc/passwd", "runs/a b", "runs/", "", "a//b", "runs/x\n", "r\u00e9f"],
)
def test_bad_ref_names_are_refused(tmp_path: Path, name: str) -> None:
    remote = LocalRemote("origin", str(tmp_path / "remote"), tmp_path / "remote")
    with pytest.raises(UsageError, match="not a valid ref name"):
        remote.put_ref(name, b"x")
    with pytest.raises(UsageError):
        remote.get_ref(name)
    assert not list(tmp_path.rglob("x")) and not (tmp_path / "remote").exists()


def test_local_refs(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    remote = LocalRemote("origin", str(root), root)
    assert remote.get_ref("runs/a.json") is None and remote.list_refs("runs/") == []
    remote.put_ref("runs/a.json", b"one")
    remote.put_ref("runs/b.json", b"two")
    remote.put_ref("other/c", b"three")
    remote.put_ref("runs/a.json", b"ONE")  # replaced whole
    assert remote.get_ref("runs/a.json") == b"ONE"
    assert remote.list_refs("runs/") == ["runs/a.json", "runs/b.json"]
    assert remote.list_refs("runs/b") == ["runs/b.json"]
    assert remote.list_refs() == ["other/c", "runs/a.json", "runs/b.json"]
    assert (root / "refs" / "runs" / "a.json").read_bytes() == b"ONE"
    assert not [p for p in root.rglob("*") if p.name.startswith(".tmp")]
    (root / "refs" / "runs" / ".tmp-mlops-a.json.xyz").write_bytes(b"half")  # a writer that died
    assert remote.list_refs("runs/") == ["runs/a.json", "runs/b.json"]
    assert list(remote.iter_digests()) == []  # refs/ is not an object shard
    gone = LocalRemote("gone", "/no/such/place/remote", Path("/no/such/place/remote"))
    with pytest.raises(Exception, match=r"at /no/such/place/remote does not exist \(or is not reachable\)"):
        gone.list_refs("runs/")


def test_s3_refs(s3_bucket: Any) -> None:
    from mlops.remotes.s3 import S3Remote

    url = f"s3://{s3_bucket.name}/store"
    remote = S3Remote("origin", url, {"url": url, "endpoint_url": s3_bucket.endpoint_url})
    assert remote.get_ref("runs/a.json") is None and remote.list_refs("runs/") == []
    remote.put_ref("runs/a.json", b"one")
    remote.put_ref("runs/b.json", b"two")
    remote.put_ref("runs/a.json", b"ONE")
    assert remote.get_ref("runs/a.json") == b"ONE"
    assert remote.list_refs("runs/") == ["runs/a.json", "runs/b.json"]
    assert s3_bucket.keys("store/refs/") == {"store/refs/runs/a.json", "store/refs/runs/b.json"}
    assert list(remote.iter_digests()) == [] and remote.missing(["0" * 32]) == {"0" * 32}
    remote.list_page_size = 1  # paging
    assert remote.list_refs("runs/") == ["runs/a.json", "runs/b.json"]
    with pytest.raises(UsageError):
        remote.put_ref("../x", b"x")
    missing = S3Remote("origin", "s3://no-such-bucket-here/x", {"endpoint_url": s3_bucket.endpoint_url})
    with pytest.raises(Exception, match="does not exist"):
        missing.get_ref("runs/a.json")
    with pytest.raises(Exception, match="does not exist"):
        missing.list_refs("runs/")
