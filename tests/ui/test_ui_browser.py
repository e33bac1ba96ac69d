"""A real browser on `mlops ui`: Debian's headless Chromium (installed by .ci/run) loads the
pages from a real server on 127.0.0.1; the DOM it built shows the rows, and its network log
shows that the pages asked nothing of any other host."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from test_ui_command import ui_server
from uikit import CHROMIUM, browse, only_this_server, write_runs

from mlops.repo.repo import Repo
from mlops.tracking import store

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no chromium on this machine (CI installs it: .ci/run)", allow_module_level=True)


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
