"""The browser client, served from the server itself (no build step).

``GET /`` is the page; ``GET /static/{name}`` serves the few files of backend/static/ by an allow-list
(no path from the request ever reaches the file system).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# Revalidate on every load: the client is tiny and must match the server's protocol after an upgrade.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


def _static_files() -> dict[str, Path]:
    """The servable files, by name: only .html/.js/.css files directly inside backend/static/."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _MEDIA_TYPES}


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    """The voice client page."""
    return _file(STATIC_DIR / "index.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """One of the page's scripts or styles; 404 for anything not in backend/static/."""
    path = _static_files().get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="not found")
    return _file(path)
