"""Property-based tests of the run-bundle decoder (`sync.check_bundle`) and of placing what it
accepts (`sync._place_run`): no generated input escapes the run's folder, raises anything but
a FormatError, or takes more than a second."""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.errors import FormatError
from mlops.paths import relpath_problem
from mlops.tracking import schema, store, sync

RUN_ID = "20260101-000000-0000prop"
FAST = settings(deadline=1000, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["..", "../../x", "/etc/passwd", ".git/hooks/x", "a/.mlops/b", "2026-01-01T00:00:00Z", "0" * 32]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
RUN_KEYS = ["format", "id", "name", "status", "start_time", "end_time", "user", "host", "pid", "pid_start"]
RECORD_KEYS = ["key", "value", "step", "timestamp", "stage", "path", "hash", "kind", "size", "files", "outs", "deps"]


def good_bundle() -> dict[str, Any]:
    return {
        "format": 1,
        "run": {"format": 1, "id": RUN_ID, "status": "finished", "start_time": 1.0, "end_time": 2.0, "stages": []},
        "files": {
            "params.jsonl": '{"key":"a","value":1,"timestamp":1.0}\n',
            "metrics.jsonl": '{"key":"m","value":0.5,"step":1,"timestamp":1.0}\n',
            "artifacts.jsonl": '{"path":"out/model.pkl","hash":"' + "a" * 32 + '","kind":"file"}\n',
        },
    }


@st.composite
def mutated_bundles(draw: st.DrawFn) -> bytes:
    """A valid bundle with some fields replaced by arbitrary JSON: the decoder's interesting edge."""
    bundle = good_bundle()
    for key in draw(st.lists(st.sampled_from(RUN_KEYS + ["stages", "extra"]), max_size=3)):
        bundle["run"][key] = draw(json_values)
    for name in draw(st.lists(st.sampled_from(sync.RUN_FILES), max_size=2)):
        records = draw(
            st.lists(st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, max_size=6) | json_values, max_size=4)
        )
        bundle["files"][name] = "".join(json.dumps(r) + "\n" for r in records)
    if draw(st.booleans()):
        bundle[draw(st.sampled_from(["format", "run", "files"]))] = draw(json_values)
    return json.dumps(bundle).encode()


components = st.text(min_size=1, max_size=8) | st.sampled_from(["..", ".", ".git", ".MLOPS", "", "a\x00b"])


@st.composite
def plausible_bundles(draw: st.DrawFn) -> bytes:
    """Bundles of the right shape with generated names, values and artifact paths: mostly accepted."""
    bundle = good_bundle()
    bundle["run"]["name"] = draw(st.text(max_size=30))
    params = draw(st.dictionaries(st.text(min_size=1, max_size=10), scalars, max_size=4))
    bundle["files"]["params.jsonl"] = "".join(json.dumps({"key": k, "value": v}) + "\n" for k, v in params.items())
    paths = draw(st.lists(st.lists(components, min_size=1, max_size=3).map("/".join), max_size=3))
    bundle["files"]["artifacts.jsonl"] = "".join(json.dumps({"path": p, "hash": None}) + "\n" for p in paths)
    return json.dumps(bundle).encode()


def _assert_outcome(data: bytes) -> None:
    try:
        run, files = sync.check_bundle(RUN_ID, data)
    except FormatError as exc:
        assert exc.message and "\n" not in exc.message  # one line for the warning
        return
    assert run["id"] == RUN_ID and run["status"] in store.ENDED
    for key in ("start_time", "end_time"):
        value = run.get(key)
        assert value is None or (isinstance(value, float) and math.isfinite(value) and 0 <= value <= schema.MAX_TIME)
    assert set(files) <= set(sync.RUN_FILES)
    for line in files.get("artifacts.jsonl", "").splitlines():
        assert relpath_problem(json.loads(line)["path"]) is None
    for line in files.get("stages.jsonl", "").splitlines():
        for item in (json.loads(line).get("outs") or []) + (json.loads(line).get("deps") or []):
            assert relpath_problem(item["path"]) is None


@FAST
@given(st.binary(max_size=2_000))
def test_any_bytes_are_a_bundle_or_a_format_error(data: bytes) -> None:
    _assert_outcome(data)


@FAST
@given(plausible_bundles())
def test_generated_names_and_paths_are_checked(data: bytes) -> None:
    _assert_outcome(data)


@FAST
@given(json_values)
def test_any_json_is_a_bundle_or_a_format_error(value: Any) -> None:
    _assert_outcome(json.dumps(value).encode())


@settings(deadline=1000, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bundles())
def test_mutated_bundles_are_checked_field_by_field(data: bytes) -> None:
    _assert_outcome(data)


@settings(deadline=1000, max_examples=25)
@given(st.integers(min_value=1, max_value=300_000), st.sampled_from([b"[", b'{"a":', b'{"run":{"x":[']))
def test_deep_nesting_is_a_format_error_not_a_crash(depth: int, opener: bytes) -> None:
    try:
        sync.check_bundle(RUN_ID, opener * depth + b"1")
    except FormatError:
        return
    raise AssertionError("a truncated deep document was accepted")


@settings(
    deadline=1000, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(plausible_bundles() | mutated_bundles())
def test_what_is_accepted_is_placed_inside_its_run_folder_only(repo, tmp_path, data: bytes) -> None:
    run_id = "20260101-000000-" + uuid.uuid4().hex[:12]
    data = data.replace(RUN_ID.encode(), run_id.encode())
    try:
        run, files = sync.check_bundle(run_id, data)
    except FormatError:
        return
    runs = store._ensure_runs_dir(repo)
    before = _tree(tmp_path)
    assert sync._place_run(repo, run_id, run, files)
    after = _tree(tmp_path)
    folder = os.path.relpath(runs / run_id, tmp_path)
    new = after - before
    assert new and all(p == folder or p.startswith(folder + os.sep) for p in new), new
    assert store.load_run(repo, run_id).info["id"] == run_id  # and the reader takes what was placed


def _tree(root: Any) -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(folder, name), root))
    return out
