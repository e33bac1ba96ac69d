"""A real browser on `mlops ui`: Debian's headless Chromium (installed by .ci/run) loads the
pages from a real server on 127.0.0.1; the DOM it built shows the rows, and its network log
shows that the pages asked nothing of any other host."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from test_ui_command import ui_server
from uikit import write_runs

from mlops.repo.repo import Repo
from mlops.tracking import store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no chromium on this machine (CI installs it: .ci/run)", allow_module_level=True)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter",
    "--window-size=1280,800",
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


def browse(url: str, work: Path, *, screenshot: bool = False) -> tuple[str, list[dict]]:
    """The DOM Chromium built for ``url`` and the requests the page made (from its net log)."""
    profile, netlog = work / "profile", work / "net.json"
    shutil.rmtree(profile, ignore_errors=True)
    args = [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}"]
    action = [f"--screenshot={work / 'page.png'}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, *action, url], capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    requests = [
        e["params"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB"
        and "params" in e
        and (e["params"].get("initiator") == origin or e["params"].get("request_type") == "main frame")
    ]
    return proc.stdout, requests


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


@pytest.mark.timeout(300)
def test_the_runs_and_compare_pages_in_a_real_browser_ask_nothing_of_other_hosts(repo: Repo, tmp_path: Path) -> None:
    write_runs(repo, 40)
    store.create_run(repo, "hostile", name='<img src="http://example.org/x.png">')
    store.log_params(repo, "hostile", {"note": "<script src='http://example.org/x.js'></script>"})
    for step in range(3):
        store.log_metrics(repo, "hostile", {"m0": step / 10}, step=step)
    store.finish_run(repo, "hostile")
    work = tmp_path / "browser"
    work.mkdir()
    with ui_server() as address:
        runs_url = address + "runs?q=" + "params.p0+%3C+40"
        dom, requests = browse(runs_url, work)
        rows = re.findall(r'<tr data-run="([^"]+)">', dom)
        # write_runs gives run i the param p0 = i % 50: all 40 match; the hostile run has no p0
        assert sorted(rows) == [f"r{i:06d}" for i in range(40)], dom[:2000]
        assert re.search(r'id="matched">40<', dom)
        only_this_server(runs_url, dom, requests)

        all_url = address + "runs"
        dom, requests = browse(all_url, work)
        assert 'data-run="hostile"' in dom and "&lt;img src=" in dom  # the hostile name is text
        assert "<img" not in dom and "<script src='http://example.org" not in dom
        only_this_server(all_url, dom, requests)

        compare_url = address + "compare?run=hostile&run=r000001"
        dom, requests = browse(compare_url, work)
        assert '<svg class="chart"' in dom and "<th>note</th>" in dom
        only_this_server(compare_url, dom, requests)

        browse(all_url, work, screenshot=True)
        assert (work / "page.png").stat().st_size > 1000
    artifacts = os.environ.get("MLOPS_TEST_ARTIFACTS")
    if artifacts:  # CI keeps the screenshot
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "page.png", Path(artifacts) / "ui-runs.png")


def test_the_check_catches_a_page_that_names_another_host() -> None:
    page = "http://127.0.0.1:8765/runs"
    mine = [{"url": page}]
    only_this_server(page, '<a href="/runs/x">x</a><img src="data:,">', mine)
    for dom in ('<script src="https://cdn.example.org/x.js"></script>', '<link href="//fonts.example/x.css">'):
        with pytest.raises(AssertionError):
            only_this_server(page, dom, mine)
    with pytest.raises(AssertionError):
        only_this_server(page, "", [*mine, {"url": "https://fonts.example/font.woff2"}])
