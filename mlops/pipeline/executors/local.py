"""The local executor: a stage's command as a subprocess in the workspace (what `mlops run` always did).

Stages never outlive the run (docs/security.md):
- each stage's command runs in a process group of its own; when its main process ends,
  whatever it left running in that group is killed, so nothing keeps writing an output
  after it was recorded;
- ``stop_all`` (the scheduler calls it on Ctrl-C, SIGTERM, SIGHUP) sends SIGTERM to every
  running stage's group, SIGKILL after a grace period;
- if the process running the stages dies without a chance to clean up (SIGKILL, OOM), a
  watcher inside each stage's group sees the run's lifeline pipe close and kills the group
  at once (see ``_STAGE_WRAPPER``);
- the flocks on a stage's outputs (``StageJob.locks``) are inherited by the stage's processes,
  so a process that escaped all of the above still holds them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import StageJob, StageOutcome

if TYPE_CHECKING:
    from ...repo.repo import Repo

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a stage's process group
OUTPUT_DRAIN = 2.0  # seconds to collect a finished command's last output lines
SHELL = "/bin/sh"  # what subprocess's shell=True runs on POSIX

# Every stage command runs under this POSIX sh wrapper ($1: the command, $2: the number of the
# lifeline's read end). It first starts a watcher in the stage's process group, orphaned by the
# double fork so that the command's shell never has it as a child (a bare `wait` or os.wait()
# in the command is unaffected). The watcher ignores the stop signals and blocks reading the
# lifeline, a pipe whose write end only the process running the stages holds (close-on-exec,
# never passed on): the read returns, at end of file, exactly when that process has ended,
# however it ended (SIGKILL included), and the watcher then kills its whole group. Without
# /dev/fd it leaves at once and changes nothing. Then the wrapper execs the command.
# Why not prctl(PR_SET_PDEATHSIG): it fires when the *thread* that started the child ends
# (stages start from pool threads), needs preexec_fn (unsafe with threads) and reaches only the
# direct child, not what the command starts. A Python supervisor per stage costs ~30 ms of
# start-up on this class of machine; the wrapper costs one fork and one exec of sh more than
# shell=True: about 2 ms per stage, measured.
_STAGE_WRAPPER = (
    "( ( trap '' INT TERM HUP; [ -r /dev/fd/$2 ] || exit 0; read _ < /dev/fd/$2; kill -KILL 0 ) & ); "
    'exec /bin/sh -c "$1"'
)


@dataclass
class _Running:
    """A stage's command while it runs; its process group id is the leader's pid."""

    proc: subprocess.Popen[bytes]
    exited: threading.Event = field(default_factory=threading.Event)  # the leader ended (not yet reaped)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class LocalExecutor:
    """Stage commands as subprocesses of this process, in the workspace."""

    name = "local"

    def __init__(self) -> None:
        # the lifeline: both ends close-on-exec; only the read end is passed on, to each stage's watcher
        self._lifeline_read, self._lifeline_write = os.pipe()
        # ``mutex`` also guards signalling a stage's group against reaping its leader: a group is
        # signalled only while its leader is unreaped (running or a zombie), so its id cannot have
        # been handed to another process group meanwhile
        self._mutex = threading.Lock()
        self._processes: dict[str, _Running] = {}

    def run(self, repo: Repo, job: StageJob, stopping: threading.Event) -> StageOutcome:
        code = self._run_command(repo, job, stopping)
        if code == 0:
            return StageOutcome(0)
        if code < 0:
            return StageOutcome(code, f"command was killed by {signal_name(-code)}")
        return StageOutcome(code, f"command exited with code {code}")

    def _run_command(self, repo: Repo, job: StageJob, stopping: threading.Event) -> int:
        stage = job.stage
        env = {
            **os.environ,
            **stage.env_values,  # declared in pipeline.yaml: they are in the stage's key
            "MLOPS_STAGE": stage.name,
            "MLOPS_RUN_ID": job.run_id,
            "MLOPS_ROOT": str(repo.root),
            "PYTHONUNBUFFERED": "1",
        }
        if stopping.is_set():
            return -signal.SIGINT
        proc = subprocess.Popen(
            [SHELL, "-c", _STAGE_WRAPPER, "mlops-stage", stage.cmd_text, str(self._lifeline_read)],
            cwd=repo.root / stage.wdir if stage.wdir else repo.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C stops the whole tree, and only through us
            pass_fds=(self._lifeline_read, *job.locks),
        )
        running = _Running(proc)
        with self._mutex:
            self._processes[stage.name] = running
        if stopping.is_set():  # a stop came while it started: stop_all may have missed it
            self._signal_group(running, signal.SIGTERM)
            late_kill = threading.Timer(KILL_GRACE, self._signal_group, (running, signal.SIGKILL))
            late_kill.daemon = True
            late_kill.start()

        def pump() -> None:
            assert proc.stdout is not None
            with proc.stdout:  # closed by the reader at end of output: never under a read in progress
                for raw in iter(proc.stdout.readline, b""):
                    job.output(raw.decode("utf-8", "replace").rstrip("\n"))

        reader = threading.Thread(target=pump, name=f"output-{stage.name}", daemon=True)
        reader.start()
        try:
            _wait_unreaped(proc)
            running.exited.set()
            with self._mutex:
                # whatever the command left in its group (background jobs, the watcher) ends with it;
                # its leader is a zombie until reaped just after, so the group id is still its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            reader.join(timeout=OUTPUT_DRAIN)
            return code
        finally:
            with self._mutex:
                self._processes.pop(stage.name, None)

    def _signal_group(self, running: _Running, signum: int) -> None:
        """Send ``signum`` to a stage's process group while its leader is not yet reaped."""
        with self._mutex:
            if running.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(running.proc.pid, signum)

    def stop_all(self) -> None:
        """SIGTERM to every running stage's group; SIGKILL to those whose command has not ended after the grace.

        Returns when every stage command has ended (its thread then kills what is left of its
        group, ``_run_command``). A stage that was starting as the stop came is caught too.
        """
        deadline = time.monotonic() + KILL_GRACE
        signalled: set[int] = set()
        while True:
            with self._mutex:
                running = [item for item in self._processes.values() if not item.exited.is_set()]
            if not running:
                return
            late = time.monotonic() >= deadline
            for item in running:
                if late or id(item) not in signalled:
                    signalled.add(id(item))
                    self._signal_group(item, signal.SIGKILL if late else signal.SIGTERM)
            running[0].exited.wait(timeout=0.05)

    def close(self) -> None:
        for fd in (self._lifeline_write, self._lifeline_read):
            with contextlib.suppress(OSError):
                os.close(fd)


def _wait_unreaped(proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``proc`` ends, leaving it a zombie (its pid and group id stay reserved) where the OS allows."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - macOS: reaped here, the group killed just after
        proc.wait()
        return
    while True:
        try:
            waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            return
        except InterruptedError:  # pragma: no cover - retried by Python itself since PEP 475
            continue
        except ChildProcessError:  # already reaped
            return
