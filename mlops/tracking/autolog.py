"""``mlops.autolog()``: scikit-learn fits logged without a line of logging code.

After ``autolog()``, each outermost ``fit`` of a scikit-learn estimator (a Pipeline's inner
fits are not logged again) records into the active run (one is started on first use):
the estimator's own params (``get_params(deep=False)``), ``training_score`` (``score`` on the
training data, when ``y`` was given), and the fitted model through ``log_model`` with the
signature of the training data. Nothing is imported or patched until ``autolog()`` is
called: a script that does not call it pays nothing. Logging never breaks the fit: a failure
is a warning, and the fitted estimator is returned as it would be.

Estimator classes already imported are patched at once; classes defined later (a module of
scikit-learn imported after ``autolog()``) are patched as they are created
(``BaseEstimator.__init_subclass__``).
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from typing import Any

_state = threading.local()
_enabled = False
_installed = False
MARK = "_mlops_autolog"


def autolog(*, disable: bool = False) -> None:
    """Log every scikit-learn fit from now on (``disable=True`` stops it)."""
    global _enabled, _installed
    _enabled = not disable
    if disable or _installed:
        return
    from sklearn.base import BaseEstimator

    previous = BaseEstimator.__dict__.get("__init_subclass__")

    def init_subclass(cls: type, **kwargs: Any) -> None:
        if previous is not None:
            previous.__func__(cls, **kwargs)
        else:
            super(BaseEstimator, cls).__init_subclass__(**kwargs)
        _patch(cls)

    BaseEstimator.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "sklearn" or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and issubclass(value, BaseEstimator):
                _patch(value)
    _installed = True


def _patch(cls: type) -> None:
    fit = cls.__dict__.get("fit")
    if fit is None or getattr(fit, MARK, False) or not callable(fit):
        return

    @functools.wraps(fit)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _enabled or getattr(_state, "depth", 0):
            return fit(self, *args, **kwargs)
        _state.depth = 1
        try:
            result = fit(self, *args, **kwargs)
        finally:
            _state.depth = 0
        X = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        _state.depth = 1  # score/predict inside the logging are not fits to log either
        try:
            _log_fit(self, X, y)
        except Exception as exc:  # noqa: BLE001 - logging never breaks the user's fit
            warnings.warn(f"mlops autolog: {type(self).__name__}.fit not logged ({exc})", stacklevel=2)
        finally:
            _state.depth = 0
        return result

    setattr(patched, MARK, True)
    cls.fit = patched  # type: ignore[attr-defined]


def _log_fit(estimator: Any, X: Any, y: Any) -> None:
    from .api import log_metric, log_model, log_params

    params = {key: value for key, value in estimator.get_params(deep=False).items()}
    log_params(params)
    if y is not None and callable(getattr(estimator, "score", None)):
        log_metric("training_score", float(estimator.score(X, y)))
    log_model(estimator, type(estimator).__name__.lower(), signature_from=X if X is not None else None)
