"""The serve room's own layering: the runtime never imports the HTTP layer or the server libraries.

The HTTP side is ``app.py`` (the assembly), ``server.py`` (uvicorn) and the ``http/`` package;
every other module of ``mlops/serve`` is the runtime and the pure parts below it (protocols, wire,
batching, deployment, ...), usable without starlette or uvicorn installed. Read by AST, imports
inside functions included, as ``tests/test_contracts.py::test_layers_hold`` reads the rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlops.serve

SERVE = Path(mlops.serve.__file__).parent
HTTP_SIDE = ("mlops.serve.app", "mlops.serve.server", "mlops.serve.http")
SERVER_LIBRARIES = ("starlette", "uvicorn")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module the source of ``module`` imports, relative imports resolved to absolute names."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)  # `from . import http`
    return found


def _imports_of(path: Path) -> set[str]:
    return _imports(path.read_text(encoding="utf-8"), _module_name(path), is_package=path.name == "__init__.py")


def _refused(names: set[str]) -> list[str]:
    return sorted(n for n in names if _is_http_side(n) or n.split(".")[0] in SERVER_LIBRARIES)


def _is_http_side(name: str) -> bool:
    return any(name == side or name.startswith(side + ".") for side in HTTP_SIDE)


def _runtime_modules() -> list[Path]:
    return [p for p in sorted(SERVE.rglob("*.py")) if not _is_http_side(_module_name(p))]


def test_the_http_side_and_the_runtime_are_where_the_test_looks() -> None:
    runtime = {_module_name(p) for p in _runtime_modules()}
    assert {"mlops.serve.runtime", "mlops.serve.wire", "mlops.serve.protocols"} <= runtime
    assert (SERVE / "http" / "__init__.py").is_file() and (SERVE / "app.py").is_file()


def test_the_runtime_never_imports_the_http_layer_or_the_server_libraries() -> None:
    problems = [
        f"{path.relative_to(SERVE.parent.parent)} imports {name}"
        for path in _runtime_modules()
        for name in _refused(_imports_of(path))
    ]
    assert not problems, "\n".join(problems)


def test_the_check_sees_relative_and_lazy_imports_of_the_http_side() -> None:
    """The check above can fail: each way a runtime module could reach the HTTP side is caught."""
    source = (
        "from .http import common\n"
        "from . import app\n"
        "from .http.admin import reload\n"
        "def later():\n    import starlette.routing\n    from uvicorn import Config\n"
        "from .deployment import serve_dir\n"
        "from ..errors import MlopsError\n"
    )
    assert _refused(_imports(source, "mlops.serve.runtime")) == [
        "mlops.serve.app",
        "mlops.serve.http",
        "mlops.serve.http.admin",
        "mlops.serve.http.admin.reload",
        "mlops.serve.http.common",
        "starlette.routing",
        "uvicorn",
        "uvicorn.Config",
    ]
    assert not _is_http_side("mlops.serve.httpish")
