"""Who may use the admin endpoints: the server's trust boundary against cross-site and rebinding requests.

Every HTTP request is untrusted. Without a token, the admin endpoints rely on the server being
reachable only from this machine, and a browser on this machine is the way around that:

- a page on any site can send a "simple" cross-site POST (``text/plain``, form-urlencoded,
  multipart) without a CORS preflight; requiring ``Content-Type: application/json`` forces the
  preflight, which this server never answers, so the browser does not send the request;
- DNS rebinding points an attacker's name at 127.0.0.1: the browser then treats the server as
  the attacker's origin and sends the attacker's name in ``Host``; requiring a loopback ``Host``
  (127.0.0.0/8, ``localhost``, ``[::1]``, any port) refuses it;
- a browser names the page that sends a request in ``Origin``; any ``Origin`` other than the
  server's own loopback origin is refused, token or not (a browser cannot be made to send the
  bearer token, but the check costs nothing and guards against a token stored in a page).

With a token, the token is required (401) and the ``Origin`` rule holds; the ``Host`` and
content-type rules do not apply, so a reverse proxy with a real name can reach the admin endpoints.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

#: the rules a refusal names (docs/serving.md, "Security")
TOKEN, REMOTE, HOST = "token", "loopback-only", "loopback-host"
CONTENT_TYPE, ORIGIN = "json-content-type", "same-origin"


@dataclass(frozen=True)
class Refusal:
    status: int
    rule: str
    message: str


def host_and_port(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` as sent in ``Host`` (``[::1]:8080`` for IPv6); None when it does not parse."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = value.partition(":")
        if ":" in port_text:
            return None
    if not host:
        return None
    if port_text:
        # ASCII digits only: str.isdigit() also accepts "²" (int() then raises: a 500 from one header)
        # and "٨٠" (which int() reads as 80)
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            return None
        return host, int(port_text)
    return host, None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address literal: a name an attacker's DNS answer cannot stand behind."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin_ok(origin: str, server_port: int | None) -> bool:
    """``Origin`` is this server as a page loaded from it over loopback would name it."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme != "http" or "/" in rest:
        return False  # "null" (a sandboxed frame, a file), another scheme, or a malformed value
    parsed = host_and_port(rest)
    if parsed is None or not is_loopback(parsed[0]):
        return False
    return (parsed[1] or 80) == server_port


def admin_refusal(
    headers: Mapping[str, str],
    *,
    server_port: int | None,
    token_set: bool,
    token_ok: bool,
    bound_loopback: bool,
    writes: bool = True,
) -> Refusal | None:
    """Why this request may not administer the server (None: it may).

    ``writes``: the request changes state (the admin endpoints); False for reading what only an
    administrator may see (``/health``'s details), where the content-type rule has no meaning."""
    cross_site = _cross_site(headers, server_port)
    if cross_site is not None:
        return cross_site
    if token_set:
        if not token_ok:
            return Refusal(401, TOKEN, "missing or wrong bearer token (Authorization: Bearer ...)")
        return None
    if not bound_loopback:
        return Refusal(
            403,
            REMOTE,
            "admin actions need a token when the server listens beyond this machine: start it with --token-env",
        )
    foreign_host = _foreign_host(headers, "admin actions without a token answer")
    if foreign_host is not None:
        return foreign_host
    if writes:
        mime = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if mime != "application/json":
            return Refusal(
                403,
                CONTENT_TYPE,
                "admin actions without a token need Content-Type: application/json "
                f"(got {mime[:60] or 'none'}); a browser cannot send that cross-site without asking first",
            )
    return None


#: liveness and readiness probes answer anyone: an orchestrator's probe names the pod's address
PROBES = frozenset({"/ping", "/health", "/v2/health/live", "/v2/health/ready"})


def request_refusal(
    headers: Mapping[str, str], *, server_port: int | None, token_set: bool, bound_loopback: bool
) -> Refusal | None:
    """Why a browser-borne request may not reach the model at all (None: it may).

    Predictions change state too: a canary's errors count toward its automatic rollback, and
    /metadata and /metrics describe the deployment. So the cross-site rules hold for every route
    but the probes: a foreign ``Origin`` or a cross-site ``Sec-Fetch-Site`` is refused (a page on
    another site may POST ``text/csv`` without a preflight), and, without a token on a loopback
    server, so is a ``Host`` that is not loopback (a rebinding page reading the answers)."""
    cross_site = _cross_site(headers, server_port)
    if cross_site is not None or token_set or not bound_loopback:
        return cross_site
    return _foreign_host(headers, "a server without a token on this machine answers")


def _cross_site(headers: Mapping[str, str], server_port: int | None) -> Refusal | None:
    """A browser naming another page as the sender (``Origin``, ``Sec-Fetch-Site``)."""
    origin = headers.get("origin")
    if origin is not None and not _origin_ok(origin, server_port):
        return Refusal(403, ORIGIN, f"cross-origin request refused: Origin {origin[:100]!r} is not this server")
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return Refusal(403, ORIGIN, f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:40]})")
    return None


def _foreign_host(headers: Mapping[str, str], who: str) -> Refusal | None:
    """A ``Host`` that is not loopback: the name a DNS-rebinding page sends."""
    host = headers.get("host")
    parsed = host_and_port(host) if host else None
    if parsed is not None and is_loopback(parsed[0]):
        return None
    shown = "none" if host is None else repr(host[:100])
    return Refusal(403, HOST, f"{who} only to a loopback Host (127.0.0.1, localhost, [::1]); got {shown}")
