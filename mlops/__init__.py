"""mlops: the production loop of machine learning inside your git repository.

The public Python API grows here (runs, metrics, models), imported lazily so that
`import mlops` stays fast: ``mlops.start_run`` loads ``mlops.tracking.api`` on first use.
"""

from typing import Any

__version__ = "0.1.0"

_TRACKING = (
    "start_run",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "log_artifact",
    "set_tag",
    "set_tags",
    "log_model",
    "autolog",
    "log_table",
    "log_figure",
    "active_run",
    "end_run",
)

_REGISTRY = ("load_model",)

__all__ = ["__version__", *_TRACKING, *_REGISTRY]


def __getattr__(name: str) -> Any:
    if name in _TRACKING:
        from .tracking import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    if name in _REGISTRY:
        from . import registry as registry_api

        value = getattr(registry_api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_TRACKING, *_REGISTRY})
