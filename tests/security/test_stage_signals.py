"""Stages never outlive `mlops run`: SIGTERM, SIGHUP and SIGKILL of a real run with running stages.

Each stage is a shell that records its pid (the leader of its process group), starts a
background grandchild (`sleep 60 &`), writes a partial output and waits for a release file.
After the signal, every process of every stage group must be gone (a bounded poll, never a
tight time), nothing may be recorded for the stopped stages, and the next run must finish
with whole outputs. A process that escaped its group (setsid) and keeps writing an output
still holds that output's lock: the next run refuses, naming it, and records nothing.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.repo.repo import Repo

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))


def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (a zombie waiting to be reaped runs nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    # only zombies left, not yet reaped by whoever adopted them
    return Path("/proc").is_dir() and not live_members(pgid)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class LiveRun:
    """A real `mlops run` whose output lines are collected as they come."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [MLOPS_BIN, "run", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            into.append(line.rstrip("\n"))

    def wait_line(self, text: str) -> None:
        wait_for(lambda: text in self.out or self.proc.poll() is not None, f"line {text!r}")
        assert text in self.out, "\n".join(self.out + self.err)

    def finish(self) -> int:
        code = self.proc.wait(timeout=60)
        for thread in self.threads:
            thread.join(timeout=10)
        return code

    def text(self) -> str:
        return "\n".join(self.out + self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stage_cmd(tmp: Path, name: str, release: Path, *, extra: str = "") -> str:
    q = shlex.quote
    return (
        f"echo $$ > {q(str(tmp / f'{name}.pid'))}; "
        f"sleep 60 & echo $! > {q(str(tmp / f'{name}.bg'))}; "
        f"{extra}"
        f"echo partial > {name}.txt; echo ready-{name}; "
        f"while [ ! -e {q(str(release))} ]; do sleep 0.05; done; "
        f"echo whole > {name}.txt"
    )


def write_pipeline(root: Path, stages: dict[str, Any]) -> None:
    (root / "pipeline.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False, width=1000))


def lock_stages(root: Path) -> dict[str, Any]:
    path = root / "pipeline.lock"
    return (yaml.safe_load(path.read_text()) or {}).get("stages") or {} if path.exists() else {}


def runcache_entries(root: Path) -> list[Path]:
    return sorted((root / ".mlops" / "runcache").glob("*/*.json"))


@pytest.fixture
def two_stages(repo: Repo, tmp_path: Path) -> tuple[Path, Path]:
    release = tmp_path / "release"
    write_pipeline(
        repo.root,
        {name: {"cmd": stage_cmd(tmp_path, name, release), "outs": [f"{name}.txt"]} for name in ("one", "two")},
    )
    return tmp_path, release


def _groups_of(tmp: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Each stage's process group, from the pid its shell recorded; checked to hold its grandchild too."""
    groups = {}
    for name in names:
        leader = int((tmp / f"{name}.pid").read_text())
        wait_for(lambda n=name: (tmp / f"{n}.bg").exists(), "the background grandchild's pid")
        grandchild = int((tmp / f"{name}.bg").read_text())
        groups[name] = os.getpgid(leader)
        assert os.getpgid(grandchild) == groups[name]
    return groups


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGKILL, -signal.SIGKILL)]
)
def test_signal_stops_every_stage_group_and_records_nothing(
    repo: Repo, two_stages: tuple[Path, Path], signum: int, code: int
) -> None:
    tmp, release = two_stages
    run = LiveRun(repo.root, "-j", "2")
    try:
        run.wait_line("[one] ready-one")
        run.wait_line("[two] ready-two")
        groups = _groups_of(tmp, ("one", "two"))
        assert os.getpgid(run.proc.pid) not in groups.values()
        assert all(live_members(g) for g in groups.values())
        run.proc.send_signal(signum)
        assert run.finish() == code, run.text()
    finally:
        run.kill()
    for name, pgid in groups.items():
        wait_for(lambda g=pgid: group_gone(g), f"stage {name}'s process group to end")
    if signum != signal.SIGKILL:
        assert "Traceback" not in run.text() and "internal error" not in run.text()
        errors = [line for line in run.err if line.startswith("error: ")]
        name = signal.Signals(signum).name
        assert errors == [f"error: stopped by {name}: running stages were stopped and recorded nothing"]
    # nothing partial recorded: no lock entry, no run-cache entry, the partial outputs not taken in
    assert lock_stages(repo.root) == {}
    assert runcache_entries(repo.root) == []
    assert (repo.root / "one.txt").read_text() == "partial\n"

    # the next run completes, whole; and the grandchild each stage left behind ends with its stage
    release.write_text("")
    for name in ("one", "two"):
        (tmp / f"{name}.bg").unlink()
    proc = subprocess.run([MLOPS_BIN, "run"], cwd=repo.root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo.root / "one.txt").read_text() == "whole\n" and (repo.root / "two.txt").read_text() == "whole\n"
    assert set(lock_stages(repo.root)) == {"one", "two"}
    assert len(runcache_entries(repo.root)) == 2
    for name in ("one", "two"):
        grandchild = int((tmp / f"{name}.bg").read_text())
        wait_for(lambda p=grandchild: not pid_alive(p), f"the grandchild {name} left after its command ended")


def test_a_stage_that_exits_zero_on_sigterm_records_nothing(repo: Repo, tmp_path: Path) -> None:
    """A command that catches SIGTERM and exits 0 may have written half an output: still nothing recorded."""
    release = tmp_path / "release"
    cmd = stage_cmd(tmp_path, "one", release).replace("echo $$", "trap 'exit 0' TERM; echo $$", 1)
    write_pipeline(repo.root, {"one": {"cmd": cmd, "outs": ["one.txt"]}})
    run = LiveRun(repo.root)
    try:
        run.wait_line("[one] ready-one")
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 143, run.text()
    finally:
        run.kill()
    assert "interrupted one: interrupted" in run.out
    assert lock_stages(repo.root) == {} and runcache_entries(repo.root) == []


def test_a_leftover_writer_keeps_the_output_locked(repo: Repo, tmp_path: Path) -> None:
    """A process that left its stage's group (setsid) survives even SIGKILL of the run's watcher;
    it still holds the output's lock, so the next run refuses that stage instead of recording it."""
    release = tmp_path / "release"
    spawn = tmp_path / "spawn-writer"
    spawn.write_text("")
    writer_pid = tmp_path / "writer.pid"
    q = shlex.quote
    escape = (
        f"if [ -e {q(str(spawn))} ]; then "
        f"setsid sh -c 'while :; do echo more >> one.txt; sleep 0.05; done' >/dev/null 2>&1 & "
        f"echo $! > {q(str(writer_pid))}; fi; "
    )
    write_pipeline(repo.root, {"one": {"cmd": stage_cmd(tmp_path, "one", release, extra=escape), "outs": ["one.txt"]}})
    run = LiveRun(repo.root)
    writer = None
    try:
        run.wait_line("[one] ready-one")
        wait_for(writer_pid.exists, "the writer's pid")
        writer = int(writer_pid.read_text())
        group = os.getpgid(int((tmp_path / "one.pid").read_text()))
        # it escapes the stage's group once setsid has run: $! names it from the fork on
        wait_for(lambda: os.getpgid(writer) != group, "the writer to leave the stage's group")
        run.proc.kill()
        assert run.finish() == -signal.SIGKILL
        wait_for(lambda: group_gone(group), "the stage's group to end")
        assert pid_alive(writer)

        spawn.unlink()
        release.write_text("")
        proc = subprocess.run(
            [MLOPS_BIN, "run"],
            cwd=repo.root,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MLOPS_LOCK_TIMEOUT": "1"},
        )
        assert proc.returncode == 3, proc.stdout + proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"output one.txt is still held by process {writer}" in errors[0], errors[0]
        assert lock_stages(repo.root) == {} and runcache_entries(repo.root) == []
    finally:
        run.kill()
        if writer is not None:
            with_suppress_kill(writer)
    wait_for(lambda: not pid_alive(writer), "the writer to end")
    proc = subprocess.run([MLOPS_BIN, "run"], cwd=repo.root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo.root / "one.txt").read_text() == "whole\n"
    assert set(lock_stages(repo.root)) == {"one"}


def with_suppress_kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_handlers_only_while_stages_run(repo: Repo, tmp_path: Path) -> None:
    """The core installs no handler at import; a Python caller of run_pipeline gets its own back."""
    probe = (
        "import signal, mlops.pipeline.executor, mlops.cli.pipeline\n"
        "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, signal.getsignal(signal.SIGHUP) == signal.SIG_DFL)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]

    from mlops.pipeline.executor import run_pipeline

    write_pipeline(repo.root, {"one": {"cmd": "echo whole > one.txt", "outs": ["one.txt"]}})
    mine = lambda signum, frame: None  # noqa: E731
    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run_pipeline(repo)
        assert result.ok and [s.status for s in result.stages] == ["ran"]
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGHUP) is mine
        result = run_pipeline(repo, force=True, stop_signals=(signal.SIGINT, signal.SIGTERM))
        assert result.ok and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
