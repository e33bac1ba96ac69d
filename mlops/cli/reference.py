"""Generate the CLI reference (docs/cli.md) from the typer app itself.

    python -m mlops.cli.reference > docs/cli.md

A test regenerates it and compares, so the reference never drifts from the code.
"""

from __future__ import annotations

from typing import Any

import typer

from .main import app

HEADER = """# CLI reference

Generated from the typer app by `python -m mlops.cli.reference > docs/cli.md`; a test keeps
it in sync. Exit codes for every command: [exit-codes.md](exit-codes.md).
"""


def _walk(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = [(path, cmd)]
    commands = getattr(cmd, "commands", None)
    if commands:
        for name in commands:  # registration order, as --help shows them
            out += _walk(commands[name], [*path, name])
    return out


def _param_row(param: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}`"
        kind = "argument" + ("" if param.required else ", optional") + (", repeatable" if param.nargs == -1 else "")
    else:
        name = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = "flag" if getattr(param, "is_flag", False) else "option"
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|")
    default = param.default
    shown = "" if default in (None, False, ()) or callable(default) else f" (default: `{default}`)"
    return f"| {name} | {kind} | {help_text}{shown} |"


def render() -> str:
    root = typer.main.get_command(app)
    lines = [HEADER]
    for path, cmd in _walk(root, ["mlops"]):
        lines.append(f"\n## `{' '.join(path)}`\n")
        help_text = (cmd.help or "").strip()
        if help_text:
            lines.append(help_text.splitlines()[0] + "\n")
        params = [p for p in cmd.params if p.name not in ("help",)]
        if params:
            lines.append("| parameter | kind | meaning |")
            lines.append("| --- | --- | --- |")
            lines.extend(_param_row(p) for p in params)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
