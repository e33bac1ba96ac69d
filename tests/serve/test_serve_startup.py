"""Start-up seams a new user hit: the address line comes only once the server answers."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from servekit import MLOPS_BIN, ROW, serve_env


def _start_and_read_the_line(root: Path, *args: str, timeout: float = 120) -> tuple[subprocess.Popen[str], int]:
    """`mlops serve ... --port 0` with stderr piped; returns once the `serving ... on http://...` line is read."""
    proc = subprocess.Popen(
        [MLOPS_BIN, "serve", *args, "--port", "0"],
        cwd=root,
        env=serve_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            proc.wait(timeout=30)
            raise AssertionError(f"mlops serve exited with {proc.returncode} before its line:\n{''.join(seen)}")
        seen.append(line)
        match = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    proc.kill()
    raise AssertionError(f"no serving line in {timeout}s:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    if proc.stderr:
        proc.stderr.close()


@pytest.mark.timeout(400)
@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_request_right_after_the_serving_line_is_answered(model_repo: Path, workers: int) -> None:
    for _ in range(3 if workers == 1 else 1):
        proc, port = _start_and_read_the_line(model_repo, "churn@production", "--workers", str(workers))
        try:
            # no readiness poll, no retry: the line itself is the promise (a raw connect, the quickest a
            # client can be, then the request over that very connection)
            with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
                body = json.dumps({"records": [ROW]}).encode()
                head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                conn.sendall(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:500]
            assert b'"predictions":[' in answer.replace(b" ", b""), answer[:500]
        finally:
            _stop(proc)


def test_no_serving_line_when_start_up_fails(model_repo: Path) -> None:
    # the request-log folder cannot be made (a file is in its way): the app's start-up fails after the bind
    serve_root = model_repo / ".mlops" / "serve"
    serve_root.mkdir(parents=True, exist_ok=True)
    (serve_root / "churn").write_text("in the way\n")
    proc = subprocess.run(
        [MLOPS_BIN, "serve", "churn@production", "--port", "0"],
        cwd=model_repo,
        env=serve_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "serving churn" not in proc.stderr, proc.stderr
    assert "Application startup failed" in proc.stderr
