"""`mlops ui`: the read-only web pages over this repository (mlops/ui/)."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import UsageError
from ..repo.repo import find_repo
from .boundary import command
from .output import Output


def register(app: typer.Typer) -> None:
    command(app, "ui")(ui)


def ui(
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token-env."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser (it opens only on a terminal)."),
    token_env: str | None = typer.Option(
        None,
        "--token-env",
        help="Name of an environment variable holding a token: every request then needs it "
        "(?token=... once, which sets a cookie, or Authorization: Bearer ...).",
    ),
) -> None:
    """Browse runs, models, the audit log and the pipeline in a web browser (read-only).

    Prints the address and serves until Ctrl-C. Nothing is written to the repository and no
    page loads anything from another site.
    """
    from ..serve.trust import is_loopback
    from ..ui.server import bind, serve

    out = Output()
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "")
        if not token:
            raise UsageError(
                f"--token-env {token_env}: the variable is empty or not set", hint=f"export {token_env}=..."
            )
    if not is_loopback(host.strip("[]")) and token is None:
        raise UsageError(
            f"--host {host} would let other machines read this repository's runs and models without a token",
            hint="add --token-env NAME (a variable holding a long random token), or keep the default 127.0.0.1",
        )
    repo = find_repo()
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{bound_port}/"
    typer.echo(address)
    sys.stdout.flush()
    if token is not None:
        out.info(f"every request needs the token in ${token_env}: open {address}?token=... once")
    open_browser = not no_browser and sys.stdout.isatty()

    def ready() -> None:
        if open_browser:
            import webbrowser

            browse_host = "127.0.0.1" if host in ("0.0.0.0", "::") else shown_host
            webbrowser.open(f"http://{browse_host}:{bound_port}/" + (f"?token={token}" if token else ""))

    serve(repo, sock, token=token, on_ready=ready)
