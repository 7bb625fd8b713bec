"""Test-only ASGI app for ``uvicorn tests.hardening.plain_app:app``: ``backend.main``'s ``create_app`` as
``backend.main:app`` builds it (settings read at startup from CM_* variables), with fake models."""

from __future__ import annotations

from backend.config import get_settings
from backend.main import create_app
from tests.fakes import FakeModels

app = create_app(models=FakeModels().service(get_settings()))
