"""Git access through gitpython, imported only when a command needs a revision."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import GitError, UnknownRevisionError, UnsafeNameError, UsageError

POINTER_SUFFIX = ".mlops"


def _gitpython() -> Any:
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import git  # gitpython, lazily: it costs start-up time

    return git


@dataclass
class GitRepo:
    root: Path

    @cached_property
    def _repo(self) -> Any:
        git = _gitpython()
        try:
            return git.Repo(self.root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise UsageError(
                f"{self.root} is not a git repository", hint="revisions need git: run 'git init'"
            ) from None

    def resolve(self, rev: str) -> str:
        """The commit a revision names (tags peeled); trees and files are refused."""
        git = _gitpython()
        try:
            obj = self._repo.rev_parse(rev)
            while obj.type == "tag":
                obj = obj.object
        except (git.BadName, ValueError, git.GitCommandError, IndexError):
            raise UnknownRevisionError(f"unknown git revision '{rev}'", hint="see 'git log --oneline'") from None
        if obj.type != "commit":
            raise UnknownRevisionError(
                f"git revision '{rev}' names a {obj.type}, not a commit", hint="name a commit, branch or tag"
            )
        return obj.hexsha

    def pointer_files_at(self, rev: str) -> dict[str, bytes]:
        """Every pointer file (path -> bytes) in the tree of ``rev``."""
        commit = self._repo.commit(self.resolve(rev))
        out: dict[str, bytes] = {}
        try:
            for blob in commit.tree.traverse(predicate=lambda item, depth: item.type == "blob"):
                if blob.path.endswith(POINTER_SUFFIX):
                    out[blob.path] = blob.data_stream.read()
        except ValueError as exc:  # gitpython refuses a crafted tree entry ("..", ".git") as it walks
            raise _unsafe_tree(rev, exc) from None
        return out

    def read_file_at(self, rev: str, rel: str) -> bytes | None:
        commit = self._repo.commit(self.resolve(rev))
        try:
            return (commit.tree / rel).data_stream.read()
        except KeyError:
            return None
        except ValueError as exc:
            raise _unsafe_tree(rev, exc) from None

    def pointer_blobs_all_commits(self) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of every distinct pointer blob reachable from any ref."""
        return self.blobs_all_commits(lambda path: path.endswith(POINTER_SUFFIX))

    def blobs_all_commits(self, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of every distinct blob, reachable from any ref, whose path is wanted."""
        return self.blobs_in(["--all"], wanted)

    def blobs_in(self, revs: list[str], wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of every distinct wanted blob that `git rev-list --objects REVS` lists:
        e.g. ``[new, "^" + old]`` for what the commits between two revisions added."""
        git = _gitpython()
        try:
            listing = self._repo.git.rev_list("--objects", *revs)
        except git.GitCommandError as exc:
            raise GitError(f"git rev-list failed: {exc.stderr.strip()}") from None
        seen: set[str] = set()
        for line in listing.splitlines():
            sha, _, path = line.partition(" ")
            if path and wanted(path) and sha not in seen:
                seen.add(sha)
                binsha = bytes.fromhex(sha)
                # a folder's tree can match the name too (.mlops/ ends in the suffix): only blobs count
                if self._repo.odb.info(binsha).type == b"blob":
                    yield path, self._repo.odb.stream(binsha).read()


def _unsafe_tree(rev: str, exc: ValueError) -> UnsafeNameError:
    detail = " ".join(str(exc).split())[:200]
    return UnsafeNameError(
        f"refused revision {rev}: its tree names a path git itself would never check out ({detail})",
        hint="the commit was crafted by hand; do not check it out, and tell whoever pushed it",
        source=f"revision {rev}",
    )


def git_repo(root: Path) -> GitRepo:
    return GitRepo(root)
