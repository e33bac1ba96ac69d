"""The admin routes: POST /admin/reload and POST /admin/rollback.

They always need the token when one is set; without a token they are refused unless the server
is bound to loopback, and then answer only JSON requests to a loopback Host; a foreign Origin is
refused either way (``trust.py``: cross-site and DNS-rebinding requests)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...errors import MlopsError
from ..protocols import BadRequest, parse_json
from ..runtime import Runtime
from ..trust import Refusal, admin_refusal
from ..wire import WireProtocol
from .common import BEARER_CHALLENGE, authorized, json_response, read_body

ADMIN_BODY_BYTES = 64 * 1024  # an admin body is a reason, never data


def admin_check(rt: Runtime, request: Request, writes: bool = True) -> Refusal | None:
    server = request.scope.get("server")
    return admin_refusal(
        request.headers,
        server_port=server[1] if server else None,
        token_set=rt.token is not None,
        token_ok=authorized(rt, request),
        bound_loopback=rt.config.loopback,
        writes=writes,
    )


def _refused(rt: Runtime, wire: WireProtocol, request: Request) -> Response | None:
    refusal = admin_check(rt, request)
    if refusal is None:
        return None
    rt.stats.count(f"admin_refused {refusal.rule}")
    body = {**wire.error(refusal.status, [refusal.message]), "rule": refusal.rule}
    headers = dict(BEARER_CHALLENGE) if refusal.status == 401 else None
    return json_response(body, refusal.status, headers)


async def reload(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    refusal = _refused(rt, wire, request)
    if refusal is not None:
        return refusal
    await rt.reload()
    dep = rt.deployment
    return json_response(
        {
            "reloaded": True,
            "deployment_revision": dep.revision if dep else None,
            "problems": [rt.deployment_error] if rt.deployment_error else [],
        }
    )


async def rollback(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    refusal = _refused(rt, wire, request)
    if refusal is not None:
        return refusal
    reason = "rolled back through POST /admin/rollback"
    try:
        # bounded in size and time like the model routes
        body = await read_body(request, ADMIN_BODY_BYTES, seconds=rt.config.body_seconds)
        doc = parse_json(body) if body else None
    except BadRequest as exc:
        return json_response(wire.error(exc.status, exc.problems), exc.status)
    if isinstance(doc, dict) and isinstance(doc.get("reason"), str) and doc["reason"].strip():
        reason = doc["reason"].strip()[:500]
    try:
        dep = await rt.admin_rollback(reason)
    except MlopsError as exc:
        status = 409 if exc.exit_code == 2 else 500
        return json_response(wire.error(status, [exc.message]), status)
    return json_response({"rolled_back": True, "deployment": dep.to_dict()})
