"""/livez and /readyz for orchestrators and load balancers (open without a key, like /api/health).

``/livez``: the process is up and its event loop answers; restart the process if it fails.
``/readyz``: whether to send this replica new connections. 200 only when every engine is loaded, the database
answers, every engine served by another process (the LLM over HTTP) answers, and the server is not shutting
down: on SIGTERM readiness turns false first, before anything else stops (backend/server.py). 503 otherwise,
with the failing checks named. Checks run concurrently, each within ``CHECK_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from backend.api.deps import AppServices

logger = logging.getLogger(__name__)
router = APIRouter(tags=["probes"])

CHECK_TIMEOUT_S = 2.0
OK = "ok"


class LivenessPublic(BaseModel):
    status: str = OK


class ReadinessPublic(BaseModel):
    ready: bool
    checks: dict[str, str]  # check -> "ok", or why it is not


@router.get("/livez")
async def livez() -> LivenessPublic:
    """The process is up and serving requests."""
    return LivenessPublic()


@router.get("/readyz", response_model=ReadinessPublic, responses={503: {"model": ReadinessPublic}})
async def readyz(request: Request) -> JSONResponse:
    """Ready for new connections: models loaded, database and remote engines reachable, not shutting down."""
    services: AppServices | None = getattr(request.app.state, "services", None)
    if services is None:
        return _answer({"startup": "starting"})
    checks = {"shutdown": "shutting down" if getattr(request.app.state, "shutting_down", False) else OK}
    failed = [name for name, status in services.models.status.items() if status.state != "loaded"]
    checks["models"] = OK if not failed else f"not loaded: {', '.join(failed)}"
    database, remote = await asyncio.gather(_database(services), _remote_engines(services))
    checks["database"] = database
    checks.update(remote)
    return _answer(checks)


def _answer(checks: dict[str, str]) -> JSONResponse:
    ready = all(value == OK for value in checks.values())
    body = ReadinessPublic(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _database(services: AppServices) -> str:
    try:
        await asyncio.wait_for(services.store.ping(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return "timed out"
    except Exception as exc:
        logger.warning("readiness: database unreachable", extra={"error": type(exc).__name__})
        return f"unreachable ({type(exc).__name__})"
    return OK


async def _remote_engines(services: AppServices) -> dict[str, str]:
    """``<kind>_engine`` -> ok or why not, for each engine served by another process."""
    try:
        health = await asyncio.wait_for(asyncio.to_thread(services.models.remote_health), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"remote_engines": "timed out"}
    return {f"{kind}_engine": OK if h.reachable else f"unreachable ({h.detail})" for kind, h in health.items()}
