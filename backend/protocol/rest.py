"""REST request and response bodies of /api (schema names: XCreate for requests, XPublic for responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from backend.protocol.v1 import SESSION_ID_PATTERN, ErrorEvent


class SessionCreate(BaseModel):
    title: Annotated[str, Field(max_length=200)] | None = None


class TextChatRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None


class ModelStatusPublic(BaseModel):
    state: Literal["pending", "loading", "loaded", "failed"]
    load_seconds: float | None = None
    detail: str | None = None
    reachable: bool | None = None  # engines on another server (llm.backend: openai): does it answer; else None


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "starting"]
    models_loaded: bool
    models: dict[str, ModelStatusPublic]
    timestamp: datetime
    device: str | None = None
    active_connections: int = 0


class SessionPublic(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turn_count: int = 0
    title: str | None = None


class SessionsPublic(BaseModel):
    sessions: list[SessionPublic]


class TurnPublic(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    text: str
    emotion: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    duration_s: float | None = None
    interrupted: bool = False
    created_at: datetime


class HistoryPublic(BaseModel):
    session_id: str
    turns: list[TurnPublic]


class TextChatPublic(BaseModel):
    session_id: str
    response: str
    emotion: dict[str, Any]
    timings: dict[str, float] = Field(default_factory=dict)


class ErrorPublic(BaseModel):
    error: ErrorEvent
