"""Data commands: init, add, status, checkout, diff, push, pull, fetch, gc, verify.

Parsing and printing only: the flows that add the pipeline's, the runs' and the registry's
objects to the data verbs live in ``mlops.workflows`` (data, roots, status).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import CheckFailed
from ..repo.repo import find_repo, init_repo
from .boundary import JOBS_OPTION, JSON_OPTION, command
from .output import Output, human_bytes

if TYPE_CHECKING:
    from ..workflows.data import Moved

TARGETS = typer.Argument(None, help="Tracked paths (default: every pointer file in the workspace).", show_default=False)
REMOTE = typer.Option(None, "--remote", "-r", help="Remote name (default: the default remote).")


def register(app: typer.Typer) -> None:
    command(app, "init")(init)
    command(app, "add")(add)
    command(app, "status")(status)
    command(app, "checkout")(checkout)
    command(app, "diff")(diff)
    command(app, "push")(push)
    command(app, "fetch")(fetch)
    command(app, "pull")(pull)
    command(app, "gc")(gc)
    command(app, "verify")(verify)


def init(
    path: Path = typer.Argument(Path("."), help="Project root (a git repository unless --no-git)."),
    no_git: bool = typer.Option(False, "--no-git", help="Allow a folder that is not a git repository."),
    force: bool = typer.Option(False, "--force", help="Re-initialise an existing .mlops/ (keeps the cache)."),
) -> None:
    """Create .mlops/ (config, cache, tmp) in a git repository."""
    repo = init_repo(path, no_git=no_git, force=force)
    Output().info(f"initialised mlops in {repo.dot}; commit .mlops/config.yaml and .mlops/.gitignore")


def add(
    paths: list[str] = typer.Argument(..., help="Files or folders to track."),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Snapshot files or folders into the cache and write their .mlops pointer files."""
    from ..workflows.add import add as do_add  # refuses a pipeline stage's outputs first

    out = Output(json_output=json_output)
    flow = do_add(find_repo(), paths, jobs=jobs, progress=out.progress())
    result = flow.result
    for warning in flow.warnings:
        out.warn(warning)
    if out.json:
        out.emit_json({"added": [t.__dict__ for t in result.targets]})
        return
    for target in result.targets:
        what = f"{target.files} files, " if target.kind == "dir" else ""
        verb = "added" if target.changed else "unchanged"
        out.line(f"{verb}\t{target.path}\t({what}{human_bytes(target.size)})")
    if any(t.changed for t in result.targets):
        files = [f"{t.path}.mlops" for t in result.targets if t.changed]
        files += sorted({t.gitignore for t in result.targets if t.changed})
        out.info(f"to track the changes with git: git add {' '.join(files)}")


def status(
    targets: list[str] | None = TARGETS,
    check: bool = typer.Option(False, "--check", help="Exit 1 when anything changed (for hooks and CI)."),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Show what changed in tracked data since its pointer file was written."""
    from ..data.status import NOT_PULLED
    from ..workflows.status import status as do_status

    out = Output(json_output=json_output)
    found = do_status(find_repo(), targets, jobs=jobs, progress=out.progress())
    result, stages, missing = found.data, [s.to_dict() for s in found.stages], found.dvc_missing
    if out.json:
        doc = {"clean": found.clean, "targets": [t.to_dict() for t in result.targets]}
        doc["stages"] = stages
        if missing:
            doc["dvc_missing"] = [m.to_dict() for m in missing]
        out.emit_json(doc)
    else:
        changed = [t for t in result.targets if t.state not in ("unchanged", NOT_PULLED)]
        not_pulled = [t for t in result.targets if t.state == NOT_PULLED]
        if not result.targets and not stages and not missing:
            out.info("no tracked data (mlops add PATH to track some)")
        elif result.targets and not changed and not not_pulled:
            out.info(f"tracked data is up to date ({len(result.targets)} path(s))")
        for t in not_pulled:
            out.row((t.state, "yellow"), (t.path, None), (t.detail or "", "dim"))
        for t in changed:
            summary = ""
            if t.kind == "dir" and t.state == "modified" and t.changes.count:
                c = t.changes
                summary = f"{len(c.added)} added, {len(c.modified)} modified, {len(c.deleted)} deleted"
            elif t.detail:
                summary = t.detail
            colour = "red" if t.state == "deleted" else "yellow"
            out.row((t.state, colour), (t.path, None), (summary, "dim"))
            for label, paths in (
                ("added", t.changes.added),
                ("modified", t.changes.modified),
                ("deleted", t.changes.deleted),
            ):
                for p in paths[:20]:
                    out.line(f"    {label}: {t.path}/{p}")
                if len(paths) > 20:
                    out.line(f"    ... and {len(paths) - 20} more {label}")
        for item in missing:
            out.row(("missing", "red"), (item.path, None), (f"DVC data ({item.where}): mlops import dvc --data", "dim"))
        if changed:
            out.info("use 'mlops add PATH' to record the changes, or 'mlops checkout PATH' to discard them")
        to_run = [s for s in stages if s["status"] == "would run"]
        for s in to_run:
            reason = "; ".join(s["reasons"])
            out.row(("stage", "yellow"), (s["name"], None), (reason, "dim"))
        if stages and not to_run:
            out.info(f"pipeline is up to date ({len(stages)} stage(s))")
        elif to_run:
            out.info("use 'mlops run' to bring the pipeline up to date")
    if check and found.problems:
        raise CheckFailed(f"{found.problems} tracked path(s) or stage(s) changed")


def checkout(
    targets: list[str] | None = TARGETS,
    rev: str | None = typer.Option(None, "--rev", help="Use the pointer files of this git revision."),
    force: bool = typer.Option(
        False, "--force", "-f", help="Overwrite or remove workspace changes that are not in the cache."
    ),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Make the workspace match the pointer files (e.g. after git checkout)."""
    from ..workflows.data import checkout as do_checkout

    out = Output(json_output=json_output)
    result = do_checkout(find_repo(), targets, rev=rev, force=force, jobs=jobs, progress=out.progress())
    if out.json:
        out.emit_json({"changed_files": result.changed_files, "targets": [t.to_dict() for t in result.targets]})
        return
    for t in result.targets:
        if t.placed or t.removed:
            out.line(f"updated\t{t.path}\t({t.placed} placed, {t.removed} removed)")
    out.info(f"{result.changed_files} file(s) changed" if result.changed_files else "workspace already matches")


def diff(
    a_rev: str = typer.Argument("HEAD", help="Old git revision."),
    b_rev: str | None = typer.Argument(None, help="New git revision (default: the workspace)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Which files inside tracked data changed between git revisions."""
    from ..data.status import diff as do_diff

    out = Output(json_output=json_output)
    result = do_diff(find_repo(), a_rev, b_rev)
    if out.json:
        out.emit_json(
            {
                "a": result.a_rev,
                "b": result.b_rev,
                "changes": [e.to_dict() for e in result.entries],
                "notes": list(result.notes),
            }
        )
        return
    styles = {"added": "green", "deleted": "red", "modified": "yellow"}
    out.table(
        ["change", "path"],
        [(e.change, e.path) for e in result.entries],
        styles=[styles[e.change] for e in result.entries],
    )
    for note in result.notes:
        out.warn(note)
    if not result.entries:
        out.info(f"no changes in tracked data between {result.a_rev} and {result.b_rev}")


RUN_CACHE_PUSH_HELP = "Also send this repo's run-cache entries the remote lacks (after their objects)."
RUN_CACHE_PULL_HELP = (
    "Then take the shared run-cache entries (and their objects) the current pipeline's stages "
    "would restore from: 'mlops run' then restores them with no network."
)


# what push, fetch and pull may move beside the objects, each reported the same way (summary, warnings)
MOVED_RECORDS = ("runs", "experiments", "monitor", "run_cache")


def _transfer_summary(out: Output, moved: Moved) -> None:
    """Print what a push, fetch or pull moved: the objects, what pull checked out, and the records
    (``--runs``: runs, experiments, monitor profiles; ``--run-cache``: run-cache entries) moved with them."""
    objects = moved.objects
    records = {name: getattr(moved, name) for name in MOVED_RECORDS if getattr(moved, name) is not None}
    placed = moved.checkout
    if out.json:
        report = objects.to_dict()
        if placed is not None:
            report["checkout"] = {
                "changed_files": placed.changed_files,
                "targets": [t.to_dict() for t in placed.targets],
            }
        report.update({name: record.to_dict() for name, record in records.items()})
        if "run_cache" in records:
            for warning in records["run_cache"].warnings:
                out.warn(warning)
        out.emit_json(report)
        return
    verb = "pushed" if objects.direction == "push" else "fetched"
    out.line(
        f"{verb} {objects.transferred} object(s), {human_bytes(objects.bytes)} ({objects.present} already there) "
        f"via {objects.remote}"
    )
    if objects.missing_locally:
        out.warn(f"{len(objects.missing_locally)} referenced object(s) are not in this cache and were not pushed")
    if placed is not None:
        out.line(f"checked out {placed.changed_files} file(s)")
    for record in records.values():
        out.line(record.summary())
        for warning in record.warnings:
            out.warn(warning)


def push(
    targets: list[str] | None = TARGETS,
    remote: str | None = REMOTE,
    all_commits: bool = typer.Option(False, "--all-commits", help="Also what any git commit references."),
    full: bool = typer.Option(
        False,
        "--full",
        help="Check every object on the remote, not only changed folders (repairs a remote that lost objects).",
    ),
    runs: bool = typer.Option(
        False,
        "--runs",
        help="Also send every ended run, experiment record and monitor profile the remote lacks (after objects).",
    ),
    run_cache: bool = typer.Option(False, "--run-cache", help=RUN_CACHE_PUSH_HELP),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Send the objects the pointer files reference to a remote (only those it lacks)."""
    from ..workflows.data import push as do_push

    out = Output(json_output=json_output)
    moved = do_push(
        find_repo(),
        targets,
        remote=remote,
        all_commits=all_commits,
        full=full,
        runs=runs,
        run_cache=run_cache,
        jobs=jobs,
        progress=out.progress(),
    )
    _transfer_summary(out, moved)


def fetch(
    targets: list[str] | None = TARGETS,
    remote: str | None = REMOTE,
    all_commits: bool = typer.Option(False, "--all-commits", help="Also what any git commit references."),
    runs: bool = typer.Option(
        False,
        "--runs",
        help="First take the remote's runs, experiment records and monitor profiles this repo lacks (and objects).",
    ),
    run_cache: bool = typer.Option(False, "--run-cache", help=RUN_CACHE_PULL_HELP),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Download the objects the pointer files reference into the cache (no checkout)."""
    from ..workflows.data import fetch as do_fetch

    out = Output(json_output=json_output)
    moved = do_fetch(
        find_repo(),
        targets,
        remote=remote,
        all_commits=all_commits,
        runs=runs,
        run_cache=run_cache,
        jobs=jobs,
        progress=out.progress(),
    )
    _transfer_summary(out, moved)


def pull(
    targets: list[str] | None = TARGETS,
    remote: str | None = REMOTE,
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite workspace changes that are not in the cache."),
    runs: bool = typer.Option(
        False,
        "--runs",
        help="First take the remote's runs, experiment records and monitor profiles this repo lacks (and objects).",
    ),
    run_cache: bool = typer.Option(False, "--run-cache", help=RUN_CACHE_PULL_HELP),
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Fetch, then check out: the workspace ends up matching the pointer files."""
    from ..workflows.data import pull as do_pull

    out = Output(json_output=json_output)
    moved = do_pull(
        find_repo(),
        targets,
        remote=remote,
        force=force,
        runs=runs,
        run_cache=run_cache,
        jobs=jobs,
        progress=out.progress(),
    )
    _transfer_summary(out, moved)


def gc(
    all_commits: bool = typer.Option(False, "--all-commits", help="Keep what any git commit references."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be removed."),
    force: bool = typer.Option(False, "--force", "-f", help="Go on when a tracked folder's manifest is missing."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Remove cached objects that nothing references (workspace pointer files; --all-commits: git history)."""
    from ..workflows.data import gc as do_gc

    out = Output(json_output=json_output)
    result = do_gc(find_repo(), all_commits=all_commits, dry_run=dry_run, force=force)
    if out.json:
        out.emit_json(result.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    out.line(f"{verb} {result.removed} object(s), {human_bytes(result.freed_bytes)}; kept {result.kept}")
    for label in result.unexpanded:
        out.warn(f"{label}: its manifest is not in the cache, so its files could not be told apart")


def verify(
    jobs: int | None = JOBS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Rehash every object in the cache and report corruption (exit 1 when any)."""
    from ..workflows.data import verify as do_verify

    out = Output(json_output=json_output)
    result = do_verify(find_repo(), jobs=jobs, progress=out.progress())
    if out.json:
        out.emit_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "corrupt": [b.to_dict() for b in result.corrupt],
                "missing": [b.to_dict() for b in result.missing],
            }
        )
    else:
        for bad in result.corrupt:
            out.row((bad.problem, "red"), (bad.hash, None), (bad.used_by or "", None))
            if bad.detail:
                out.warn(bad.detail)
        for bad in result.missing:
            out.line(f"missing\t{bad.hash}\t{bad.used_by or ''}")
        out.info(
            f"checked {result.checked} object(s): {len(result.corrupt)} corrupt, "
            f"{len(result.missing)} referenced but not in the cache"
        )
    if not result.ok:
        raise CheckFailed(
            f"{len(result.corrupt)} corrupt object(s) in the cache",
            hint="re-add the data they belong to, or delete them and 'mlops pull' good copies",
        )
