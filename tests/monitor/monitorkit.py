"""Helpers for monitoring tests: past traffic written by the server's own request-log writer, and
an alert receiver on 127.0.0.1."""

from __future__ import annotations

import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.repo.repo import Repo
from mlops.serve.requestlog import LogSettings, RequestLog, requests_dir


def traffic(rng: np.random.Generator, rows: int, drifted: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": rng.integers(48 if drifted else 0, 72, rows).astype("int64"),
            "plan": rng.choice(["basic", "pro", "family"], rows),
            "monthly_charges": rng.uniform(90 if drifted else 10, 120, rows).round(2),
        }
    )


def write_day(
    root: Path, day: float, rows: int, *, drifted: bool, seed: int, first: float | None = None, spacing: float = 30
) -> None:
    """One day's answers of churn:1 (in the repository at ``root``), logged as the server logs them:
    from ``first`` (default: 01:00 of ``day``), ``spacing`` seconds apart."""
    first = day + 3600 if first is None else first
    model = pickle.loads((root / "models" / "churn.pkl").read_bytes())
    frame = traffic(np.random.default_rng(seed), rows, drifted)
    predictions, probabilities = model.predict(frame), model.predict_proba(frame)
    log = RequestLog(requests_dir(Repo(root), "churn"), settings=LogSettings(rotate_seconds=3600))
    log.start()
    for i in range(rows):
        row = frame.iloc[i]
        log.append(
            None,
            {"tenure": [int(row.tenure)], "plan": [str(row.plan)], "monthly_charges": [float(row.monthly_charges)]},
            1,
            {
                "prediction": [int(predictions[i])],
                "variant": "production",
                "version": 1,
                "latency_ms": 2.0,
                "time": first + i * spacing,
                "request_id": f"{int(day)}-{i}",
                "probabilities": ((0, 1), [probabilities[i].tolist()]),
            },
        )
    log.close()
    assert log.error is None


def register_in_production(root: Path, model: Any, version: int, *, promote: bool = True) -> None:
    """``model`` as churn:``version`` (in models/churn.pkl for version 1, which ``write_day``
    predicts with), trained on data/train.parquet, promoted to production (unless not ``promote``)."""
    from mlops import registry

    path = root / "models" / ("churn.pkl" if version == 1 else f"churn-v{version}.pkl")
    path.write_bytes(pickle.dumps(model))
    repo = Repo(root)
    registry.register(repo, "churn", path, data=["data/train.parquet"], signature_from=root / "data" / "train.parquet")
    if promote:
        registry.promote(repo, "churn", version, "production", reason="test set-up", actor="tests")


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every POST body; the first ``fail`` posts get a 503."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[Any] = []
        self.fail = fail
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                owner.calls += 1
                if owner.calls <= owner.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                owner.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
