"""Serving the UI: bind the socket first (so ``--port 0`` has a port to print), then run uvicorn on it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..errors import CouldNotComplete
from ..repo.repo import Repo


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); CouldNotComplete when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CouldNotComplete(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="choose another --port (0: any free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _warm(ui: Any) -> None:
    with contextlib.suppress(Exception):  # a store that cannot be read says so on the page instead
        ui.runs.snapshot()


def serve(repo: Repo, sock: socket.socket, *, token: str | None, on_ready: Callable[[], None] | None = None) -> None:
    """Serve the pages until Ctrl-C or SIGTERM (uvicorn stops gracefully on both)."""
    import uvicorn

    from .app import build_app

    app = build_app(repo, token=token)
    # read the run store while the browser opens: the first page then answers from memory
    threading.Thread(target=_warm, args=(app.app.state.ui,), name="ui-warm", daemon=True).start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        startup = server.startup

        async def started(sockets: list[socket.socket] | None = None) -> None:
            await startup(sockets=sockets)
            on_ready()

        server.startup = started  # type: ignore[method-assign]
    server.run(sockets=[sock])
