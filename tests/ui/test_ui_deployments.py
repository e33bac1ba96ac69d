"""The deployments pages over a real `mlops serve` with a canary: the deployment file's facts,
and the live statistics the servers write, which status.json (what the page polls) follows."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from servekit import ROW, guarded, mlops, register, start_server, wait_for
from uikit import CHROMIUM, artifacts_folder, chromium, client, only_this_server, snapshot, ui_server

from mlops.repo.repo import Repo


@pytest.mark.timeout(240)
def test_a_canary_and_its_live_statistics(repo: Repo, tmp_path: Path) -> None:
    root = Path(repo.root)
    register(root, "churn", 1, guarded(), stage="production")
    register(root, "churn", 2, guarded())
    c = client(repo)
    assert "No model has a deployment file" in c.get("/deployments").text
    mlops(root, "deploy", "churn", "--canary", "2", "--weight", "50", "--max-error-rate", "1", "--window", "10m")
    listing = c.get("/deployments").text
    row = listing.split('<tr data-model="churn">', 1)[1].split("</tr>", 1)[0]
    assert "canary 2" in row and ">50<" in row and 'href="/models/churn/1"' in row
    before = snapshot(root)
    page = c.get("/deployments/churn").text
    assert "no server is running" in page and 'data-variant="canary"' in page
    assert snapshot(root) == before  # no server ever ran: the page created no state folder

    server = start_server(root, "churn@production")
    try:
        with server.client() as http:
            for _ in range(20):
                assert http.post("/predict", json={"records": [ROW]}).status_code == 200

        def counted() -> dict | None:
            status = c.get("/deployments/churn/status.json").json()
            total = sum(v.get("requests", 0) for v in status["variants"])
            return status if total >= 20 and status["servers"]["running"] else None

        status = wait_for(counted, timeout=60, what="the servers' statistics")
        by_variant = {v["variant"]: v for v in status["variants"]}
        assert set(by_variant) == {"production", "canary"} and by_variant["canary"]["version"] == 2
        assert by_variant["production"]["requests"] + by_variant["canary"]["requests"] == 20
        live = c.get("/deployments/churn").text
        assert re.search(r"\d+ live worker\(s\)", live)
        assert f'<td data-field="requests">{by_variant["canary"]["requests"]}</td>' in live
        if CHROMIUM and importlib.util.find_spec("playwright"):  # the page's script asks again, cells change
            shots = artifacts_folder("ui-deployments", tmp_path)
            with ui_server() as address, chromium() as (page, requested):
                polled: list[str] = []
                page.on("response", lambda r: polled.append(r.url) if r.url.endswith("/status.json") else None)
                page.goto(address + "deployments/churn")
                cell = page.locator('tr[data-variant="canary"] td[data-field="requests"]')
                before_cell = int(cell.inner_text())
                assert before_cell == by_variant["canary"]["requests"]
                with server.client() as http:  # more traffic while the page is open
                    for _ in range(20):
                        assert http.post("/predict", json={"records": [ROW]}).status_code == 200
                total = page.locator('td[data-field="requests"]')
                page.wait_for_function(
                    "() => [...document.querySelectorAll('td[data-field=requests]')]"
                    ".reduce((s, td) => s + Number(td.textContent), 0) >= 40",
                    timeout=90_000,
                )
                assert sum(int(t) for t in total.all_inner_texts()) >= 40
                assert page.locator("[data-refreshed]").count() >= 1 and polled
                page.screenshot(path=shots / "canary.png", full_page=True)
                only_this_server(page.url, page.content(), [{"url": u} for u in requested])
    finally:
        server.kill()
    assert c.get("/deployments/nope").status_code == 404
    assert c.get("/deployments/..%2f..%2fetc/status.json").status_code == 404
