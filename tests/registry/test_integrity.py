"""Integrity: only the registered bytes are ever unpickled; artifacts travel with push/pull
and survive gc like tracked data."""

from __future__ import annotations

import os
import shutil

import pytest
from regkit import js, mlops, write_pickle

from mlops.data.pointer import read_pointer
from mlops.errors import CorruptObjectError, MissingObjectError, RegistryTampered
from mlops.registry import artifact_path, flavors, load_model, register, resolve, training_data


def _corrupt(path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_corrupted_artifact_is_refused_before_unpickling(repo, tmp_path) -> None:
    write_pickle(repo.root / "m.pkl", {"weights": [1, 2]})
    mv = register(repo, "m", "m.pkl").version
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    import pickle

    _corrupt(repo.objects.path(mv.artifact), pickle.dumps(Payload()))  # swapped bytes in the cache
    with pytest.raises(CorruptObjectError, match="do not match the hash the registry recorded"):
        load_model("m:1", repo)
    assert not marker.exists()  # refused before the pickle could run
    with pytest.raises(CorruptObjectError):
        artifact_path(repo, mv)


def test_a_corrupted_artifact_fails_the_cli_with_a_clear_line(repo) -> None:
    write_pickle(repo.root / "m.pkl", {"weights": [1, 2]})
    mv = register(repo, "m", "m.pkl").version
    _corrupt(repo.objects.path(mv.artifact), b"\x80\x04N.")  # a valid pickle (None), not the registered one
    proc = mlops("verify", cwd=repo.root, code=1)
    assert mv.artifact in proc.stdout and "registry m:1" in proc.stdout  # verify names who uses it
    script = (
        "import mlops, sys\ntry:\n    mlops.load_model('m@latest')\n"
        "except Exception as e:\n    print(type(e).__name__, e); sys.exit(5)\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], cwd=repo.root, capture_output=True, text=True)
    assert out.returncode == 5 and "CorruptObjectError" in out.stdout


def test_a_same_length_xxh3_collision_would_still_fail_sha256(repo) -> None:
    # the registry keeps SHA-256 beside the store's xxh3: a forged object with the right name fails
    write_pickle(repo.root / "m.pkl", {"weights": [1, 2]})
    mv = register(repo, "m", "m.pkl").version
    forged = resolve(repo, "m:1").__class__(**{**mv.__dict__, "sha256": "0" * 64})
    with pytest.raises(RegistryTampered):  # a version that is not what the registry recorded is not even opened
        load_model(forged, repo)
    with pytest.raises(CorruptObjectError):  # and the bytes are checked against both hashes before unpickling
        flavors.verified_bytes(repo.objects.path(mv.artifact), digest=mv.artifact, sha256="0" * 64, what="m:1")


def test_artifacts_and_their_data_are_pushed_pulled_and_kept_by_gc(trained, remote_dir, cli) -> None:
    repo, run_id = trained
    cli("register", "churn", "models/model.pkl", "--run", run_id)
    mv = resolve(repo, "churn:1")
    # the model file and the prepared data leave the workspace and the lock file forgets them
    (repo.root / "pipeline.lock").unlink()
    os.chmod(repo.root / "models", 0o755)
    (repo.root / "models" / "model.pkl").unlink()
    shutil.rmtree(repo.root / "data" / "prepared")
    # an object nothing references any more, beside them: gc must take it and only what is like it
    (repo.root / "scratch.bin").write_bytes(b"tracked once, then forgotten")
    cli("add", "scratch.bin")
    scratch = read_pointer(repo.root, "scratch.bin.mlops").hash
    (repo.root / "scratch.bin.mlops").unlink()
    registry_objects = {mv.artifact, *_data_objects(repo, mv)}
    before = set(repo.objects.iter_digests())
    gc = js(cli("gc", "--json"))
    after = set(repo.objects.iter_digests())
    assert scratch in before and scratch not in after and gc["removed"] == len(before - after) >= 1
    assert registry_objects <= after  # kept: the registry is a root (its artifact, its data's manifest and files)
    assert load_model("churn:1", repo).__class__.__name__ == "LogisticRegression"
    assert len(training_data(repo, mv)) == 2
    # push, lose the cache, pull: the registry's objects come back
    cli("remote", "add", "storage", str(remote_dir), "--default")
    cli("push")
    shutil.rmtree(repo.root / ".mlops" / "cache")
    repo.__dict__.pop("objects", None)
    with pytest.raises(MissingObjectError, match="not in the cache") as missing:
        load_model("churn:1", repo)
    assert "mlops pull" in missing.value.hint
    cli("pull")
    assert load_model("churn:1", repo).__class__.__name__ == "LogisticRegression"
    assert dict(training_data(repo, mv))["data/prepared/train.csv"].exists()


def _data_objects(repo, mv) -> set[str]:
    from mlops.store.tree import walk_tree

    out = set()
    for snap in mv.data:
        out.add(snap["hash"])
        if snap["kind"] == "dir":
            out.update(entry.hash for _rel, entry in walk_tree(repo.objects.read_bytes, snap["hash"]))
    return out


def test_gc_all_commits_keeps_artifacts_of_models_only_in_history(repo, cli) -> None:
    from regkit import git

    write_pickle(repo.root / "m.pkl", {"old": True})
    mv = register(repo, "old", "m.pkl").version
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "registry")
    (repo.root / ".mlops/registry/models/old.json").unlink()  # gone from the workspace, still in git
    cli("gc", "--all-commits")
    assert repo.objects.exists(mv.artifact)
    cli("gc")
    assert not repo.objects.exists(mv.artifact)
