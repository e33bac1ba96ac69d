"""`mlops exp run`: experiments, each in a workspace of its own, one at a time or many at once.

An experiment is the pipeline run in a private git worktree (``stage_exec.private_worktree``,
under ``.mlops/tmp/exec/``) of the commit the user works on: HEAD, or a snapshot commit of
HEAD plus the workspace's uncommitted tracked changes (``stage_exec.prepare_commit``, sent
nowhere). The worktree shares the clone's object store (its ``config.local.yaml``) and its run
cache (``.mlops/runcache`` is a link to the clone's), so a stage the workspace or another
experiment ran with the same inputs is restored, not run again. Only the params ``-S`` names
change, in the worktree's own params files; the user's workspace, params and outputs are never
written.

The pipeline runs as a real ``mlops run`` process in the worktree (its own stage locks, its own
signal handling). When it ends, the experiment is recorded: its run (copied into the clone's
runs), params, metrics, outputs by hash and the files ``exp apply`` writes back (params files,
pipeline.lock, outputs kept in git), each an object in the store. A failed experiment is recorded
as failed with its error; an interrupted one (Ctrl-C, SIGTERM) is not recorded at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..errors import CouldNotComplete, FormatError, Interrupted, MlopsError, UsageError
from ..formats import parse_json
from ..repo.repo import Repo
from . import store
from .params import apply_changes, split_label

TAIL_LINES = 20  # of a failed experiment's output, kept in its error
ERROR_LINE_CHARS = 500  # of `mlops run`'s own one-line error, when it stopped before any stage failed


@dataclass(frozen=True)
class Planned:
    name: str
    sweep: str
    changes: dict[str, Any]
    queued: Any = None  # store.Queued when it came from the queue


@dataclass(frozen=True)
class Outcome:
    """One experiment's end: ``recorded`` None when it was interrupted (nothing recorded)."""

    name: str
    sweep: str
    status: str  # succeeded | failed | interrupted | not run
    recorded: store.Experiment | None = None
    error: str = ""
    restored: tuple[str, ...] = ()  # stages restored from the run cache
    ran: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepResult:
    sweep: str
    outcomes: tuple[Outcome, ...]
    interrupted: bool = False
    warnings: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == store.FAILED]


class ExpEvents:
    """What a sweep reports as it goes; the default does nothing (the CLI prints)."""

    def started(self, name: str, changes: dict[str, Any]) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


def new_sweep_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def plan_names(repo: Repo, points: Sequence[dict[str, Any]], *, name: str | None, sweep: str | None) -> list[Planned]:
    """Names for each point: ``--name`` for a single experiment, ``NAME-1..N`` (or ``<sweep>-i``) for a grid."""
    sweep = store.check_name(sweep, what="sweep name") if sweep else (name or new_sweep_name())
    if name:
        store.check_name(name)
    if len(points) == 1:
        names = [name or f"exp-{secrets.token_hex(3)}"]
    else:
        names = [f"{name or sweep}-{index}" for index in range(1, len(points) + 1)]
    taken = set(store.iter_names(repo)) | {q.name for q in store.read_queue(repo)}
    clash = [n for n in names if n in taken]
    if clash:
        raise UsageError(f"experiment '{clash[0]}' exists already", hint="choose another --name, or 'mlops exp remove'")
    return [Planned(n, sweep, dict(point)) for n, point in zip(names, points, strict=True)]


def check_changes(repo: Repo, changes: dict[str, Any]) -> None:
    """A dry application in memory: unknown keys and files are refused before anything runs."""
    import copy

    from ..formats import parse_params, read_text
    from ..paths import check_readable
    from .params import _set

    for label, value in changes.items():
        file, key = split_label(label)
        path = check_readable(repo.root, file, where="a params file")
        if not path.is_file():
            raise UsageError(f"-S: params file {file} does not exist", hint="name a params file of the pipeline")
        _set(copy.deepcopy(parse_params(read_text(path, what="params file"), file, file)), key, value, file)


def run_experiments(
    repo: Repo,
    planned: Sequence[Planned],
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    events: ExpEvents | None = None,
    stages_jobs: int | None = None,
) -> SweepResult:
    """Run ``planned`` experiments, ``jobs`` at once; see the module's docstring.

    A failed experiment is recorded and the others go on (``fail_fast``: the ones not started
    are not run). KeyboardInterrupt (the CLI turns SIGTERM/SIGHUP into it) stops every running
    experiment's ``mlops run``, records none of them, and raises Interrupted once all have ended."""
    from ..pipeline.stage_exec import prepare_commit

    events = events or ExpEvents()
    if not planned:
        return SweepResult("", ())
    for plan in planned:
        check_changes(repo, plan.changes)
    base = _head(repo)
    commit = prepare_commit(repo, allow_dirty=True, send=False)
    cancel = threading.Event()
    running: dict[str, subprocess.Popen[bytes]] = {}
    mutex = threading.Lock()
    outcomes: dict[str, Outcome] = {}
    todo = deque(planned)
    futures: dict[Future[Outcome], Planned] = {}
    stop_starting = False
    interrupted = False
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="exp")

    def one(plan: Planned) -> Outcome:
        if cancel.is_set():
            return Outcome(plan.name, plan.sweep, "not run")
        events.started(plan.name, plan.changes)
        return _run_one(repo, plan, base, commit, cancel, running, mutex, stages_jobs)

    try:
        while todo or futures:
            while todo and len(futures) < max(1, jobs) and not stop_starting:
                plan = todo.popleft()
                futures[pool.submit(one, plan)] = plan
            if not futures:
                break
            done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                plan = futures.pop(future)
                try:
                    outcome = future.result()
                except MlopsError as exc:
                    outcome = Outcome(plan.name, plan.sweep, store.FAILED, error=exc.message)
                outcomes[plan.name] = outcome
                events.finished(outcome)
                if outcome.status == store.FAILED and fail_fast:
                    stop_starting = True
    except KeyboardInterrupt:
        interrupted = True
        cancel.set()
        with mutex:
            for proc in running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
        for future, plan in list(futures.items()):
            with contextlib.suppress(Exception):
                outcomes[plan.name] = future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    ordered = tuple(outcomes.get(p.name) or Outcome(p.name, p.sweep, "not run") for p in planned)
    if interrupted:
        kept = sum(1 for o in ordered if o.recorded is not None)
        raise Interrupted(
            f"experiments interrupted: {kept} recorded before the interrupt, "
            f"{len(ordered) - kept} stopped or not started and not recorded",
            recorded=[o.name for o in ordered if o.recorded is not None],
        )
    return SweepResult(planned[0].sweep, ordered)


def _head(repo: Repo) -> str:
    from ..pipeline.stage_exec import commit_of

    sha = commit_of(repo.root, "HEAD")
    if sha is None:
        raise UsageError("the repository has no commit yet", hint="commit the project: an experiment starts from HEAD")
    return sha


def _run_one(
    repo: Repo,
    plan: Planned,
    base: str,
    commit: str,
    cancel: threading.Event,
    running: dict[str, subprocess.Popen[bytes]],
    mutex: threading.Lock,
    stages_jobs: int | None,
) -> Outcome:
    from ..pipeline.stage_exec import private_worktree

    started = time.time()
    with repo.store_lock(), private_worktree(repo, commit) as work:
        _share_run_cache(repo, work)
        _place_data(work)
        written = apply_changes(work.root, plan.changes)
        code, report, tail = _mlops_run(work, plan.name, cancel, running, mutex, stages_jobs)
        if code in (130, 143, 129) or cancel.is_set() and code != 0:
            return Outcome(plan.name, plan.sweep, "interrupted")
        stages = {s.get("name", "?"): s.get("status", "?") for s in (report or {}).get("stages", [])}
        restored = tuple(n for n, s in stages.items() if s == "restored")
        ran = tuple(n for n, s in stages.items() if s == "ran")
        run_id = (report or {}).get("run_id")
        if run_id:
            from ..tracking.store import set_tags
            from ..tracking.sync import copy_run

            with contextlib.suppress(MlopsError, OSError):
                copy_run(work, repo, run_id)
                # the run says which experiment and sweep it is: `runs list --filter "tags.sweep == 'g'"`
                set_tags(repo, run_id, {"experiment": plan.name, "sweep": plan.sweep})
        if code != 0:
            failed = [s for s in (report or {}).get("stages", []) if s.get("status") == "failed"]
            why = failed[0].get("error") if failed and failed[0].get("error") else _run_error(code, tail)
            said = [line for line in tail if line.startswith("[")][-3:]  # the stage's own last words
            if said:
                why = f"{why}: {' / '.join(said)}"
            experiment = store.Experiment(
                name=plan.name,
                sweep=plan.sweep,
                status=store.FAILED,
                base=base,
                commit=commit,
                changes=plan.changes,
                run_id=run_id,
                stages=stages,
                created=started,
                seconds=time.time() - started,
                error=str(why)[:2000],
            )
            _record(repo, experiment, plan)
            return Outcome(plan.name, plan.sweep, store.FAILED, experiment, experiment.error, restored, ran)
        experiment = _collect(work, plan, base, commit, written, run_id, stages, started)
        _record(repo, experiment, plan)
        return Outcome(plan.name, plan.sweep, store.SUCCEEDED, experiment, "", restored, ran)


def _run_error(code: int, tail: list[str]) -> str:
    """Why `mlops run` failed when no stage says so (it stopped early: a pipeline.yaml error, a lock
    held): its one-line error, the last ``error:`` line of its stderr, bounded."""
    said = [line[len("error: ") :].strip() for line in tail if line.startswith("error: ")]
    why = f"mlops run exited with code {code}"
    if not said or not said[-1]:
        return why
    reason = said[-1]
    if len(reason) > ERROR_LINE_CHARS:
        reason = reason[: ERROR_LINE_CHARS - 3] + "..."
    return f"{why}: {reason}"


def _record(repo: Repo, experiment: store.Experiment, plan: Planned) -> None:
    with store.lock(repo):
        store.write(repo, experiment)
        if plan.queued is not None:
            with contextlib.suppress(OSError):
                plan.queued.path.unlink()


def _share_run_cache(repo: Repo, work: Repo) -> None:
    """The worktree's run cache is the clone's: what one experiment ran, the next restores."""
    shared = repo.dot / "runcache"
    shared.mkdir(parents=True, exist_ok=True)
    link = work.dot / "runcache"
    if not os.path.lexists(link):
        os.symlink(shared, link, target_is_directory=True)


def _place_data(work: Repo) -> None:
    """The tracked data the pointer files at the commit name, from the shared object store."""
    from ..data.checkout import checkout
    from ..data.snapshot import workspace_pointers

    if workspace_pointers(work):
        checkout(work, None, force=True)


def _mlops_run(
    work: Repo,
    name: str,
    cancel: threading.Event,
    running: dict[str, subprocess.Popen[bytes]],
    mutex: threading.Lock,
    stages_jobs: int | None,
) -> tuple[int, dict[str, Any] | None, list[str]]:
    """``mlops run --json`` in the worktree, in a process group of its own (stopped by us, not the terminal)."""
    log = work.tmp / "exp-run.log"
    argv = [sys.executable, "-m", "mlops", "run", "--json"]
    if stages_jobs:
        argv += ["--jobs", str(stages_jobs)]
    env = {**os.environ, "MLOPS_EXPERIMENT": name}
    env.pop("MLOPS_RUN_ID", None)  # a stage command starting experiments must not log into its own run
    with mutex:
        if cancel.is_set():
            return 130, None, []
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                argv, cwd=work.root, stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True
            )
        running[name] = proc
    try:
        out, _ = proc.communicate()
    finally:
        with mutex:
            running.pop(name, None)
    report: dict[str, Any] | None = None
    with contextlib.suppress(FormatError, ValueError):
        doc = parse_json(out[: 1 << 24], f"mlops run of experiment {name}")
        report = doc if isinstance(doc, dict) else None
    tail = log.read_bytes()[-20000:].decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
    return proc.returncode, report, tail


def _collect(
    work: Repo,
    plan: Planned,
    base: str,
    commit: str,
    written: list[str],
    run_id: str | None,
    stages: dict[str, str],
    started: float,
) -> store.Experiment:
    """What the experiment made: from its pipeline.lock (outputs, params) and its run (metrics)."""
    from ..pipeline.lock import LOCK_FILE, read_lock
    from ..pipeline.spec import load_pipeline
    from ..tracking import store as tracking

    entries = read_lock(work.root)
    pipeline = load_pipeline(work.root)
    params: dict[str, Any] = {}
    outs: dict[str, store.Output] = {}
    git_kept: set[str] = set()
    for stage_name, entry in entries.items():
        for file, values in entry.params.items():
            for key, value in tracking.flatten(values).items():
                params[key if file == "params.yaml" else f"{file}:{key}"] = value
        declared = pipeline.stages.get(stage_name)
        uncached = {o.path for o in declared.outs if not o.cache} if declared is not None else set()
        for item in entry.outs:
            if item.hash:
                outs[item.path] = store.Output(item.path, item.hash, item.kind, item.size, item.files)
                if item.path in uncached and item.kind == "file":
                    git_kept.add(item.path)
    metrics: dict[str, Any] = {}
    if run_id:
        with contextlib.suppress(MlopsError, OSError, ValueError):
            metrics = dict(tracking.load_run(work, run_id).metrics)
    files: dict[str, str] = {}
    with work.objects.batch() as batch:
        for rel in sorted({*written, LOCK_FILE, *git_kept}):
            path = work.abs(rel)
            if path.is_file():
                files[rel] = batch.add_bytes(path.read_bytes())
    return store.Experiment(
        name=plan.name,
        sweep=plan.sweep,
        status=store.SUCCEEDED,
        base=base,
        commit=commit,
        changes=plan.changes,
        params=params,
        metrics=metrics,
        outs=tuple(outs.values()),
        files=files,
        run_id=run_id,
        stages=stages,
        created=started,
        seconds=time.time() - started,
    )


def run_queued(repo: Repo, *, jobs: int = 1, fail_fast: bool = False, events: ExpEvents | None = None) -> SweepResult:
    """Every queued experiment; one runner at a time (a second is refused while the first holds the queue)."""
    with store.queue_lock(repo, timeout=0):
        queued = store.read_queue(repo)
        if not queued:
            return SweepResult("", ())
        planned = [Planned(q.name, q.sweep, q.changes, q) for q in queued]
        return run_experiments(repo, planned, jobs=jobs, fail_fast=fail_fast, events=events)


def ensure_ok(result: SweepResult) -> None:
    """For callers that want an error when any experiment failed (exit 3)."""
    if result.failed:
        names = ", ".join(o.name for o in result.failed[:5])
        raise CouldNotComplete(f"{len(result.failed)} of {len(result.outcomes)} experiments failed: {names}")


Callback = Callable[[Outcome], None]
