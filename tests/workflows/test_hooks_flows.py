"""workflows.hooks as a library: git's arguments, stdin and the pre-commit framework's variables
passed in, the findings and what was pushed returned, nothing printed."""

from __future__ import annotations

import io

import pytest
from flowkit import git, project, with_remote

from mlops.data.add import add
from mlops.errors import CheckFailed, CouldNotComplete
from mlops.workflows import hooks

ZERO = "0" * 40


def test_pre_commit_finds_changed_data_and_stale_stages(repo, cli) -> None:
    project(repo, cli)
    check = hooks.pre_commit(repo)
    assert check.ok and check.refusal() is None and check.warnings == ()

    (repo.root / "data.txt").write_text("changed without mlops add\n")
    (repo.root / "in.txt").write_text("a new input\n")
    check = hooks.pre_commit(repo)
    assert [t.path for t in check.changed] == ["data.txt"] and [s.name for s in check.stale] == ["copy"]
    assert check.warnings[0].startswith("modified: data.txt")
    assert check.warnings[1].startswith("stage copy is out of date in pipeline.lock")
    refusal = check.refusal()
    assert isinstance(refusal, CheckFailed) and refusal.exit_code == 1
    assert "1 tracked path(s) and 1 stage(s) out of date" in refusal.message
    assert "mlops add" in refusal.hint and "mlops run" in refusal.hint


def test_post_checkout_places_data_only_after_a_branch_checkout(repo) -> None:
    (repo.root / "data.txt").write_text("v1\n")
    add(repo, ["data.txt"])
    (repo.root / "data.txt").unlink()
    assert hooks.post_checkout(repo, ["a", "b", "0"], env={}) is None  # a checkout of files
    assert not (repo.root / "data.txt").exists()
    assert hooks.post_checkout(repo, [], env={"PRE_COMMIT_CHECKOUT_TYPE": "0"}) is None
    result = hooks.post_checkout(repo, ["a", "b", "1"], env={})
    assert result is not None and result.changed_files == 1
    assert (repo.root / "data.txt").read_text() == "v1\n"


def test_pushed_revs_from_gits_stdin(repo, cli) -> None:
    project(repo, cli)
    tip = git(repo.root, "rev-parse", "HEAD")
    unknown = "1" * 40  # a remote commit this clone never fetched
    lines = f"refs/heads/main {tip} refs/heads/main {unknown}\nrefs/heads/gone {ZERO} refs/heads/gone {tip}\n"
    tips, exclude = hooks.pushed_revs(repo, ["origin", "url"], stdin=io.StringIO(lines), env={})
    assert tips == [tip] and exclude == ["--not", "--remotes=origin"]
    lines = f"refs/heads/main {tip} refs/heads/main {tip}\n"
    assert hooks.pushed_revs(repo, ["origin", "url"], stdin=io.StringIO(lines), env={}) == ([tip], ["^" + tip])


def test_pushed_revs_from_the_framework_never_read_stdin(repo, cli) -> None:
    project(repo, cli)
    tip = git(repo.root, "rev-parse", "HEAD")

    class Untouchable(io.StringIO):
        def read(self, *args):  # noqa: ANN002, ANN202
            raise AssertionError("stdin read under the pre-commit framework")

    env = {"PRE_COMMIT": "1", "PRE_COMMIT_LOCAL_BRANCH": "refs/heads/main", "PRE_COMMIT_REMOTE_NAME": "origin"}
    assert hooks.pushed_revs(repo, [], stdin=Untouchable(), env=env) == ([tip], ["--not", "--remotes=origin"])
    with pytest.raises(CouldNotComplete, match="named no commit"):
        hooks.pushed_revs(repo, [], stdin=Untouchable(), env={"PRE_COMMIT": "1"})
    with pytest.raises(CouldNotComplete, match="names no commit here"):
        hooks.pushed_revs(repo, [], stdin=Untouchable(), env={"PRE_COMMIT_TO_REF": "refs/heads/nosuch"})


def test_pre_push_sends_what_the_commits_reference(repo, cli, tmp_path) -> None:
    kept = project(repo, cli)
    repo = with_remote(repo, cli, tmp_path / "store")
    tip = git(repo.root, "rev-parse", "HEAD")
    lines = f"refs/heads/main {tip} refs/heads/main {ZERO}\n"
    result = hooks.pre_push(repo, ["origin", "url"], stdin=io.StringIO(lines), env={})
    assert result.tips == (tip,) and result.roots >= 3
    assert result.pushed is not None and result.pushed.transferred == 3 and result.refusal() is None
    stored = {p.parent.name + p.name for p in (tmp_path / "store").rglob("*") if p.is_file()}
    assert set(kept.values()) <= stored

    deleted_only = f"refs/heads/gone {ZERO} refs/heads/gone {tip}\n"
    assert hooks.pre_push(repo, ["origin", "url"], stdin=io.StringIO(deleted_only), env={}).pushed is None


def test_pre_push_refuses_when_the_commits_need_objects_nobody_has(repo, cli, tmp_path) -> None:
    kept = project(repo, cli)
    repo = with_remote(repo, cli, tmp_path / "store")
    repo.objects.remove(kept["model"])
    tip = git(repo.root, "rev-parse", "HEAD")
    result = hooks.pre_push(repo, ["origin"], stdin=io.StringIO(f"main {tip} main {ZERO}\n"), env={})
    assert result.pushed is not None and result.pushed.missing_locally == (kept["model"],)
    refusal = result.refusal()
    assert isinstance(refusal, CheckFailed) and "1 object(s)" in refusal.message
