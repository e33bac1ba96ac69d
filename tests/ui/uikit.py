"""Helpers for the UI tests: run folders written fast with the run store's own layout, a test
client on a loopback Host, a real `mlops ui` server, and a snapshot of every file in a repository."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from mlops.repo.repo import Repo
from mlops.tracking import store
from mlops.ui.app import build_app

with warnings.catch_warnings():  # starlette's TestClient warns that it will move to another package
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8765"
MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))  # the console script tests/conftest.py runs
#: Debian's Chromium (installed by .ci/run), driven headless through Playwright by the real-browser tests
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter",
]


class Links(HTMLParser):
    """Every URL a page names in src, href, action, srcset or a CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "action", "srcset", "data", "poster", "formaction"):
                self.urls.append(value)
            if value and name == "style":
                self.urls += re.findall(r"url\(([^)]*)\)", value)


def only_this_server(page_url: str, dom: str, requests: list[dict]) -> None:
    host = urlsplit(page_url).hostname
    assert requests, "the net log shows no request from the page"
    for request in requests:
        assert urlsplit(request["url"]).hostname == host, request["url"]
    links = Links()
    links.feed(dom)
    for link in links.urls:
        target = urlsplit(urljoin(page_url, link.strip()))
        assert target.scheme in ("http", "data", "") and (target.scheme == "data" or target.hostname == host), link


def client(repo: Repo, *, token: str | None = None, base_url: str = BASE) -> TestClient:
    return TestClient(build_app(repo, token=token), base_url=base_url, follow_redirects=False)


def write_runs(
    repo: Repo, count: int, *, params: int = 3, metrics: int = 2, start: float | None = None, first: int = 0
) -> list[str]:
    """``count`` ended runs, each a run folder with its run.json and one summary line in the
    index, as ``store.finish_run`` leaves them; written without fsync or git so 20,000 take seconds."""
    folder = store._ensure_runs_dir(repo)
    start = time.time() - count if start is None else start
    lines = []
    ids = []
    for i in range(first, first + count):
        run_id = f"r{i:06d}"
        began = start + i - first
        info = {
            "format": store.RUN_FORMAT,
            "id": run_id,
            "name": f"trial-{i % 97}",
            "status": store.FINISHED if i % 10 else store.FAILED,
            "start_time": began,
            "end_time": began + 1 + i % 7,
            "user": "tester",
            "host": "ci",
            "pid": 1,
            "pid_start": None,
            "git_commit": "0" * 40,
            "git_dirty": False,
            "source": "api",
            "stages": [],
        }
        run_folder = folder / run_id
        run_folder.mkdir()
        (run_folder / store.RUN_FILE).write_text(json.dumps(info))
        summary: dict[str, Any] = {"format": store.INDEX_FORMAT, **{k: info.get(k) for k in store.SUMMARY_FIELDS}}
        summary["owned"] = True
        summary["params"] = {f"p{j}": (i * (j + 1)) % 50 for j in range(params)}
        summary["metrics"] = {f"m{j}": ((i * 7919 + j) % 1000) / 1000 for j in range(metrics)}
        summary["artifacts"] = 0
        lines.append(json.dumps(summary))
        ids.append(run_id)
    with open(folder / store.INDEX_FILE, "a") as index:
        index.write("\n".join(lines) + "\n")
    return ids


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``root`` (``.git`` and ``.mlops`` included): size and content hash."""
    out: dict[str, tuple[int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root) + "/"] = (0, "")
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                out[os.path.relpath(path, root)] = (0, os.readlink(path))
                continue
            data = Path(path).read_bytes()
            out[os.path.relpath(path, root)] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def artifacts_folder(name: str, fallback: Path) -> Path:
    """Where a browser test keeps its screenshots: ``$MLOPS_TEST_ARTIFACTS/<name>`` (CI keeps that
    folder), else ``<tmp_path>/<name>``."""
    root = os.environ.get("MLOPS_TEST_ARTIFACTS")
    folder = Path(root) / name if root else fallback / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium(
    *, viewport: tuple[int, int] = (1280, 800), color_scheme: str = "light"
) -> Iterator[tuple[Any, list[str]]]:
    """A Playwright page in Debian's headless Chromium (never a downloaded browser) and the list of
    every URL the page requested, filled as it browses. On leaving, every one must be on 127.0.0.1."""
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=color_scheme
            )
            context.set_default_timeout(60_000)  # a loaded 2-core machine
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            yield page, requested
        finally:
            browser.close()
    assert requested, "the browser made no request"
    elsewhere = [url for url in requested if urlsplit(url).hostname != "127.0.0.1" and not url.startswith("data:")]
    assert not elsewhere, elsewhere


@contextmanager
def ui_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlops ui --port 0 --no-browser ...` until the block ends; yields the address it printed."""
    proc = subprocess.Popen(
        [MLOPS_BIN, "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()  # printed once the socket listens
        assert address.startswith("http://"), (address, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:  # the socket accepts at once; wait for uvicorn to answer
            try:
                httpx.get(address + "static/ui.css", timeout=5, headers={"X-Mlops-Token": "probe"})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
