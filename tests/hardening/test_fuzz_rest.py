"""Schemathesis against the live server's OpenAPI: no 5xx, every response (errors included) matches the schema.

The fuzz test records each case it sent and had validated; the last test asserts from that record that every
operation of the schema was exercised, enough in all, with malformed input refused (4xx) and valid input
served (2xx), so a run that tried little or nothing fails."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Ok

from backend.main import create_app
from tests.ci_skips import NOT_IN_THIS_RUN
from tests.conftest import make_settings
from tests.fakes import FakeModels
from tests.hardening.live import Live, live_server

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

KEY = "fuzz-key"
FUZZ_TEST = "test_api_conforms_to_its_schema"
# operation label -> (phase "coverage"/"fuzzing", mode "positive"/"negative", status code) -> cases answered
# and validated
SENT: dict[str, Counter[tuple[str, str, int]]] = {}


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
    response = case.call_and_validate(headers={"X-API-Key": KEY})
    phase, mode = (case.meta.phase.name.value, case.meta.generation.mode.value) if case.meta else ("?", "?")
    SENT.setdefault(case.operation.label, Counter())[phase, mode, response.status_code] += 1


def test_zz_fuzzer_tried_enough_cases(request: pytest.FixtureRequest) -> None:
    """Runs after the fuzz test (file order) whenever that test is part of the run: every operation of the
    schema was exercised by both schemathesis phases (coverage: boundary and malformed cases; fuzzing: Hypothesis
    examples, max_examples each), at least 200 cases in all and 100 of them fuzzed; each operation refused some
    malformed (negative) case with a 4xx, and each operation without path parameters served a 2xx.
    (Measured here: 290 cases, 10 to 59 per operation, 151 fuzzed: 25 per operation with inputs, 1 per
    operation without; with max_examples=1 only 8 would be fuzzed.)"""
    if not any(getattr(item, "originalname", item.name) == FUZZ_TEST for item in request.session.items):
        pytest.skip(f"{NOT_IN_THIS_RUN} {FUZZ_TEST} was not selected")  # a skip even in CI (tests/ci_skips.py)
    openapi: schemathesis.BaseSchema = request.getfixturevalue("api_schema")
    results = list(openapi.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = {result.ok().label for result in results if isinstance(result, Ok)}
    print(f"\nREST fuzz cases per operation (phase, mode, status): {SENT}")
    assert SENT, f"{FUZZ_TEST} sent no case (did it run before this test?)"
    assert set(SENT) == operations
    assert sum(counts.total() for counts in SENT.values()) >= 200
    fuzzed = sum(n for counts in SENT.values() for (phase, _, _), n in counts.items() if phase == "fuzzing")
    assert fuzzed >= 100
    for label, counts in SENT.items():
        assert {phase for phase, _, _ in counts} == {"coverage", "fuzzing"}, (label, counts)
        assert any(mode == "negative" and 400 <= status < 500 for _, mode, status in counts), (label, counts)
        if "{" not in label:
            assert any(200 <= status < 300 for _, _, status in counts), (label, counts)
