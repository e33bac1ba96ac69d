"""`mlops ui`'s pages through starlette's test client: rendered values, escaping of hostile
names, filter, sort and paging, columns, names in URLs, the token and Host rules, read-only."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from uikit import client, snapshot, write_runs

from mlops.repo.repo import Repo
from mlops.tracking import store
from mlops.ui import guard

HOSTILE = '<script>alert("x")</script>'


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)">', html)


def _headers(html: str) -> list[str]:
    """The runs table's column labels (each header is a link that sorts by it)."""
    return re.findall(r'title="sort by ([^"]+)"', html)


def test_runs_page_filters_sorts_and_pages_with_the_runs_list_language(repo: Repo) -> None:
    write_runs(repo, 250)
    c = client(repo)
    first = c.get("/runs")
    assert first.status_code == 200
    assert _row_ids(first.text)[:2] == ["r000249", "r000248"]  # newest first, as `runs list`
    assert len(_row_ids(first.text)) == 100 and "page 1 of 3" in first.text
    last = c.get("/runs?page=3")
    assert _row_ids(last.text) == [f"r{i:06d}" for i in range(49, -1, -1)]
    beyond = c.get("/runs?page=99")  # past the end: the last page
    assert _row_ids(beyond.text) == _row_ids(last.text)

    picked = c.get("/runs", params={"q": "params.p0 >= 45 and status = 'finished'", "sort": "-metrics.m0", "n": "25"})
    ids = _row_ids(picked.text)
    expected = [
        r for r in store.list_summaries(repo, heal=False) if r["params"]["p0"] >= 45 and r["status"] == "finished"
    ]
    expected.sort(key=lambda r: -r["metrics"]["m0"])
    assert re.search(rf'id="matched">{len(expected)}<', picked.text)
    assert [r["metrics"]["m0"] for r in expected[:25]] == sorted((r["metrics"]["m0"] for r in expected), reverse=True)[
        :25
    ]
    assert {i for i in ids} <= {r["id"] for r in expected} and len(ids) == min(25, len(expected))
    assert ids[0] == expected[0]["id"]


def test_a_column_header_sorts_by_it_then_the_other_way(repo: Repo) -> None:
    write_runs(repo, 30)
    c = client(repo)
    page = c.get("/runs", params={"q": "status = 'finished'"}).text
    link = re.search(r'<a href="([^"]+)" title="sort by metrics.m0">', page).group(1).replace("&amp;", "&")
    assert "q=status" in link  # the filter stays
    ascending = c.get(link).text
    order = [r["metrics"]["m0"] for r in store.read_index(repo).values() if r["status"] == "finished"]
    rows = _row_ids(ascending)
    index = store.read_index(repo)
    assert [index[r]["metrics"]["m0"] for r in rows] == sorted(order)
    back = re.search(r'<a href="([^"]+)" title="sort by metrics.m0">', ascending).group(1).replace("&amp;", "&")
    assert "sort=-metrics.m0" in back
    descending = _row_ids(c.get(back).text)
    assert [index[r]["metrics"]["m0"] for r in descending] == sorted(order, reverse=True)


def test_a_bad_filter_is_a_400_with_the_parser_message(repo: Repo) -> None:
    write_runs(repo, 3)
    response = client(repo).get("/runs", params={"q": "params.p0 >> 1"})
    assert response.status_code == 400
    assert 'role="alert"' in response.text and _row_ids(response.text) == []


def test_column_chooser_and_only_columns_that_differ(repo: Repo) -> None:
    write_runs(repo, 5, params=2)
    c = client(repo)
    every = c.get("/runs").text
    assert {"params.p0", "metrics.m1"} <= set(_headers(every))
    chosen = c.get("/runs", params=[("col", "metrics.m0"), ("col", "attributes.user")]).text
    assert _headers(chosen) == ["id", "metrics.m0", "user"]
    assert ">tester<" in chosen
    # a param equal in every run is dropped by "only columns that differ"; one that varies stays
    repo_runs = store.runs_dir(repo)
    index = (repo_runs / store.INDEX_FILE).read_text().replace('"p1": ', '"same": 1, "p1": ')
    (repo_runs / store.INDEX_FILE).write_text(index)
    both = c.get("/runs").text
    differ = c.get("/runs?differ=1").text
    assert "params.same" in _headers(both) and "params.same" not in _headers(differ)
    assert "params.p0" in _headers(differ)


def test_run_page_and_compare_show_values_charts_and_differences(repo: Repo) -> None:
    for index, lr in enumerate((0.1, 0.2)):
        run_id = f"run-{index}"
        store.create_run(repo, run_id, name=HOSTILE)
        store.log_params(repo, run_id, {"lr": lr, "depth": 4, HOSTILE: HOSTILE})
        for step in range(4):
            store.log_metrics(repo, run_id, {"loss": 1.0 / (step + 1 + index)}, step=step)
        store.finish_run(repo, run_id, metrics={"acc": 0.8 + index / 10})
    c = client(repo)
    page = c.get("/runs/run-1")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert '<svg class="chart"' in page.text and "<td>loss</td>" in page.text and "<td>0.9</td>" in page.text
    compare = c.get("/compare?run=run-0&run=run-1")
    assert compare.status_code == 200
    assert re.search(r'<tr class="differs" data-key="params.lr"><th>lr</th><td>0.1</td><td>0.2</td>', compare.text)
    assert re.search(r'<tr data-key="params.depth"><th>depth</th><td>4</td><td>4</td>', compare.text)
    loss_chart = compare.text.split("<h3>loss</h3>", 1)[1].split("</svg>", 1)[0]
    assert loss_chart.count('<g class="series"') == 2  # both runs on one chart
    assert "<script>alert" not in compare.text
    listing = c.get("/runs").text
    assert "<script>alert" not in listing and "&lt;script&gt;alert" in listing
    # the column chooser sent back as it stands (every box ticked): each name parses, the hostile key too
    ticked = [html.unescape(v) for v in re.findall(r'name="col" value="([^"]+)" checked', listing)]
    assert "params.`" + HOSTILE + "`" in ticked
    again = c.get("/runs", params=[("col", v) for v in ticked])
    assert again.status_code == 200 and _headers(again.text) == _headers(listing)
    hostile_sort = re.search(r'<a href="([^"]+)" title="sort by params.&lt;script', listing).group(1)
    assert c.get(html.unescape(hostile_sort)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/runs/.mlops",
        "/runs/%2e%2e%2f%2e%2e",
        "/runs/no-such-run",
        "/compare?run=../../etc",
        "/models/churn%2f..%2f..",
        "/models/nope",
        "/models/nope/1",
        "/models/churn/-1",
        "/models/churn/1e3",
        "/reports/..%2fpipeline.yaml",
        "/reports/%2e%2e/%2e%2e/etc/passwd",
        "/reports/runs/index.jsonl",
        "/reports/nothing.html",
        "/static/../app.py",
    ],
)
def test_names_in_urls_are_checked_before_they_become_paths(repo: Repo, url: str) -> None:
    write_runs(repo, 2)
    response = client(repo).get(url)
    assert response.status_code == 404, (url, response.text[:300])


def test_reports_are_served_from_mlops_only(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "secret.html"
    outside.write_text("secret")
    (repo.dot / "reports").mkdir()
    (repo.dot / "reports" / "check.html").write_text("<h1>check</h1>")
    (repo.dot / "reports" / "link.html").symlink_to(outside)
    (repo.root / "top.html").write_text("top")
    c = client(repo)
    assert c.get("/reports/reports/check.html").text == "<h1>check</h1>"
    assert c.get("/reports/reports/link.html").status_code == 404
    assert 'href="/reports/reports/check.html"' in c.get("/reports").text
    with pytest.raises(guard.NotFound):
        guard.checked_report(repo.dot, "../top.html")
    with pytest.raises(guard.NotFound):
        guard.checked_report(repo.dot, "reports/link.html")


def test_the_token_rule(repo: Repo) -> None:
    write_runs(repo, 2)
    c = client(repo, token="s3cret-token")
    assert c.get("/runs").status_code == 401
    assert c.get("/runs/r000001").status_code == 401
    assert c.get("/static/ui.css").status_code == 401
    assert c.get("/runs?token=wrong").status_code == 401
    assert c.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/runs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert c.get("/runs", headers={"X-Mlops-Token": "s3cret-token"}).status_code == 200
    first = c.get("/runs?token=s3cret-token&q=status+%3D+%27finished%27")
    assert first.status_code == 303 and "token" not in first.headers["location"]
    assert first.headers["location"].startswith("/runs?q=")
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get(first.headers["location"]).status_code == 200  # the cookie now carries the token
    # the redirect stays on this server, whatever the path looks like
    sneaky = c.get("http://127.0.0.1:8765//evil.example/x?token=s3cret-token")
    assert sneaky.status_code == 303 and sneaky.headers["location"] == "/evil.example/x"
    # with a token, a remote Host is fine (a reverse proxy with a real name)
    remote = client(repo, token="s3cret-token", base_url="http://ui.example.org")
    assert remote.get("/runs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_without_a_token_only_a_loopback_host_is_answered(repo: Repo) -> None:
    """A DNS-rebinding page names its own host: refused, so it cannot read the runs."""
    write_runs(repo, 1)
    assert client(repo, base_url="http://evil.example:8765").get("/runs").status_code == 403
    for base in ("http://localhost:8765", "http://127.0.0.1:1", "http://[::1]:8765"):
        assert client(repo, base_url=base).get("/runs").status_code == 200, base


def test_every_page_sends_a_policy_that_allows_only_this_server(repo: Repo) -> None:
    write_runs(repo, 1)
    response = client(repo).get("/runs")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "http" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert client(repo).post("/runs").status_code == 405  # read-only: no method but GET


def test_models_version_audit_pipeline_and_reports_pages(project: tuple[Repo, str]) -> None:
    repo, run_id = project
    c = client(repo)
    models = c.get("/models")
    assert models.status_code == 200 and 'href="/models/churn"' in models.text
    assert "champion → 1" in models.text and 'href="/models/churn/1"' in models.text
    model = c.get("/models/churn")
    assert model.status_code == 200 and 'class="stage-staging">staging' in model.text
    version = c.get("/models/churn/1")
    assert version.status_code == 200
    assert f'href="/runs/{run_id}"' in version.text  # lineage back to the run
    assert "data/raw.csv" in version.text or "data/prepared" in version.text
    assert "test_accuracy" in version.text and "# Model card: churn:1" in version.text
    assert "<img src=x" not in version.text and "&lt;img src=x" in version.text  # the hostile approver
    assert "<b>churn</b>" not in version.text
    assert c.get(f"/runs/{run_id}").status_code == 200
    audit = c.get("/audit")
    assert audit.status_code == 200 and 'id="verdict" class="ok"' in audit.text and "approved" in audit.text
    pipeline = c.get("/pipeline")
    assert pipeline.status_code == 200
    assert '<svg class="dag"' in pipeline.text and 'data-from="prepare" data-to="train"' in pipeline.text
    assert 'data-stage="train"' in pipeline.text and "up to date" in pipeline.text
    reports = c.get("/reports")
    assert 'href="/reports/reports/drift-churn.html"' in reports.text
    assert "drift report" in c.get("/reports/reports/drift-churn.html").text


def test_drift_verdicts_on_the_version_and_over_time_on_the_model(project: tuple[Repo, str]) -> None:
    from mlops.registry.drift_checks import record_drift_check

    repo, _ = project
    record_drift_check(repo, "churn", 1, drifted=False, summary={"drifted_columns": 0}, actor="ci")
    record_drift_check(repo, "churn", 1, drifted=True, summary={"drifted_columns": 2, "note": HOSTILE}, actor="ci")
    c = client(repo)
    history = c.get("/models/churn").text.split('id="drift-history"', 1)[1].split("</table>", 1)[0]
    verdicts = re.findall(r'<td class="(?:error|ok)">([^<]+)</td>', history)
    assert verdicts == ["drift", "no drift"]  # newest first
    assert "drifted_columns: 2" in history and "<script>" not in history
    version = c.get("/models/churn/1").text.split('id="drift"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<td class="(?:error|ok)">([^<]+)</td>', version) == ["no drift", "drift"]


def test_the_audit_page_says_when_the_log_was_tampered_with(project: tuple[Repo, str]) -> None:
    repo, _ = project
    log = repo.dot / "registry" / "audit.jsonl"
    log.write_text(log.read_text().replace('"staging"', '"production"', 1))
    page = client(repo).get("/audit")
    assert page.status_code == 200 and 'id="verdict" class="error"' in page.text and "NOT verified" in page.text


def test_a_stale_stage_shows_why_it_would_run(project: tuple[Repo, str]) -> None:
    repo, _ = project
    (repo.root / "params.yaml").write_text("prepare:\n  split: 0.5\ntrain:\n  C: 1.0\n")
    page = client(repo).get("/pipeline").text
    row = page.split('data-stage="prepare">', 2)[-1].split("</tr>", 1)[0]
    assert "would run" in row and "prepare.split" in row
    assert 'class="node would-run" data-stage="train"' in page  # downstream of a stage that will run


def test_browsing_every_page_writes_nothing(project: tuple[Repo, str]) -> None:
    repo, run_id = project
    write_runs(repo, 30)
    (repo.root / "params.yaml").write_text("prepare:\n  split: 0.5\ntrain:\n  C: 2.0\n")  # stale stages too
    before = snapshot(repo.root)
    c = client(repo)
    urls = [
        "/",
        "/runs",
        "/runs?q=status+%3D+%27finished%27&sort=-metrics.m0&differ=1&page=2&n=25",
        f"/runs/{run_id}",
        f"/compare?run={run_id}&run=r000001",
        "/models",
        "/models/churn",
        "/models/churn/1",
        "/audit",
        "/pipeline",
        "/checks",
        "/checks/churn",
        "/reports",
        "/reports/reports/drift-churn.html",
        "/static/ui.css",
        "/static/ui.js",
        "/runs/nope",
    ]
    for url in urls:
        assert c.get(url).status_code in (200, 302, 404), url
    assert snapshot(repo.root) == before


def test_compare_draws_parallel_coordinates_over_the_params_that_differ(repo: Repo) -> None:
    for index, (lr, optimiser) in enumerate(((0.1, "sgd"), (0.2, "adam"), (0.4, "sgd"))):
        run_id = f"run-{index}"
        store.create_run(repo, run_id)
        store.log_params(repo, run_id, {"lr": lr, "optimiser": optimiser, "depth": 4})
        store.finish_run(repo, run_id, metrics={"acc": 0.5 + index / 10, "loss": 1 - index / 10})
    c = client(repo)
    page = c.get("/compare?run=run-0&run=run-1&run=run-2").text
    svg = page.split('<svg class="chart parallel"', 1)[1].split("</svg>", 1)[0]
    axes = re.findall(r'<text x="[\d.]+" y="20" text-anchor="middle">([^<]+)</text>', svg)
    assert axes == ["params.lr", "params.optimiser", "metrics.acc"]  # depth is equal everywhere: no axis
    assert svg.count('<g class="series"') == 3 and svg.count("<polyline") == 3
    chosen = c.get("/compare?run=run-0&run=run-1&run=run-2&metric=loss").text
    assert ">metrics.loss</text>" in chosen and ">metrics.acc</text>" not in chosen.split("parallel", 1)[1]
    unknown = c.get("/compare?run=run-0&run=run-1&metric=%3Cscript%3E").text  # not a metric: the first one
    assert ">metrics.acc</text>" in unknown and "<script>" not in unknown
    assert '<svg class="chart parallel"' not in c.get("/compare?run=run-0").text  # one run: nothing to compare


def test_a_damaged_run_is_one_line_not_a_crash(repo: Repo) -> None:
    write_runs(repo, 3)
    store.create_run(repo, "torn")  # running, not in the index: the listing reads its run.json
    (store.run_dir(repo, "torn") / store.RUN_FILE).write_text('{"id": "torn", "status": ')
    c = client(repo)
    listing = c.get("/runs")
    assert listing.status_code == 200 and len(_row_ids(listing.text)) == 3
    assert 'class="warning">run torn:' in listing.text  # said, not hidden
    page = c.get("/runs/torn")
    assert page.status_code == 500 and "Traceback" not in page.text
    assert re.search(r'<p class="error">[^<]*run\.json[^<]*</p>', page.text), page.text[-800:]


def test_the_dag_places_each_stage_one_column_after_its_deepest_need() -> None:
    from mlops.ui.dag import StageView, draw, layers

    upstream = {"b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ("a", "d")}
    placed = layers(("a", "b", "c", "d", "e"), upstream)
    assert placed == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    stages = [StageView(n, "up to date", (), True, upstream.get(n, ()), "", (), (), placed[n]) for n in "abcde"]
    svg = draw(stages)
    assert svg.count('class="edge"') == 6 and svg.count('class="node up-to-date"') == 5


def test_the_pages_load_no_heavy_library(project: tuple[Repo, str]) -> None:
    """`mlops ui` keeps the light start-up rule: no page imports pandas, pyarrow, scipy or scikit-learn."""
    import subprocess
    import sys

    repo, run_id = project
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from starlette.testclient import TestClient\n"
        "from mlops.repo.repo import Repo\n"
        "from mlops.ui.app import build_app\n"
        "c = TestClient(build_app(Repo(__import__('pathlib').Path(sys.argv[1]))), base_url='http://127.0.0.1')\n"
        "for url in sys.argv[2:]:\n"
        "    assert c.get(url).status_code == 200, url\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow', 'scipy', 'sklearn'})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    urls = ["/runs", f"/runs/{run_id}", "/models", "/models/churn", "/models/churn/1", "/audit", "/pipeline"]
    urls += ["/checks", "/checks/churn"]
    proc = subprocess.run(
        [sys.executable, "-c", code, str(repo.root), *urls], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
