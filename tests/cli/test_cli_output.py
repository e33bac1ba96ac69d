"""Output manners of the real console script: one JSON document with --json, plain text and no ANSI
escapes when piped, no progress in CI or with -q (checked on a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest
from datakit import ANSI, MLOPS_BIN, cache_objects, commit_all, corrupt_object, git, mlops, xxh

COLOUR_ENV = {"NO_COLOR": None, "CI": None, "TERM": "xterm-256color", "FORCE_COLOR": "1", "CLICOLOR_FORCE": "1"}


def _json(*args: str, cwd: Path, code: int = 0, env=None):
    proc = mlops(*args, "--json", cwd=cwd, code=code, env=env)
    doc = json.loads(proc.stdout)  # the whole of stdout is exactly one document
    assert proc.stdout.strip().startswith("{") and proc.stdout.strip().endswith("}")
    return doc, proc


def test_every_reporting_command_as_subprocess_with_json(tmp_path, remote_dir):
    """init, add, status, checkout, diff, push, fetch, pull, gc, verify, remote add/list: real processes."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    proc = mlops("init", cwd=root)
    assert proc.stdout == "" and "initialised mlops" in proc.stderr
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("a\n")
    (root / "data" / "sub" / "b.txt").write_text("b\n")
    (root / "model.bin").write_bytes(b"m" * 100)

    doc, _ = _json("add", "data", "model.bin", cwd=root)
    assert [(t["path"], t["kind"], t["changed"]) for t in doc["added"]] == [
        ("data", "dir", True),
        ("model.bin", "file", True),
    ]
    doc, _ = _json("status", cwd=root)
    assert doc["clean"] is True and doc["targets"] == [
        {"path": "data", "kind": "dir", "state": "unchanged", "in_cache": True},
        {"path": "model.bin", "kind": "file", "state": "unchanged", "in_cache": True},
    ]
    proc = mlops("remote", "add", "store", str(remote_dir), "--default", cwd=root)
    assert proc.stdout == ""
    doc, _ = _json("remote", "list", cwd=root)
    assert doc == {"remotes": [{"name": "store", "url": str(remote_dir), "default": True}]}
    commit_all(root, "v1")

    (root / "data" / "a.txt").write_text("a2\n")
    doc, _ = _json("status", "--check", cwd=root, code=1)  # a check that found something: still one document
    assert doc["clean"] is False and doc["targets"][0]["modified"] == ["a.txt"]
    doc, _ = _json("diff", cwd=root)
    assert [(c["change"], c["path"]) for c in doc["changes"]] == [("modified", "data/a.txt")]
    mlops("add", "data", cwd=root)
    commit_all(root, "v2")
    doc, _ = _json("diff", "HEAD~1", "HEAD", cwd=root)
    assert doc["changes"][0]["path"] == "data/a.txt"

    doc, _ = _json("push", cwd=root)
    assert doc["direction"] == "push" and doc["transferred"] == 5  # a2, b, model, two manifests (not v1)
    (root / "data" / "sub" / "b.txt").unlink()
    doc, _ = _json("checkout", cwd=root)
    assert doc["changed_files"] == 1 and doc["targets"][0]["placed"] == 1

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    doc, _ = _json("fetch", cwd=clone)
    assert doc["direction"] == "fetch" and doc["transferred"] > 0
    doc, _ = _json("pull", cwd=clone)
    assert doc["transferred"] == 0 and doc["checkout"]["changed_files"] == 3

    doc, _ = _json("gc", "--dry-run", cwd=root)
    assert doc["dry_run"] is True and doc["removed"] > 0
    doc, _ = _json("gc", cwd=root)
    assert doc["removed"] > 0
    doc, _ = _json("verify", cwd=root)
    assert doc["ok"] is True and doc["corrupt"] == []


@pytest.fixture
def project(repo, cli, tree):
    tree({"data/a.txt": "a\n", "data/b.txt": "b\n", "single.txt": "s\n"})
    cli("add", "data", "single.txt")
    return repo.root


def test_json_on_failures_is_still_one_document(project):
    corrupt_object(cache_objects(project)[xxh(b"b\n")])
    doc, proc = _json("verify", cwd=project, code=1)
    assert doc["ok"] is False and doc["corrupt"][0]["hash"] == xxh(b"b\n")
    assert "error:" in proc.stderr  # the message still goes to stderr
    doc, _ = _json("push", cwd=project, code=2)
    assert doc["error"] == "config" and doc["exit_code"] == 2 and "remote" in doc["message"]
    doc, _ = _json("status", "nothing-here", cwd=project, code=2)
    assert doc["error"] == "invalid_path"
    os.unlink(project / "data" / "b.txt")
    doc, _ = _json("checkout", cwd=project, code=3)
    assert doc["error"] == "corrupt_object" and doc["object"] == xxh(b"b\n")


def test_piped_output_is_plain_even_when_colour_is_forced(project, remote_dir):
    (project / "data" / "a.txt").write_text("changed\n")
    cases = [
        (["status"], 0),
        (["status", "--check"], 1),
        (["add", "data"], 0),
        (["verify"], 0),
        (["remote", "add", "store", str(remote_dir)], 0),
        (["remote", "list"], 0),
        (["push"], 2),
        (["push", "-r", "store"], 0),
        (["gc"], 0),
        (["checkout"], 0),
        (["diff"], 2),
        (["add", "nope"], 2),
    ]
    for args, code in cases:
        proc = mlops(*args, cwd=project, code=code, env=COLOUR_ENV)  # mlops() asserts: no ANSI, no traceback
        assert not ANSI.search(proc.stdout + proc.stderr)
        assert "━" not in proc.stderr  # no progress bar


def test_stdout_carries_results_stderr_the_rest(project):
    (project / "data" / "a.txt").write_text("changed\n")
    proc = mlops("add", "data", cwd=project)
    assert proc.stdout.splitlines() == ["added\tdata\t(2 files, 10 B)"]
    assert "git add data.mlops" in proc.stderr
    proc = mlops("status", cwd=project)
    assert proc.stdout == "" and "up to date" in proc.stderr
    proc = mlops("-q", "status", cwd=project)
    assert proc.stdout == "" and proc.stderr == ""


def _run_on_terminal(args: list[str], cwd: Path, env: dict[str, str | None]) -> tuple[int, str]:
    """Run with stdin/stdout/stderr on a real pseudo-terminal; returns (exit code, everything written)."""
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [MLOPS_BIN, *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=full_env, close_fds=True
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        proc.wait(timeout=60)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", errors="replace")


TERMINAL = {"NO_COLOR": None, "CI": None, "TERM": "xterm-256color", "COLUMNS": "100"}


@pytest.fixture
def many(repo):
    folder = repo.root / "many"
    folder.mkdir()
    for i in range(400):
        (folder / f"f{i}.txt").write_text(f"{i}\n")
    return repo.root


def test_terminal_shows_progress_but_ci_and_quiet_do_not(many):
    # control: on a terminal, outside CI, the add draws a progress bar (cursor hidden, bar glyphs)
    code, out = _run_on_terminal(["add", "many"], many, TERMINAL)
    assert code == 0, out
    assert "\x1b[?25l" in out or "━" in out, repr(out[:300])
    assert "added\tmany" in out

    for i in range(400):
        (many / "many" / f"f{i}.txt").write_text(f"changed {i}\n")
    code, out = _run_on_terminal(["add", "many"], many, {**TERMINAL, "CI": "true"})
    assert code == 0, out
    assert "━" not in out and "\x1b[?25l" not in out, repr(out[:300])
    assert "added\tmany" in out

    for i in range(400):
        (many / "many" / f"f{i}.txt").write_text(f"again {i}\n")
    code, out = _run_on_terminal(["-q", "add", "many"], many, TERMINAL)
    assert code == 0, out
    assert "━" not in out and "\x1b[?25l" not in out, repr(out[:300])


def test_ci_output_is_plain_on_a_terminal(many):
    code, out = _run_on_terminal(["add", "many"], many, {**TERMINAL, "CI": "true"})
    assert code == 0
    code, out = _run_on_terminal(["status"], many, {**TERMINAL, "CI": "true"})
    assert code == 0 and not ANSI.search(out), repr(out)
    (many / "many" / "f1.txt").write_text("x\n")
    code, out = _run_on_terminal(["status"], many, {**TERMINAL, "CI": "true"})
    assert "modified\tmany" in out and not ANSI.search(out), repr(out)
    code, out = _run_on_terminal(["add", "ghost"], many, {**TERMINAL, "CI": "true"})
    assert code == 2 and "error: ghost" in out and not ANSI.search(out), repr(out)


def test_json_on_a_terminal_is_still_one_document(many):
    code, out = _run_on_terminal(["status", "--json"], many, TERMINAL)
    assert code == 0
    doc = json.loads(out.replace("\r\n", "\n"))
    assert doc["clean"] is True and doc["targets"] == []
