"""Where a stage's command runs: one small interface between `mlops run`'s scheduler and an engine.

The scheduler (``pipeline/executor.py``) keeps everything that makes `mlops run` what it is: the
plan and the out-of-date rule, the local run-cache restore, the per-output locks, events,
fail fast / keep going, Ctrl-C, and the one writer of pipeline.lock and the run record. It asks
an executor only to RUN a stage that must run, and to stop every stage it is running:

- ``local`` (executors/local.py): the command as a subprocess in the workspace, today's way;
  the outputs are left in the workspace and the scheduler snapshots them;
- ``ray`` (executors/ray.py): a warm Ray actor (a stage runner) calling ``exec_stage``, which returns a
  manifest of hashes; the outputs come back through the object cache / remote and the
  scheduler restores them into the workspace before recording.

An executor is used from the scheduler's worker threads (``run`` concurrently, one call per
stage) and from its main thread (``stop_all`` on Ctrl-C, ``close`` at the end).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ...errors import UsageError

if TYPE_CHECKING:
    from ...repo.repo import Repo
    from ..lock import LockedPath
    from ..spec import Stage

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class StageJob:
    """One stage that must run, as the scheduler hands it to an executor."""

    stage: Stage
    run_id: str
    key: str  # the stage's run key, as the scheduler computed it from the workspace
    cacheable: bool  # false for always_changed / persist stages: no run-cache entry may be written for them
    locks: tuple[int, ...]  # descriptors of the output locks, handed to a local command so they outlive nothing
    upstream: tuple[tuple[str, tuple[LockedPath, ...]], ...] = ()  # (stage, outputs) of stages it needs
    output: Callable[[str], None] = lambda line: None  # one line of the stage's output
    force: bool = False  # run even when the key is in a run cache (a remote executor's shared one included)


@dataclass(frozen=True)
class StageOutcome:
    """What running a stage gave.

    ``outs`` None: the outputs are in the workspace for the scheduler to snapshot (local).
    ``outs`` given: the outputs as hashes (a remote executor); the scheduler restores them.
    ``status``: "ran" (the command ran), "restored" (the shared run cache had the key: nothing
    ran) or "adopted" (it ran, but another machine's entry for the key won; its outs are given).
    """

    returncode: int | None
    error: str = ""
    outs: tuple[LockedPath, ...] | None = None
    status: str = "ran"
    run_id: str | None = None  # the run that produced ``outs`` when not this one
    recorded: bool = False  # the executor already wrote the run-cache entry (shared run cache)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.error


class StageExecutor(Protocol):
    name: str

    def run(self, repo: Repo, job: StageJob, stopping: threading.Event) -> StageOutcome:
        """Run ``job`` to its end; return a failed outcome (never raise) for a command that failed."""
        ...

    def stop_all(self) -> None:
        """Stop every stage this executor is running; return when they have ended."""
        ...

    def close(self) -> None:
        """Release what the executor holds (pipes, a cluster connection)."""
        ...


@dataclass(frozen=True)
class ExecutorOptions:
    """How to reach an engine: ``address`` (Ray: ``ray://host:10001`` or ``host:port``; default a local
    cluster), ``remote`` (the mlops remote stage outputs travel through), ``allow_dirty``."""

    address: str | None = None
    remote: str | None = None
    allow_dirty: bool = False


def check_executor_name(name: str) -> str:
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor '{name}'", hint=f"choose one of: {', '.join(EXECUTORS)}")
    return name
