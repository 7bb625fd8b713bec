"""Generated sections of the docs: an evaluation script rewrites the text between its two markers
(``<!-- name -->`` and ``<!-- /name -->``) in the page that holds them, leaving the rest as people wrote it.
The README stays short and hand-written; the figures live in docs/ (``SECTION_FILES``)."""

from __future__ import annotations

import re
from pathlib import Path

from backend.config import REPO_ROOT

README = REPO_ROOT / "README.md"
MODEL_DOC = REPO_ROOT / "docs" / "MODEL.md"
# Each generated section and the page that holds its markers.
SECTION_FILES: dict[str, Path] = {
    "eval_mentor:fit": MODEL_DOC,  # python -m scripts.evals.mentor --fit --update-readme
    "eval_voice": MODEL_DOC,  # python -m scripts.evals.voice --update-readme
}


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the part between the markers of ``name`` replaced by ``body``; ValueError without them."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(\n<!-- /{re.escape(name)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body.strip("\n") + m.group(2), text, count=1)


def section_file(name: str) -> Path:
    """The page that holds the markers of ``name``; KeyError for a section no page holds."""
    return SECTION_FILES[name]


def update_readme(name: str, body: str, path: Path | None = None) -> Path:
    """Rewrite section ``name`` in its page (``SECTION_FILES``, or ``path``); returns the page written."""
    path = path or section_file(name)
    path.write_text(replace_section(path.read_text(encoding="utf-8"), name, body), encoding="utf-8")
    return path
