"""The root `mlops` command: global options and the command groups.

Each group lives in its own module and registers its commands here; every command
goes through the error boundary in ``boundary.py``.

Start-up: `mlops status` runs on every commit (the pre-commit hook) and in every CI step,
so the console script builds only the group of the command it was asked for
(``COMMAND_GROUPS``): importing every group's module and building typer's command tree for
all of them cost ~30 ms of a 0.15 s `mlops status`. Help, `--version` and unknown words get
the whole app, so listings and "no such command" suggestions are complete.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from .. import __version__
from ..errors import EXIT_BROKEN_PIPE
from .boundary import BoundaryGroup
from .output import SETTINGS

#: the first word of a command line -> the group module that registers it
#: (tests/test_contracts.py holds this equal to what the groups register)
COMMAND_GROUPS = {
    **dict.fromkeys(("init", "add", "status", "checkout", "diff", "push", "fetch", "pull", "gc", "verify"), "data"),
    **dict.fromkeys(("run", "dag", "import"), "pipeline"),
    "stage": "stage",
    "exp": "exp",
    **dict.fromkeys(("runs", "metrics", "params", "plots"), "runs"),
    **dict.fromkeys(
        ("register", "models", "promote", "approve", "rollback", "alias", "history", "lineage", "card", "audit"),
        "registry",
    ),
    "hooks": "hooks",
    **dict.fromkeys(("serve", "deploy", "canary", "predict"), "serve"),
    **dict.fromkeys(("drift", "schema", "validate"), "drift"),
    "remote": "remote",
    "export": "export",
    "features": "features",
    **dict.fromkeys(("monitor", "labels"), "monitor"),
    "ui": "ui",
}
GROUPS = tuple(dict.fromkeys(COMMAND_GROUPS.values()))  # in the order of --help
ROOT_FLAGS = ("--debug", "--quiet", "-q")  # root options that take no value and do not end the command


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlops {__version__}")
        raise typer.Exit()


def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also MLOPS_DEBUG=1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results; no progress."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    SETTINGS.debug = SETTINGS.debug or debug
    SETTINGS.quiet = quiet


def build_app(groups: tuple[str, ...] = GROUPS) -> typer.Typer:
    """The `mlops` typer app with the given command groups (all of them by default)."""
    app = typer.Typer(
        name="mlops",
        help="The production loop of machine learning inside your git repository: data, pipelines, runs, models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        cls=BoundaryGroup,  # usage errors through the one error boundary
    )
    app.callback()(root)
    for name in groups:
        module = importlib.import_module(f".{name}", __package__)
        if name == "remote":
            app.add_typer(module.app, name="remote", help="Manage remotes: where push and pull send and fetch objects.")
        else:
            module.register(app)
    return app


def __getattr__(name: str) -> Any:
    """`from mlops.cli.main import app`: the whole app, built on first use."""
    if name == "app":
        whole = build_app()
        globals()["app"] = whole
        return whole
    raise AttributeError(name)


def _group_of(args: list[str]) -> str | None:
    """The group of the command on this command line, or None for the whole app."""
    for arg in args:
        if arg in ROOT_FLAGS:
            continue
        return None if arg.startswith("-") else COMMAND_GROUPS.get(arg)
    return None


def main() -> None:
    """Console-script entry point."""
    try:
        group = _group_of(sys.argv[1:])
        (build_app((group,)) if group else build_app())()
    except KeyboardInterrupt as exc:  # Ctrl-C outside any command body (e.g. during start-up)
        from .boundary import exit_code_of

        sys.stderr.write("error: interrupted\n")
        sys.exit(exit_code_of(exc))
    except BrokenPipeError:
        sys.exit(EXIT_BROKEN_PIPE)
    finally:
        _before_exit()


def _before_exit() -> None:
    """With Ray loaded (``run --executor ray``), the interpreter's last garbage collection at exit
    walks Ray's whole object graph: 0.3 to 1.5 s on a 2-core machine after the command has finished
    and said so. The objects alive now are taken out of it (``gc.freeze``): the process ends with
    them, what mlops wrote is closed and synced by then, and stdout and stderr are flushed by the
    interpreter whatever the collector does."""
    if "ray" in sys.modules:
        import gc

        gc.freeze()
