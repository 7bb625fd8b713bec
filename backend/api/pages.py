"""The browser client, served from the server itself (no build step)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
