"""GET /api: what this server offers, endpoint by endpoint (from the OpenAPI schema and the WebSocket routes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.routing import BaseRoute, WebSocketRoute

from backend.protocol.v1 import PROTOCOL_VERSION

router = APIRouter()

_WEBSOCKETS = {  # path -> (what it is, where its protocol is written down)
    "/ws/voice": (
        "The voice conversation: PCM16 audio and JSON events in; transcript, emotion, reply text and speech out",
        "docs/PROTOCOL.md (ClarityMentor protocol v1)",
    ),
    "/v1/realtime": (
        "The same conversation for OpenAI Realtime clients (GA events, 24 kHz PCM or G.711)",
        "docs/REALTIME.md (OpenAI Realtime GA events)",
    ),
}


def _websocket_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, WebSocketRoute]]:
    """Every WebSocket route with its full path, through included routers (FastAPI keeps those as wrappers)."""
    for route in routes:
        if isinstance(route, WebSocketRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _websocket_routes(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))


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
    websockets = []
    for path, route in _websocket_routes(app.routes):
        summary, protocol = _WEBSOCKETS.get(path, (_first_line(route.endpoint.__doc__) or route.name, None))
        websockets.append({"path": path, "summary": summary, "protocol": protocol})
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
