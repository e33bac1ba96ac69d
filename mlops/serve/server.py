"""Start uvicorn: one process, or a supervisor with ``workers`` processes on one socket.

The socket is bound here first, so a port in use is one clear error (exit 3), ``--port 0``
takes a free port, and the address announced is the one bound. Each worker process loads the
models itself (hash-checked by the registry) and runs the app from ``app.create_app``.

SIGTERM or Ctrl-C: uvicorn stops accepting connections, lets requests in flight finish (up to
``graceful_seconds``), then the app's shutdown drains the batchers and closes the request logs.
With several workers, the supervisor passes SIGTERM on to each worker, which does the same.
"""

from __future__ import annotations

import copy
import errno
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..errors import CouldNotComplete
from .config import CONFIG_ENV, ServeConfig
from .source import Preloaded


class Stopped(Exception):
    """The server was stopped by a signal and shut down gracefully."""


def bind(config: ServeConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CouldNotComplete(
                f"port {config.port} on {config.host} is already in use",
                hint="stop what listens there, or choose another --port (0 takes a free one)",
            ) from None
        raise CouldNotComplete(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", hint="check --host and --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def _announcing_server(uv_config: Any, announce: Callable[[], None]) -> Any:
    """A uvicorn server that calls ``announce`` once its start-up is complete (the app's lifespan
    started, the socket listening), and never when start-up fails: whoever waits for the address
    can connect at once."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                announce()

    return AnnouncingServer(uv_config)


def _announce_when_a_worker_answers(
    host: str, port: int, announce: Callable[[], None], stop: threading.Event
) -> threading.Thread:
    """With several workers the supervisor does not know when one has started: ask /ping (the socket
    listens already, so the request waits in the backlog until a worker takes it) until one answers."""
    import http.client

    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    def probe() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection(probe_host, port, timeout=5)
            try:
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    if not stop.is_set():
                        announce()
                    return
            except OSError:
                pass
            finally:
                conn.close()
            stop.wait(0.1)

    thread = threading.Thread(target=probe, name="mlops-serve-announce", daemon=True)
    thread.start()
    return thread


def _log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    conf = copy.deepcopy(LOGGING_CONFIG)
    conf["loggers"]["mlops.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return conf


def run(
    config: ServeConfig,
    *,
    preloaded: Preloaded | None = None,
    announce: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until SIGTERM/SIGINT; returns after a graceful shutdown."""
    import uvicorn

    sock = bind(config)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    os.environ[CONFIG_ENV] = config.to_json()  # read by each worker process's app factory
    common: dict[str, Any] = dict(
        host=config.host,
        port=port,
        log_config=_log_config(),
        log_level="warning",
        access_log=config.access_log,
        timeout_graceful_shutdown=config.graceful_seconds,
        limit_concurrency=None,
        server_header=False,
        lifespan="on",
        ws="none",  # no WebSocket endpoint: uvicorn's "auto" would import websockets or wsproto wherever installed
        timeout_keep_alive=5,
    )
    if config.workers > 1:
        import inspect

        from uvicorn.supervisors import Multiprocess

        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            # a worker importing scikit-learn and unpickling a model on a busy machine can take longer than
            # uvicorn's default 5 s to answer its first health ping; it would be killed and restarted in a loop
            common["timeout_worker_healthcheck"] = 60
        uv_config = uvicorn.Config("mlops.serve.app:create_app", factory=True, workers=config.workers, **common)
        sock.listen(uv_config.backlog)
        stop = threading.Event()
        prober = _announce_when_a_worker_answers(host, port, lambda: announce(url), stop)
        try:
            if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn before 0.30
                Multiprocess(uv_config, target=uvicorn.Server(uv_config).run, sockets=[sock]).run()
            else:
                Multiprocess(uv_config, sockets=[sock]).run()
        finally:
            stop.set()
            prober.join(timeout=10)
        return
    from .app import build_app

    uv_config = uvicorn.Config(build_app(config, preloaded=preloaded), **common)
    server = _announcing_server(uv_config, lambda: announce(url))

    def stopped(signum: int, frame: Any) -> None:
        raise Stopped(signal.Signals(signum).name)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then raises the signal again with the
    # handlers it found: these turn that into a clean return instead of a death by signal
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    except Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise CouldNotComplete("the server did not start (see the messages above)")
