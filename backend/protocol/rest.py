"""REST request and response bodies of /api (schema names: XCreate for requests, XPublic for responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from backend.protocol.v1 import SESSION_ID_PATTERN, ErrorEvent

UserId = Annotated[str, Field(pattern=SESSION_ID_PATTERN, description="the app's own user id: memory across sessions")]
PersonaId = Annotated[str, Field(min_length=1, max_length=40, description="a persona id (GET /api/personas)")]


# Whose crisis line and emergency number a session gets (config/safety.yaml: US, CA, GB/UK, IE, AU, EU; any other
# code gets the default: "a local crisis line", "your local emergency number"). docs/SAFETY.md
SafetyLocale = Annotated[str, Field(pattern=r"^[A-Za-z_-]{2,16}$")]


class SessionCreate(BaseModel):
    title: Annotated[str, Field(max_length=200)] | None = None
    # Your own id (1-64 letters, digits, '-', '_'); 409 session_exists if it is taken. Default: a random id.
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    persona: PersonaId | None = None
    user_id: UserId | None = None
    safety_locale: SafetyLocale | None = None


class TextChatRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    # An unknown id creates that session (custom ids); another key's session is 404 session_not_found.
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    persona: PersonaId | None = None  # switches the session's persona (stored with it)
    user_id: UserId | None = None  # for a session this request creates
    safety_locale: SafetyLocale | None = None  # switches the session's crisis numbers (stored with it)


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
    persona: str | None = None
    user_id: str | None = None


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
    # The crisis protocol's record: a user turn's {flagged, category, level, mode}, a reply's {written: true}.
    safety: dict[str, Any] | None = None


class HistoryPublic(BaseModel):
    session_id: str
    turns: list[TurnPublic]


class TextChatPublic(BaseModel):
    session_id: str
    response: str  # cut short where it stopped when ``interrupted``
    emotion: dict[str, Any]
    timings: dict[str, float] = Field(default_factory=dict)
    interrupted: bool = False  # stopped by POST /api/sessions/{id}/cancel
    persona: str | None = None
    # The crisis protocol's reading of the message (docs/SAFETY.md): flagged, category, level, mode.
    safety: dict[str, Any] = Field(default_factory=lambda: {"flagged": False, "category": None, "level": None})


class CancelPublic(BaseModel):
    session_id: str
    cancelled: bool


class PersonaVoicePublic(BaseModel):
    voice: str | None
    rate: int | None
    pitch: int | None


class PersonaPublic(BaseModel):
    id: str
    name: str
    title: str
    description: str
    voice: PersonaVoicePublic


class PersonasPublic(BaseModel):
    default: str
    personas: list[PersonaPublic]


class MemoryPublic(BaseModel):
    id: int
    kind: Literal["event", "person", "goal", "worry"]
    text: str
    session_id: str
    created_at: datetime
    last_seen_at: datetime


class MemoriesPublic(BaseModel):
    user_id: str | None
    total: int
    memories: list[MemoryPublic]


class MemoriesDeletedPublic(BaseModel):
    deleted: int


class ArcPointPublic(BaseModel):
    turn_id: int
    emotion: str
    confidence: float
    valence: float  # -1 (unpleasant) .. 1 (pleasant), weighted by the confidence
    at: datetime
    safety: dict[str, Any] | None = None  # {category, level}: the crisis protocol answered this turn


class ArcPublic(BaseModel):
    points: list[ArcPointPublic]
    trend: Literal["improving", "declining", "steady", "too_few_turns"]
    slope: float


class TopicPublic(BaseModel):
    topic: str
    turns: int


class InsightsPublic(BaseModel):
    session_id: str
    arc: ArcPublic
    topics: list[TopicPublic]
    summary: str
    summary_points: list[str]
    summary_updates: int  # incremental updates that made the summary
    summarized_through_turn_id: int
    updating: bool  # a turn's follow-up is still running (the summary will change)
    updated_at: datetime | None = None


class ErrorPublic(BaseModel):
    error: ErrorEvent
