"""Registry commands: register, models [show], promote, approve, rollback, alias, history,
lineage, card, audit verify. Thin: each parses, calls mlops.registry, and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import AuditTampered, PromotionRefused, UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, boundary, command, report
from .output import Output, fmt_value, human_bytes


class _ModelsGroup(TyperGroup):
    """`mlops models NAME` is a natural slip for `mlops models show NAME`: one house-style line
    (exit 2) instead of click's boxed usage error."""

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        word = args[0] if args else None
        if word and not word.startswith("-") and self.get_command(ctx, word) is None:
            error = UsageError(
                f"'mlops models' has no command '{word}'", hint=f"to show a model: mlops models show {word}"
            )
            report(Output(json_output="--json" in args), error)
            raise typer.Exit(error.exit_code)
        return super().resolve_command(ctx, args)


models_app = typer.Typer(no_args_is_help=False, invoke_without_command=True, cls=_ModelsGroup)
audit_app = typer.Typer(no_args_is_help=True)

STAGE_STYLE = {"production": "bold green", "staging": "yellow", "archived": "dim", "none": None}
BY_OPTION = typer.Option(
    None, "--by", help="Who acts (default: $MLOPS_USER, else git config user.email, else the login name)."
)


def register(app: typer.Typer) -> None:
    command(app, "register")(register_model)
    app.add_typer(models_app, name="models", help="Registered models: list them (no subcommand) or show one.")
    command(app, "promote")(promote)
    command(app, "approve")(approve)
    command(app, "rollback")(rollback)
    command(app, "alias")(alias)
    command(app, "history")(history)
    command(app, "lineage")(lineage)
    command(app, "card")(card)
    app.add_typer(audit_app, name="audit", help="The registry's audit trail.")


def _short(digest: Any, n: int = 12) -> str:
    return str(digest)[:n] if digest else "-"


def _warnings(out: Output, warnings: Any) -> None:
    for text in warnings or ():
        out.warn(text)


# --- register ------------------------------------------------------------------------------------


def register_model(
    name: str = typer.Argument(..., help="Model name (letters, digits, '.', '_', '-')."),
    path: Path | None = typer.Argument(
        None,
        help="The artifact: a file (e.g. models/model.pkl), a folder, or a Python class (src/model.py:ChurnModel). "
        "Default: the model mlops.log_model(model, NAME) saved in the --run, else the path pipeline.yaml's "
        "'artifacts:' declares for NAME (its desc, type and labels recorded).",
    ),
    run: str | None = typer.Option(
        None, "--run", help="The run that produced it (id, prefix or name): metrics, params, git commit, data."
    ),
    description: str = typer.Option(
        "", "--description", "-d", help="What the version is, for people and the model card."
    ),
    data: list[str] | None = typer.Option(
        None, "--data", help="Tracked data behind it (a path with a pointer file or a pipeline output); repeatable."
    ),
    signature_from: Path | None = typer.Option(
        None, "--signature-from", help="A CSV/Parquet file to read input dtypes from (default: the training data)."
    ),
    no_signature: bool = typer.Option(False, "--no-signature", help="Do not load the model to infer its signature."),
    artifacts: Path | None = typer.Option(
        None,
        "--artifacts",
        help="With FILE.py:Class: the folder its load(artifacts_dir) reads, snapshotted with the code.",
    ),
    by: str | None = BY_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Register a file or folder as the model's next version (stage: none)."""
    from ..workflows.registration import register as do_register

    out = Output(json_output=json_output)
    repo = find_repo()
    result = do_register(
        repo,
        name,
        path,
        run=run,
        description=description,
        actor=by,
        data=data or (),
        signature_from=signature_from,
        infer_signature=not no_signature,
        artifacts=artifacts,
        progress=out.progress(),
    )
    mv = result.version
    if out.json:
        out.emit_json(result.to_dict())
        return
    _warnings(out, result.warnings)
    out.line(f"{mv.ref()}\t(stage: none)", style="bold")
    out.info(
        f"registered {mv.filename} as {mv.ref()}: {mv.flavor}, {human_bytes(mv.size)}, artifact {_short(mv.artifact)}"
        + (f", run {mv.run_id}" if mv.run_id else "")
        + (f", {len(mv.data)} data snapshot(s)" if mv.data else "")
    )
    out.info("commit .mlops/registry/ to share it; 'mlops push' sends the artifact to the remote")


# --- models --------------------------------------------------------------------------------------


@models_app.callback()
def models(ctx: typer.Context, json_output: bool = JSON_OPTION) -> None:
    """Every model: latest version, who is in staging and production, aliases."""
    if ctx.invoked_subcommand is None:
        boundary(_models_list)(json_output=json_output)


def _models_list(json_output: bool = False) -> None:
    from ..registry import list_models

    out = Output(json_output=json_output)
    summaries = list_models(find_repo())
    if out.json:
        out.emit_json({"models": [s.to_dict() for s in summaries]})
        return
    if not summaries:
        out.info("no models registered yet (mlops register NAME PATH)")
        return
    rows = [
        [
            s.name,
            s.latest or "-",
            s.staging or "-",
            s.production or "-",
            ", ".join(f"{a}=v{v}" for a, v in s.aliases.items()) or "-",
            s.versions,
            s.description or "",
        ]
        for s in summaries
    ]
    out.table(
        ["model", "latest", "staging", "production", "aliases", "versions", "description"],
        rows
        if out.tty
        else [["model", "latest", "staging", "production", "aliases", "versions", "description"], *rows],
    )


@command(models_app, "show")
def models_show(
    name: str = typer.Argument(..., help="Model name, or a reference (churn:3, churn@production)."),
    version: str | None = typer.Option(None, "--version", "-v", help="Show this version in full."),
    json_output: bool = JSON_OPTION,
) -> None:
    """One model's versions, or one version in full (--version, or a reference)."""
    from ..registry import get_version, resolve, versions

    out = Output(json_output=json_output)
    repo = find_repo()
    if version is not None or ":" in name or "@" in name:
        if version is not None and (":" in name or "@" in name):
            raise UsageError("give either a reference (churn:3) or --version, not both")
        mv = get_version(repo, name, version) if version is not None else resolve(repo, name)
        if out.json:
            out.emit_json(mv.to_dict())
            return
        _show_version(out, mv)
        return
    listed = versions(repo, name)
    from ..workflows.production import view

    serving = view(repo, name)
    if out.json:
        from ..registry.store import require_model

        doc = require_model(repo, name)
        out.emit_json(
            {
                "model": name,
                "aliases": doc.get("aliases") or {},
                "production_history": doc.get("production_history") or [],
                "versions": [v.to_dict() for v in listed],
                "serving": serving.to_dict(),
            }
        )
        return
    rows = [
        [
            f"v{v.version}",
            v.stage,
            ", ".join(v.aliases) or "-",
            v.flavor,
            _short(v.artifact),
            v.run_id or "-",
            v.registered_by,
            v.registered_at[:19].replace("T", " "),
            v.description,
        ]
        for v in listed
    ]
    columns = ["version", "stage", "aliases", "flavor", "artifact", "run", "by", "registered", "description"]
    out.table(columns, rows, styles=[STAGE_STYLE.get(v.stage) for v in listed], header=True)
    _serving_lines(out, serving)


def _serving_lines(out: Output, serving: Any) -> None:
    """The deployment beside the registry: the same words `mlops canary status` uses."""
    if serving.deployed is None:
        return
    state = serving.agreement
    text = f"deployment: production v{serving.deployed}"
    if serving.candidate:
        text += f", {serving.candidate['mode']} v{serving.candidate['version']}"
    text += f" ({state['message'] or ('pinned' if serving.pinned else 'follows the registry')})"
    out.info(text)
    if state.get("hint") and state["message"]:
        out.info(state["hint"])


def _show_version(out: Output, mv: Any) -> None:
    facts = [
        ("model", mv.ref()),
        ("stage", mv.stage),
        ("aliases", ", ".join(mv.aliases) or "-"),
        (
            "artifact",
            f"{mv.artifact} ({mv.kind}, {human_bytes(mv.size)}"
            + (f", {mv.files} files" if mv.kind == "dir" else "")
            + ")",
        ),
        ("sha256", mv.sha256 or "-"),
        ("file", f"{mv.filename} (from {mv.source})"),
        ("flavor", mv.flavor),
        ("run", mv.run_id or "-"),
        ("git", mv.git_commit or "-"),
        ("by", f"{mv.registered_by} at {mv.registered_at}"),
        ("about", mv.description or "-"),
    ]
    for label, value in facts:
        out.row((f"{label:<9}", "bold"), (str(value), STAGE_STYLE.get(str(value)) if label == "stage" else None))
    if mv.signature:
        out.line()
        out.line("signature:", style="bold")
        for side in ("inputs", "outputs"):
            for item in mv.signature.get(side) or []:
                out.line(f"  {side[:-1]:<6} {item['name']}: {item['dtype']}")
    if mv.metrics:
        out.line()
        out.line("metrics:", style="bold")
        for key, value in sorted(mv.metrics.items()):
            out.line(f"  {key} = {fmt_value(value)}")
    if mv.data:
        out.line()
        out.line("data:", style="bold")
        for snap in mv.data:
            out.line(f"  {snap['path']} ({snap.get('kind')}, {_short(snap['hash'])})")
    if mv.approvals:
        out.line()
        out.line("approvals:", style="bold")
        for a in mv.approvals:
            out.line(
                f"  {a.get('stage')}: {a.get('by')} at {a.get('at')}"
                + (f" - {a['comment']}" if a.get("comment") else "")
            )
    if mv.stage_history:
        out.line()
        out.line("stages:", style="bold")
        for h in mv.stage_history:
            out.line(
                f"  {h.get('at')}  {h.get('from')} -> {h.get('stage')} by {h.get('by')}"
                + (" (forced)" if h.get("forced") else "")
                + (f": {h['reason']}" if h.get("reason") else "")
            )
    if mv.drift_checks:
        out.line()
        out.line("drift checks:", style="bold")
        for c in mv.drift_checks:
            out.line(f"  {c.get('at')}  {'DRIFT' if c.get('drifted') else 'ok'}")


# --- transitions ---------------------------------------------------------------------------------


def _target(name: str, version: str | None) -> tuple[str, str | None]:
    """NAME VERSION, or one reference (churn@staging, churn:3) naming both. The reference is
    passed on as is: the registry resolves it inside its lock, so a promote of churn@staging
    acts on the version in staging at that moment, not at the moment the command started."""
    if ":" in name or "@" in name:
        if version is not None:
            raise UsageError(f"give either a reference ({name}) or NAME VERSION, not both")
        return name, None
    if version is None:
        raise UsageError(f"which version of '{name}'?", hint=f"name it: {name} VERSION, {name}:VERSION or {name}@STAGE")
    return name, version


def _checks_table(out: Output, checks: list[dict[str, Any]]) -> None:
    for c in checks:
        mark = "pass" if c["ok"] else "FAIL"
        seen = fmt_value(c["seen"]) + (f" ({c['detail']})" if c.get("detail") else "")
        out.row((mark, "green" if c["ok"] else "bold red"), (c["rule"], None), (f"seen: {seen}", "dim"))


def promote(
    name: str = typer.Argument(..., help="Model name, or a reference (churn@staging, churn:3) without VERSION."),
    version: str | None = typer.Argument(None, help="Version number (3 or v3)."),
    to: str = typer.Option(..., "--to", help="Target stage: staging, production, archived or none."),
    reason: str = typer.Option("", "--reason", "-m", help="Why (recorded in the audit trail; required with --force)."),
    force: bool = typer.Option(False, "--force", help="Override failed gates (needs --reason; recorded as forced)."),
    by: str | None = BY_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Move a version to a stage if every policy gate holds (exit 1 listing each failed rule).

    A model's deployment file (mlops deploy) follows its new production version in the same step,
    unless it is pinned."""
    from ..workflows.production import promote as do_promote

    out = Output(json_output=json_output)
    repo = find_repo()
    name, version = _target(name, version)
    try:
        change = do_promote(repo, name, version, to, reason=reason, by=by, force=force)
    except PromotionRefused as refused:
        if out.json:
            out.emit_json({**refused.to_dict(), "changed": False})
        else:
            out.line(
                f"refused: {refused.fields.get('model')}:{refused.fields.get('version')} -> {to}", style="bold red"
            )
            _checks_table(out, refused.fields.get("checks") or [])
        raise refused.after_report() from None
    result = change.result
    if out.json:
        out.emit_json(change.to_dict())
        return
    name = result.name
    checks = [c.to_dict() for c in result.checks]
    if not result.changed:
        out.line(f"{name}:{result.version} is already in {result.to_stage}")
        _deployment_news(out, repo, change)  # a promotion run again repairs a deployment left behind
        return
    out.line(
        f"{name}:{result.version}\t{result.from_stage} -> {result.to_stage}" + ("\t(forced)" if result.forced else ""),
        style="bold",
    )
    _checks_table(out, checks)
    if result.forced:
        out.warn(f"{len(result.overridden)} failed rule(s) overridden with --force: recorded in the audit trail")
    if result.displaced is not None:
        out.info(f"{name}:{result.displaced} left {result.to_stage} -> {result.displaced_to}")
    if not checks:
        out.info(f"no gates for {result.to_stage} in .mlops/policy.yaml")
    _deployment_news(out, repo, change)


def _deployment_news(out: Output, repo: Any, change: Any) -> None:
    """What the deployment file did about a registry change (followed it, or is pinned)."""
    from ..serve.deployment import deployment_path

    dep = change.deployment
    if change.followed and dep is not None:
        out.info(
            f"{repo.rel(deployment_path(repo, dep.model))} follows: production v{dep.production} "
            "(a running 'mlops serve' switches within a second)"
        )
    for warning in change.warnings:
        out.warn(warning)


def approve(
    name: str = typer.Argument(..., help="Model name, or a reference (churn@staging, churn:3) without VERSION."),
    version: str | None = typer.Argument(None, help="Version number."),
    to: str = typer.Option(..., "--to", help="The stage the approval is for (e.g. production)."),
    by: str | None = BY_OPTION,
    comment: str = typer.Option("", "--comment", "-m", help="A note kept with the approval."),
    sign: bool = typer.Option(
        False, "--sign", help="Sign the approval with your SSH key (ssh-keygen -Y sign, as git signs with SSH)."
    ),
    key: str | None = typer.Option(
        None, "--key", help="The SSH private key to sign with (default: git config user.signingkey)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Approve a version for a stage; gates count approvals by distinct people.

    The approver is your git identity (user.email) unless --by or $MLOPS_USER names another;
    --sign makes the approval checkable against .mlops/allowed_signers (mlops audit verify)."""
    from ..workflows.production import approve as do_approve

    out = Output(json_output=json_output)
    name, version = _target(name, version)
    result = do_approve(find_repo(), name, version, to, by=by, comment=comment, sign=sign, key=key)
    if out.json:
        out.emit_json(result.to_dict())
        return
    name = result.name
    signed = " (signed)" if result.signed else ""
    out.line(f"{name}:{result.version} approved for {result.stage} by {result.by}{signed}")
    if result.repeated:
        out.warn(f"{result.by} had approved it already: counted once")
    out.info(f"{len(result.approvers)} distinct approver(s) for {result.stage}: {', '.join(result.approvers)}")


def rollback(
    name: str = typer.Argument(..., help="Model name, or NAME@production."),
    reason: str = typer.Option("", "--reason", "-m", help="Why (recorded in the audit trail)."),
    by: str | None = BY_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Put the previous production version back in production; the current one is archived.

    A model's deployment file follows in the same step (unless it is pinned): running servers
    switch to the restored version."""
    from ..workflows.production import rollback as do_rollback

    out = Output(json_output=json_output)
    repo = find_repo()
    change = do_rollback(repo, name, reason=reason, by=by)
    result = change.result
    if out.json:
        out.emit_json(change.to_dict())
        return
    name = result.name
    out.line(f"{name}: production v{result.from_version} -> v{result.to_version}", style="bold")
    out.info(
        f"{name}:{result.from_version} archived; "
        f"{name}:{result.to_version} back in production (was {result.to_version_was})"
    )
    _deployment_news(out, repo, change)


def alias(
    name: str = typer.Argument(..., help="Model name (or a reference, churn@staging, followed by the alias)."),
    target: str = typer.Argument(
        ..., help="The version to point at (with ALIAS), or the alias to remove (with --delete)."
    ),
    alias_name: str | None = typer.Argument(None, metavar="[ALIAS]", help="The alias, e.g. champion."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias named by the second argument."),
    by: str | None = BY_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Point an alias at a version (mlops alias churn 3 champion), \
or remove one (mlops alias churn champion --delete)."""
    from ..registry import delete_alias, set_alias

    out = Output(json_output=json_output)
    repo = find_repo()
    if delete:
        if alias_name is not None:
            raise UsageError("with --delete, name only the alias: mlops alias NAME ALIAS --delete")
        result = delete_alias(repo, name, target, actor=by)
    elif ":" in name or "@" in name:  # mlops alias churn@staging champion: resolved inside the lock
        if alias_name is not None:
            raise UsageError(f"after a reference ({name}) comes only the alias: mlops alias {name} ALIAS")
        result = set_alias(repo, name, None, target, actor=by)
    else:
        if alias_name is None:
            raise UsageError(
                "name the alias: mlops alias NAME VERSION ALIAS", hint="or remove one: mlops alias NAME ALIAS --delete"
            )
        result = set_alias(repo, name, target, alias_name, actor=by)
    if out.json:
        out.emit_json(result.to_dict())
        return
    name = result.name
    if result.version is None:
        out.line(f"{name}@{result.alias} removed (was v{result.previous})")
    elif result.previous == result.version:
        out.line(f"{name}@{result.alias} already -> v{result.version}")
    else:
        out.line(
            f"{name}@{result.alias} -> v{result.version}" + (f" (was v{result.previous})" if result.previous else "")
        )


# --- history, lineage, card, audit ---------------------------------------------------------------------

EVENT_STYLE = {
    "promotion_refused": "red",
    "rolled_back": "magenta",
    "approved": "cyan",
    "registered": "bold",
    "interrupted": "yellow",
}


def _describe(e: dict[str, Any]) -> str:
    event = e.get("event")
    if event == "registered":
        return (
            f"v{e.get('version')} registered ({e.get('flavor')}, artifact {_short(e.get('artifact'))}"
            + (f", run {e['run_id']}" if e.get("run_id") else "")
            + ")"
        )
    if event == "stage_changed":
        text = f"v{e.get('version')} {e.get('from_stage')} -> {e.get('to_stage')}"
        if e.get("forced"):
            text += " FORCED over: " + "; ".join(c.get("rule", "") for c in e.get("overridden") or [])
        return text
    if event == "promotion_refused":
        return f"v{e.get('version')} -> {e.get('to_stage')} refused: " + "; ".join(
            f"{c.get('rule')} (seen {fmt_value(c.get('seen'))})" for c in e.get("failed") or []
        )
    if event == "approved":
        return (
            f"v{e.get('version')} approved for {e.get('stage')}"
            + (" (again: counted once)" if e.get("repeated") else "")
            + (f": {e['comment']}" if e.get("comment") else "")
        )
    if event == "rolled_back":
        return f"rollback: production v{e.get('from_version')} -> v{e.get('to_version')}"
    if event == "alias_set":
        return f"@{e.get('alias')} -> v{e.get('version')}" + (f" (was v{e['previous']})" if e.get("previous") else "")
    if event == "alias_removed":
        return f"@{e.get('alias')} removed (was v{e.get('version')})"
    if event == "drift_check":
        return f"v{e.get('version')} drift check: {'DRIFT' if e.get('drifted') else 'no drift'}"
    if event == "interrupted":
        return str(e.get("note"))
    skip = {"seq", "time", "event", "prev", "hash", "model", "actor", "reason", "state"}
    return " ".join(f"{k}={fmt_value(v)}" for k, v in e.items() if k not in skip)


def history(
    name: str = typer.Argument(..., help="Model name, or a reference (churn@production): its model's history."),
    limit: int = typer.Option(0, "--limit", "-n", min=0, help="Only the last N entries (0: all)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Every registration, approval, transition, refusal and rollback of a model: who, when, why."""
    from ..registry import history as do_history
    from ..registry.refs import parse_ref

    out = Output(json_output=json_output)
    entries = do_history(find_repo(), name)
    name = parse_ref(name).name
    if limit:
        entries = entries[-limit:]
    if out.json:
        out.emit_json(
            {"model": name, "entries": [{k: v for k, v in e.items() if k not in ("prev", "state")} for e in entries]}
        )
        return
    if not entries:
        out.info(f"no audit entries for {name}")
        return
    rows = [
        [
            f"#{e.get('seq')}",
            str(e.get("time", ""))[:19].replace("T", " "),
            e.get("event"),
            e.get("actor") or "-",
            _describe(e),
            e.get("reason") or "",
        ]
        for e in entries
    ]
    columns = ["seq", "when (UTC)", "event", "who", "what", "why"]
    out.table(columns, rows, styles=[EVENT_STYLE.get(str(e.get("event"))) for e in entries], header=True)


def lineage(
    ref: str = typer.Argument(..., help="A model reference: churn:3, churn@production, churn@champion, churn."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Where a version came from: model <- run <- params, data snapshots <- git commit."""
    from ..registry import resolve
    from ..registry.lineage import lineage_doc

    out = Output(json_output=json_output)
    doc = lineage_doc(resolve(find_repo(), ref))
    if out.json:
        out.emit_json(doc)
        return
    for line in render_lineage(doc):
        out.line(line)


def render_lineage(doc: dict[str, Any]) -> list[str]:
    model = doc["model"]
    lines = [
        f"{model['ref']} ({model['stage']}) {model['filename']} {model['flavor']} artifact {_short(model['artifact'])}"
    ]
    training_set = doc.get("training_set")
    if training_set:  # a feature-store training set (docs/features.md)
        lines.append(
            f"├─ feature service {training_set.get('service')} ({training_set.get('definitions_hash', '')[:19]})"
        )
        for name, source in (training_set.get("sources") or {}).items():
            lines.append(f"│    <- source {name}: {source.get('path')} ({_short(source.get('hash') or '')})")
    run = doc.get("run")
    if not run:
        lines.append("└─ no run linked (registered without --run)")
        for snap in doc.get("data") or []:
            lines.append(f"   data {snap['path']} ({snap.get('kind')}, {_short(snap['hash'])})")
        return lines
    lines.append(
        f"└─ run {run['id']}" + (f" '{run['name']}'" if run.get("name") else "") + f" ({run.get('status') or '-'})"
    )
    params = doc.get("params") or {}
    lines.append(
        "   ├─ params: " + (", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(params.items())) if params else "none")
    )
    for stage in doc.get("stages") or []:
        lines.append(f"   ├─ stage {stage['stage']}" + (" (made the artifact)" if stage.get("made_artifact") else ""))
        for dep in stage.get("deps") or []:
            if dep.get("data"):
                lines.append(f"   │    <- data {dep['path']} ({dep.get('kind')}, {_short(dep['hash'])})")
    stages = doc.get("stages") or []
    if not stages:
        for snap in doc.get("data") or []:
            lines.append(
                f"   ├─ data {snap['path']} ({snap.get('kind')}, {_short(snap['hash'])}, {snap.get('source', '')})"
            )
    commit = doc.get("git_commit")
    lines.append(
        f"   └─ git commit {commit or '-'}"
        + (" (dirty: uncommitted changes at run time)" if run.get("git_dirty") else "")
    )
    return lines


def card(
    ref: str = typer.Argument(..., help="A model reference (churn:3, churn@production) or name with a VERSION."),
    version: str | None = typer.Argument(None, help="Version number, when the first argument is a bare name."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the card to this file (default: stdout)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """A Markdown model card: purpose, metrics, data, signature, lineage, approvals, history."""
    from ..fsio import check_output, write_output
    from ..registry import get_version, resolve
    from ..registry import history as do_history
    from ..registry.card import render_card

    out = Output(json_output=json_output)
    if output is not None:
        check_output(output)
    repo = find_repo()
    mv = get_version(repo, ref, version) if version is not None else resolve(repo, ref)
    text = render_card(
        mv,
        [e for e in do_history(repo, mv.name) if e.get("version") == mv.version or e.get("to_version") == mv.version],
    )
    if output is not None:
        write_output(output, text)
    if out.json:
        out.emit_json({"ref": mv.ref(), "output": str(output) if output else None, "markdown": text})
        return
    if output is None:
        import sys

        sys.stdout.write(text)
    else:
        out.info(f"wrote {output}: model card of {mv.ref()}")


@command(audit_app, "verify")
def audit_verify(json_output: bool = JSON_OPTION) -> None:
    """Check the audit log is whole and untampered: chain, order, head, model files (exit 1 if not)."""
    from ..registry import verify_audit

    out = Output(json_output=json_output)
    report = verify_audit(find_repo())
    if out.json:
        out.emit_json(report.to_dict())
    else:
        for problem in report.problems:
            out.row((problem.kind, "bold red"), (problem.message, None))
        for note in report.notes:
            out.warn(note.message)
        if report.ok:
            out.line(
                f"audit log ok: {report.entries} entries, chain and head intact, {report.models} model file(s) match",
                style="green",
            )
    if not report.ok:
        first = report.problems[0]
        raise AuditTampered(
            f"audit log tampered: {len(report.problems)} problem(s); first: {first.message}",
            hint="restore .mlops/registry/ from git (git log -p .mlops/registry/) and find who changed it",
        ).after_report()
