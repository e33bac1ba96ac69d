"""A registry file edited by hand (or by a malicious commit) is refused before its artifact is opened.

The registry keeps one JSON file per model, anchored in the hash-chained audit log: each
model file names the audit entry that last wrote it and the SHA-256 of its content. A reader
that is about to use an artifact (`load_model`, `mlops serve`'s start-up, `artifact_path`)
checks that anchor first; a file pointed at another artifact, or given another hash, is
refused with one line, exit 3. The proof that the artifact was never opened: it is replaced
by a FIFO, whose open for reading would block until a writer comes.
"""

from __future__ import annotations

import json
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import RegistryTampered
from mlops.registry import artifact_path, audit, load_model, register, resolve
from mlops.registry.store import audit_path, model_path
from mlops.repo.repo import Repo
from mlops.store.hashing import hash_bytes


def _register(repo: Repo, name: str, payload: Any) -> Any:
    (repo.root / f"{name}.pkl").write_bytes(pickle.dumps(payload))
    return register(repo, name, f"{name}.pkl").version


def _edit(repo: Repo, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = model_path(repo, name)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def _fifo_at(path: Path) -> None:
    """Replace whatever is at ``path`` (a read-only object) with a FIFO nobody writes into."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
        path.unlink()
    os.mkfifo(path)


def _never_opens(path: Path, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; if it blocks opening the FIFO at ``path``, unblock it and fail."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a reader is waiting: let it go
        os.close(fd)
        thread.join(timeout=5)
        pytest.fail(f"the artifact {path} was opened although the registry file was tampered with")
    assert "value" not in outcome, "a tampered registry file was used"
    return outcome.get("error")


def _point_at(other: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        art = doc["versions"][0]["artifact"]
        art["hash"], art["sha256"], art["size"] = other.artifact, other.sha256, other.size

    return change


def _new_sha(doc: dict[str, Any]) -> None:
    doc["versions"][0]["artifact"]["sha256"] = "f" * 64


def _re_anchored(doc: dict[str, Any]) -> None:
    """A careful attacker also rewrites the anchor's state to match the edited content."""
    doc["versions"][0]["artifact"]["sha256"] = "e" * 64
    doc["audit"]["state"] = audit.state_hash(doc)


def _no_anchor(doc: dict[str, Any]) -> None:
    doc["versions"][0]["artifact"]["sha256"] = "d" * 64
    del doc["audit"]


TAMPERINGS = {
    "another-artifact": "point",
    "another-sha256": _new_sha,
    "anchor-rewritten": _re_anchored,
    "anchor-removed": _no_anchor,
}


@pytest.fixture
def models(repo: Repo) -> tuple[Any, Any]:
    good = _register(repo, "churn", {"weights": [1, 2, 3]})
    other = _register(repo, "evil", {"weights": "whatever the attacker planted"})
    return good, other


def _tamper(repo: Repo, how: str, other: Any) -> Path:
    """Apply one tampering to churn's file; return the object path the tampered file names (now a FIFO)."""
    _edit(repo, "churn", _point_at(other) if TAMPERINGS[how] == "point" else TAMPERINGS[how])
    target = repo.objects.path(json.loads(model_path(repo, "churn").read_text())["versions"][0]["artifact"]["hash"])
    _fifo_at(target)
    return target


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_load_model_refuses_a_tampered_model_file_before_opening_the_artifact(repo, models, how) -> None:
    _, other = models
    fifo = _tamper(repo, how, other)
    error = _never_opens(fifo, lambda: load_model("churn:1", repo))
    assert isinstance(error, RegistryTampered), error
    assert error.exit_code == 3 and "\n" not in error.message
    assert "refusing to use its artifacts" in error.message


@pytest.mark.parametrize("how", ["another-artifact", "another-sha256"])
def test_artifact_path_refuses_a_tampered_model_file(repo, models, how) -> None:
    _, other = models
    fifo = _tamper(repo, how, other)
    error = _never_opens(fifo, lambda: artifact_path(repo, resolve(repo, "churn:1")))
    assert isinstance(error, RegistryTampered), error


def test_a_version_object_that_is_not_the_registry_s_is_refused(repo, models) -> None:
    good, other = models
    forged = good.__class__(**{**good.__dict__, "artifact": other.artifact, "sha256": other.sha256})
    fifo = repo.objects.path(other.artifact)
    _fifo_at(fifo)
    error = _never_opens(fifo, lambda: load_model(forged, repo))
    assert isinstance(error, RegistryTampered) and "not the one the registry recorded" in error.message


@pytest.mark.parametrize("how", ["another-artifact", "anchor-rewritten"])
def test_serve_refuses_to_start_with_one_line(repo, models, mlops_bin, how) -> None:
    _, other = models
    _tamper(repo, how, other)
    # a server that opened the FIFO would hang here: the subprocess timeout fails the test
    proc = mlops_bin("serve", "churn:1", "--port", "0", cwd=repo.root, code=3, timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing to use its artifacts" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_load_model_through_the_cli_predict_refuses(repo, models, mlops_bin, tmp_path) -> None:
    _, other = models
    _tamper(repo, "another-artifact", other)
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    proc = mlops_bin("predict", "churn:1", str(data), "-o", str(tmp_path / "out.csv"), cwd=repo.root, code=3)
    assert "refusing to use its artifacts" in proc.stderr and not (tmp_path / "out.csv").exists()


def test_an_untouched_registry_still_loads(repo, models) -> None:
    good, other = models
    assert load_model("churn:1", repo) == {"weights": [1, 2, 3]}
    assert artifact_path(repo, resolve(repo, "evil:1")).read_bytes() == pickle.dumps(
        {"weights": "whatever the attacker planted"}
    )
    assert hash_bytes(artifact_path(repo, good).read_bytes()) == good.artifact


def test_a_change_in_flight_is_not_taken_for_tampering(repo, models) -> None:
    # a writer appends its entry, then replaces the model file, then moves the head: a reader
    # between the first two steps sees an entry the file does not carry yet, past the head
    appender = audit.Appender.open(audit_path(repo))
    appender.append("stage_changed", {"model": "churn", "version": 1, "state": "a" * 64})
    assert load_model("churn:1", repo) == {"weights": [1, 2, 3]}
    # once the head names that entry, the file is older than a landed change: refused
    audit.write_head(repo.dot / "registry" / audit.HEAD_FILE, appender.seq, appender.last)
    with pytest.raises(RegistryTampered, match="older than audit entry"):
        load_model("churn:1", repo)


def test_an_old_copy_of_the_model_file_put_back_is_refused(repo, models) -> None:
    from mlops.registry import set_alias

    old = model_path(repo, "churn").read_bytes()
    set_alias(repo, "churn", 1, "champion")
    model_path(repo, "churn").write_bytes(old)
    with pytest.raises(RegistryTampered, match="older than audit entry"):
        load_model("churn:1", repo)


def test_a_folder_artifact_is_never_copied_through_a_planted_symlink(repo, guard, tmp_path) -> None:
    from mlops.errors import UnsafeNameError

    folder = repo.root / "bundle"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00" * 64)
    (folder / "config.json").write_text("{}")
    mv = register(repo, "folded", "bundle").version
    repo.tmp.mkdir(exist_ok=True)
    (repo.tmp / "models").symlink_to(tmp_path / "sentinel", target_is_directory=True)
    with pytest.raises(UnsafeNameError, match="symlink"):
        artifact_path(repo, mv)
    guard.check()
    (repo.tmp / "models").unlink()
    copy = artifact_path(repo, mv)
    assert sorted(p.name for p in copy.iterdir()) == ["config.json", "weights.bin"]
