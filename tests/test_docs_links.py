"""Every relative link in README.md and docs/*.md points to a file that exists and, with a #fragment, to a heading
of that page (GitHub's anchors), so moving text between the README and docs/ cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config import REPO_ROOT

pytestmark = pytest.mark.fast

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def test_anchors_follow_github() -> None:
    assert anchor("## `POST /v1/chat/completions` and `GET /v1/models`".lstrip("# ")) == (
        "post-v1chatcompletions-and-get-v1models"
    )
    assert anchor("The mentor's voice: the LoRA adapter") == "the-mentors-voice-the-lora-adapter"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    dead = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            dead.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            dead.append(f"{target}: no heading #{fragment}")
    assert not dead, f"{page.name}: " + "; ".join(dead)


def test_readme_stays_short_and_links_to_the_docs() -> None:
    readme = REPO_ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 200
    linked = {target.partition("#")[0] for target in links(readme)}
    assert {f"docs/{page.name}" for page in PAGES[1:] if page.name != "README.md"} <= linked  # every page
