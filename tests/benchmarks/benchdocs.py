"""Writing one benchmark's section into docs/benchmarks.md, leaving every other section as it is."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_relative(text: str) -> str:
    """Paths of this machine written relative to the repository: the docs are read elsewhere."""
    root = str(REPO_ROOT)
    text = re.sub(rf"\(cd {re.escape(root)} && ([^)]*)\)", r"\1", text)
    text = text.replace(root + "/", "").replace(str(REPO_ROOT.parent) + "/", "../")
    return text.replace(root, ".")


def replace_section(path: Path, section: str) -> None:
    """Replace the section whose heading is ``section``'s first line (up to the next `## `
    heading), or append it. The file is read right before writing: other benchmarks write
    their own sections of it."""
    heading = section.split("\n", 1)[0]
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = repo_relative(section.strip("\n")) + "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
