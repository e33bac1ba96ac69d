"""`mlops stage`: one stage anywhere (`stage exec`) and the collect task of an exported DAG (`stage collect`)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import typer

from ..repo.repo import find_repo
from .boundary import JSON_OPTION, STOP_SIGNALS, command, stop_signals_as_interrupts
from .output import Output

stage_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    command(stage_app, "exec")(exec_command)
    command(stage_app, "collect")(collect_command)
    app.add_typer(
        stage_app, name="stage", help="One stage anywhere, for engines: exec a stage at a commit; collect a DAG's run."
    )


def _events() -> Any:
    from ..pipeline.executor import RunEvents

    class StderrEvents(RunEvents):
        """Every line on stderr, prefixed with the stage's name: stdout keeps the one manifest."""

        def __init__(self) -> None:
            self.mutex = threading.Lock()

        def _write(self, text: str) -> None:
            with self.mutex:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()

        def stage_started(self, name: str, reasons: tuple[str, ...]) -> None:
            self._write(f"running {name}: {'; '.join(reasons)}")

        def stage_output(self, name: str, line: str) -> None:
            self._write(f"[{name}] {line}")

    return StderrEvents()


UPSTREAM_HELP = "An upstream stage's manifest: its JSON, or @FILE. Repeat for each (default: found by key)."


def exec_command(
    stage: str = typer.Argument(..., help="The stage to restore or run."),
    rev: str = typer.Option(..., "--rev", help="The commit to run it at (fetched from origin if this clone lacks it)."),
    remote: str | None = typer.Option(None, "--remote", "-r", help="The remote holding the shared run cache."),
    upstream: list[str] | None = typer.Option(None, "--upstream", help=UPSTREAM_HELP),
    force: bool = typer.Option(
        False, "--force", help="Run the command even when the shared run cache has the key (its entry stays)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Restore one stage from the shared run cache, or run it in a private worktree and publish it.

    Needs only a clone and the remote; the workspace, pipeline.lock and runs are not changed.
    Prints the stage's manifest (hashes of its inputs and outputs); exit 3 when the command fails."""
    from ..pipeline.stage_exec import exec_stage, manifests_from_texts

    out = Output(json_output=json_output)
    repo = find_repo()
    manifests = manifests_from_texts(upstream or [])
    with stop_signals_as_interrupts():
        manifest = exec_stage(
            repo,
            stage,
            rev=rev,
            remote=remote,
            upstream=manifests,
            events=_events(),
            stop_signals=STOP_SIGNALS,
            force=force,
        )
    for warning in manifest.warnings:
        out.warn(warning)
    if out.json:
        out.emit_json(manifest.to_dict())
        return
    took = f"{manifest.seconds:.1f}s"
    out.info(f"{manifest.status} {manifest.stage} at {manifest.rev[:12]} in {took} (key {manifest.key})")
    for item in manifest.outs:
        out.row((item.path, None), (item.hash or "", "dim"), (item.kind, "dim"))


def collect_command(
    rev: str = typer.Option(..., "--rev", help="The commit the DAG ran at; this clone's HEAD must be it."),
    manifest: list[str] | None = typer.Option(
        None, "--manifest", help="A stage's manifest: its JSON, or @FILE. Repeat (default: found by key)."
    ),
    remote: str | None = typer.Option(None, "--remote", "-r", help="The remote holding the shared run cache."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Restore every stage's outputs, write pipeline.lock and one run record, and push the run."""
    from ..pipeline.stage_collect import collect
    from ..pipeline.stage_exec import manifests_from_texts

    out = Output(json_output=json_output)
    repo = find_repo()
    manifests = manifests_from_texts(manifest or [])
    result = collect(repo, rev=rev, remote=remote, manifests=manifests)
    for warning in result.warnings:
        out.warn(warning)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.info(f"collected {len(result.stages)} stages at {result.rev[:12]} into run {result.run_id}")
