"""What a remote's entry in the config may say, read the same way for every backend.

A remote's settings come from .mlops/config.yaml and config.local.yaml, files a person edits or
a clone receives: each value is checked for its type here, and a wrong one is one ConfigError
line naming the remote and the key.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError


def text_setting(name: str, settings: dict[str, Any], key: str) -> str | None:
    """A string setting; None when absent or empty."""
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"remote '{name}': '{key}' must be a string, found {value!r}")
    return value


def number_setting(name: str, settings: dict[str, Any], key: str, default: float, *, integer: bool = False) -> float:
    """A number above 0 (``integer``: a whole one); ``default`` when absent."""
    value = settings.get(key)
    if value is None:
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = 0
    finite = math.isfinite(number)  # nan, inf and 1e999 read as floats; a NaN timeout would hang a wait
    if isinstance(value, bool) or not finite or number <= 0 or (integer and str(number) != str(value).strip()):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"remote '{name}': '{key}' must be {kind} above 0, found {value!r}")
    return number


def split_bucket_url(name: str, url: str, kind: str) -> tuple[str, str]:
    """``SCHEME://<bucket>/<prefix>`` as (bucket, prefix without slashes at its ends); ``kind``
    names the first part in the message when it is missing (bucket, container)."""
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"remote '{name}': no {kind} in {url}", hint=f"use {scheme}://{kind.upper()}/PREFIX")
    return bucket, prefix.strip("/")


def missing_extra(name: str, scheme: str, extra: str, exc: ImportError) -> ConfigError:
    """A backend whose optional library is not installed: how to install it."""
    return ConfigError(
        f"remote '{name}': {scheme}:// needs the optional package {exc.name or extra!r}, which is not installed",
        hint=f"pip install 'mlops[{extra}]'",
    )
