"""Health checks a load balancer or orchestrator calls without a token: MLflow's /ping and /health, V2's live/ready.

/health names the deployment's problems (which name files) and the process only to a caller the
admin rules admit; anyone else learns how many problems there are."""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..runtime import Runtime
from ..wire import JSON, WireProtocol
from .admin import admin_check
from .common import json_response


async def ping(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    return Response("\n", status_code=200 if rt.ready else 503, media_type=JSON)


async def health(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    route = rt.route
    assert route is not None
    problems = rt.problems()
    body: dict[str, Any] = {
        "status": "ok" if not problems else "degraded",
        "model": rt.model,
        "production": route.production.version,
        "deployment_revision": rt.deployment.revision if rt.deployment else None,
    }
    if admin_check(rt, request, writes=False) is None:
        body.update({"pid": os.getpid(), "controller": rt.leader, "problems": problems})
    else:
        body["problems"] = [f"{len(problems)} problem(s): send the bearer token to see them"] if problems else []
    if route.canary is not None:
        body["canary"] = {"version": route.canary.version, "weight": route.weight}
    if route.shadow is not None:
        body["shadow"] = {"version": route.shadow.version}
    return json_response(body, 200 if rt.ready else 503)


async def live(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    return json_response({"live": True})


async def ready(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    return json_response({"ready": rt.ready}, 200 if rt.ready else 503)
