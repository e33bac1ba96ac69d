"""Pipeline commands: run, dag, import dvc (and import feast, the feature store's importer)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import typer

from ..errors import CouldNotComplete, Interrupted, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, STOP_SIGNALS, command, stop_signals_as_interrupts
from .output import Output, in_ci

STATUS_STYLE = {
    "ran": "green",
    "restored": "cyan",
    "skipped": "dim",
    "failed": "red",
    "interrupted": "red",
    "not run": "yellow",
    "would run": "yellow",
    "would restore": "cyan",
    "frozen": "dim",
    "running": "bold blue",
    "waiting": "dim",
}

import_app = typer.Typer(no_args_is_help=True, help="Import pipelines from other tools.")


def register(app: typer.Typer) -> None:
    command(app, "run")(run)
    command(app, "dag")(dag)
    app.add_typer(import_app, name="import")


def _events(out: Output) -> Any:
    from ..pipeline.executor import RunEvents

    class Plain(RunEvents):
        """Prefixed lines; on stderr with --json so stdout keeps one document."""

        def __init__(self) -> None:
            self.stream = sys.stderr if out.json else sys.stdout
            self.mutex = threading.Lock()

        def _write(self, text: str) -> None:
            with self.mutex:
                self.stream.write(text + "\n")
                self.stream.flush()

        def stage_started(self, name: str, reasons: tuple[str, ...]) -> None:
            self._write(f"running {name}: {'; '.join(reasons)}")

        def stage_output(self, name: str, line: str) -> None:
            self._write(f"[{name}] {line}")

        def stage_finished(self, result: Any) -> None:
            took = (
                f" in {result.seconds:.1f}s"
                if result.seconds is not None and result.status in ("ran", "failed")
                else ""
            )
            detail = f": {result.error}" if result.error else ""
            self._write(f"{result.status} {result.name}{took}{detail}")

    class Live(Plain):
        """A live table of stages above the streamed output (terminal only)."""

        def __init__(self, names: list[str]) -> None:
            super().__init__()
            from rich.live import Live as RichLive

            self.state: dict[str, tuple[str, float | None, float | None]] = {n: ("waiting", None, None) for n in names}
            self.live = RichLive(self._render(), console=out.console, refresh_per_second=8, transient=False)

        def _render(self) -> Any:
            from rich.table import Table
            from rich.text import Text

            table = Table(show_edge=False, header_style="bold", box=None)
            table.add_column("stage")
            table.add_column("status")
            table.add_column("time", justify="right")
            now = time.time()
            for name, (status, started, ended) in self.state.items():
                took = "" if started is None else f"{(ended or now) - started:.1f}s"
                table.add_row(Text(name), Text(status, style=STATUS_STYLE.get(status, "dim")), took)
            return table

        def _update(self) -> None:
            self.live.update(self._render())

        def stage_started(self, name: str, reasons: tuple[str, ...]) -> None:
            from rich.text import Text

            self.state[name] = ("running", time.time(), None)
            self.live.console.print(Text.assemble((name, "bold"), ": ", ("; ".join(reasons), "dim")))
            self._update()

        def stage_output(self, name: str, line: str) -> None:
            from rich.text import Text

            self.live.console.print(Text.assemble((f"[{name}] ", "dim"), line))

        def stage_finished(self, result: Any) -> None:
            from rich.text import Text

            self.state[result.name] = (result.status, result.started, result.ended)
            if result.error:
                self.live.console.print(Text(f"{result.name}: {result.error}", style="red"))
            self._update()

    return Plain, Live


def run(
    targets: list[str] | None = typer.Argument(None, help="Stages to run, with what they need (default: all)."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, max=256, help="Stages run at once (default: number of cores)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Say what would run and why; run nothing."),
    force: bool = typer.Option(False, "--force", "-f", help="Run the selected stages even when up to date."),
    downstream: bool = typer.Option(False, "--downstream", help="Run the targets and every stage after them."),
    single: bool = typer.Option(False, "--single-stage", "-s", help="Only the named stages, not what they need."),
    keep_going: bool = typer.Option(
        False, "--keep-going", "-k", help="After a failure, still run every stage that does not depend on it."
    ),
    executor: str = typer.Option(
        "local", "--executor", "-e", help="Where stage commands run: local (subprocesses here) or ray (Ray tasks)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="The Ray cluster (ray://HOST:10001 or HOST:PORT; default: start or join a local one)."
    ),
    remote: str | None = typer.Option(
        None,
        "--remote",
        "-r",
        help="With --executor ray: the mlops remote outputs and the shared run cache go through. "
        "With --dry-run: also say what its shared run cache would restore.",
    ),
    allow_dirty: bool = typer.Option(
        False, "--allow-dirty", help="With --executor ray: run uncommitted changes (a snapshot commit is sent)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Run the pipeline's out-of-date stages in DAG order; independent stages in parallel."""
    from ..pipeline.executors import ExecutorOptions, check_executor_name

    check_executor_name(executor)
    options = ExecutorOptions(address=address, remote=remote, allow_dirty=allow_dirty)
    # SIGTERM (a cancelled CI job) and SIGHUP (a closed terminal) stop the run as Ctrl-C does:
    # stages stopped, nothing partial recorded, exit 143 or 129 (docs/exit-codes.md)
    with stop_signals_as_interrupts():
        _run(targets, jobs, dry_run, force, downstream, single, keep_going, json_output, executor, options)


def _run(
    targets: list[str] | None,
    jobs: int | None,
    dry_run: bool,
    force: bool,
    downstream: bool,
    single: bool,
    keep_going: bool,
    json_output: bool,
    executor: str = "local",
    options: Any = None,
) -> None:
    from ..pipeline.executor import run_pipeline

    if options is not None and options.remote is not None and not dry_run and executor == "local":
        raise UsageError(
            "--remote goes with --dry-run or --executor ray: 'mlops run' restores from this repo's run cache",
            hint="take the shared run cache first with 'mlops pull --run-cache', then 'mlops run'",
        )
    out = Output(json_output=json_output)
    repo = find_repo()
    plain_events, live_events = _events(out)
    events = plain_events()
    live = out.tty and not out.json and not in_ci() and not dry_run
    if live:
        from ..pipeline.graph import build_graph
        from ..pipeline.spec import load_pipeline

        graph = build_graph(load_pipeline(repo.root), repo.root)
        events = live_events(graph.select(targets, downstream=downstream, single=single))
        events.live.start()
    try:
        result = run_pipeline(
            repo,
            targets,
            force=force,
            downstream=downstream,
            single=single,
            keep_going=keep_going,
            dry_run=dry_run,
            jobs=jobs,
            events=events,
            stop_signals=STOP_SIGNALS,
            executor=executor,
            executor_options=options,
        )
    finally:
        if live:
            events.live.stop()
    for warning in result.warnings:
        out.warn(warning)
    missing = warn_missing_dvc_data(out, repo)
    if out.json:
        out.emit_json(
            {
                **({"dvc_missing": [m.to_dict() for m in missing]} if missing else {}),
                "run_id": result.run_id,
                **({"name": result.name} if result.name else {}),
                **({"up_to_date": True, "last_run": result.last_run} if result.up_to_date else {}),
                "ok": result.ok,
                "dry_run": result.dry_run,
                "interrupted": result.interrupted,
                "stages": [s.to_dict() for s in result.stages],
                "warnings": list(result.warnings),
                **(
                    {"engine_seconds": {k: round(v, 3) for k, v in result.engine_seconds.items()}}
                    if result.engine_seconds
                    else {}
                ),
            }
        )
    elif dry_run:
        for stage in result.stages:
            reason = "; ".join(stage.reasons)
            if stage.restore_from:
                local = stage.restore_from == "local"
                shared = "the run cache" if local else f"the shared run cache ({stage.restore_from})"
                reason = f"{reason} -> from {shared}" if reason else f"from {shared}"
            out.row((stage.status, STATUS_STYLE.get(stage.status, "dim")), (stage.name, None), (reason, "dim"))
    elif result.up_to_date:
        last = f"; last run {result.last_run}" if result.last_run else ""
        out.info(f"nothing to run: every stage is up to date{last} (no new run recorded)")
    else:
        counts: dict[str, int] = {}
        for stage in result.stages:
            counts[stage.status] = counts.get(stage.status, 0) + 1
        out.info(", ".join(f"{n} {s}" for s, n in counts.items()) + f" (run {result.run_id} '{result.name}')")
    if result.interrupted:
        signum = result.stop_signal
        how = "interrupted" if signum in (None, signal.SIGINT) else f"stopped by {signal.Signals(signum).name}"
        raise Interrupted(f"{how}: running stages were stopped and recorded nothing", signum=signum).after_report()
    if result.failed:
        names = ", ".join(s.name for s in result.failed)
        raise CouldNotComplete(
            f"stage(s) failed: {names} ({result.failed[0].error})",
            hint="fix the command, then 'mlops run' again: finished stages are not rerun",
        ).after_report()


def dag(
    targets: list[str] | None = typer.Argument(None, help="Only these stages and what they need."),
    mermaid: bool = typer.Option(False, "--mermaid", help="Mermaid flowchart text."),
    dot: bool = typer.Option(False, "--dot", help="Graphviz dot text."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Draw the pipeline's stage graph (text, Mermaid or Graphviz dot)."""
    from ..pipeline.graph import build_graph
    from ..pipeline.spec import load_pipeline

    out = Output(json_output=json_output)
    repo = find_repo()
    graph = build_graph(load_pipeline(repo.root), repo.root)
    names = graph.select(targets)
    edges = [(up, name) for name in names for up in graph.upstream[name] if up in names]
    missing = warn_missing_dvc_data(out, repo)
    if out.json:
        doc: dict[str, Any] = {"stages": names, "edges": [{"from": a, "to": b} for a, b in edges]}
        if missing:
            doc["dvc_missing"] = [m.to_dict() for m in missing]
        out.emit_json(doc)
    elif mermaid:
        ids = {n: f"s{i}" for i, n in enumerate(names)}
        lines = (
            ["flowchart TD"]
            + [f'    {ids[n]}["{n}"]' for n in names]
            + [f"    {ids[a]} --> {ids[b]}" for a, b in edges]
        )
        out.line("\n".join(lines))
    elif dot:
        lines = (
            ["digraph pipeline {", "    rankdir=TB;"]
            + [f'    "{n}";' for n in names]
            + [f'    "{a}" -> "{b}";' for a, b in edges]
        )
        out.line("\n".join(lines + ["}"]))
    else:
        out.line(render_ascii(names, graph.upstream))


def render_ascii(names: list[str], upstream: dict[str, tuple[str, ...]]) -> str:
    """Stages in run order, each with the stages it needs: readable for any graph shape."""
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        needs = [u for u in upstream[name] if u in names]
        lines.append(f"{name.ljust(width)}  <- {', '.join(needs)}" if needs else name)
    return "\n".join(lines)


@command(import_app, "dvc")
def import_dvc(
    data: bool = typer.Option(
        False, "--data", help="Also bring the data from DVC's cache or remote (md5 checked), and track it."
    ),
    remote: str | None = typer.Option(
        None, "--remote", "-r", help="The DVC remote (in .dvc/config) to take data from (default: core.remote)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing pipeline.yaml / pipeline.lock."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Carry a DVC project over: every dvc.yaml, dvc.lock and .dvc file (and with --data, the data)."""
    from ..errors import FormatError
    from ..pipeline.dvc import import_dvc as do_import

    out = Output(json_output=json_output)
    try:
        result = do_import(find_repo(), data=data, remote=remote, force=force)
    except FormatError as exc:
        problems = exc.fields.get("problems") or []
        if len(problems) > 1:  # the first is in the error line; each one is one line, file:line first
            for line in problems:
                out.warn(line)
        raise
    if out.json:
        out.emit_json(
            {
                "stages": result.stages,
                "lock_stages": result.lock_stages,
                "pipeline_written": result.pipeline_written,
                "tracked": list(result.tracked),
                "placed": list(result.placed),
                "missing": list(result.missing),
                "files": result.files,
                "bytes": result.bytes,
                "notes": list(result.notes),
            }
        )
        return
    if result.pipeline_written:
        out.line(f"wrote pipeline.yaml ({result.stages} stages)")
    elif result.stages:
        out.line(f"pipeline.yaml is up to date ({result.stages} stages)")
    if result.placed:
        out.line(
            f"brought {len(result.placed)} path(s) from DVC ({result.files} files, {result.bytes} bytes, md5 checked)"
        )
    if result.tracked:
        out.line(f"tracked {len(result.tracked)} path(s) with pointer files: {', '.join(result.tracked)}")
    if result.lock_stages:
        out.line(f"wrote pipeline.lock ({result.lock_stages} stages whose files still match dvc.lock)")
    for note in result.notes:
        out.warn(note)


def warn_missing_dvc_data(out: Output, repo: Any) -> list[Any]:
    """Name DVC-tracked data an import recorded that is not here yet (stderr); returns it for --json."""
    if not (repo.dot / "dvc-import.json").is_file():  # the import's modules load only after an import
        return []
    from ..pipeline.dvc import missing_data

    missing = missing_data(repo)
    if not out.json:
        for item in missing:
            out.warn(item.message)
    return missing


# --- mlops import feast: the feature store's importer (mlops/features/feast.py) -----------------


@command(import_app, "feast")
def import_feast(
    feature_repo: str = typer.Argument(..., help="The Feast feature repository (where feature_store.yaml is)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing features.yaml."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Convert a Feast repository of file sources into features.yaml (its Python is read, never run)."""
    from ..features.feast import import_feast as do_import

    out = Output(json_output=json_output)
    result = do_import(find_repo(), feature_repo, force=force)
    if out.json:
        out.emit_json(
            {
                "written": result.written,
                "path": result.path,
                "entities": result.entities,
                "sources": result.sources,
                "feature_views": result.feature_views,
                "feature_services": result.feature_services,
                "not_carried": list(result.notes),
                "untracked_sources": list(result.untracked),
            }
        )
        return
    verb = "wrote" if result.written else "up to date:"
    out.line(
        f"{verb} {result.path} ({result.entities} entities, {result.sources} sources, "
        f"{result.feature_views} feature views, {result.feature_services} feature services)"
    )
    for note in result.notes:
        out.warn(f"not carried: {note}")
    if result.untracked:
        out.warn(f"track the sources, then validate: mlops add {' '.join(result.untracked)} && mlops features validate")
