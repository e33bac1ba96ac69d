"""The one error boundary: the only place where exceptions become messages and exit codes.

Every command is registered through ``command``, which wraps it in ``boundary``. The
core raises ``MlopsError`` subclasses carrying their exit code; anything else is an
internal error (exit 3). A traceback is shown only with --debug or MLOPS_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click  # typer raises click's usage errors and exports no base class to catch them by
import typer
from typer.core import TyperGroup

from ..errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    STOP_EXIT_CODES,
    MlopsError,
    UsageError,
)
from .output import SETTINGS, Output

F = TypeVar("F", bound=Callable[..., Any])

#: the signals that stop `mlops run` as Ctrl-C does
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise KeyboardInterrupt (and caught where it is)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def exit_code_of(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return STOP_EXIT_CODES.get(getattr(interrupt, "signum", signal.SIGINT), EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise ``StopSignal``, as Ctrl-C raises KeyboardInterrupt.

    Only on the main thread and never over a signal the process ignores (nohup keeps SIGHUP
    ignored); the previous handlers come back after.
    """
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            handler = signal.getsignal(signum)
            if handler in (signal.SIG_IGN, None):
                continue
            previous[signum] = handler
            signal.signal(signum, _raise_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_stop(signum: int, frame: object) -> None:
    raise StopSignal(signum)


def boundary(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = Output(json_output=bool(kwargs.get("json_output")))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except MlopsError as exc:
            if SETTINGS.debug:
                traceback.print_exc()
            report(out, exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            how = f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, StopSignal) else "interrupted"
            with contextlib.suppress(OSError):
                out.error(f"{how}; the next command picks up where this one stopped")
            raise typer.Exit(exit_code_of(exc)) from None
        except BrokenPipeError:
            # the reader went away (e.g. `| head`): quietly stop, as git does
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as exc:  # noqa: BLE001 - the boundary is where the unexpected is caught
            if SETTINGS.debug:
                raise
            out.error(
                f"internal error: {type(exc).__name__}: {exc}",
                "run again with --debug (or MLOPS_DEBUG=1) for the traceback, and report it",
            )
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


def report(out: Output, exc: MlopsError) -> None:
    """An error as one line (and its hint) on stderr, and with --json as one JSON document on stdout."""
    # after SIGHUP the terminal may be gone: the exit code must still come through
    with contextlib.suppress(OSError):
        if out.json and not exc.report_printed:  # one JSON document
            out.emit_json(exc.to_dict())
        out.error(exc.message, exc.hint)


_ARGV = "mlops.argv"  # the command line after the program name, kept in the contexts' shared meta


class BoundaryGroup(TyperGroup):
    """The root `mlops` group: click's usage errors (a bad or missing parameter, an unknown option
    or command), wherever on the command line, leave as the boundary's one ``error:`` line, exit 2,
    and with --json the JSON error object, instead of typer's boxed usage message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _usage_exit(exc, args) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_exit(exc, ctx.meta.get(_ARGV, [])) from None


def _usage_exit(exc: click.UsageError, argv: list[str]) -> Exception:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc  # a group called bare: click prints its help, as asked
    options = argv[: argv.index("--")] if "--" in argv else argv
    message, hint = usage_message(exc)
    report(Output(json_output="--json" in options), UsageError(message, hint=hint))
    return typer.Exit(EXIT_USAGE)


def usage_message(exc: click.UsageError) -> tuple[str, str]:
    """One line for a click usage error, and a hint pointing at the command's --help."""
    words = []
    ctx = exc.ctx
    while ctx is not None and ctx.parent is not None:  # the root's name varies (python -m mlops): always "mlops"
        words.append(ctx.info_name or "")
        ctx = ctx.parent
    hint = f"see '{' '.join(['mlops', *reversed(words)])} --help'"
    param = getattr(exc, "param", None)
    name = _param_name(param) if param is not None else ""
    if isinstance(exc, click.MissingParameter):
        kind = exc.param_type or (param.param_type_name if param is not None else "parameter")
        text = f"missing {kind} {name}".rstrip()
    elif isinstance(exc, click.BadParameter):
        text = f"{name}: {exc.message}" if name else exc.message
    elif isinstance(exc, click.NoSuchOption):
        text = exc.message
        if exc.possibilities:
            hint = f"did you mean {' or '.join(sorted(exc.possibilities))}? {hint}"
    elif isinstance(exc, click.exceptions.NoSuchCommand):  # typer adds "(Did you mean ...?)": a hint
        text, _, suggestion = exc.format_message().partition(". ")
        if suggestion:
            suggestion = suggestion.strip("()").rstrip("?")
            hint = f"{suggestion[:1].lower()}{suggestion[1:]}? {hint}"
    else:
        text = exc.format_message()
    text = " ".join(text.split()).rstrip(".")
    return text[:1].lower() + text[1:], hint


def _param_name(param: click.Parameter) -> str:
    """``--min-accuracy`` for an option (its long name), ``REF`` for an argument."""
    if isinstance(param, click.Option):
        return next((o for o in param.opts if o.startswith("--")), param.opts[0] if param.opts else param.name or "")
    return param.human_readable_name


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a command on ``app`` behind the error boundary."""

    def register(fn: F) -> F:
        app.command(name, **kwargs)(boundary(fn))
        return fn

    return register


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def duration(text: str | None, option: str) -> float | None:
    """Seconds in a duration option's value (30s, 500ms, 2m, 1h, 2d); None when not given."""
    if text is None:
        return None
    from ..serve.deployment import parse_duration

    try:
        return parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc.message}", hint=exc.hint) from None


def positive_duration(text: str, option: str) -> float:
    seconds = duration(text, option)
    assert seconds is not None
    if seconds <= 0:
        raise UsageError(f"{option} must be longer than 0, got {text!r}", hint="e.g. 30s, 500ms, 2m")
    return seconds


def comma_names(text: str | None) -> tuple[str, ...]:
    """The names of a comma-separated option value, blanks dropped ('' and None: none)."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


JOBS_OPTION = typer.Option(
    None,
    "--jobs",
    "-j",
    min=1,
    max=256,
    help="Most threads for file or network I/O (local file work uses them only while they help).",
)
