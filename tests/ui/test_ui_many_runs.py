"""The runs page over 20,000 runs: every page reachable, the store read once while unchanged."""

from __future__ import annotations

import re

import pytest
from uikit import client, write_runs

from mlops.repo.repo import Repo
from mlops.tracking import store

COUNT = 20_000


@pytest.mark.timeout(300)
def test_twenty_thousand_runs_page_filter_and_sort_from_one_read(repo: Repo) -> None:
    write_runs(repo, COUNT)
    c = client(repo)
    ui = c.app.app.state.ui  # the Starlette app behind the guard
    first = c.get("/runs?n=1000")
    assert first.status_code == 200 and f"of {COUNT} run(s), page 1 of 20" in first.text
    last = c.get("/runs?n=1000&page=20")
    ids = re.findall(r'<tr data-run="([^"]+)">', last.text)
    assert ids[0] == "r000999" and ids[-1] == "r000000" and len(ids) == 1000
    query = {"q": "metrics.m0 > 0.99 and params.p1 < 10", "sort": "metrics.m0,-id", "col": "metrics.m0"}
    picked = c.get("/runs", params=query)
    wanted = [r for r in store.read_index(repo).values() if r["metrics"]["m0"] > 0.99 and r["params"]["p1"] < 10]
    assert re.search(rf'id="matched">{len(wanted)}<', picked.text) and wanted
    values = [float(v) for v in re.findall(r"<td>(0\.99\d*)</td>", picked.text)]
    assert values == sorted(values) and values
    for page in range(2, 6):  # paging a query sorts once: the result is kept
        assert (
            c.get("/runs", params={"q": "params.p0 > 10", "sort": "-metrics.m1", "page": str(page)}).status_code == 200
        )
    assert ui.runs.loads == 1
    # a run that ends changes the index: the next page reads the store again and shows it
    write_runs(repo, 1, start=10**10, first=COUNT)
    assert 'data-run="r020000"' in c.get("/runs?n=1").text and ui.runs.loads == 2
