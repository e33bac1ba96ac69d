"""A pickle is code. register reads pickles' globals without running them, and infers a
signature only through a restricted loader that admits scikit-learn, numpy and scipy.sparse
types; load_model (called on purpose, on hash-checked bytes) also loads joblib files."""

from __future__ import annotations

import io
import os
import pickle
import pickletools

import joblib
import numpy as np
import pytest
from regkit import js, small_sklearn_model

from mlops.registry import flavors, load_model, register


class Payload:
    """The classic exploit: unpickling calls os.system."""

    def __init__(self, marker) -> None:  # noqa: ANN001
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_strings_that_look_like_modules_are_not_globals() -> None:
    # a dict whose values say "sklearn": only what STACK_GLOBAL consumes counts
    data = pickle.dumps({"framework": "sklearn", "module": "sklearn.tree", "m": Payload("/nonexistent/x")}, protocol=4)
    assert flavors.pickle_globals(data) == [("posix", "system")]
    assert flavors.pickle_modules(data) == {"posix"}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_globals_are_read_at_every_protocol(protocol: int) -> None:
    found = flavors.pickle_globals(pickle.dumps(small_sklearn_model(), protocol=protocol))
    assert ("sklearn.tree._classes", "DecisionTreeClassifier") in found
    assert all(module != "sklearn" or name for module, name in found)


def test_a_global_rebuilt_from_the_memo_is_followed() -> None:
    # protocol 4 memoizes the module string; a second object of the class fetches it with BINGET
    data = pickle.dumps([small_sklearn_model(), small_sklearn_model()], protocol=4)
    ops = [op.name for op, _arg, _pos in pickletools.genops(data)]
    assert "STACK_GLOBAL" in ops and "BINGET" in ops
    found = flavors.pickle_globals(data)
    assert found.count(("sklearn.tree._classes", "DecisionTreeClassifier")) >= 1
    assert ("?", "?") not in found


def test_the_string_bypass_is_never_unpickled_at_register(repo, tmp_path) -> None:
    marker = tmp_path / "pwned"
    (repo.root / "evil.pkl").write_bytes(pickle.dumps({"framework": "sklearn", "m": Payload(marker)}))
    mv = register(repo, "evil", "evil.pkl").version
    assert mv.flavor == "file" and mv.signature is None and not marker.exists()


def test_a_genuine_sklearn_pickle_carrying_os_system_does_not_run_at_register(repo, tmp_path, cli) -> None:
    marker = tmp_path / "pwned"
    model = small_sklearn_model()
    model.extra_ = Payload(marker)  # a real estimator, with a payload in its state
    (repo.root / "m.pkl").write_bytes(pickle.dumps(model))
    doc = js(cli("register", "tree", "m.pkl", "--json"))
    assert not marker.exists()
    assert doc["flavor"] == "sklearn" and doc["signature"] is None
    assert any("imports posix.system" in w and "does not load at registration" in w for w in doc["warnings"])
    assert "imports posix.system" in cli("register", "tree", "m.pkl").stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("os", "system"),
        ("subprocess", "Popen"),
        ("numpy", "memmap"),
        ("numpy", "load"),
        ("sklearn.base", "BaseEstimator.__init__"),
        ("pandas", "read_pickle"),
        ("sklearn.utils", "Parallel"),
    ],
)
def test_the_allowlist_refuses_callables_that_reach_the_system(module: str, name: str) -> None:
    with pytest.raises(flavors.UnsafePickle):
        flavors._allowed(module, name)


def test_reexported_names_are_judged_by_where_they_are_defined() -> None:
    import numbers

    import sklearn.utils._param_validation as validation

    assert validation.Real is numbers.Real  # a class sklearn imports from elsewhere
    with pytest.raises(flavors.UnsafePickle):
        flavors._allowed("sklearn.utils._param_validation", "Real")  # defined in numbers, reached through sklearn
    assert flavors._allowed("sklearn.tree._classes", "DecisionTreeClassifier").__name__ == "DecisionTreeClassifier"


def test_common_estimators_load_through_the_allowlist() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"a": np.arange(40) % 7, "b": np.linspace(0, 1, 40), "c": ["x", "y"] * 20})
    y = np.arange(40) % 2
    models = [
        LogisticRegression().fit(frame[["a", "b"]], y),
        RandomForestClassifier(n_estimators=3, random_state=0).fit(frame[["a", "b"]], y),
        HistGradientBoostingClassifier(max_iter=3).fit(frame[["a", "b"]], y),
        KNeighborsClassifier(3).fit(frame[["a", "b"]], y),
        Pipeline(
            [
                ("prep", ColumnTransformer([("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(), ["c"])])),
                ("clf", LogisticRegression()),
            ]
        ).fit(frame, y),
    ]
    for model in models:
        for protocol in (2, 5):
            loaded = flavors.safe_load(pickle.dumps(model, protocol=protocol), "test")
            assert type(loaded) is type(model)
            assert (
                loaded.predict(frame[list(model.feature_names_in_)])
                == model.predict(frame[list(model.feature_names_in_)])
            ).all()


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_files_register_with_a_signature_and_load(repo, cli, compress) -> None:
    model = small_sklearn_model()
    joblib.dump(model, repo.root / "model.joblib", compress=compress)
    data = (repo.root / "model.joblib").read_bytes()
    if compress == 0:
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(data)  # why load_model needs joblib: arrays are written raw between opcodes
    assert flavors.serialization(data) == "joblib"
    (repo.root / "sample.csv").write_text("a,b\n1,0.5\n2,0.7\n")
    doc = js(cli("register", "tree", "model.joblib", "--signature-from", "sample.csv", "--json"))
    assert doc["flavor"] == "sklearn" and doc["warnings"] == []
    assert doc["signature"]["inputs"] == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "float64"}]
    loaded = load_model("tree", repo)
    assert type(loaded) is type(model) and (loaded.tree_.value == model.tree_.value).all()


def test_a_joblib_file_with_a_payload_does_not_run_at_register(repo, tmp_path, cli) -> None:
    marker = tmp_path / "pwned"
    model = small_sklearn_model()
    model.extra_ = np.array([Payload(marker)], dtype=object)  # an object array: joblib nests a pickle for it
    joblib.dump(model, repo.root / "model.joblib")
    doc = js(cli("register", "tree", "model.joblib", "--json"))
    assert not marker.exists() and doc["flavor"] == "sklearn" and doc["signature"] is None
    assert any("imports posix.system" in w for w in doc["warnings"])


def test_safe_load_names_the_first_forbidden_global() -> None:
    with pytest.raises(flavors.UnsafePickle, match="posix.system"):
        flavors.safe_load(pickle.dumps(Payload("/nonexistent/x")), "test")
    buffer = io.BytesIO()
    pickle.dump({"ok": [1, 2.5, "x", b"y", {3}, frozenset({4}), slice(1, 2), complex(1, 2)]}, buffer, protocol=2)
    assert flavors.safe_load(buffer.getvalue(), "test")["ok"][0] == 1
