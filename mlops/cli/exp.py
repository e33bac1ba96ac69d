"""`mlops exp`: experiments and sweeps in workspaces of their own; show, apply, branch, remove, gc."""

from __future__ import annotations

import sys
import threading
from typing import Any

import typer

from ..errors import CouldNotComplete, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command, stop_signals_as_interrupts
from .output import SETTINGS, Output, fmt_value

exp_app = typer.Typer(no_args_is_help=True)

SET_HELP = (
    "[FILE:]KEY=VALUE: a param to change (params.yaml by default). VALUE may be a list 'a,b,c' or "
    "'range(start,stop,step)': one experiment per value, several -S make a grid. Repeat for each key."
)


def register(app: typer.Typer) -> None:
    command(exp_app, "run")(run)
    command(exp_app, "queue")(queue)
    command(exp_app, "show")(show)
    command(exp_app, "apply")(apply)
    command(exp_app, "branch")(branch)
    command(exp_app, "remove")(remove)
    command(exp_app, "gc")(gc)
    app.add_typer(
        exp_app, name="exp", help="Experiments: the pipeline with changed params, each in a workspace of its own."
    )


def _plan(repo: Any, sets: list[str] | None, random_n: int | None, seed: int | None, name: str | None) -> list[Any]:
    from ..experiments.params import changes_of, parse_set, plan_points
    from ..experiments.run import plan_names

    if not sets:
        raise UsageError("nothing to change: give at least one -S KEY=VALUE", hint="e.g. mlops exp run -S train.lr=0.1")
    points = plan_points([parse_set(text) for text in sets], random_n=random_n, seed=seed)
    return plan_names(repo, [changes_of(p) for p in points], name=name, sweep=None)


def _events(out: Output) -> Any:
    from ..experiments.run import ExpEvents

    class Lines(ExpEvents):
        def __init__(self) -> None:
            self.mutex = threading.Lock()

        def _write(self, text: str) -> None:
            with self.mutex:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()

        def started(self, name: str, changes: dict[str, Any]) -> None:
            if not SETTINGS.quiet:
                self._write(f"started  {name}: {_changes(changes)}")

        def finished(self, outcome: Any) -> None:
            if outcome.status == "failed":
                self._write(f"failed   {outcome.name}: {outcome.error}")
            elif not SETTINGS.quiet:
                how = f"ran {', '.join(outcome.ran) or 'nothing'}; restored {', '.join(outcome.restored) or 'nothing'}"
                self._write(f"{outcome.status:<8} {outcome.name}: {how}")

    return Lines()


def _changes(changes: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in changes.items())


def run(
    sets: list[str] | None = typer.Option(None, "--set-param", "-S", help=SET_HELP),
    name: str | None = typer.Option(None, "--name", "-n", help="The experiment's name (a sweep's: NAME-1, NAME-2...)."),
    random_n: int | None = typer.Option(None, "--random", min=1, help="Run N points of the grid drawn at random."),
    seed: int | None = typer.Option(None, "--seed", help="The seed of --random (same seed, same points)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=64, help="Experiments run at once."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="After a failed experiment, start no other."),
    queued: bool = typer.Option(False, "--queued", help="Run the experiments 'mlops exp queue' queued."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Run the pipeline with changed params in workspaces of their own; the workspace stays as it is.

    Stages that do not depend on the changed params restore from the run cache. Each experiment
    is recorded (params, metrics, outputs by hash, its base commit); exit 3 when one failed."""
    from ..experiments.run import run_experiments, run_queued

    out = Output(json_output=json_output)
    repo = find_repo()
    with stop_signals_as_interrupts():
        if queued:
            if sets or name or random_n:
                raise UsageError("--queued runs the queue as it is: no -S, --name or --random with it")
            result = run_queued(repo, jobs=jobs, fail_fast=fail_fast, events=_events(out))
        else:
            planned = _plan(repo, sets, random_n, seed, name)
            result = run_experiments(repo, planned, jobs=jobs, fail_fast=fail_fast, events=_events(out))
    if out.json:
        out.emit_json(
            {
                "sweep": result.sweep,
                "experiments": [
                    {
                        "name": o.name,
                        "status": o.status,
                        "changes": o.recorded.changes if o.recorded else {},
                        "metrics": o.recorded.metrics if o.recorded else {},
                        "ran": list(o.ran),
                        "restored": list(o.restored),
                        "error": o.error or None,
                    }
                    for o in result.outcomes
                ],
            }
        )
    else:
        if not result.outcomes:
            out.info("the queue is empty")
        for o in result.outcomes:
            metrics = " ".join(f"{k}={fmt_value(v)}" for k, v in (o.recorded.metrics if o.recorded else {}).items())
            style = "red" if o.status == "failed" else "green" if o.status == "succeeded" else "yellow"
            out.row(
                (o.name, "bold"),
                (o.status, style),
                (_changes(o.recorded.changes if o.recorded else {}), None),
                (metrics, "dim"),
            )
    if result.failed:
        names = ", ".join(o.name for o in result.failed[:5])
        error = CouldNotComplete(
            f"{len(result.failed)} of {len(result.outcomes)} experiments failed: {names}",
            hint="see 'mlops exp show'; 'mlops exp remove --failed' drops them",
        )
        raise error.after_report() if out.json else error


def queue(
    sets: list[str] | None = typer.Option(None, "--set-param", "-S", help=SET_HELP),
    name: str | None = typer.Option(None, "--name", "-n", help="The experiment's name (a sweep's: NAME-1, NAME-2...)."),
    random_n: int | None = typer.Option(None, "--random", min=1, help="Queue N points of the grid drawn at random."),
    seed: int | None = typer.Option(None, "--seed", help="The seed of --random."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Queue experiments in .mlops/ to run later with 'mlops exp run --queued' (the queue survives restarts)."""
    from ..experiments.run import check_changes
    from ..experiments.store import enqueue

    out = Output(json_output=json_output)
    repo = find_repo()
    planned = _plan(repo, sets, random_n, seed, name)
    for plan in planned:
        check_changes(repo, plan.changes)
    queued = enqueue(repo, [(p.name, p.sweep, p.changes) for p in planned])
    if out.json:
        out.emit_json({"queued": [{"name": q.name, "sweep": q.sweep, "changes": q.changes} for q in queued]})
        return
    for q in queued:
        out.row(("queued", "cyan"), (q.name, "bold"), (_changes(q.changes), None))


def show(
    sort: str | None = typer.Option(None, "--sort", help="metrics.KEY or params.KEY; '-' first for descending."),
    only_changed: bool = typer.Option(False, "--only-changed", help="Only params that differ between experiments."),
    sweep: str | None = typer.Option(None, "--sweep", help="Only this sweep's experiments."),
    filter_text: str | None = typer.Option(
        None,
        "--filter",
        help="Only experiments matching, in the query language of 'runs list': "
        "\"tags.team = 'growth' and metrics.acc > 0.9\" (tags: the experiment's run's, plus experiment and sweep).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Experiments with their params and metrics, grouped by sweep."""
    from ..experiments.keep import show as show_experiments

    out = Output(json_output=json_output)
    repo = find_repo()
    result = show_experiments(repo, sort=sort, only_changed=only_changed, sweep=sweep, filter=filter_text)
    for warning in result.warnings:
        out.warn(warning)
    if out.json:
        out.emit_json(result.to_dict(), compact=True)  # a thousand experiments: the C encoder
        return
    if not result.experiments:
        out.info("no experiments yet: mlops exp run -S KEY=VALUE")
        return
    columns = ["sweep", "name", "status", *result.param_keys, *result.metric_keys]
    rows = []
    for e in result.experiments:
        params = [fmt_value(e.changes.get(k, e.params.get(k, ""))) for k in result.param_keys]
        rows.append(
            [e.sweep, e.name, e.status, *params, *[fmt_value(e.metrics.get(k, "")) for k in result.metric_keys]]
        )
    out.table(columns, rows, header=True)
    failed = [e for e in result.experiments if e.status == "failed" and e.error]
    if failed:  # why each failed, below the table: an error is too long for a column
        out.line()
        for e in failed:
            out.line(f"{e.name} failed: {' '.join(e.error.split())}", style="red")


def apply(
    name: str = typer.Argument(..., help="The experiment."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite uncommitted changes to those files."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the experiment's params files and pipeline.lock into the workspace and check out its outputs."""
    from ..experiments.keep import apply as apply_experiment

    out = Output(json_output=json_output)
    result = apply_experiment(find_repo(), name, force=force)
    if out.json:
        out.emit_json({"name": result.name, "files": list(result.files), "outputs": list(result.outputs)})
        return
    out.info(f"applied {result.name}: {', '.join(result.files)}; outputs {', '.join(result.outputs) or 'none'}")


def branch(
    name: str = typer.Argument(..., help="The experiment."),
    branch_name: str = typer.Argument(..., metavar="BRANCH", help="The new git branch."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Make the experiment a git branch: its commit plus its params files and pipeline.lock, committed."""
    from ..experiments.keep import branch as branch_experiment

    out = Output(json_output=json_output)
    result = branch_experiment(find_repo(), name, branch_name)
    if out.json:
        out.emit_json({"name": result.name, "branch": result.branch, "commit": result.commit})
        return
    out.info(f"branch {result.branch} at {result.commit[:12]} holds experiment {result.name}")


def remove(
    names: list[str] | None = typer.Argument(None, help="Experiments to remove."),
    failed: bool = typer.Option(False, "--failed", help="Every failed experiment."),
    queued: bool = typer.Option(False, "--queued", help="Every queued experiment not run yet."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Remove experiment records (their objects go at the next 'mlops gc')."""
    from ..experiments.keep import remove as remove_experiments

    if not names and not failed and not queued:
        raise UsageError("name experiments to remove, or pass --failed or --queued")
    out = Output(json_output=json_output)
    result = remove_experiments(find_repo(), list(names or []), failed=failed, queued=queued)
    if out.json:
        out.emit_json({"removed": list(result.names), "unqueued": list(result.queued)})
        return
    out.info(f"removed {len(result.names)} experiments" + (f", {len(result.queued)} queued" if queued else ""))


def gc(
    keep: list[str] | None = typer.Option(None, "--keep", help="An experiment --all keeps (repeat)."),
    everything: bool = typer.Option(False, "--all", help="Remove every experiment but those --keep names."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Remove failed experiments (--all: all but --keep) and workspaces left by killed runs; then 'mlops gc'."""
    from ..experiments.keep import gc as gc_experiments

    out = Output(json_output=json_output)
    result = gc_experiments(find_repo(), keep=list(keep or []), everything=everything)
    if out.json:
        out.emit_json({"removed": list(result.names), "workspaces": result.workspaces})
        return
    out.info(
        f"removed {len(result.names)} experiments, {result.workspaces} stale workspaces; 'mlops gc' frees their data"
    )
