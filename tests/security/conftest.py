"""Attack tests: what a hostile remote, commit or request can do, and the proof that it did nothing.

``guard`` hashes, before the test, everything beside the repository (a sentinel tree in the
test's temporary folder) and the repository's ``.git`` (hooks, config, refs, objects; not the
index, which ``git status`` may refresh), and checks after the test that none of it changed.
A test that expects an attack to be refused calls ``guard.check()`` itself too, so the
failure names the step.

``hostile_remote`` is the repository's default remote, parametrized over both kinds (a local
folder and the moto S3 server on 127.0.0.1), with ways to plant raw bytes the way an
attacker with write access to the bucket would: no hash check, any key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops.repo.repo import Repo

SENTINEL_FILES = {
    "sentinel/keep.txt": "must never change\n",
    "sentinel/.git/hooks/pre-commit": "#!/bin/sh\nexit 0\n",
    "sentinel/nested/deep/file.bin": "x" * 100,
    "victim.txt": "a file beside the repository\n",
}
GIT_VOLATILE = {"index", "index.lock", "FETCH_HEAD", "ORIG_HEAD"}


def snapshot(root: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Every entry below ``root`` (not following symlinks): kind, mode and a hash of the content."""
    out: dict[str, str] = {}
    if not os.path.lexists(root):
        return out
    for folder, dirs, files in os.walk(root, followlinks=False):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_folder, d)) not in skip]
        for name in [*dirs, *files]:
            rel = os.path.normpath(os.path.join(rel_folder, name))
            if rel in skip or name in GIT_VOLATILE:
                continue
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = f"link {os.readlink(path)}"
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    out[rel] = f"file {stat.S_IMODE(info.st_mode):o} {hashlib.sha256(handle.read()).hexdigest()}"
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = f"dir {stat.S_IMODE(info.st_mode):o}"
            else:
                out[rel] = f"special {info.st_mode:o}"
    return out


@dataclass
class Guard:
    """What must not change: the test folder outside the repository (and its remote), and .git."""

    outside: Path
    repo_root: Path
    skip: frozenset[str]
    before_outside: dict[str, str] = field(default_factory=dict)
    before_git: dict[str, str] = field(default_factory=dict)

    def take(self) -> None:
        self.before_outside = snapshot(self.outside, skip=self.skip)
        self.before_git = snapshot(self.repo_root / ".git")

    def check(self) -> None:
        after_outside = snapshot(self.outside, skip=self.skip)
        changed = sorted(
            k
            for k in self.before_outside.keys() | after_outside.keys()
            if self.before_outside.get(k) != after_outside.get(k)
        )
        assert not changed, f"changed outside the repository: {changed[:10]}"
        after_git = snapshot(self.repo_root / ".git")
        changed_git = sorted(
            k for k in self.before_git.keys() | after_git.keys() if self.before_git.get(k) != after_git.get(k)
        )
        assert not changed_git, f"changed inside .git: {changed_git[:10]}"

    def expect_git_change(self) -> None:
        """The test itself changed .git on purpose (a commit): take .git's picture again."""
        self.before_git = snapshot(self.repo_root / ".git")


@pytest.fixture
def guard(repo: Repo, tmp_path: Path) -> Iterator[Guard]:
    """A sentinel tree beside the repository and the repository's .git, checked unchanged at the end."""
    for rel, content in SENTINEL_FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    repo_rel = os.path.relpath(repo.root, tmp_path)
    # the repository itself and the remote's folder are expected to change
    skip = frozenset({repo_rel, "remote", "hostile-remote"})
    g = Guard(tmp_path, repo.root, skip)
    g.take()
    yield g
    g.check()


@dataclass
class HostileRemote:
    """The repo's default remote ``name`` at ``url``, and raw access to its storage."""

    kind: str  # "local" or "s3"
    name: str
    url: str
    root: Path | None = None  # local: the folder
    bucket: Any = None  # s3: the S3Bucket fixture
    prefix: str = ""

    def put_key(self, key: str, data: bytes) -> None:
        """Plant ``data`` at ``key`` relative to the remote's root (objects are ``ab/cdef...``, refs ``refs/...``)."""
        if self.kind == "local":
            assert self.root is not None
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.chmod(path, 0o644)
            path.write_bytes(data)
        else:
            self.bucket.client.put_object(Bucket=self.bucket.name, Key=f"{self.prefix}{key}", Body=data)

    def put_object(self, digest: str, data: bytes) -> None:
        """Plant ``data`` under the object name ``digest`` (no hash check: the attacker's upload)."""
        self.put_key(f"{digest[:2]}/{digest[2:]}", data)

    def keys(self) -> set[str]:
        if self.kind == "local":
            assert self.root is not None
            return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if not p.is_dir()}
        return {k[len(self.prefix) :] for k in self.bucket.keys(self.prefix)}


@pytest.fixture(params=["local", "s3"])
def hostile_remote(request: pytest.FixtureRequest, repo: Repo, tmp_path: Path, mlops_bin: Any) -> HostileRemote:
    """The repository's default remote, of each kind, ready to be poisoned."""
    run_mlops = mlops_bin
    if request.param == "local":
        root = tmp_path / "hostile-remote"
        root.mkdir()
        run_mlops("remote", "add", "storage", str(root), "--default", cwd=repo.root)
        return HostileRemote("local", "storage", str(root), root=root)
    bucket = request.getfixturevalue("s3_bucket")
    url = f"s3://{bucket.name}/project"
    run_mlops("remote", "add", "storage", url, "--default", cwd=repo.root)
    run_mlops("remote", "modify", "storage", "endpoint_url", bucket.endpoint_url, cwd=repo.root)
    return HostileRemote("s3", "storage", url, bucket=bucket, prefix="project/")
