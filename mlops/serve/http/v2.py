"""Open Inference Protocol V2 routes: server metadata, model metadata, model readiness and inference.

``/v2/models/{name}`` and its ``/versions/{version}`` forms name the served model; a versioned
path reaches that deployed version directly (production, canary or shadow)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ... import __version__
from ..protocols import v2_metadata, v2_server_metadata
from ..runtime import Runtime
from ..wire import WireProtocol
from .common import answer, authorized, json_response, refused


def _model(
    rt: Runtime, wire: WireProtocol, request: Request, public: bool = False
) -> tuple[Response | None, int | None]:
    """(a refusal, or None; the version the path names, or None)."""
    if not public and not authorized(rt, request):
        return refused(wire), None
    name = request.path_params["name"]
    if name != rt.model:
        return json_response(wire.error(404, [f"unknown model '{name}': this server serves '{rt.model}'"]), 404), None
    raw = request.path_params.get("version")
    if raw is None:
        return None, None
    try:
        version = int(raw)
    except ValueError:
        return json_response(wire.error(400, [f"version must be a number, got '{raw}'"]), 400), None
    return None, version


async def infer(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    refusal, version = _model(rt, wire, request)
    if refusal is not None:
        return refusal
    return await answer(rt, wire, request, version)


async def model_metadata(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    refusal, version = _model(rt, wire, request)
    if refusal is not None:
        return refusal
    route = rt.route
    assert route is not None
    served = route.production
    if version is not None:
        found = route.find(version)
        if found is None:
            return json_response(
                wire.error(404, [f"version {version} of {rt.model} is not deployed on this server"]), 404
            )
        served = found[1]
    versions = [served.version] if version is not None else route.versions()
    signature = served.features.caller_signature(served.signature) if served.features else served.signature
    # a model may name its own platform (an ONNX form: Triton's name for onnxruntime), else the flavor's
    platform = getattr(served.model, "mlops_platform", None) or f"mlops-{served.info.flavor}"
    return json_response(v2_metadata(rt.model, versions, signature, str(platform)))


async def model_ready(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    # a readiness probe (KServe's): no token needed, like the other health checks
    refusal, version = _model(rt, wire, request, public=True)
    if refusal is not None:
        return refusal
    route = rt.route
    assert route is not None
    ready = rt.ready and (version is None or version in route.versions())
    return json_response({"name": rt.model, "ready": ready}, 200 if ready else 503)


async def server_metadata(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    if not authorized(rt, request):
        return refused(wire)
    return json_response(v2_server_metadata(__version__))
