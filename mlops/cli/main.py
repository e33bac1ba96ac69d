"""The root `mlops` command: global options and the command groups.

Each group lives in its own module and registers its commands here; every command
goes through the error boundary in ``boundary.py``.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED
from . import data, drift, hooks, pipeline, registry, remote, runs, serve
from .output import SETTINGS

app = typer.Typer(
    name="mlops",
    help="The production loop of machine learning inside your git repository: data, pipelines, runs, models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also MLOPS_DEBUG=1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results; no progress."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    SETTINGS.debug = SETTINGS.debug or debug
    SETTINGS.quiet = quiet


data.register(app)
pipeline.register(app)
runs.register(app)
registry.register(app)
hooks.register(app)
serve.register(app)
drift.register(app)
app.add_typer(remote.app, name="remote", help="Manage remotes: where push and pull send and fetch objects.")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside any command body (e.g. during start-up)
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_BROKEN_PIPE)
