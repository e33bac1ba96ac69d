"""The own protocol's routes: POST /predict, and GET /metadata and /metrics (both need the token)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..metrics import CONTENT_TYPE as METRICS_TYPE
from ..metrics import render as render_metrics
from ..requestlog import META_COLUMNS
from ..router import CANARY, PRODUCTION, SHADOW
from ..runtime import Runtime
from ..wire import WireProtocol
from .common import answer, authorized, json_response, refused


async def predict(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    return await answer(rt, wire, request)


async def metadata(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    if not authorized(rt, request):
        return refused(wire)
    route = rt.route
    assert route is not None
    prod = route.production
    variants = [{"variant": PRODUCTION, "version": prod.version, "weight": 100 - route.weight if route.canary else 100}]
    if route.canary is not None:
        variants.append({"variant": CANARY, "version": route.canary.version, "weight": route.weight})
    if route.shadow is not None:
        variants.append({"variant": SHADOW, "version": route.shadow.version, "weight": 0})
    dep = rt.deployment
    return json_response(
        {
            "model": rt.model,
            "version": prod.version,
            "stage": prod.info.stage,
            "flavor": prod.info.flavor,
            # what answers: the Python object (a pickle, a class) or, from a bundle, its ONNX form by onnxruntime
            "runtime": getattr(prod.model, "mlops_runtime", "python"),
            "signature": prod.signature.to_dict() if prod.signature else None,
            "variants": variants,
            "deployment": dep.to_dict() if dep else None,
            "request_log_columns": [*(prod.signature.names if prod.signature else ()), *META_COLUMNS],
        }
    )


async def metrics(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    if not authorized(rt, request):
        return refused(wire)
    totals, counters = await rt.aggregate_totals()
    route = rt.route
    assert route is not None
    weights = {PRODUCTION: 100 - route.weight if route.canary else 100.0}
    if route.canary is not None:
        weights[CANARY] = route.weight
    gauges = {
        "queue_depth": sum(s.batcher.depth for s in rt.served.values()),
        "requests_being_read": rt.arrivals,
        "requests_in_flight": rt.active,
    }
    return Response(render_metrics(rt.model, totals, counters, gauges, weights), media_type=METRICS_TYPE)
