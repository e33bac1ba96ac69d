"""`mlops remote add|list|remove|default|modify`: remotes in .mlops/config.yaml."""

from __future__ import annotations

import typer

from ..errors import UsageError
from ..repo.config import REMOTE_KEYS
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output

app = typer.Typer(no_args_is_help=True)

# never written to the committed config.yaml: 'remote modify KEY VALUE --local' only
SECRET_KEYS = {"access_key_id", "secret_access_key", "account_key", "connection_string", "sas_token", "password"}


@command(app, "add")
def add(
    name: str = typer.Argument(..., help="Remote name."),
    url: str = typer.Argument(
        ...,
        help=(
            "A folder path, file://PATH, s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix "
            "or ssh://user@host[:port]/path."
        ),
    ),
    default: bool = typer.Option(False, "--default", "-d", help="Make it the default remote."),
    local: bool = typer.Option(False, "--local", help="Write to config.local.yaml (not committed)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a remote of the same name."),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="S3-compatible store: its endpoint (MinIO, Ceph, R2, ...)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Add a remote, and probe whether it honours conditional writes (the shared run cache needs them)."""
    from ..remotes.base import open_remote

    out = Output(json_output=json_output)
    repo = find_repo()
    settings = {"url": url, **({"endpoint_url": endpoint_url} if endpoint_url else {})}
    remote = open_remote(name, settings, root=repo.root)  # refuses a URL scheme it cannot serve
    with repo.editing_config() as config:
        if name in config.remotes and not force:
            raise UsageError(
                f"remote '{name}' already exists", hint="use --force to replace it, or 'mlops remote modify'"
            )
        doc = config.local if local else config.shared
        doc.setdefault("remotes", {})[name] = settings
        if default:
            doc.setdefault("core", {})["remote"] = name
    honoured, warnings = _probe(remote, name, probe_now=not url.startswith("s3://") or bool(endpoint_url))
    for warning in warnings:
        out.warn(warning)
    if out.json:
        out.emit_json(
            {"name": name, "url": url, "default": default, "conditional_writes": honoured, "warnings": warnings}
        )
    else:
        out.info(f"remote '{name}' -> {url}{' (default)' if default else ''}")


def _probe(remote: object, name: str, *, probe_now: bool) -> tuple[bool | None, list[str]]:
    """Whether the store honours conditional writes (None: not known), and the warnings to show.

    An S3 remote added without its endpoint is not probed here (the endpoint usually comes next,
    with 'remote modify'); AWS S3 itself honours them. A store that cannot be reached is a warning."""
    from ..errors import MlopsError

    if not probe_now:
        return None, []
    try:
        honoured = remote.probe_conditional_create()  # type: ignore[attr-defined]
    except MlopsError as exc:
        return None, [f"could not probe remote '{name}' for conditional writes: {exc.message}"]
    return honoured, [] if honoured else _probe_warning(name)


@command(app, "probe")
def probe(name: str = typer.Argument(..., help="Remote name."), json_output: bool = JSON_OPTION) -> None:
    """Check that a remote honours conditional writes (creates and removes a probe ref)."""
    from ..data.transfer import get_remote

    out = Output(json_output=json_output)
    remote = get_remote(find_repo(), name)
    honoured = remote.probe_conditional_create()  # an unreachable remote fails here: it was asked for
    warnings = [] if honoured else _probe_warning(name)
    for warning in warnings:
        out.warn(warning)
    if out.json:
        out.emit_json({"name": name, "conditional_writes": honoured, "warnings": warnings})
    elif honoured:
        out.line(f"remote '{name}' honours conditional writes")


def _probe_warning(name: str) -> list[str]:
    return [
        f"remote '{name}' does not honour conditional writes (If-None-Match / exclusive create): two machines "
        "finishing the same stage may both write its shared run-cache entry (the last one stands)"
    ]


@command(app, "modify")
def modify(
    name: str = typer.Argument(..., help="Remote name."),
    key: str = typer.Argument(..., help=f"One of: {', '.join(sorted(REMOTE_KEYS))}."),
    value: str = typer.Argument(..., help="The new value."),
    local: bool = typer.Option(False, "--local", help="Write to config.local.yaml (for secrets)."),
) -> None:
    """Set one setting of a remote (endpoint_url, region, credentials...)."""
    if key not in REMOTE_KEYS:
        raise UsageError(f"unknown remote setting '{key}'", hint=f"one of: {', '.join(sorted(REMOTE_KEYS))}")
    if key in SECRET_KEYS and not local:
        raise UsageError(
            f"'{key}' is a secret: keep it out of git", hint=f"mlops remote modify {name} {key} VALUE --local"
        )
    if key == "jobs" and not value.isdigit():
        raise UsageError(f"'jobs' must be a whole number, found {value!r}")
    with find_repo().editing_config() as config:
        if name not in config.remotes:
            raise UsageError(f"no remote named '{name}'", hint="see 'mlops remote list'")
        doc = config.local if local else config.shared
        doc.setdefault("remotes", {}).setdefault(name, {})[key] = int(value) if key == "jobs" else value


@command(app, "remove")
def remove(name: str = typer.Argument(..., help="Remote name.")) -> None:
    """Remove a remote (its objects stay where they are)."""
    with find_repo().editing_config() as config:
        found = False
        for doc in (config.shared, config.local):
            if name in (doc.get("remotes") or {}):
                del doc["remotes"][name]
                found = True
            if (doc.get("core") or {}).get("remote") == name:
                del doc["core"]["remote"]
        if not found:
            raise UsageError(f"no remote named '{name}'", hint="see 'mlops remote list'")


@command(app, "default")
def default(name: str = typer.Argument(..., help="Remote name.")) -> None:
    """Make a remote the default for push, pull and fetch."""
    with find_repo().editing_config() as config:
        if name not in config.remotes:
            raise UsageError(f"no remote named '{name}'", hint="see 'mlops remote list'")
        config.shared.setdefault("core", {})["remote"] = name


@command(app, "list")
def list_remotes(json_output: bool = JSON_OPTION) -> None:
    """List remotes."""
    repo = find_repo()
    out = Output(json_output=json_output)
    default_name = repo.config.default_remote
    rows = [
        {
            "name": n,
            "url": s["url"],
            "default": n == default_name,
            **{k: v for k, v in s.items() if k not in SECRET_KEYS | {"url"}},
        }
        for n, s in sorted(repo.config.remotes.items())
    ]
    if out.json:
        out.emit_json({"remotes": rows})
        return
    out.table(["name", "url", "default"], [(r["name"], r["url"], "*" if r["default"] else "") for r in rows])
