"""GET /api: what this server offers, endpoint by endpoint (from the OpenAPI schema and the WebSocket routes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.routing import WebSocketRoute

from backend.protocol.v1 import PROTOCOL_VERSION

router = APIRouter()

_WEBSOCKET_DOCS = {
    "/ws/voice": "docs/PROTOCOL.md (ClarityMentor protocol v1)",
    "/v1/realtime": "docs/REALTIME.md (OpenAI Realtime GA events)",
}


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


@router.get("/api", include_in_schema=False)
async def describe(request: Request) -> dict[str, Any]:
    """The API at a glance: name, version, where the full documentation is, and every endpoint with a line
    saying what it does. Open without a key."""
    app = request.app
    schema = app.openapi()
    endpoints = [
        {"method": method.upper(), "path": path, "summary": _first_line(op.get("description")) or op.get("summary")}
        for path, operations in schema.get("paths", {}).items()
        for method, op in operations.items()
    ]
    websockets = [
        {
            "path": route.path,
            "summary": _first_line(route.endpoint.__doc__) or route.name,
            "protocol": _WEBSOCKET_DOCS.get(route.path),
        }
        for route in app.routes
        if isinstance(route, WebSocketRoute)
    ]
    return {
        "name": schema["info"]["title"],
        "version": schema["info"]["version"],
        "description": schema["info"].get("description"),
        "protocol_version": PROTOCOL_VERSION,
        "documentation": {"openapi": app.openapi_url, "docs": app.docs_url, "redoc": app.redoc_url},
        "errors": '{"error": {"code", "message", "retryable"}}',
        "endpoints": sorted(endpoints, key=lambda e: (e["path"], e["method"])),
        "websockets": websockets,
    }
