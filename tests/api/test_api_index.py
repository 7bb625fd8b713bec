"""GET /api describes the API and its endpoints."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.fast

NEW_ENDPOINTS = {
    ("GET", "/api/personas"),
    ("GET", "/api/memories"),
    ("DELETE", "/api/memories"),
    ("DELETE", "/api/memories/{memory_id}"),
    ("GET", "/api/sessions/{session_id}/insights"),
    ("POST", "/api/sessions/{session_id}/cancel"),
    ("POST", "/api/sessions"),
    ("POST", "/api/text-chat"),
}


def test_api_index_lists_every_documented_endpoint_and_the_websockets(client: TestClient) -> None:
    """GET /api names the service and its documentation, and lists every OpenAPI operation with a one-line
    summary, plus the WebSocket endpoints with their protocol documents."""
    body = client.get("/api").json()
    assert body["name"] == "ClarityMentor" and body["documentation"]["openapi"] == "/openapi.json"
    listed = {(e["method"], e["path"]) for e in body["endpoints"]}
    openapi = client.get("/openapi.json").json()["paths"]
    assert listed == {(m.upper(), p) for p, ops in openapi.items() for m in ops}
    assert listed >= NEW_ENDPOINTS
    assert all(e["summary"] for e in body["endpoints"])
    cancel = next(e for e in body["endpoints"] if e["path"] == "/api/sessions/{session_id}/cancel")
    assert cancel["summary"].startswith("Stop the reply being generated")
    sockets = {w["path"]: w for w in body["websockets"]}
    assert "/ws/voice" in sockets and "PROTOCOL.md" in sockets["/ws/voice"]["protocol"]
