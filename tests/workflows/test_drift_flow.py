"""workflows.drift as a library: sources resolved (files, a model's training data, a plug-in
prefix), the check run, and the verdict recorded on the model version."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlops import registry
from mlops.data.add import add
from mlops.drift.config import preset_settings
from mlops.errors import DataError, UsageError
from mlops.workflows import drift


def _csv(path, shift: int = 0, rows: int = 400) -> str:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["amount,kind"] + [f"{(i % 50) + shift},{'ab'[i % 2]}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_files_resolve_as_they_are_and_unknown_text_is_a_data_error(tmp_path) -> None:
    path = _csv(tmp_path / "ref.csv")
    resolved = drift.resolve_source(path, drift.SourceContext("reference"))
    assert resolved.described == path and resolved.model is None and len(resolved.files) == 1
    with pytest.raises(DataError, match="no such file or folder"):
        drift.resolve_source(str(tmp_path / "nope.csv"), drift.SourceContext("current"))
    with pytest.raises(UsageError, match="use it as the reference"):
        drift.resolve_source("churn@production", drift.SourceContext("current"))


def test_a_registered_prefix_resolves_through_its_plugin(tmp_path, monkeypatch) -> None:
    path = _csv(tmp_path / "ref.csv")
    seen = []

    def resolver(rest: str, ctx: drift.SourceContext) -> drift.ResolvedSource:
        seen.append((rest, ctx.side, ctx.options))
        return drift.ResolvedSource(drift.resolve_source(path, ctx).files, f"fixture {rest}")

    monkeypatch.setitem(drift.SOURCE_RESOLVERS, "fixture", resolver)
    assert drift.resolve_source("fixture:x", drift.SourceContext("current", {"k": 1})).described == "fixture x"
    assert seen == [("x", "current", {"k": 1})]


def test_since_applies_only_to_request_logs(tmp_path) -> None:
    path = _csv(tmp_path / "ref.csv")
    with pytest.raises(UsageError, match="--since applies to request logs"):
        drift.check(path, path, preset_settings("default"), since=3600.0)


def test_check_against_a_models_training_data_records_the_verdict(repo) -> None:
    _csv(repo.root / "data" / "train.csv")
    add(repo, ["data/train.csv"])
    (repo.root / "model.bin").write_bytes(b"a model")
    registry.register(repo, "churn", "model.bin", data=["data/train.csv"])
    current = _csv(repo.root.parent / "current.csv", shift=40)

    done = drift.check("churn:1", current, replace(preset_settings("default"), drift_share=0.5), repo=repo)
    assert done.record_error is None
    assert done.report.verdict.drifted and done.recorded == {"model": "churn", "version": 1, "drifted": True}
    (check,) = registry.get_version(repo, "churn", 1).drift_checks
    assert check["drifted"] is True and "amount" in check["summary"]["drifted_columns"]
    assert check["summary"]["current"] == current


def test_check_on_plain_files_needs_no_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a repository: file sources never look for one
    done = drift.check(_csv(tmp_path / "a.csv"), _csv(tmp_path / "b.csv"), preset_settings("default"))
    assert not done.report.verdict.drifted and done.recorded is None and done.record_error is None
