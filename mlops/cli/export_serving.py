"""`mlops export` commands of the serving side (see export.py): a model as a bundle, a container
build context, Kubernetes manifests and a KServe InferenceService (mlops/exporters/)."""

from __future__ import annotations

from typing import Any

import typer

from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output


def register(group: typer.Typer) -> None:
    """Add this side's commands to the `export` group."""
    command(group, "model")(export_model)
    command(group, "docker")(export_docker)


def _warnings(out: Output, result: Any) -> None:
    for warning in result.warnings:
        out.warn(warning)


def export_model(
    ref: str = typer.Argument(..., help="The version to export: churn@production, churn:4 or churn (its latest)."),
    output: str = typer.Option(..., "--output", "-o", help="The bundle folder to create (new or empty)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write a model bundle: the artifact with hashes, signature, card, version facts and pinned requirements.

    Serve it anywhere with 'mlops serve --model-dir DIR' (no repository needed): every file's
    hash is checked before the model is loaded, and a changed, extra or missing file is refused."""
    from ..exporters.bundle import check_new_folder, plan_bundle, write_bundle

    out = Output(json_output=json_output)
    check_new_folder(output)
    result = write_bundle(plan_bundle(find_repo(), ref), output)
    _warnings(out, result)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.row(("exported", "bold"), (f"{result.ref} -> {result.path} ({len(result.files) + 1} files)", None))
    out.row(("digest  ", "bold"), (result.digest, "green"))
    out.info(f"serve it: mlops serve --model-dir {output} --expect-digest {result.digest}")


def export_docker(
    ref: str = typer.Argument(..., help="The version to build an image of: churn@production, churn:4."),
    output: str = typer.Option(..., "--output", "-o", help="The build context folder to create (new or empty)."),
    wheel: str | None = typer.Option(
        None, "--wheel", help="An mlops wheel to build with (put in wheels/; otherwise pip takes mlops from the index)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write a container build context: Dockerfile, the model bundle, pinned requirements (no daemon needed).

    Build it with 'docker build', 'buildah bud' or kaniko unchanged: a slim Python base, a
    non-root user, EXPOSE 8080, a HEALTHCHECK on /v2/health/ready, the port from $PORT, and
    'mlops serve --model-dir' as the command."""
    from ..exporters.bundle import check_new_folder
    from ..exporters.docker import export_docker as do_export

    out = Output(json_output=json_output)
    check_new_folder(output)
    result = do_export(find_repo(), ref, output, wheel=wheel)
    _warnings(out, result)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.row(("exported", "bold"), (f"{result.ref} -> {result.path} (FROM {result.image_base})", None))
    out.row(("command ", "bold"), (" ".join(result.command), None))
    out.row(("bundle  ", "bold"), (result.bundle_digest, "green"))
    out.info(f"build it: docker build -t {result.ref.replace(':', '-v')} {output}")
