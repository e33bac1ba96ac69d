"""`mlops run` on a real terminal (a pseudo-terminal): the live view must not stop the run."""

from __future__ import annotations

import os
import pty
import subprocess

import pytest
from pipekit import MLOPS_BIN, counts, statuses


def run_in_pty(*args: str, cwd, timeout: float = 60) -> tuple[int, str]:
    """Run mlops with stdin/stdout/stderr on a pseudo-terminal; returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TERM"] = "xterm"
    env["COLUMNS"] = "120"
    proc = subprocess.Popen([MLOPS_BIN, *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def small(proj):
    proj.pipeline(
        {
            "one": {"cmd": proj.cmd(f"count:{proj.counter}", "print:hello", "write:one.txt=1"), "outs": ["one.txt"]},
            "two": {
                "cmd": proj.cmd(f"count:{proj.counter}", "copy:one.txt=two.txt"),
                "deps": ["one.txt"],
                "outs": ["two.txt"],
            },
        }
    )
    return proj


def test_dry_run_status_and_dag_on_a_terminal(small):
    code, out = run_in_pty("run", "--dry-run", cwd=small.root)
    assert code == 0 and "would run" in out and "one" in out, out
    code, out = run_in_pty("status", cwd=small.root)
    assert code == 0 and "never run" in out, out
    code, out = run_in_pty("dag", cwd=small.root)
    assert code == 0 and "two  <- one" in out, out
    assert counts(small.counter) == []


def test_run_on_a_terminal(small):
    code, out = run_in_pty("run", cwd=small.root)
    assert "internal error" not in out, out
    assert code == 0, out
    assert counts(small.counter) == ["one", "two"]
    assert statuses(small.dry()) == {"one": "skipped", "two": "skipped"}
