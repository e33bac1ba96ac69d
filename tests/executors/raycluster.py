"""A real local Ray cluster for tests and benchmarks: started by `ray start --head --block`, stopped by
ending that process (which stops every Ray process it started, and only those).

Everything the cluster listens on is a free port of 127.0.0.1 chosen here, and its session files go
to a temp folder of its own (``--temp-dir``), so several engineers' clusters on one machine never
meet; nothing here runs `ray stop`, which would stop every cluster of the user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RAY_BIN = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT = 180.0
NO_TOKEN_AUTH = {"RAY_AUTH_MODE": "disabled"}  # a loaded 2-core machine can take 20+ s; leave room


def _free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return ports


@dataclass
class RayCluster:
    address: str  # host:port of the head's GCS, what `--address` and RAY_ADDRESS take
    client_address: str  # ray://host:port of the head's Ray Client server (ray[client])
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    started_in: float  # seconds from `ray start` to a cluster that answers

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        # whatever it started in its group (raylets, workers) goes with it
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_cluster(num_cpus: int = 2, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> RayCluster:
    """A head node with ``num_cpus`` logical CPUs and no dashboard, answering on 127.0.0.1."""
    # short: Ray's unix sockets live under it and a socket path is limited to ~107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    gcs, node_mgr, obj_mgr, agent, agent_grpc, runtime_env, metrics, client = _free_ports(8)
    log = open(temp_dir / "start.log", "wb")  # noqa: SIM115 - kept open for the process's life
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            RAY_BIN,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--node-manager-port={node_mgr}",
            f"--object-manager-port={obj_mgr}",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            f"--ray-client-server-port={client}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env={
            **{k: v for k, v in os.environ.items() if k not in unset},
            "RAY_USAGE_STATS_ENABLED": "0",
            # a token in ~/.ray (which a `ray.init()` that starts a cluster may write) must not turn
            # this private cluster's authentication on; its drivers get the same (NO_TOKEN_AUTH)
            **NO_TOKEN_AUTH,
            **(env or {}),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: stopping it reaches every Ray process it started
    )
    cluster = RayCluster(f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}", temp_dir, proc, 0.0)
    deadline = started + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"ray start exited {proc.returncode}: {(temp_dir / 'start.log').read_text()[-3000:]}"
                )
            if _answers(cluster.address):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray cluster not ready in {START_TIMEOUT}s: {(temp_dir / 'start.log').read_text()}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - started
    return cluster


def _answers(address: str) -> bool:
    """The head answers and its raylet is registered (a task could be placed)."""
    probe = (
        "import ray, sys\n"
        f"ray.init(address={address!r}, log_to_driver=False, configure_logging=False)\n"
        "sys.exit(0 if ray.cluster_resources().get('CPU', 0) > 0 else 1)\n"
    )
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    except OSError:
        return False
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, timeout=120, env={**os.environ, **NO_TOKEN_AUTH}
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0
