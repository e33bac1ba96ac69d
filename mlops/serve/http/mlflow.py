"""MLflow's scoring routes: POST /invocations and GET /version (its probes /ping and /health: ``probes.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ... import __version__
from ..runtime import Runtime
from ..wire import WireProtocol
from .common import answer, authorized, refused


async def invocations(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    return await answer(rt, wire, request)


async def version(rt: Runtime, wire: WireProtocol, request: Request) -> Response:
    if not authorized(rt, request):
        return refused(wire)
    # as MLflow's scoring server: the server's version as plain text (the model's is in /metadata)
    return Response(__version__, media_type="text/plain")
