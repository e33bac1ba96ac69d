"""The server's settings: chosen by `mlops serve`, handed to each worker process as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from .requestlog import LogSettings, MiB

CONFIG_ENV = "MLOPS_SERVE_CONFIG"


@dataclass(frozen=True)
class ServeConfig:
    root: str  # the repository; with a bundle, the folder of the server's own state (request logs, statistics)
    ref: str  # what to serve when no deployment file exists: churn@production, churn:4
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    token_env: str | None = None  # the name of the variable holding the bearer token, never the token
    max_body_bytes: int = 10 * MiB
    max_batch_rows: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 256
    timeout_seconds: float = 30.0
    body_seconds: float = 30.0  # a request body arrives whole within this, or the request is a 408
    graceful_seconds: float = 30.0
    request_log: bool = True
    # the request log's defaults are LogSettings' own (one place to change them)
    log_max_file_bytes: int = LogSettings.max_file_bytes
    log_rotate_seconds: float = LogSettings.rotate_seconds
    log_max_total_bytes: int = LogSettings.max_total_bytes
    log_max_age_seconds: float = LogSettings.max_age_seconds
    watch_seconds: float = 0.5
    stats_seconds: float = 1.0
    control_seconds: float = 1.0
    access_log: bool = False
    bundle: str | None = None  # serve this verified bundle folder (serve/bundle.py) instead of the registry
    runtime: str = "auto"  # a bundle's pickle or its ONNX form (serve/bundle.py's RUNTIMES)
    state: str | None = None  # the replicas' shared state (serve/shared.py): s3://bucket/prefix or a folder
    debug: bool = False  # --debug: a model's exception logged with its traceback (one line otherwise)
    lease_seconds: float = 10.0  # the controller lease: a dead controller's replica is replaced within this

    def log_settings(self) -> LogSettings:
        return LogSettings(
            max_file_bytes=self.log_max_file_bytes,
            rotate_seconds=self.log_rotate_seconds,
            max_total_bytes=self.log_max_total_bytes,
            max_age_seconds=self.log_max_age_seconds,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_env(cls) -> ServeConfig:
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with `mlops serve`")
        return cls.from_json(text)

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")
