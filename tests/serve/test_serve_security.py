"""The server's trust boundary (issue 12): every HTTP request to `mlops serve` is untrusted.

A page in a browser on this machine can send cross-site "simple" requests (text/plain, form
bodies) to 127.0.0.1, and DNS rebinding lets it reach the server under a foreign Host name.
Each is sent here against every admin endpoint of a real server, with and without a token, and
the deployment file must be left as it was. A client that goes away in the middle of its body
is counted, not logged as a 500 with a traceback.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
from servekit import ROW, Server, mlops, wait_for

TOKEN = "s3cret-token-for-tests"
ADMIN = ("/admin/reload", "/admin/rollback")
EVIL = "http://evil.example"


def attacks(port: int) -> dict[str, dict]:
    """What a hostile page can make a browser send (no token: a browser has none to send)."""
    return {
        "text/plain body": {"content": b'{"reason": "pwned"}', "headers": {"Content-Type": "text/plain"}},
        "form body": {"data": {"reason": "pwned"}},
        "multipart body": {"files": {"reason": ("r.txt", b"pwned", "text/plain")}},
        "no content type": {"content": b""},
        "foreign Origin": {"json": {"reason": "pwned"}, "headers": {"Origin": EVIL}},
        "another loopback port as Origin": {"json": {}, "headers": {"Origin": "http://127.0.0.1:1"}},
        "null Origin": {"json": {}, "headers": {"Origin": "null"}},
        "cross-site fetch": {"json": {}, "headers": {"Sec-Fetch-Site": "cross-site"}},
        "foreign Host (DNS rebinding)": {"json": {"reason": "pwned"}, "headers": {"Host": f"evil.example:{port}"}},
    }


def deployed_candidate(root: Path) -> bool:
    text = (root / ".mlops" / "deployments" / "churn.yaml").read_text()
    return "candidate:" in text


def metric_lines(server: Server, prefix: str, headers: dict | None = None) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", headers=headers or {}, timeout=30).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    }


def test_without_a_token_admin_answers_only_json_from_this_machine(serve, model_repo: Path) -> None:
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "10")
    server = serve()
    wanted_rule = {
        "text/plain body": "json-content-type",
        "form body": "json-content-type",
        "multipart body": "json-content-type",
        "no content type": "json-content-type",
        "foreign Origin": "same-origin",
        "another loopback port as Origin": "same-origin",
        "null Origin": "same-origin",
        "cross-site fetch": "same-origin",
        "foreign Host (DNS rebinding)": "loopback-host",
    }
    with server.client() as c:
        for path in ADMIN:
            for name, request in attacks(server.port).items():
                r = c.post(path, **request)
                assert r.status_code == 403, (path, name, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/json")
                assert r.json()["rule"] == wanted_rule[name], (path, name, r.json())
                assert wanted_rule[name] in r.json()["error"] or r.json()["error"], r.json()
        assert deployed_candidate(model_repo), "a refused rollback left the deployment as it was"
        # a foreign Host or Origin does not see the details /health keeps for administrators either
        assert "pid" in c.get("/health").json()
        assert "pid" not in c.get("/health", headers={"Host": "evil.example"}).json()
        assert "pid" not in c.get("/health", headers={"Origin": EVIL}).json()

        # what a local tool sends: JSON to a loopback Host, any spelling and port, its own origin or none
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost", f"[::1]:{server.port}"):
            r = c.post("/admin/reload", json={}, headers={"Host": host})
            assert r.status_code == 200 and r.json()["reloaded"] is True, (host, r.text)
        same_origin = {"Origin": f"http://localhost:{server.port}", "Content-Type": "application/json; charset=utf-8"}
        r = c.post("/admin/rollback", content=b'{"reason": "by hand"}', headers=same_origin)
        assert r.status_code == 200, r.text
        assert r.json()["deployment"]["last_event"]["reason"] == "by hand"
    assert not deployed_candidate(model_repo)

    refusals = metric_lines(server, "mlops_admin_refusals_total")
    assert refusals['mlops_admin_refusals_total{model="churn",rule="json-content-type"}'] == 8
    assert refusals['mlops_admin_refusals_total{model="churn",rule="same-origin"}'] == 8
    assert refusals['mlops_admin_refusals_total{model="churn",rule="loopback-host"}'] == 2
    answered = metric_lines(server, "mlops_http_requests_total")
    assert answered['mlops_http_requests_total{model="churn",route="/admin/rollback",code="403"}'] == 9
    assert answered['mlops_http_requests_total{model="churn",route="/admin/reload",code="200"}'] == 4
    assert "Traceback" not in server.stderr()


def test_with_a_token_the_token_is_required_and_a_foreign_origin_is_refused(serve, model_repo: Path) -> None:
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "10")
    server = serve("churn@production", "--token-env", "SERVE_TOKEN", env={"SERVE_TOKEN": TOKEN})
    good = {"Authorization": f"Bearer {TOKEN}"}
    origin_attacks = {"foreign Origin", "another loopback port as Origin", "null Origin", "cross-site fetch"}
    with server.client() as c:
        for path in ADMIN:
            for name, request in attacks(server.port).items():
                r = c.post(path, **request)  # a browser has no token to send
                want = 403 if name in origin_attacks else 401
                assert r.status_code == want, (path, name, r.status_code, r.text)
                assert r.json()["rule"] == ("same-origin" if want == 403 else "token")
                # the Origin rule holds even for a request that carries the token
                if name in origin_attacks:
                    headers = {**request.get("headers", {}), **good}
                    r = c.post(path, json={}, headers=headers)
                    assert r.status_code == 403 and r.json()["rule"] == "same-origin", (path, name, r.text)
        assert deployed_candidate(model_repo)
        # with the token, Host and content type are free: a proxy with a real name may stand in front
        r = c.post("/admin/reload", headers={**good, "Host": "mlops.internal"})
        assert r.status_code == 200, r.text
        r = c.post("/admin/rollback", content=b'{"reason": "ops"}', headers={**good, "Content-Type": "text/plain"})
        assert r.status_code == 200, r.text
    assert not deployed_candidate(model_repo)
    refusals = metric_lines(server, "mlops_admin_refusals_total", good)
    assert refusals['mlops_admin_refusals_total{model="churn",rule="token"}'] == 10
    assert refusals['mlops_admin_refusals_total{model="churn",rule="same-origin"}'] == 16
    assert TOKEN not in server.stderr()


def half_a_body(port: int, path: str, content_type: str = "application/json") -> None:
    """Send the head and half of the announced body, then close the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 4000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"records": [' + b" " * 1000)
        time.sleep(0.2)  # the server is now waiting for the rest


def test_a_client_that_disconnects_mid_body_is_counted_not_an_error(serve) -> None:
    server = serve()
    paths = ("/predict", "/invocations", "/v2/models/churn/infer", "/admin/rollback")
    for count, path in enumerate(paths, start=1):
        half_a_body(server.port, path)
        wait_for(
            lambda count=count: (
                metric_lines(server, "mlops_requests_aborted_total").get('mlops_requests_aborted_total{model="churn"}')
                == count
            ),
            what=f"the aborted request to {path} counted",
        )
    with server.client() as c:  # and the server goes on serving
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200
    answered = metric_lines(server, "mlops_http_requests_total")
    assert not [k for k in answered if 'code="500"' in k], answered
    stderr = server.stderr()
    assert "Traceback" not in stderr and "ERROR" not in stderr and "ClientDisconnect" not in stderr, stderr


def test_every_answered_request_is_counted_4xx_included(serve) -> None:
    server = serve()
    with server.client() as c:
        assert c.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        assert c.post("/invocations", content=b"x", headers={"Content-Type": "application/xml"}).status_code == 415
        assert c.post("/predict", json={"records": [{**ROW, "tenure": None}]}).status_code == 400
        assert c.get("/nowhere").status_code == 404
        assert c.get("/predict").status_code == 405
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200
    answered = metric_lines(server, "mlops_http_requests_total")
    label = 'mlops_http_requests_total{{model="churn",route="{}",code="{}"}}'
    assert answered[label.format("/predict", 400)] == 2
    assert answered[label.format("/predict", 200)] == 1
    assert answered[label.format("/invocations", 415)] == 1
    assert answered[label.format("unmatched", 404)] == 1
    assert answered[label.format("unmatched", 405)] == 1
    # the per-variant family counts what reached a variant: the signature's 400 and the 200
    requests = metric_lines(server, "mlops_requests_total")
    assert requests['mlops_requests_total{model="churn",variant="production",version="1"}'] == 2
    assert re.search(r"# HELP mlops_http_requests_total .*4xx", httpx.get(server.url + "/metrics").text)


def test_model_routes_refuse_cross_site_and_rebinding_but_probes_answer(serve, model_repo: Path) -> None:
    # a page may POST text/csv to /invocations without a preflight, and a canary's errors count
    # toward its rollback: the model's routes are not harmless to a hostile page either
    server = serve()
    csv = {"content": "tenure,plan,monthly_charges\n3,basic,80.0\n", "headers": {"Content-Type": "text/csv"}}
    with server.client() as c:
        assert c.post("/invocations", **csv).status_code == 200  # a local tool: no Origin, loopback Host
        cross = c.post(
            "/invocations", content=csv["content"], headers={**csv["headers"], "Origin": "http://evil.example"}
        )
        assert cross.status_code == 403 and cross.json()["rule"] == "same-origin"
        rebound = c.get("/metadata", headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and rebound.json()["rule"] == "loopback-host"
        for probe in ("/ping", "/v2/health/live", "/v2/health/ready"):
            assert c.get(probe, headers={"Host": "10-0-0-7.pod.cluster.local"}).status_code == 200, probe
    counted = metric_lines(server, "mlops_cross_site_refusals_total")
    assert sum(counted.values()) == 2, counted
