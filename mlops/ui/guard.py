"""The UI's trust boundary: who may read the pages, and which names a URL may carry.

- Token: with one set, every request needs it, as ``Authorization: Bearer``, ``X-Mlops-Token``,
  or the cookie a first visit with ``?token=`` sets (the page is then reloaded without the
  token in its address, so it does not stay in the history or a Referer).
- Without a token the server listens on loopback only (the CLI refuses anything else), and a
  request must name a loopback ``Host``: a DNS-rebinding page (an attacker's name pointed at
  127.0.0.1) sends its own name and is refused, so it cannot read the runs.
- Every page sends a Content-Security-Policy allowing only this server: a page cannot load, or
  be made to load, anything from another site.
- A name in a URL (run id, model name, version, report file) is checked by the rule its store
  uses before it touches the filesystem; a name that fails is a 404, never a path.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..paths import model_name_problem
from ..serve.trust import host_and_port, is_loopback
from ..tracking.store import RUN_ID

COOKIE = "mlops_ui_token"
TOKEN_HEADER = "x-mlops-token"
#: only this server: scripts, styles, images; inline SVG needs no source; 'unsafe-inline' styles
#: for the SVG charts' presentation; nothing may frame the pages
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
MAX_REPORT_DEPTH = 8


class NotFound(Exception):
    """A name in the URL that names nothing the UI may show (bad shape, traversal, missing)."""


def checked_run_id(value: str) -> str:
    if not RUN_ID.fullmatch(value):
        raise NotFound("no such run")
    return value


def checked_model_name(value: str) -> str:
    if model_name_problem(value):
        raise NotFound("no such model")
    return value


def checked_version(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise NotFound("no such version")
    return int(value)


def checked_report(dot: Path, rel: str) -> Path:
    """A report file under ``.mlops/``: a relative path of plain parts ending in .html whose real
    location (symlinks resolved) is inside ``.mlops/``; anything else is NotFound."""
    parts = rel.split("/")
    if (
        not rel
        or len(parts) > MAX_REPORT_DEPTH
        or not rel.endswith(".html")
        or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts)
    ):
        raise NotFound("no such report")
    path = dot.joinpath(*parts)
    real_dot = os.path.realpath(dot)
    real = os.path.realpath(path)
    if not real.startswith(real_dot + os.sep) or not os.path.isfile(real):
        raise NotFound("no such report")
    return Path(real)


def _host_is_loopback(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"host":
            parsed = host_and_port(value.decode("latin-1"))
            return parsed is not None and is_loopback(parsed[0])
    return False


class Guard:
    """ASGI middleware: the token rule, the loopback-Host rule and the security headers."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    def _token_ok(self, request: Request) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        candidates = [
            value.strip() if scheme.lower() == "bearer" else "",
            request.headers.get(TOKEN_HEADER, ""),
            request.cookies.get(COOKIE, ""),
        ]
        return any(c and hmac.compare_digest(c.encode(), expected) for c in candidates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response: Response | None = None
        if self.token is None:
            if not _host_is_loopback(scope):
                response = PlainTextResponse("refused: this server answers only a loopback Host", status_code=403)
        elif "token" in request.query_params:
            given = request.query_params["token"]
            if hmac.compare_digest(given.encode(), self.token.encode()):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                # one leading slash: "//host/..." would be another site's address in Location
                target = "/" + request.url.path.lstrip("/") + ("?" + urlencode(rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            else:
                response = PlainTextResponse("wrong token", status_code=401)
        elif not self._token_ok(request):
            response = PlainTextResponse(
                "this server needs its token: open the address with ?token=... once, or send Authorization: Bearer ...",
                status_code=401,
            )
        if response is not None:
            await response(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
