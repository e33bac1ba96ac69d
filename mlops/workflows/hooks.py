"""What the git hooks do: the pre-commit check, the post-checkout checkout and the pre-push push.

Each joins rooms the data room cannot see: the data status with the pipeline's (pre-commit),
checkout with pipeline.lock's outputs (post-checkout), and the pushed commits' pointer files
with their lock files and model files (pre-push). git's arguments, its stdin and the
pre-commit framework's PRE_COMMIT_* variables are passed in explicitly; nothing is printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import CheckFailed, CouldNotComplete
from ..progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from ..data.checkout import CheckoutResult
    from ..data.transfer import TransferResult
    from ..repo.repo import Repo
    from .status import StageStatus


# --- pre-commit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreCommitCheck:
    """Tracked paths whose data differs from their pointer file, and stages stale in pipeline.lock."""

    changed: tuple[Any, ...]  # data.status.TargetStatus
    stale: tuple[StageStatus, ...]
    warnings: tuple[str, ...]  # one line per finding, for the person committing

    @property
    def ok(self) -> bool:
        return not self.changed and not self.stale

    def refusal(self) -> CheckFailed | None:
        """The error that stops the commit, or None when it may go on."""
        if self.ok:
            return None
        hint = []
        if self.changed:
            hint.append("'mlops add PATH' to record the data (or 'mlops checkout PATH' to discard the change)")
        if self.stale:
            hint.append("'mlops run' to update pipeline.lock")
        return CheckFailed(
            f"commit refused: {len(self.changed)} tracked path(s) and {len(self.stale)} stage(s) out of date",
            hint=" and ".join(hint) + "; 'git commit --no-verify' skips this check",
        )


def pre_commit(repo: Repo) -> PreCommitCheck:
    """Is every tracked path recorded and pipeline.lock up to date? Data not pulled yet is no
    change to the pointer files: a fresh clone may commit."""
    from .status import status

    found = status(repo)
    changed, stale = found.changed, found.stale
    warnings = [f"{t.state}: {t.path} (its pointer file {t.path}.mlops does not match the data)" for t in changed]
    # the stages whose own inputs changed; those that are stale only because of them are counted
    causes = [s for s in stale if not all(r.startswith("upstream ") for r in s.reasons)] or list(stale)
    for s in causes:
        # its own reasons; a stage stale only through an upstream stage never run shows that one
        own = [r for r in s.reasons if not r.startswith("upstream ")] or list(s.reasons)
        warnings.append(f"stage {s.name} is out of date in pipeline.lock: {'; '.join(own)}")
    if len(stale) > len(causes):
        warnings.append(f"and {len(stale) - len(causes)} stage(s) downstream of them")
    return PreCommitCheck(changed, stale, tuple(warnings))


# --- post-checkout -------------------------------------------------------------------------------


def post_checkout(repo: Repo, args: list[str], *, env: Mapping[str, str]) -> CheckoutResult | None:
    """After a branch checkout, place the new commit's data and pipeline outputs; None after a
    checkout of files (git passes: previous HEAD, new HEAD, 1 for a branch checkout, 0 for files;
    the pre-commit framework sets PRE_COMMIT_CHECKOUT_TYPE instead)."""
    flag = args[2] if len(args) > 2 else env.get("PRE_COMMIT_CHECKOUT_TYPE", "1")
    if flag != "1":
        return None
    from .data import checkout

    return checkout(repo)


# --- pre-push ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrePushResult:
    tips: tuple[str, ...]  # the commits pushed (none: only deletions)
    roots: int  # objects, folders and models the commits reference
    pushed: TransferResult | None  # None: nothing to push

    def refusal(self) -> CheckFailed | None:
        """The error that stops the push when objects the commits need reached neither side."""
        if self.pushed is None or not self.pushed.missing_locally:
            return None
        return CheckFailed(
            (
                f"{len(self.pushed.missing_locally)} object(s) the pushed commits reference "
                "are in neither this cache nor the remote"
            ),
            hint="'mlops pull' them from where they are, or re-add the data; 'git push --no-verify' skips this check",
        )


def is_zero(sha: str) -> bool:
    """git's "no object" (all zeros, 40 or 64 digits): a new branch's remote side, a deleted one's local side."""
    return bool(sha) and set(sha) == {"0"}


def framework_refs(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(tip, what the remote has) from the pre-commit framework's PRE_COMMIT_* variables, or None
    when the framework did not start this hook. The framework reads git's stdin itself and passes
    the first ref being pushed: TO_REF and FROM_REF when the remote has an ancestor, and on a
    first push (no remote refs) only LOCAL_BRANCH, the ref being pushed."""
    names = ("PRE_COMMIT_TO_REF", "PRE_COMMIT_LOCAL_BRANCH", "PRE_COMMIT_REMOTE_NAME")
    if env.get("PRE_COMMIT") != "1" and not any(env.get(n) for n in names):
        return None
    tip = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_LOCAL_BRANCH") or ""
    if not tip or is_zero(tip):
        raise CouldNotComplete(
            "pre-push: the pre-commit framework named no commit being pushed (no PRE_COMMIT_TO_REF "
            "or PRE_COMMIT_LOCAL_BRANCH); the objects were not pushed",
            hint="let 'git push' run the hook (or pass --from-ref/--to-ref to 'pre-commit run'), "
            "or 'mlops push' by hand; 'git push --no-verify' skips this check",
        )
    return tip, env.get("PRE_COMMIT_FROM_REF") or ""


def pushed_revs(repo: Repo, args: list[str], *, stdin: TextIO, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(tips being pushed, rev-list arguments for what the remote has) from the lines git
    writes on ``stdin`` (`<local ref> <local sha> <remote ref> <remote sha>`; git also passes the
    remote's name and URL as ``args``), or from the pre-commit framework's PRE_COMMIT_* variables
    (then ``stdin`` is not read: the framework has read it)."""
    framework = None if args else framework_refs(env)
    if framework is not None:
        remote = env.get("PRE_COMMIT_REMOTE_NAME", "")
        tip, have_sha = framework
        sha = _commit(repo, tip)  # a ref name (refs/heads/main, HEAD) on a first push: pinned now
        if sha is None:
            raise CouldNotComplete(
                f"pre-push: '{tip}', which the pre-commit framework says is pushed, names no commit here",
                hint="'mlops push' by hand; 'git push --no-verify' skips this check",
            )
        tips, have = [sha], [have_sha] if have_sha and not is_zero(have_sha) else []
    else:
        remote = args[0] if args else ""
        tips, have = [], []
        for line in stdin.read().splitlines():
            parts = line.split()
            if len(parts) != 4 or is_zero(parts[1]):  # a deleted branch sends nothing
                continue
            tips.append(parts[1])
            if not is_zero(parts[3]):
                have.append(parts[3])
    # a remote commit this clone never fetched cannot be named: the remote's branches stand in
    # (none on a first push: then every commit reachable from the tips is new to the remote)
    exclude = ["^" + sha for sha in have if _commit(repo, sha) is not None]
    if not exclude and remote:
        exclude = ["--not", f"--remotes={remote}"]
    return tips, exclude


def pre_push(
    repo: Repo, args: list[str], *, stdin: TextIO, env: Mapping[str, str], progress: Progress = NO_PROGRESS
) -> PrePushResult:
    """Push to the default remote what the pushed commits reference and the remote lacks."""
    tips, exclude = pushed_revs(repo, args, stdin=stdin, env=env)
    if not tips:
        return PrePushResult((), 0, None)
    from ..data.transfer import push
    from .roots import pushed_roots

    roots = pushed_roots(repo, tips, exclude)
    if not roots:
        return PrePushResult(tuple(tips), 0, None)
    return PrePushResult(tuple(tips), len(roots), push(repo, only_roots=roots, progress=progress))


def _commit(repo: Repo, rev: str) -> str | None:
    """The commit ``rev`` names here, or None (a remote commit this clone never fetched)."""
    from ..errors import UnknownRevisionError
    from ..repo.git import git_repo

    try:
        return git_repo(repo.root).resolve(rev)
    except UnknownRevisionError:
        return None
