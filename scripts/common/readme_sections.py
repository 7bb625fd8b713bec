"""Generated sections of the README: an evaluation script rewrites the text between its two markers
(``<!-- name -->`` and ``<!-- /name -->``), leaving the rest of the README as people wrote it."""

from __future__ import annotations

import re
from pathlib import Path

from backend.config import REPO_ROOT

README = REPO_ROOT / "README.md"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the part between the markers of ``name`` replaced by ``body``; ValueError without them."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(\n<!-- /{re.escape(name)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body.strip("\n") + m.group(2), text, count=1)


def update_readme(name: str, body: str, path: Path = README) -> Path:
    path.write_text(replace_section(path.read_text(encoding="utf-8"), name, body), encoding="utf-8")
    return path
