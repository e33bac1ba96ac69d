"""What every endpoint shares: JSON responses, the bearer token, the bounded body read, the prediction answer."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..protocols import BadRequest, dumps
from ..requestlog import request_id_from
from ..runtime import Outcome, Runtime
from ..wire import JSON, Answered, Reply, WireProtocol

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mlops serve"'}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type=JSON, headers=headers)


def reply_response(reply: Reply) -> Response:
    return Response(reply.content, status_code=reply.status, media_type=reply.media_type, headers=reply.headers)


def authorized(rt: Runtime, request: Request) -> bool:
    if rt.token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), rt.token.encode())


def refused(wire: WireProtocol) -> Response:
    problems = ["missing or wrong bearer token (Authorization: Bearer ...)"]
    return json_response(wire.error(401, problems), 401, dict(BEARER_CHALLENGE))


async def read_body(request: Request, limit: int, *, seconds: float) -> bytes:
    """The body, refused (413) past ``limit`` bytes: by its declared length before reading, else while
    reading; a body that has not fully arrived within ``seconds`` (stalled, dribbled, never-ending
    chunks) is a 408, and the server closes the connection (its unread body)."""
    try:
        return await asyncio.wait_for(_read_body(request, limit), seconds)
    except TimeoutError:
        raise BadRequest(
            [f"request body not received within {seconds:g} s; send the whole body at once"], status=408
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _too_large(limit)
        except ValueError:
            pass
        return await request.body()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> BadRequest:
    return BadRequest(
        [f"body over the limit of {limit} bytes (mlops serve --max-body-mb); send fewer rows per request"], status=413
    )


async def client_gone(receive: Any) -> None:
    """Returns when the client disconnects (the body has been read: the server's next message is the disconnect)."""
    try:
        while (await receive()).get("type") != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001 - a server that cannot tell: never report the client gone
        await asyncio.get_running_loop().create_future()


def variant_headers(outcome: Outcome) -> dict[str, str]:
    headers = dict(outcome.headers)
    if outcome.served is not None:
        headers["X-Model-Version"] = str(outcome.served.version)
        headers["X-Variant"] = outcome.variant
    return headers


async def answer(rt: Runtime, wire: WireProtocol, request: Request, version: int | None = None) -> Response:
    """One prediction request in ``wire``'s protocol, answered by the runtime."""
    if not authorized(rt, request):
        return refused(wire)
    request_id = request_id_from(request.headers)  # the log's join key for labels that come later
    outcome = await rt.infer(
        wire,
        lambda: read_body(request, rt.config.max_body_bytes, seconds=rt.config.body_seconds),
        request.headers,
        lambda: client_gone(request.receive),
        version,
        request_id=request_id,
    )
    headers = variant_headers(outcome)
    headers["X-Request-ID"] = request_id
    if outcome.status != 200:
        return reply_response(
            wire.failure(
                outcome.status,
                outcome.problems,
                headers,
                error_id=outcome.error_id,
                signature_refused=outcome.signature_refused,
            )
        )
    served = outcome.served
    assert served is not None and outcome.inputs is not None
    answered = Answered(
        rt.model,
        served.version,
        outcome.variant,
        outcome.predictions,
        outcome.inputs,
        served.signature,
        request.headers,
        probabilities=outcome.probabilities,
        classes=served.classes,
    )
    return reply_response(wire.answer(answered, headers))
