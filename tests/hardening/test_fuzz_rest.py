"""Schemathesis against the live server's OpenAPI: no 5xx, every response (errors included) matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeModels
from tests.hardening.live import Live, live_server

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

KEY = "fuzz-key"
CASES: dict[str, int] = {}


def _app(tmp: Path) -> FastAPI:
    app_settings = make_settings(tmp, auth__api_keys=[KEY])
    return create_app(app_settings, models=FakeModels().service(app_settings))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(_app(tmp_path_factory.mktemp("fuzz"))) as server:
        yield server


def test_envelope_handler_for_bad_bodies_and_wrong_methods(tmp_path: Path) -> None:
    """create_app answers an undecodable body with the error envelope (422 invalid_json, not FastAPI's bare
    {"detail": ...}), and a 405 on /api/sessions lists both GET and POST in Allow (Starlette alone names only
    the first route's method)."""
    with TestClient(_app(tmp_path)) as client:
        bad = client.post(
            "/api/text-chat",
            content=b"\xff\xfe{",
            headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_json"
        wrong = client.put("/api/sessions", headers={"X-API-Key": KEY})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in wrong.headers["allow"].split(",")} >= {"GET", "POST"}


@pytest.fixture(scope="module")
def api_schema(live: Live) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.http}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    """Generated requests (valid and invalid) never get a 5xx, and each response matches the documented
    status codes, content types and bodies."""
    CASES[case.operation.label] = CASES.get(case.operation.label, 0) + 1
    case.call_and_validate(headers={"X-API-Key": KEY})


def test_zz_fuzzer_tried_enough_cases() -> None:
    """Runs after the fuzz test (file order): every operation was exercised, in total at least 100 cases."""
    if not CASES:
        pytest.skip("run together with test_api_conforms_to_its_schema")
    print(f"\nREST fuzz cases per operation: {CASES} total={sum(CASES.values())}")
    assert len(CASES) >= 8 and sum(CASES.values()) >= 100
