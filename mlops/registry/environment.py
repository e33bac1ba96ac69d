"""The Python environment a version was registered in: the interpreter and the exact versions of
the distributions its artifact needs, so an export can pin them (``requirements.txt``).

What the artifact needs is read from the artifact itself: the modules a pickle imports (the
opcode scan of ``flavors.pickle_modules``, nothing unpickled), mapped to the installed
distributions that provide them, plus what those distributions require in turn.
"""

from __future__ import annotations

import functools
import platform
import re
import sys
from collections.abc import Iterable
from typing import Any

# a distribution name as the packaging specifications write it: letters, digits, . _ -
_DIST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")


def normalized(name: str) -> str:
    """PEP 503's normal form: what pip compares (scikit_learn == scikit-learn)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _provided() -> dict[str, list[str]]:
    """Top-level module -> distributions, read once per process (it reads every installed distribution's files)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


def distributions_of(modules: Iterable[str]) -> set[str]:
    """The installed distributions providing these (top-level or dotted) modules; the standard
    library and modules no distribution provides (a script beside the model) add nothing."""
    tops = {module.split(".", 1)[0] for module in modules} - set(sys.stdlib_module_names) - {"__main__"}
    if not tops:
        return set()
    provided = _provided()
    return {normalized(dist) for top in tops for dist in provided.get(top, ())}


def closure(roots: Iterable[str], *, extras: Iterable[str] = ()) -> dict[str, str]:
    """{distribution: installed version} of ``roots`` and everything they require (markers
    evaluated for this interpreter; ``extras`` of the roots included). Uninstalled ones are skipped."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import InvalidRequirement, Requirement

    wanted_extras = set(extras)
    roots = [normalized(r) for r in roots]
    pinned: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset(wanted_extras)) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, with_extras = todo.pop()
        if (name, with_extras) in seen:
            continue
        seen.add((name, with_extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        pinned[normalized(dist.metadata["Name"])] = dist.version
        for line in dist.requires or ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            envs = [{"extra": e} for e in with_extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((normalized(req.name), frozenset(req.extras)))
    return dict(sorted(pinned.items()))


def capture(modules: Iterable[str]) -> dict[str, Any]:
    """The environment record kept on a version: {"python": "3.12.3", "packages": {dist: version}}."""
    return {"python": platform.python_version(), "packages": closure(distributions_of(modules))}


def check_packages(packages: Any, *, where: str) -> dict[str, str]:
    """A received ``packages`` mapping (a registry file, a bundle) as {name: version}, or ValueError."""
    if not isinstance(packages, dict):
        raise ValueError(f"{where}: packages is not a mapping")
    out: dict[str, str] = {}
    for name, version in packages.items():
        if not isinstance(name, str) or not _DIST.fullmatch(name) or len(name) > 200:
            raise ValueError(f"{where}: {str(name)[:60]!r} is not a distribution name")
        if not isinstance(version, str) or not re.fullmatch(r"[A-Za-z0-9.+!_\-]{1,64}", version):
            raise ValueError(f"{where}: the version of {name} is not a version")
        out[name] = version
    return out
