"""Client -> server WebSocket events (protocol v1) and REST request bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionStart(_Event):
    type: Literal["session.start"]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    sample_rate: int | None = None
    mentor: str | None = None


class InputCommit(_Event):
    type: Literal["input.commit"]


class ResponseCancel(_Event):
    type: Literal["response.cancel"]


class TextInput(_Event):
    type: Literal["text"]
    text: Annotated[str, Field(min_length=1)]


ClientEvent = Annotated[
    SessionStart | InputCommit | ResponseCancel | TextInput,
    Field(discriminator="type"),
]
CLIENT_EVENT_TYPES = ("session.start", "input.commit", "response.cancel", "text")
client_event_adapter: TypeAdapter[SessionStart | InputCommit | ResponseCancel | TextInput] = TypeAdapter(ClientEvent)


class SessionCreate(BaseModel):
    title: Annotated[str, Field(max_length=200)] | None = None


class TextChatRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
