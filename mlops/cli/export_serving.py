"""`mlops export` commands of the serving side (see export.py): a model as a bundle, a container
build context, Kubernetes manifests and a KServe InferenceService (mlops/exporters/)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from ..errors import UsageError
from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output

F = TypeVar("F", bound=Callable[..., Any])


def register(group: typer.Typer) -> None:
    """Add this side's commands to the `export` group."""
    command(group, "model")(export_model)
    command(group, "docker")(export_docker)
    command(group, "k8s")(export_k8s)
    command(group, "kserve")(export_kserve)


def _warnings(out: Output, result: Any) -> None:
    for warning in result.warnings:
        out.warn(warning)


ONNX_OPTION = typer.Option(
    False,
    "--onnx",
    help="Also compile a scikit-learn model to ONNX (checked to answer like the pickle); the server then runs it "
    "with onnxruntime, without scikit-learn: several times faster to start, a fraction of the memory. "
    "Needs pip install 'mlops[onnx]'.",
)
CHECK_DATA_OPTION = typer.Option(
    None,
    "--check-data",
    help="With --onnx: rows (.csv or .parquet; the first 1,000) the ONNX form must answer like the pickle on "
    "(default: the version's training table, from the cache).",
)

TOLERANCE_OPTION = typer.Option(
    None,
    "--tolerance",
    min=0.0,
    max=1.0,
    help="With --onnx: how far a probability or predicted number may be from the pickle's (relative past 1; "
    "default 0.0001). Labels must always match.",
)


def export_model(
    ref: str = typer.Argument(..., help="The version to export: churn@production, churn:4 or churn (its latest)."),
    output: str = typer.Option(..., "--output", "-o", help="The bundle folder to create (new or empty)."),
    onnx: bool = ONNX_OPTION,
    check_data: str | None = CHECK_DATA_OPTION,
    tolerance: float | None = TOLERANCE_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Write a model bundle: the artifact with hashes, signature, card, version facts and pinned requirements.

    Serve it anywhere with 'mlops serve --model-dir DIR' (no repository needed): every file's
    hash is checked before the model is loaded, and a changed, extra or missing file is refused."""
    from ..exporters.bundle import check_new_folder, plan_bundle, write_bundle

    out = Output(json_output=json_output)
    _check_onnx_options(onnx, check_data, tolerance)
    check_new_folder(output)
    plan = plan_bundle(find_repo(), ref, onnx=onnx, check_data=check_data, tolerance=tolerance)
    result = write_bundle(plan, output)
    _warnings(out, result)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.row(("exported", "bold"), (f"{result.ref} -> {result.path} ({len(result.files) + 1} files)", None))
    out.row(("digest  ", "bold"), (result.digest, "green"))
    if result.compiled:
        check = result.compiled
        out.row(
            ("onnx    ", "bold"),
            (
                f"{check['path']}: answers like the pickle on {check['rows']} rows of {check['source']} "
                f"(largest difference {check['largest_difference']:.2g}, tolerance {check['tolerance']:g})",
                None,
            ),
        )
    out.info(f"serve it: mlops serve --model-dir {output} --expect-digest {result.digest}")


def _check_onnx_options(onnx: bool, check_data: str | None, tolerance: float | None) -> None:
    if check_data is not None and not onnx:
        raise UsageError("--check-data goes with --onnx (it is what the ONNX form is checked on)")
    if tolerance is not None and not onnx:
        raise UsageError("--tolerance goes with --onnx (it is how far the ONNX form may be from the pickle)")


def export_docker(
    ref: str = typer.Argument(..., help="The version to build an image of: churn@production, churn:4."),
    output: str = typer.Option(..., "--output", "-o", help="The build context folder to create (new or empty)."),
    wheel: str | None = typer.Option(
        None, "--wheel", help="An mlops wheel to build with (put in wheels/; otherwise pip takes mlops from the index)."
    ),
    onnx: bool = ONNX_OPTION,
    check_data: str | None = CHECK_DATA_OPTION,
    tolerance: float | None = TOLERANCE_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Write a container build context: Dockerfile, the model bundle, pinned requirements (no daemon needed).

    Build it with 'docker build', 'buildah bud' or kaniko unchanged: a slim Python base, a
    non-root user, EXPOSE 8080, a HEALTHCHECK on /v2/health/ready, the port from $PORT, and
    'mlops serve --model-dir' as the command."""
    from ..exporters.bundle import check_new_folder
    from ..exporters.docker import export_docker as do_export

    out = Output(json_output=json_output)
    _check_onnx_options(onnx, check_data, tolerance)
    check_new_folder(output)
    result = do_export(find_repo(), ref, output, wheel=wheel, onnx=onnx, check_data=check_data, tolerance=tolerance)
    _warnings(out, result)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.row(("exported", "bold"), (f"{result.ref} -> {result.path} (FROM {result.image_base})", None))
    out.row(("command ", "bold"), (" ".join(result.command), None))
    out.row(("bundle  ", "bold"), (result.bundle_digest, "green"))
    out.info(f"build it: docker build -t {result.image} {output}")


@dataclass(frozen=True)
class PodOptions:
    """The options `export k8s` and `export kserve` share for the server pods (``@pod_options``)."""

    image: str | None
    name: str | None
    namespace: str | None
    cpu: str
    memory: str
    memory_limit: str

    def sizing(self) -> Any:
        from ..exporters.k8s import Sizing

        return Sizing(cpu=self.cpu, memory=self.memory, memory_limit=self.memory_limit)


CPU_OPTION = typer.Option("500m", "--cpu", help="CPU each server requests (a Kubernetes quantity).")
MEMORY_OPTION = typer.Option("512Mi", "--memory", help="Memory each server requests.")
MEMORY_LIMIT_OPTION = typer.Option("1Gi", "--memory-limit", help="Memory limit of each server.")
IMAGE_OPTION = typer.Option(
    None, "--image", help="The image to run (default NAME:vVERSION, the tag 'mlops export docker' suggests)."
)
NAME_OPTION = typer.Option(None, "--name", help="The Kubernetes object name (default: the model's name).")
NAMESPACE_OPTION = typer.Option(None, "--namespace", "-n", help="The namespace (default: none, kubectl's own).")
POD_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=annotation)
    for name, annotation, option in (
        ("image", str | None, IMAGE_OPTION),
        ("name", str | None, NAME_OPTION),
        ("namespace", str | None, NAMESPACE_OPTION),
        ("cpu", str, CPU_OPTION),
        ("memory", str, MEMORY_OPTION),
        ("memory_limit", str, MEMORY_LIMIT_OPTION),
    )
]


def pod_options(fn: F) -> F:
    """Give a command the pod options in place of its ``pod: PodOptions`` parameter: typer sees the
    six options (same place in --help), the command gets them as one ``PodOptions``."""
    signature = inspect.signature(fn, eval_str=True)
    hints = typing.get_type_hints(fn)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        parameters.extend(POD_OPTIONS if parameter.name == "pod" else [parameter])
    names = [p.name for p in POD_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["pod"] = PodOptions(**{name: kwargs.pop(name) for name in names})
        return fn(*args, **kwargs)

    del hints["pod"]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, **{p.name: p.annotation for p in POD_OPTIONS}}
    return wrapper  # type: ignore[return-value]


@pod_options
def export_k8s(
    ref: str = typer.Argument(..., help="The version to run: churn@production, churn:4."),
    output: str = typer.Option(..., "--output", "-o", help="The folder to create (new or empty)."),
    replicas: int = typer.Option(2, "--replicas", min=1, max=1000, help="Servers (the autoscaler's minimum)."),
    max_replicas: int | None = typer.Option(
        None, "--max-replicas", min=1, help="The autoscaler's maximum (default 3x --replicas)."
    ),
    target_cpu: int = typer.Option(70, "--target-cpu", min=1, max=100, help="Scale on this average CPU use, %."),
    target_rps: float | None = typer.Option(
        None,
        "--target-rps",
        min=0.001,
        help="Scale on requests per second per pod instead (needs a metrics adapter, see docs/serving.md).",
    ),
    pod: PodOptions = None,  # type: ignore[assignment] # the six options of @pod_options
    json_output: bool = JSON_OPTION,
) -> None:
    """Write Kubernetes manifests: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.

    The Deployment runs the image 'mlops export docker' builds, with probes on /v2/health/live
    and /v2/health/ready and a termination grace longer than the server's drain."""
    from ..exporters.bundle import check_new_folder
    from ..exporters.k8s import k8s_manifests, write_manifests

    out = Output(json_output=json_output)
    check_new_folder(output)
    version, chosen, files = k8s_manifests(
        find_repo(),
        ref,
        replicas=replicas,
        max_replicas=max_replicas,
        image=pod.image,
        name=pod.name,
        namespace=pod.namespace,
        sizing=pod.sizing(),
        target_cpu=target_cpu,
        target_rps=target_rps,
    )
    result = write_manifests(version, chosen, files, output)
    if out.json:
        out.emit_json(result.to_dict())
        return
    out.row(("exported", "bold"), (f"{result.ref} -> {result.path}: {', '.join(sorted(result.files))}", None))
    out.row(("image   ", "bold"), (result.image, None))
    out.info(f"apply it: kubectl apply -f {output}")


@pod_options
def export_kserve(
    ref: str = typer.Argument(..., help="The production version: churn@production, churn:3."),
    output: str = typer.Option(..., "--output", "-o", help="The InferenceService file to write (e.g. isvc.yaml)."),
    canary: int | None = typer.Option(
        None, "--canary", min=1, help="A version to try beside production through KServe's traffic split."
    ),
    weight: int | None = typer.Option(
        None, "--weight", min=1, max=100, help="Percent of requests to the canary (default 10)."
    ),
    storage_uri: str | None = typer.Option(
        None,
        "--storage-uri",
        help="Serve a bundle KServe downloads (s3://..., gs://..., pvc://...) into /mnt/models, not one in the image.",
    ),
    min_replicas: int = typer.Option(1, "--min-replicas", min=0, help="Fewest servers (0: scale to zero)."),
    max_replicas: int | None = typer.Option(None, "--max-replicas", min=1, help="Most servers."),
    pod: PodOptions = None,  # type: ignore[assignment] # the six options of @pod_options
    json_output: bool = JSON_OPTION,
) -> None:
    """Write a KServe InferenceService: a custom container speaking the Open Inference Protocol V2 on 8080.

    With --canary N, the predictor runs version N with canaryTrafficPercent --weight: KServe
    splits traffic between it and the revision that took all of it before (production)."""
    from ..exporters.kserve import inference_service
    from ..formats import dump_yaml
    from ..fsio import check_output, write_output

    out = Output(json_output=json_output)
    check_output(output)
    served, isvc = inference_service(
        find_repo(),
        ref,
        canary=canary,
        weight=weight,
        image=pod.image,
        storage_uri=storage_uri,
        name=pod.name,
        namespace=pod.namespace,
        sizing=pod.sizing(),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
    write_output(output, f"# {served}, written by `mlops export kserve`\n" + dump_yaml(isvc))
    predictor = isvc["spec"]["predictor"]
    if out.json:
        out.emit_json({"ref": served, "output": output, "image": predictor["containers"][0]["image"], "isvc": isvc})
        return
    split = f" at {predictor['canaryTrafficPercent']}% (canary)" if "canaryTrafficPercent" in predictor else ""
    out.row(("exported", "bold"), (f"{served}{split} -> {output}", None))
    out.info(f"apply it: kubectl apply -f {output}")
