"""Git hook commands: install, uninstall, status, and `hooks run` (what git calls).

The run-time side composes rooms the core cannot join: the data status with the
pipeline's (pre-commit), checkout with the lock file's outputs (post-checkout), and the
commits' pointer files with their lock files (pre-push).
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import CheckFailed, CouldNotComplete, MlopsError, UsageError
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
    from ..data.status import NOT_PULLED
    from ..data.status import status as data_status
    from .data import stage_status

    repo = find_repo()
    # data not pulled yet is no change to the pointer files: a fresh clone may commit
    changed = [t for t in data_status(repo, None).targets if t.state not in ("unchanged", NOT_PULLED)]
    stale = [s for s in stage_status(repo) if s["status"] == "would run" and s["has_run"]]
    for t in changed:
        out.warn(f"{t.state}: {t.path} (its pointer file {t.path}.mlops does not match the data)")
    # the stages whose own inputs changed; those that are stale only because of them are counted
    causes = [s for s in stale if not all(r.startswith("upstream ") for r in s["reasons"])] or stale
    for s in causes:
        # its own reasons; a stage stale only through an upstream stage never run shows that one
        own = [r for r in s["reasons"] if not r.startswith("upstream ")] or s["reasons"]
        out.warn(f"stage {s['name']} is out of date in pipeline.lock: {'; '.join(own)}")
    if len(stale) > len(causes):
        out.warn(f"and {len(stale) - len(causes)} stage(s) downstream of them")
    if changed or stale:
        hint = []
        if changed:
            hint.append("'mlops add PATH' to record the data (or 'mlops checkout PATH' to discard the change)")
        if stale:
            hint.append("'mlops run' to update pipeline.lock")
        raise CheckFailed(
            f"commit refused: {len(changed)} tracked path(s) and {len(stale)} stage(s) out of date",
            hint=" and ".join(hint) + "; 'git commit --no-verify' skips this check",
        )


def _post_checkout(out: Output, args: list[str]) -> None:
    # git passes: previous HEAD, new HEAD, 1 for a branch checkout (0: files only)
    flag = args[2] if len(args) > 2 else os.environ.get("PRE_COMMIT_CHECKOUT_TYPE", "1")
    if flag != "1":
        return
    from ..data.checkout import checkout
    from .data import lock_outputs

    repo = find_repo()
    result = checkout(repo, None, extra_pointers=lock_outputs(repo, None))
    out.info(f"mlops: checked out {result.changed_files} file(s) to match the pointer files")


def _is_zero(sha: str) -> bool:
    """git's "no object" (all zeros, 40 or 64 digits): a new branch's remote side, a deleted one's local side."""
    return bool(sha) and set(sha) == {"0"}


def _framework_refs() -> tuple[str, str] | None:
    """(tip, what the remote has) from the pre-commit framework's PRE_COMMIT_* variables, or None
    when the framework did not start this hook. The framework reads git's stdin itself and passes
    the first ref being pushed: TO_REF and FROM_REF when the remote has an ancestor, and on a
    first push (no remote refs) only LOCAL_BRANCH, the ref being pushed."""
    env = os.environ
    names = ("PRE_COMMIT_TO_REF", "PRE_COMMIT_LOCAL_BRANCH", "PRE_COMMIT_REMOTE_NAME")
    if env.get("PRE_COMMIT") != "1" and not any(env.get(n) for n in names):
        return None
    tip = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_LOCAL_BRANCH") or ""
    if not tip or _is_zero(tip):
        raise CouldNotComplete(
            "pre-push: the pre-commit framework named no commit being pushed (no PRE_COMMIT_TO_REF "
            "or PRE_COMMIT_LOCAL_BRANCH); the objects were not pushed",
            hint="let 'git push' run the hook (or pass --from-ref/--to-ref to 'pre-commit run'), "
            "or 'mlops push' by hand; 'git push --no-verify' skips this check",
        )
    return tip, env.get("PRE_COMMIT_FROM_REF") or ""


def _pushed_revs(repo, args: list[str]) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """(tips being pushed, rev-list arguments for what the remote has) from the lines git
    writes on stdin (`<local ref> <local sha> <remote ref> <remote sha>`; git also passes the
    remote's name and URL as arguments), or from the pre-commit framework's PRE_COMMIT_* variables."""
    framework = None if args else _framework_refs()
    if framework is not None:
        remote = os.environ.get("PRE_COMMIT_REMOTE_NAME", "")
        tip, have_sha = framework
        sha = _commit(repo, tip)  # a ref name (refs/heads/main, HEAD) on a first push: pinned now
        if sha is None:
            raise CouldNotComplete(
                f"pre-push: '{tip}', which the pre-commit framework says is pushed, names no commit here",
                hint="'mlops push' by hand; 'git push --no-verify' skips this check",
            )
        tips, have = [sha], [have_sha] if have_sha and not _is_zero(have_sha) else []
    else:
        remote = args[0] if args else ""
        tips, have = [], []
        for line in sys.stdin.read().splitlines():
            parts = line.split()
            if len(parts) != 4 or _is_zero(parts[1]):  # a deleted branch sends nothing
                continue
            tips.append(parts[1])
            if not _is_zero(parts[3]):
                have.append(parts[3])
    # a remote commit this clone never fetched cannot be named: the remote's branches stand in
    # (none on a first push: then every commit reachable from the tips is new to the remote)
    exclude = ["^" + sha for sha in have if _commit(repo, sha) is not None]
    if not exclude and remote:
        exclude = ["--not", f"--remotes={remote}"]
    return tips, exclude


def _pre_push(out: Output, args: list[str]) -> None:
    repo = find_repo()
    tips, exclude = _pushed_revs(repo, args)
    if not tips:
        return
    from ..data.references import commit_roots
    from ..data.transfer import push
    from ..pipeline.roots import commit_lock_roots
    from ..registry.roots import commit_registry_roots

    # what the tips' trees name, and what the commits between the remote's tip and them added:
    # pointer files, pipeline.lock outputs, registered model versions (artifacts, data snapshots)
    roots = []
    for revs in (["--no-walk", *tips], [*tips, *exclude]):
        roots += [*commit_lock_roots(repo, revs), *commit_registry_roots(repo, revs)]
    roots = [*commit_roots(repo, tips, exclude), *roots]
    if not roots:
        out.info("mlops: the pushed commits reference no data or models: nothing to push")
        return
    result = push(repo, only_roots=roots, progress=out.progress())
    out.info(f"mlops: pushed {result.transferred} object(s) to {result.remote} ({result.present} already there)")
    if result.missing_locally:
        raise CheckFailed(
            (
                f"{len(result.missing_locally)} object(s) the pushed commits reference "
                "are in neither this cache nor the remote"
            ),
            hint="'mlops pull' them from where they are, or re-add the data; 'git push --no-verify' skips this check",
        )


def _commit(repo, rev: str) -> str | None:  # noqa: ANN001
    """The commit ``rev`` names here, or None (a remote commit this clone never fetched)."""
    from ..errors import UnknownRevisionError
    from ..repo.git import git_repo

    try:
        return git_repo(repo.root).resolve(rev)
    except UnknownRevisionError:
        return None
