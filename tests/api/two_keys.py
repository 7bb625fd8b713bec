"""Shared by the memory and access-control tests: an app with two API keys (k1, k2), fake models with a
bag-of-words embedder (so memories are kept and recalled), and the fact and later message they use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, FakeModels

FACT = "My sister Anna is getting married next month and I have to give a speech."
LATER = "I keep thinking about the speech for my sister Anna."
K1, K2 = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}


@pytest.fixture
def fakes() -> FakeModels:
    return FakeModels(embedder=FakeEmbedder())


@pytest.fixture
def api(tmp_path: Path, fakes: FakeModels) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, auth__api_keys=["k1", "k2"], memory__min_similarity=0.3)
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        yield client
