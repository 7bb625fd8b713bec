"""OpenAI Realtime (GA) at /v1/realtime: the client events we accept and the server events we send.

Client events are parsed leniently (fields we do not use are ignored, as SDKs send many); server events carry
every id the SDK types require. docs/REALTIME.md lists what is supported and where we extend the API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# --- shared shapes --------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AudioFormat(_Lenient):
    """``audio/pcm`` (24 kHz in the API; other rates of ours accepted as an extension), or G.711 at 8 kHz."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = None


class TurnDetection(_Lenient):
    type: Literal["server_vad", "semantic_vad"]
    create_response: bool | None = None
    interrupt_response: bool | None = None


class ContentPart(BaseModel):
    type: Literal["input_text", "input_audio", "output_text", "output_audio"]
    text: str | None = None
    transcript: str | None = None


class Item(BaseModel):
    """A message in the conversation (audio data is never echoed back)."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    role: Literal["user", "assistant"]
    content: list[ContentPart] = Field(default_factory=list)


# --- client -> server -----------------------------------------------------------------------------------


class _ClientEvent(_Lenient):
    event_id: str | None = None


class SessionAudioInput(_Lenient):
    format: AudioFormat | None = None
    transcription: dict[str, Any] | None = None
    turn_detection: TurnDetection | None = None  # explicitly null: the client commits and asks for replies


class SessionAudioOutput(_Lenient):
    format: AudioFormat | None = None
    voice: str | None = None
    speed: float | None = None


class SessionAudio(_Lenient):
    input: SessionAudioInput | None = None
    output: SessionAudioOutput | None = None


class SessionConfig(_Lenient):
    type: Literal["realtime"] = "realtime"
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = None
    audio: SessionAudio | None = None


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: SessionConfig


class InputAudioBufferAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class InputContent(_Lenient):
    type: str
    text: str | None = None


class NewItem(_Lenient):
    id: Annotated[str, Field(max_length=64)] | None = None
    type: str = "message"
    role: str | None = None
    content: list[InputContent] = Field(default_factory=list)


class ConversationItemCreate(_ClientEvent):
    type: Literal["conversation.item.create"]
    item: NewItem
    previous_item_id: str | None = None


class ConversationItemTruncate(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = 0
    audio_end_ms: Annotated[int, Field(ge=0)]


class ConversationItemRetrieve(_ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ResponseParams(_Lenient):
    conversation: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = None
    metadata: dict[str, str] | None = None
    input: list[Any] | None = None


class ResponseCreate(_ClientEvent):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ConversationItemRetrieve
    | ResponseCreate
    | ResponseCancel
)
CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)
# GA client events we do not implement: answered with error code "unsupported_event".
UNSUPPORTED_EVENT_TYPES = ("conversation.item.delete", "output_audio_buffer.clear", "transcription_session.update")
client_event_adapter: TypeAdapter[ClientEvent] = TypeAdapter(Annotated[ClientEvent, Field(discriminator="type")])


# --- server -> client -----------------------------------------------------------------------------------


class ServerEvent(BaseModel):
    event_id: str = ""  # filled in by the sender


class SessionCreated(ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: dict[str, Any]


class SessionUpdated(ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: dict[str, Any]


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class BufferCommitted(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class BufferCleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class ItemAdded(ServerEvent):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    item: Item
    previous_item_id: str | None = None


class ItemDone(ServerEvent):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    item: Item
    previous_item_id: str | None = None


class ItemRetrieved(ServerEvent):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Item


class ItemTruncated(ServerEvent):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


class TranscriptionDelta(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class TranscriptionCompleted(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: dict[str, Any]
    emotion: dict[str, Any] | None = None  # extension: the fused emotion of this user turn


class Response(BaseModel):
    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "failed"] = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[Item] = Field(default_factory=list)
    output_modalities: list[str] = Field(default_factory=lambda: ["audio"])
    usage: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    conversation_id: str | None = None


class ResponseCreated(ServerEvent):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseDone(ServerEvent):
    type: Literal["response.done"] = "response.done"
    response: Response


class OutputItemAdded(ServerEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: Item


class OutputItemDone(ServerEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: Item


class _PartEvent(ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class Part(BaseModel):
    type: Literal["audio", "text"]
    transcript: str | None = None
    text: str | None = None


class ContentPartAdded(_PartEvent):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: Part


class ContentPartDone(_PartEvent):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: Part


class AudioDelta(_PartEvent):
    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str  # base64 audio in the session's output format


class AudioDone(_PartEvent):
    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class AudioTranscriptDelta(_PartEvent):
    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class AudioTranscriptDone(_PartEvent):
    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class TextDelta(_PartEvent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class TextDone(_PartEvent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class ErrorDetail(BaseModel):
    type: Literal["invalid_request_error", "server_error"] = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None  # the client event that caused it


class Error(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail
