from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.fakes import FakeModels

pytest_plugins = (
    "tests.postgres",  # the `postgres` and `pg_url` fixtures: a real PostgreSQL server
    "tests.ci_skips",  # with CI set, a skip (a missing tool or package) fails the run
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TIER_MARKERS = ("fast", "real", "browser", "slow")


def tierless_modules(items: Sequence[pytest.Item]) -> list[str]:
    """Paths (as in node ids) of the modules holding an item with none of the TIER_MARKERS."""
    return sorted(
        {
            item.nodeid.split("::", 1)[0]
            for item in items
            if not any(item.get_closest_marker(name) is not None for name in TIER_MARKERS)
        }
    )


@pytest.hookimpl(tryfirst=True)  # before ``-m``/``-k`` deselect anything: an unmarked test must not just vanish
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries a tier marker (``pytestmark = pytest.mark.fast`` or real, browser, slow)."""
    missing = tierless_modules(items)
    if missing:
        raise pytest.UsageError(
            f"tests without a tier marker ({', '.join(TIER_MARKERS)}); add e.g. `pytestmark = pytest.mark.fast` "
            "to: " + ", ".join(missing)
        )


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings from the repo's YAML with a private database and no model loading. Partial transcripts are off
    (tests that count transcriptions or events turn them on with ``pipeline__partial_transcript_ms``); the
    hangover is 500 ms."""
    settings = Settings()
    settings.database.url = f"sqlite:///{tmp_path / 'test.db'}"
    settings.server.load_models = False
    settings.pipeline.partial_transcript_ms = 0
    settings.vad.hangover_ms = 500  # tests count 30 ms frames against this (17 frames), whatever config ships
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        setattr(getattr(settings, section), key, value)
    return settings


@pytest.fixture
def fakes() -> FakeModels:
    return FakeModels()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings, fakes: FakeModels) -> Iterator[TestClient]:
    app = create_app(settings, models=fakes.service(settings))
    with TestClient(app) as test_client:
        yield test_client
