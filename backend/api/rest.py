"""/api/*: health, sessions, history and browser tokens; the error envelope. Other /api route groups have their
own modules: text_chat.py, personas.py, memories.py, insights.py, cancel.py, index.py."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from backend.api import auth
from backend.api.auth import authenticate_key, issue_token
from backend.api.deps import AppServices, OwnerDep, ServicesDep, get_services
from backend.protocol.rest import (
    ErrorPublic,
    HealthPublic,
    HistoryPublic,
    ModelStatusPublic,
    SessionCreate,
    SessionPublic,
    SessionsPublic,
    TurnPublic,
)
from backend.protocol.v1 import ErrorEvent
from backend.store.sessions import SessionRecord

router = APIRouter(prefix="/api")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error bodies: every error is ``{"error": {code, message, ...}}``."""
    return {status: {"model": ErrorPublic} for status in statuses}


_errors = error_responses


# Errors any keyed route may answer: 401 (missing, wrong or expired credential), 422 (invalid input).
AUTHED = (401, 422)
TURN_ERRORS = (*AUTHED, 404, 429, 500, 503)  # a turn may also hit a full server or a failing model


_BODY_PARSE_FAILED = "There was an error parsing the body"  # FastAPI's detail for an undecodable body
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _documented_methods(request: Request) -> list[str]:
    """The methods the OpenAPI schema lists for the request's path (all /api routes are in the schema)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette/FastAPI's own HTTP errors in the app's error envelope (register on the app for
    ``StarletteHTTPException``). An undecodable body becomes 422 ``invalid_json`` like any other bad JSON;
    a 405 lists every method the path supports in ``Allow`` (Starlette names only the first route's)."""
    headers = dict(exc.headers or {})
    status, code = exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if status == 400 and message == _BODY_PARSE_FAILED:
        status, code, message = 422, "invalid_json", "the request body is not valid JSON"
    elif status == 405 and (allowed := _documented_methods(request)):
        headers["Allow"] = ", ".join(allowed)
    body = {"error": ErrorEvent(code=code, message=message).model_dump()}
    return JSONResponse(body, status_code=status, headers=headers)


class TokenPublic(BaseModel):
    """A short-lived token for browsers: pass it as ``?token=`` (WebSocket) or ``Authorization: Bearer``."""

    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    expires_in: int  # seconds from now


def get_key_owner(request: Request) -> str | None:
    """The caller's owner fingerprint from an API key (tokens cannot mint tokens); None when auth is off."""
    return authenticate_key(request, get_services(request).settings.auth)


KeyOwnerDep = Annotated[str | None, Depends(get_key_owner)]


@router.get("/health")
async def health(services: ServicesDep) -> HealthPublic:
    """Liveness and model state; open without a key so load balancers and the page can probe it. An engine
    served by another process also reports whether its server answers (``reachable``); one that does not
    makes the status ``degraded``. (Orchestrators: /livez and /readyz.)"""
    models = services.models
    remote = await asyncio.to_thread(models.remote_health)
    states = {s.state for s in models.status.values()}
    status = "ok" if states == {"loaded"} else ("degraded" if "failed" in states else "starting")
    if status == "ok" and not all(h.reachable for h in remote.values()):
        status = "degraded"
    return HealthPublic(
        status=status,
        models_loaded=models.loaded,
        models={
            name: ModelStatusPublic(
                state=s.state,
                load_seconds=s.load_seconds,
                detail=remote[name].detail if name in remote and not remote[name].reachable else s.detail,
                reachable=remote[name].reachable if name in remote else None,
            )
            for name, s in models.status.items()
        },
        timestamp=datetime.now(UTC),
        device=models.device,
        active_connections=len(services.connections),
    )


@router.post("/tokens", status_code=201, responses=_errors(401))
async def create_token(services: ServicesDep, owner: KeyOwnerDep) -> TokenPublic:
    """A signed token for ``auth.jwt_ttl_s`` seconds acting as the presenting API key's owner."""
    token, expires = issue_token(owner, services.settings.auth)
    return TokenPublic(
        token=token,
        expires_at=datetime.fromtimestamp(expires, UTC),
        expires_in=max(0, math.ceil(expires - auth.clock())),
    )


@router.post("/sessions", status_code=201, responses=_errors(*AUTHED, 404, 409))
async def create_session(services: ServicesDep, owner: OwnerDep, body: SessionCreate | None = None) -> SessionPublic:
    """A new session: your own ``session_id`` if you give one (1-64 letters, digits, '-', '_'; 422
    ``invalid_session_id``, 409 ``session_exists`` when taken), a ``persona`` (422 ``unknown_persona``) and a
    ``user_id`` (whose memories it uses and grows)."""
    body = body or SessionCreate()
    persona = services.shared.personas.check(body.persona)
    record = await services.store.create_session(
        owner=owner,
        title=body.title,
        session_id=body.session_id,
        persona=persona,
        user_id=body.user_id,
        exist_ok=False,
        safety_locale=body.safety_locale,
    )
    return session_public(record, services)


def session_public(record: SessionRecord, services: AppServices) -> SessionPublic:
    """A stored session as the API shows it (its persona resolved: none stored means the default)."""
    public = SessionPublic.model_validate(record, from_attributes=True)
    public.persona = record.persona or services.shared.personas.default_id
    return public


@router.get("/sessions", responses=_errors(*AUTHED))
async def list_sessions(services: ServicesDep, owner: OwnerDep, limit: int = 100) -> SessionsPublic:
    limit = max(1, min(limit, 500))
    records = await services.store.list_sessions(owner=owner, limit=limit)
    return SessionsPublic(sessions=[session_public(r, services) for r in records])


@router.get("/sessions/{session_id}/history", responses=_errors(*AUTHED, 404))
async def history(session_id: str, services: ServicesDep, owner: OwnerDep, limit: int | None = None) -> HistoryPublic:
    turns = await services.store.history(session_id, owner=owner, limit=limit)
    return HistoryPublic(
        session_id=session_id, turns=[TurnPublic.model_validate(t, from_attributes=True) for t in turns]
    )


@router.delete("/sessions/{session_id}", status_code=204, responses=_errors(*AUTHED, 404))
async def delete_session(session_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    await services.store.delete_session(session_id, owner=owner)
    return Response(status_code=204)
