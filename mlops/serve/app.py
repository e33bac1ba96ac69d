"""The starlette application of `mlops serve`: the runtime (``runtime.py``) behind the HTTP layer (``http/``).

Endpoints (docs/serving.md), each with the wire protocol (``wire.py``) its answers and errors take:

| endpoint                                     | protocol | auth |
|----------------------------------------------|----------|------|
| POST /predict                                | own      | yes  |
| POST /invocations                            | MLflow   | yes  |
| GET /ping, GET /health                       | MLflow   | no   |
| GET /version (plain text, as MLflow's)       | MLflow   | yes  |
| GET /v2/health/live, GET /v2/health/ready    | V2       | no   |
| GET /v2, GET /v2/models/{name}[/versions/{v}]  | V2       | yes  |
| GET /v2/models/{name}[/versions/{v}]/ready   | V2       | no (a readiness probe) |
| POST /v2/models/{name}[/versions/{v}]/infer  | V2       | yes  |
| GET /metadata, GET /metrics                  | own      | yes  |
| POST /admin/reload, POST /admin/rollback     | admin    | see ``http/admin.py`` |

No endpoint reads or writes a file named by the request: the only files touched are the
deployment file and the runtime folder of the model being served.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import Any

from .config import ServeConfig
from .source import Preloaded
from .wire import MLFLOW, OWN, V2, WireProtocol

log = logging.getLogger("mlops.serve")


def build_app(config: ServeConfig, *, preloaded: Preloaded | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .http import admin, mlflow, own, probes, v2
    from .http.common import json_response
    from .runtime import Runtime
    from .trust import PROBES, request_refusal

    rt = Runtime(config, preloaded=preloaded)
    table = (  # the one place each route's protocol is chosen
        ("/predict", OWN, own.predict, "POST"),
        ("/invocations", MLFLOW, mlflow.invocations, "POST"),
        ("/ping", MLFLOW, probes.ping, "GET"),
        ("/health", MLFLOW, probes.health, "GET"),
        ("/version", MLFLOW, mlflow.version, "GET"),
        ("/metadata", OWN, own.metadata, "GET"),
        ("/metrics", OWN, own.metrics, "GET"),
        ("/v2", V2, v2.server_metadata, "GET"),
        ("/v2/health/live", V2, probes.live, "GET"),
        ("/v2/health/ready", V2, probes.ready, "GET"),
        ("/v2/models/{name}", V2, v2.model_metadata, "GET"),
        ("/v2/models/{name}/ready", V2, v2.model_ready, "GET"),
        ("/v2/models/{name}/infer", V2, v2.infer, "POST"),
        ("/v2/models/{name}/versions/{version}", V2, v2.model_metadata, "GET"),
        ("/v2/models/{name}/versions/{version}/ready", V2, v2.model_ready, "GET"),
        ("/v2/models/{name}/versions/{version}/infer", V2, v2.infer, "POST"),
        ("/admin/reload", OWN, admin.reload, "POST"),
        ("/admin/rollback", OWN, admin.rollback, "POST"),
    )

    def guarded(wire: WireProtocol, path: str, endpoint: Any) -> Any:
        """The last line of defence: anything an endpoint did not expect is a 500 with an error id, in the
        protocol's own error shape, and the traceback with that id goes to stderr; the server keeps serving.
        Every answer is counted per route and status (``mlops_http_requests_total``); a client that goes away
        while its body is being read is counted (``mlops_requests_aborted_total``), not an error."""

        async def run(request: Request) -> Response:
            if path not in PROBES and not path.startswith("/admin/"):  # the admin routes apply stricter rules
                server = request.scope.get("server")
                refusal = request_refusal(
                    request.headers,
                    server_port=server[1] if server else None,
                    token_set=rt.token is not None,
                    bound_loopback=rt.config.loopback,
                )
                if refusal is not None:
                    rt.stats.count(f"cross_site_refused {refusal.rule}")
                    rt.stats.count(f"http {path} 403")
                    body = {**wire.error(403, [refusal.message]), "rule": refusal.rule}
                    return json_response(body, 403)
            try:
                response = await endpoint(rt, wire, request)
            except ClientDisconnect:  # not an answer: nobody reads it (uvicorn drops what is sent after a disconnect)
                rt.stats.count("aborted")
                return Response(status_code=499)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                error_id = uuid.uuid4().hex[:12]
                log.error(
                    "error %s: %s %s raised %s: %s",
                    error_id,
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                problems = [f"internal error ({type(exc).__name__}); error id {error_id}"]
                response = json_response({**wire.error(500, problems), "error_id": error_id}, 500)
            rt.stats.count(f"http {path} {response.status_code}")
            return response

        return run

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await rt.startup()
        try:
            yield
        finally:
            await rt.shutdown()

    async def no_route(request: Request, exc: Exception) -> Response:
        """Unknown routes and methods: JSON in the protocol's error shape (V2's ``{"error"}`` under /v2)."""
        status = getattr(exc, "status_code", 404)
        what = "no such route" if status == 404 else "method not allowed on this route"
        problems = [f"{what}: {request.method} {request.url.path[:200]}"]
        wire = V2 if request.url.path.startswith("/v2") else OWN
        rt.stats.count(f"http unmatched {status}")
        return json_response(wire.error(status, problems), status, getattr(exc, "headers", None))

    routes = [Route(path, guarded(wire, path, endpoint), methods=[method]) for path, wire, endpoint, method in table]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: no_route, 405: no_route})
    app.state.runtime = rt
    return app


def create_app() -> Any:
    """The factory uvicorn's worker processes call (`mlops serve --workers N`)."""
    _die_with_parent()
    return build_app(ServeConfig.from_env())


def _die_with_parent() -> None:
    """A worker gets SIGTERM (and shuts down gracefully) when its supervisor dies, even by SIGKILL."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before the call above
        os.kill(os.getpid(), signal.SIGTERM)
