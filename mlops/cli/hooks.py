"""Git hook commands: install, uninstall, status, and `hooks run` (what git calls).

What each hook does is a flow in ``mlops.workflows.hooks``; here only its arguments are
handed over and its result printed.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import MlopsError, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output

hooks_app = typer.Typer(no_args_is_help=True)
HOOK_OPTIONS = {
    "pre_commit": typer.Option(
        False, "--pre-commit", help="Refuse commits whose data or pipeline.lock is out of date."
    ),
    "post_checkout": typer.Option(
        False, "--post-checkout", help="Check out the data of the new commit after git checkout."
    ),
    "pre_push": typer.Option(
        False, "--pre-push", help="Push the objects the pushed commits reference to the default remote."
    ),
}
MODE_OPTION = typer.Option("block", "--mode", help="block: a failed check stops git; warn: it only prints.")


def register(app: typer.Typer) -> None:
    app.add_typer(hooks_app, name="hooks", help="Git hooks that keep data in step with commits, checkouts and pushes.")


def _chosen(pre_commit: bool, post_checkout: bool, pre_push: bool) -> list[str] | None:
    names = [
        n for n, on in (("pre-commit", pre_commit), ("post-checkout", post_checkout), ("pre-push", pre_push)) if on
    ]
    return names or None  # none named: all three


def _report(out: Output, states: list, verb: str) -> None:  # noqa: ANN001
    if out.json:
        out.emit_json({"hooks": [s.to_dict() for s in states]})
        return
    for s in states:
        detail = {
            "installed": f"mode {s.mode}" + (", runs the hook that was there first" if s.chained else ""),
            "absent": "not installed",
            "foreign": "another hook is there (mlops hooks install chains it)",
        }[s.state]
        colour = {"installed": "green", "absent": "dim", "foreign": "yellow"}[s.state]
        out.row((s.state, colour), (s.name, None), (detail, "dim"))
    if verb:
        out.info(f"{verb} in {os.path.dirname(states[0].path)}" if states else verb)


@command(hooks_app, "install")
def install(
    pre_commit: bool = HOOK_OPTIONS["pre_commit"],
    post_checkout: bool = HOOK_OPTIONS["post_checkout"],
    pre_push: bool = HOOK_OPTIONS["pre_push"],
    mode: str = MODE_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Install the git hooks (all three unless some are named); hooks already there keep running, first."""
    from ..repo import hooks

    out = Output(json_output=json_output)
    _report(out, hooks.install(find_repo(), _chosen(pre_commit, post_checkout, pre_push), mode=mode), "hooks installed")


@command(hooks_app, "uninstall")
def uninstall(
    pre_commit: bool = HOOK_OPTIONS["pre_commit"],
    post_checkout: bool = HOOK_OPTIONS["post_checkout"],
    pre_push: bool = HOOK_OPTIONS["pre_push"],
    json_output: bool = JSON_OPTION,
) -> None:
    """Remove mlops' git hooks and restore the hooks they chained."""
    from ..repo import hooks

    out = Output(json_output=json_output)
    _report(out, hooks.uninstall(find_repo(), _chosen(pre_commit, post_checkout, pre_push)), "hooks removed")


@command(hooks_app, "status")
def status(json_output: bool = JSON_OPTION) -> None:
    """Which mlops hooks are installed, in which mode, and whether they chain another hook."""
    from ..repo import hooks

    out = Output(json_output=json_output)
    _report(out, hooks.hook_states(find_repo()), "")


@command(hooks_app, "run", hidden=True)
def run(
    name: str = typer.Argument(..., help="pre-commit, post-checkout or pre-push."),
    args: list[str] | None = typer.Argument(None, help="The arguments git passes to the hook."),
    mode: str = MODE_OPTION,
) -> None:
    """What an installed hook runs (git passes its arguments; the pre-commit framework sets PRE_COMMIT_* instead)."""
    if mode not in ("block", "warn"):
        raise UsageError(f"unknown hook mode '{mode}'", hint="use --mode block or --mode warn")
    runners = {"pre-commit": _pre_commit, "post-checkout": _post_checkout, "pre-push": _pre_push}
    if name not in runners:
        raise UsageError(f"unknown hook '{name}'", hint=f"choose from {', '.join(runners)}")
    out = Output()
    try:
        runners[name](out, list(args or []))
    except MlopsError as exc:
        if mode == "block":
            raise
        out.warn(f"{name} hook (warn mode, not stopping git): {exc.message}" + (f"; {exc.hint}" if exc.hint else ""))


def _pre_commit(out: Output, _args: list[str]) -> None:
    from ..workflows.hooks import pre_commit

    check = pre_commit(find_repo())
    for warning in check.warnings:
        out.warn(warning)
    refusal = check.refusal()
    if refusal is not None:
        raise refusal


def _post_checkout(out: Output, args: list[str]) -> None:
    from ..workflows.hooks import post_checkout

    result = post_checkout(find_repo(), args, env=os.environ)
    if result is not None:
        out.info(f"mlops: checked out {result.changed_files} file(s) to match the pointer files")


def _pre_push(out: Output, args: list[str]) -> None:
    from ..workflows.hooks import pre_push

    result = pre_push(find_repo(), args, stdin=sys.stdin, env=os.environ, progress=out.progress())
    if not result.tips:
        return
    if result.pushed is None:
        out.info("mlops: the pushed commits reference no data or models: nothing to push")
        return
    pushed = result.pushed
    out.info(f"mlops: pushed {pushed.transferred} object(s) to {pushed.remote} ({pushed.present} already there)")
    refusal = result.refusal()
    if refusal is not None:
        raise refusal
