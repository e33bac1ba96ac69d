"""A hostile remote serves crafted run bundles: each is skipped with a warning naming it, the
good runs beside it still arrive, nothing outside the repository (or in .git) changes, and
`runs list` keeps working. Both remote kinds (a local folder and the moto S3 server)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops.repo.repo import Repo
from mlops.store.hashing import hash_bytes
from mlops.tracking import store

GOOD = "20260101-000000-00000good"
BAD = "20260101-000000-000000bad"
ARTIFACT = b"accuracy 0.93\n"
ARTIFACT_HASH = hash_bytes(ARTIFACT)


def bundle(run_id: str, **run: Any) -> dict[str, Any]:
    """A bundle as `mlops push --runs` writes it: an ended run with a param, metrics and an artifact."""
    return {
        "format": 1,
        "run": {
            "format": 1,
            "id": run_id,
            "name": "baseline",
            "status": "finished",
            "start_time": 1767225600.0,
            "end_time": 1767225660.5,
            "user": "ann",
            "host": "laptop",
            "pid": 4242,
            "pid_start": 77,
            "git_commit": "a" * 40,
            "git_dirty": False,
            "source": "api",
            "stages": [],
            **run,
        },
        "files": {
            "params.jsonl": '{"key":"max_depth","timestamp":1767225601.0,"value":8}\n',
            "metrics.jsonl": "".join(
                f'{{"key":"loss","step":{s},"timestamp":1767225602.0,"value":{1 / (s + 1)}}}\n' for s in range(3)
            ),
            "artifacts.jsonl": (
                '{"files":1,"hash":"' + ARTIFACT_HASH + '","kind":"file","path":"reports/summary.txt",'
                '"size":14,"timestamp":1767225603.0}\n'
            ),
        },
    }


def plant(remote: Any, run_id: str, content: dict[str, Any] | bytes) -> None:
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    remote.put_key(f"refs/runs/{run_id}.json", data)
    remote.put_object(ARTIFACT_HASH, ARTIFACT)  # the good run's artifact, fetched with it


@dataclass
class Pulled:
    returncode: int
    stdout: str
    stderr: str


def pull(repo: Repo, cli: Any) -> Pulled:
    """`mlops pull --runs` in-process (the subprocess runs are in the tests that need one)."""
    result = cli("pull", "--runs", code=0)
    return Pulled(result.exit_code, result.stdout, result.stderr)


def assert_refused(repo: Repo, proc: Any, refused: dict[str, str]) -> None:
    """Each bad run was skipped with one warning naming its ref and why; the good one arrived."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for run_id, reason in refused.items():
        warnings = [line for line in proc.stderr.splitlines() if f"runs/{run_id}.json" in line]
        assert len(warnings) == 1, f"{run_id}: {proc.stderr}"
        assert "not a valid run bundle" in warnings[0] and reason in warnings[0], f"{run_id}: {warnings[0]}"
        assert not os.path.lexists(store.runs_dir(repo) / run_id)
    assert "pulled 1 run(s)" in proc.stdout
    assert (store.runs_dir(repo) / GOOD / "run.json").is_file()
    assert not [p for p in store.runs_dir(repo).iterdir() if p.name.startswith(".tmp")]


def assert_listing_works(cli: Any) -> None:
    listed = json.loads(cli("runs", "list", "--json").stdout)["runs"]
    assert [r["id"] for r in listed] == [GOOD]


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    keys = path.split("/")
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return doc


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _id(number: int) -> str:
    return f"20260101-000000-{number:09d}"


# (field to change, value, words the warning must hold)
CRAFTED = {
    "status-number": ("run/status", 5, "status"),
    "status-running": ("run/status", "running", "not an ended run"),
    "status-unknown": ("run/status", "pwned", "status"),
    "name-object": ("run/name", {"a": 1}, "'name': expected text"),
    "time-not-iso": ("run/start_time", "yesterday", "not an ISO 8601 time"),
    "time-naive": ("run/start_time", "2026-01-01T00:00:00", "no time zone"),
    "time-absurd": ("run/end_time", 1e300, "not a time between"),
    "time-negative": ("run/end_time", -5, "not a time between"),
    "time-bool": ("run/end_time", True, "expected a time"),
    "time-nan": ("run/end_time", float("nan"), "not a time between"),
    "pid-text": ("run/pid", "1; rm -rf /", "'pid': expected a whole number"),
    "commit-path": ("run/git_commit", "../../../etc/passwd", "not a commit id"),
    "stages-text": ("run/stages", "train", "'stages' expected a list"),
    "deep-nesting": ("run/extra", _deep(40), "nested deeper"),
    "huge-name": ("run/name", "x" * 2_000, "longer than"),
    "huge-text": ("run/extra", "y" * 100_000, "longer than"),
    "huge-list": ("run/extra", list(range(150_000)), "more than"),
    "huge-int": ("run/pid", 2**70, "beyond 64 bits"),
    "metric-text": ("files/metrics.jsonl", '{"key":"loss","value":"high","timestamp":1.0}\n', "expected a number"),
    "record-time": ("files/metrics.jsonl", '{"key":"loss","value":1,"timestamp":"soon"}\n{}\n', "ISO"),
    "param-key-object": ("files/params.jsonl", '{"key":{"k":1},"value":1}\n', "'key': expected text"),
    "param-line-list": ("files/params.jsonl", '[1,2]\n{"key":"a","value":1}\n', "expected an object"),
    "proc-pid": ("files/procs.jsonl", '{"event":"join","pid":-1,"host":"h"}\n', "out of range"),
    "line-not-json": ("files/params.jsonl", 'not json\n{"key":"a","value":1}\n', "not valid JSON"),
    "unknown-file": ("files/runner.sh", "#!/bin/sh\n", "unknown file"),
    "file-not-text": ("files/params.jsonl", 7, "not text"),
    "files-list": ("files", ["params.jsonl"], "'files' is not an object"),
    "other-run": ("run/id", "../../victim", "holds run"),
    "format-text": ("format", "1", "no bundle format"),
}

ESCAPING = {
    "artifact-parent": ('{"path":"../../victim.txt","hash":null}', "'..'"),
    "artifact-absolute": ('{"path":"/etc/passwd","hash":null}', "absolute"),
    "artifact-git": ('{"path":".git/hooks/pre-commit","hash":null}', "managed by git"),
    "artifact-mlops": ('{"path":"x/.MLOPS/config","hash":null}', "managed by git or mlops"),
    "artifact-nul": ('{"path":"a/\\u0000/b","hash":null}', "may not contain"),
    "artifact-empty": ('{"path":"a//b","hash":null}', "may not be empty"),
    "artifact-hash": ('{"path":"ok.txt","hash":"../../../../etc/passwd"}', "not an object hash"),
    "stage-out": (None, "'outs': 'path'"),
}

UNREADABLE = {
    "nesting-beyond-the-parser": b"[" * 200_000,
    "number-too-long": b'{"format": 1, "run": {"pid": ' + b"9" * 10_000 + b"}}",
    "not-utf8": b"\xff\xfe not utf-8",
    "empty": b"",
    "null": b"null",
    "too-big-a-format": b'{"format": 2}',
}


def test_crafted_bundles_are_skipped(hostile_remote, guard, repo, cli) -> None:
    plant(hostile_remote, GOOD, bundle(GOOD))
    refused = {}
    for number, (field, value, reason) in enumerate(CRAFTED.values()):
        plant(hostile_remote, _id(number), _set(bundle(_id(number)), field, value))
        refused[_id(number)] = reason
    proc = pull(repo, cli)
    guard.check()
    assert_refused(repo, proc, refused)
    assert_listing_works(cli)


def test_paths_escaping_the_run_are_refused(hostile_remote, guard, repo, cli) -> None:
    plant(hostile_remote, GOOD, bundle(GOOD))
    refused = {}
    for number, (line, reason) in enumerate(ESCAPING.values()):
        bad = bundle(_id(number))
        if line is None:
            stage = {"stage": "train", "status": "ran", "outs": [{"path": "../../../outside", "hash": None}]}
            bad["files"]["stages.jsonl"] = json.dumps(stage)
        else:
            bad["files"]["artifacts.jsonl"] = line + "\n"
        plant(hostile_remote, _id(number), bad)
        refused[_id(number)] = reason
    proc = pull(repo, cli)
    guard.check()
    assert_refused(repo, proc, refused)


def test_unreadable_bundles_are_skipped(hostile_remote, guard, repo, cli) -> None:
    plant(hostile_remote, GOOD, bundle(GOOD))
    refused = {}
    for number, data in enumerate(UNREADABLE.values()):
        plant(hostile_remote, _id(number), data)
        refused[_id(number)] = ""
    proc = pull(repo, cli)
    guard.check()
    assert_refused(repo, proc, refused)


def test_an_iso_time_is_taken_as_a_number(hostile_remote, guard, repo, mlops_bin) -> None:
    plant(hostile_remote, GOOD, bundle(GOOD, start_time="2026-01-01T00:00:00Z"))
    proc = mlops_bin("pull", "--runs", cwd=repo.root)
    assert "pulled 1 run(s)" in proc.stdout and "warning" not in proc.stderr.lower()
    assert store.load_run(repo, GOOD).info["start_time"] == 1767225600.0
    guard.check()


PATH_IDS = [".git", ".mlops", "-rf", "x" * 200, "a b", "sub/dir"]
PATH_IDS_S3 = ["..", "../../../victim", "sub/../../x", "..\\..\\x"]  # a folder remote resolves '..' itself


def test_a_run_id_that_is_a_path_is_refused(hostile_remote, guard, repo, cli) -> None:
    plant(hostile_remote, GOOD, bundle(GOOD))
    ids = PATH_IDS + (PATH_IDS_S3 if hostile_remote.kind == "s3" else [])
    for ref_id in ids:
        plant(hostile_remote, ref_id, bundle(ref_id))
    proc = pull(repo, cli)
    guard.check()
    assert proc.returncode == 0 and "pulled 1 run(s)" in proc.stdout
    # a name that is not even a ref name (a space) is dropped by the remote's listing itself;
    # every other one is named in a warning
    from mlops.remotes.base import is_ref_name

    listed = [i for i in ids if is_ref_name(f"runs/{i}.json")]
    assert proc.stderr.count("does not name a run; skipped") == len(listed), proc.stderr
    assert all(f"runs/{i[:20]}" in proc.stderr for i in listed)
    assert sorted(p.name for p in store.runs_dir(repo).iterdir() if not p.name.startswith(".")) == [GOOD, "index.jsonl"]


def test_a_symlinked_runs_folder_is_never_written_through(hostile_remote, guard, repo, mlops_bin, tmp_path) -> None:
    elsewhere = tmp_path / "sentinel"
    runs = store.runs_dir(repo)
    if runs.exists():
        for entry in runs.iterdir():
            entry.unlink()
        runs.rmdir()
    runs.symlink_to(elsewhere, target_is_directory=True)
    plant(hostile_remote, GOOD, bundle(GOOD))
    proc = mlops_bin("pull", "--runs", cwd=repo.root, code=3)
    assert "symlink" in proc.stderr and "Traceback" not in proc.stderr
    assert not (elsewhere / GOOD).exists()
    guard.check()


def test_runs_list_survives_a_bad_local_run_folder(repo, mlops_bin, guard) -> None:
    good = store.create_run(repo, name="fine")["id"]
    store.log_metrics(repo, good, {"loss": 0.5}, step=1)
    store.finish_run(repo, good)
    runs = store.runs_dir(repo)
    for run_id, content in {
        "20260101-000000-0000text": '{"id": "x", "status": "finished", "start_time": "tomorrow"}',
        "20260101-000000-00000arr": "[1, 2, 3]",
        "20260101-000000-000000nn": "{" * 100_000,
    }.items():
        (runs / run_id).mkdir()
        (runs / run_id / "run.json").write_text(content)
    # a line of the wrong shape among good ones is skipped, as a torn line is
    with open(runs / good / "metrics.jsonl", "a") as handle:
        handle.write('{"key": "loss", "value": "NaN?", "step": "x", "timestamp": "soon"}\n')
        handle.write("[" * 100_000 + "\n")
        handle.write('{"key": "loss", "value": ' + "9" * 5_000 + "}\n")
    with open(runs / store.INDEX_FILE, "a") as handle:
        handle.write("{" * 100_000 + "\n")
    proc = mlops_bin("runs", "list", cwd=repo.root)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert good in proc.stdout
    for bad in ("0000text", "00000arr", "000000nn"):
        assert f"run 20260101-000000-{bad}:" in proc.stderr
    listed = json.loads(mlops_bin("runs", "list", "--json", cwd=repo.root).stdout)["runs"]
    assert [r["id"] for r in listed] == [good] and listed[0]["metrics"] == {"loss": 0.5}
    mlops_bin("runs", "show", good, cwd=repo.root)


def test_a_bad_index_line_falls_back_to_the_run_files(repo, mlops_bin) -> None:
    good = store.create_run(repo, name="fine")["id"]
    store.finish_run(repo, good)
    index = store.runs_dir(repo) / store.INDEX_FILE
    with open(index, "a") as handle:
        handle.write(json.dumps({"id": good, "status": "finished", "start_time": "x", "metrics": []}) + "\n")
    listed = json.loads(mlops_bin("runs", "list", "--json", cwd=repo.root).stdout)["runs"]
    assert [r["id"] for r in listed] == [good] and isinstance(listed[0]["start_time"], float)


def test_the_guard_would_see_an_escape(hostile_remote, guard, tmp_path: Path) -> None:
    """The instrument itself: a write beside the repository is seen."""
    (tmp_path / "victim.txt").write_text("overwritten")
    with pytest.raises(AssertionError):
        guard.check()
    guard.take()
