"""A real browser on `mlops ui`: Playwright drives Debian's headless Chromium (installed by .ci/run,
never a downloaded one) against a real `mlops ui` on 127.0.0.1. A user's path through the pages:
filter and sort the runs, switch columns, compare, follow a model version to its run and its data;
light and dark themes at desktop and phone width, the keyboard's tab order. Every request the pages
made (Playwright's request log) went to 127.0.0.1; screenshots are kept as test artifacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from uikit import CHROMIUM, artifacts_folder, chromium, only_this_server, ui_server, write_runs

from mlops.repo.repo import Repo
from mlops.tracking import store

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no chromium on this machine (CI installs it: .ci/run)", allow_module_level=True)
pytest.importorskip("playwright", reason="the test extra installs playwright")


def contrast(foreground: str, background: str) -> float:
    """WCAG's contrast ratio of two computed CSS colours (``rgb(r, g, b)``)."""

    def luminance(colour: str) -> float:
        channels = [int(v) / 255 for v in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def ids_on(page) -> list[str]:
    return page.locator("tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")


@pytest.mark.timeout(300)
def test_runs_filter_sort_columns_and_compare_in_a_real_browser(repo: Repo, tmp_path: Path) -> None:
    shots = artifacts_folder("ui-runs", tmp_path)
    write_runs(repo, 40)
    store.create_run(repo, "hostile", name='<img src="http://example.org/x.png">')
    store.log_params(repo, "hostile", {"note": "<script src='http://example.org/x.js'></script>"})
    for step in range(3):
        store.log_metrics(repo, "hostile", {"m0": step / 10}, step=step)
    store.finish_run(repo, "hostile")
    store.create_run(repo, "plain", name="plain")
    store.log_params(repo, "plain", {"note": "baseline"})
    for step in range(3):
        store.log_metrics(repo, "plain", {"m0": step / 5}, step=step)
    store.finish_run(repo, "plain")
    with ui_server() as address, chromium() as (page, requested):
        page.goto(address + "runs")
        assert "hostile" in ids_on(page) and len(ids_on(page)) == 42
        assert page.locator("img").count() == 0  # the hostile name is text, not an element
        only_this_server(page.url, page.content(), [{"url": u} for u in requested])
        page.screenshot(path=shots / "runs-1280x800-light.png", full_page=False)

        # filter as a user types it; write_runs gives run i the param p0 = i % 50 (all 40 < 40)
        page.fill("#filter", "params.p0 < 10")
        page.press("#filter", "Enter")
        page.wait_for_url("**/runs?*q=params.p0*")
        assert sorted(ids_on(page)) == [f"r{i:06d}" for i in range(10)]
        assert page.locator("#matched").inner_text() == "10"

        # sort by a column header, then the other way
        page.locator("thead th a", has_text="m0").first.click()
        page.wait_for_url("**sort=metrics.m0*")
        by_m0 = ids_on(page)
        values = [((int(r[1:]) * 7919) % 1000) / 1000 for r in by_m0]
        assert values == sorted(values) and len(by_m0) == 10
        page.locator("thead th a", has_text="m0").first.click()
        page.wait_for_url("**sort=-metrics.m0*")
        assert ids_on(page) == list(reversed(by_m0))

        # switch columns: only p1 and m1 left
        header = page.locator("thead th").all_inner_texts()
        assert "params.p0" in header and "metrics.m0" in header, header
        page.click("details.chooser summary")
        for box in page.locator("input[name=col]").all():
            box.set_checked(box.get_attribute("value") in ("params.p1", "metrics.m1"))
        page.click("form#query button[type=submit]")
        page.wait_for_url("**col=*")
        header = page.locator("thead th").all_inner_texts()
        assert "params.p1" in header and "metrics.m1" in header, header
        assert "params.p0" not in header and "metrics.m0" not in header, header

        # tick two runs logged through the run store and compare them
        page.goto(address + "runs")
        page.check('input[name=run][value="hostile"]')
        page.check('input[name=run][value="plain"]')
        page.click("button[form=compare]")
        page.wait_for_url("**/compare?*")
        assert sorted(page.locator("#compare-table thead a").all_inner_texts()) == ["hostile", "plain"]
        assert "differs" in (page.locator('tr[data-key="params.note"]').get_attribute("class") or "")
        assert page.locator("svg.chart").count() >= 1  # m0 over steps, both runs' lines
        assert page.locator("script[src*='example.org']").count() == 0
        page.screenshot(path=shots / "compare-1280x800.png", full_page=True)
    for shot in ("runs-1280x800-light.png", "compare-1280x800.png"):
        assert (shots / shot).stat().st_size > 5000


@pytest.mark.timeout(300)
def test_a_model_version_leads_to_its_run_and_data_in_a_real_browser(project: tuple[Repo, str], tmp_path: Path) -> None:
    shots = artifacts_folder("ui-models", tmp_path)
    _repo, run_id = project
    with ui_server() as address, chromium() as (page, _requested):
        page.goto(address + "models")
        page.locator("a[href='/models/churn']").first.click()
        page.wait_for_url("**/models/churn")
        page.locator("a[href='/models/churn/1']").first.click()
        page.wait_for_url("**/models/churn/1")
        data = page.locator("#lineage tr", has_text="data").inner_text()
        assert "data/raw.csv" in data or "data/prepared" in data, data
        page.screenshot(path=shots / "version.png", full_page=True)
        page.locator(f"#lineage a[href='/runs/{run_id}']").click()
        page.wait_for_url(f"**/runs/{run_id}")
        assert run_id in page.content() and "train" in page.inner_text("body")

        # the model's checks, and the HTML report kept under .mlops/ that names it
        page.click("nav a[href='/checks']")
        page.locator("a[href='/checks/churn']").click()
        page.wait_for_url("**/checks/churn")
        page.locator("#model-reports a").first.click()
        page.wait_for_url("**/reports/**")
        assert page.locator("h1").inner_text() == "drift report"


@pytest.mark.timeout(300)
def test_dark_theme_phone_width_and_keyboard(repo: Repo, tmp_path: Path) -> None:
    shots = artifacts_folder("ui-themes", tmp_path)
    write_runs(repo, 12)
    with ui_server() as address:
        backgrounds = {}
        for scheme in ("light", "dark"):
            with chromium(color_scheme=scheme) as (page, _requested):
                page.goto(address + "runs")
                backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
                text = page.evaluate("getComputedStyle(document.body).color")
                link = page.evaluate("getComputedStyle(document.querySelector('tr[data-run] a')).color")
                # readable: WCAG AA's 4.5:1 for body text and links in both themes
                assert contrast(text, backgrounds[scheme]) >= 4.5, (scheme, text, backgrounds[scheme])
                assert contrast(link, backgrounds[scheme]) >= 4.5, (scheme, link, backgrounds[scheme])
                page.screenshot(path=shots / f"runs-1280x800-{scheme}.png")
        assert backgrounds["light"] != backgrounds["dark"]

        with chromium(viewport=(390, 844), color_scheme="dark") as (page, _requested):
            page.goto(address + "runs")
            # the page itself does not scroll sideways at phone width (a wide table scrolls in its box)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, overflow
            page.screenshot(path=shots / "runs-390x844-dark.png", full_page=True)

        with chromium() as (page, _requested):
            page.goto(address + "runs")
            page.keyboard.press("/")  # ui.js: "/" focuses the filter
            assert page.evaluate("document.activeElement.id") == "filter"
            order = []
            for _ in range(8):
                page.keyboard.press("Tab")
                order.append(page.evaluate("document.activeElement.name || document.activeElement.textContent.trim()"))
            # the form's controls in reading order, then Compare, then the first column header
            assert order == ["sort", "n", "differ", "Columns", "Show", "Compare", "id", "name"], order
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), outline  # a focused control shows it
    for shot in ("runs-1280x800-light.png", "runs-1280x800-dark.png", "runs-390x844-dark.png"):
        assert (shots / shot).stat().st_size > 3000


def test_the_check_catches_a_page_that_names_another_host() -> None:
    page = "http://127.0.0.1:8765/runs"
    mine = [{"url": page}]
    only_this_server(page, '<a href="/runs/x">x</a><img src="data:,">', mine)
    for dom in ('<script src="https://cdn.example.org/x.js"></script>', '<link href="//fonts.example/x.css">'):
        with pytest.raises(AssertionError):
            only_this_server(page, dom, mine)
    with pytest.raises(AssertionError):
        only_this_server(page, "", [*mine, {"url": "https://fonts.example/font.woff2"}])
