"""The mentor's chat LLM on a remote serving engine that speaks OpenAI Chat Completions (``llm.backend: openai``).

vLLM (with the mentor LoRA as a served adapter), Ollama, llama.cpp's server, or anything else serving
``POST {base_url}/chat/completions`` with ``stream: true`` (server-sent events). ``llm.model`` is the served
name (the adapter's name under vLLM, e.g. ``mentor``). The prompt is built by the pipeline exactly as for the
in-process engine (system prompt, history window, emotion guidance, user message); the server applies the chat
template.

- Interruption: when ``stop`` is set the HTTP stream is closed, at once even while waiting for the next piece
  (the socket is shut down), so the server sees the client go and stops generating.
- A refused or failed connection before the first token is retried with doubling backoff; then the turn fails
  with ``ModelError`` code ``llm_unavailable`` (retryable). A server silent for ``read_timeout_s`` fails it
  with ``llm_timeout``. No turn waits forever.
- ``count_tokens`` approximates (``chars_per_token`` characters per token, rounded up): the prompt builder only
  needs a budget. SmolLM2's tokenizer averages 4.4 characters per token on the mentor data; 3.5 over-counts 98%
  of its texts, so the history window errs on the short side, never past the server's context.
  ``warm_prefix`` does nothing: serving engines keep their own prefix caches (vLLM's automatic prefix caching,
  llama.cpp's slot cache).
- ``probe()`` asks ``GET {base_url}/models`` for /readyz and /api/health.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from backend.config import LLMSettings
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.protocols import ChatMessage, EngineHealth, GenerationOptions
from backend.engines.registry import engine_options

logger = logging.getLogger(__name__)

_WATCH_S = 0.05  # how often a running stream re-checks its stop event
_RETRY_STATUSES = frozenset({502, 503, 504})  # a balancer or a server still loading: try again before giving up
_PROBE_CACHE_S = 1.0  # /readyz may be polled by several balancers: one probe per second at most


class Options(BaseModel):
    """The remote engine's own ``llm.*`` settings (the registry validates them; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = "http://127.0.0.1:8080/v1"  # up to and including /v1
    api_key: SecretStr | None = None  # sent as ``Authorization: Bearer``; Ollama and llama.cpp ignore it
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 20.0  # longest silence from the server, before the first token or between two
    connect_retries: int = 3  # extra attempts after a refused connection (or a 502/503/504) before any token
    retry_backoff_s: float = 0.2  # wait before the first retry; doubles each time
    probe_timeout_s: float = 1.0
    chars_per_token: float = 3.5  # count_tokens' approximation (English text: 3.5-4.5 per token)
    require_at_startup: bool = False  # fail startup when the server is unreachable (else: not ready until it is)
    # Extra request fields, passed as they are: e.g. {"repetition_penalty": 1.15} for vLLM, {"repeat_penalty":
    # 1.15} for llama.cpp (the OpenAI API itself has neither and refuses unknown fields).
    extra_body: dict[str, Any] = Field(default_factory=dict)


def remote_options(settings: LLMSettings) -> Options:
    return engine_options("llm", "openai", settings, Options)


class _StreamWatch:
    """Shuts the stream's socket down once ``stop`` is set, waking a read that is blocked on the server."""

    def __init__(self, response: httpx.Response, stop: threading.Event) -> None:
        stream = response.extensions.get("network_stream")
        self._socket: socket.socket | None = stream.get_extra_info("socket") if stream is not None else None
        self._stop = stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="llm-stream-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._stop.wait(_WATCH_S):
                if not self._done.is_set() and self._socket is not None:
                    with contextlib.suppress(OSError):  # already closed
                        self._socket.shutdown(socket.SHUT_RDWR)
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


class OpenAIChatModel:
    """ChatModel over an OpenAI-compatible ``/chat/completions`` endpoint, streamed. It cannot continue a given
    reply start (not ContinuesPrefix: the servers differ in how, if at all), so spoken replies through it have no
    opening clause."""

    def __init__(self, settings: LLMSettings, options: Options, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.options = options
        self.name = settings.model
        self.base_url = options.base_url.rstrip("/")
        headers = {"Accept": "text/event-stream"}
        if options.api_key is not None:
            headers["Authorization"] = f"Bearer {options.api_key.get_secret_value()}"
        timeout = httpx.Timeout(options.read_timeout_s, connect=options.connect_timeout_s)
        limits = httpx.Limits(max_connections=max(8, 2 * settings.max_concurrent), max_keepalive_connections=8)
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=limits, transport=transport)
        self._probe_lock = threading.Lock()
        self._probed_at = -math.inf
        self._health = EngineHealth(reachable=False, detail="not probed yet")
        self.last_error: str | None = None  # the latest turn's failure, cleared by a turn that succeeds

    # --- ChatModel ----------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """An estimate (no tokenizer here): ``len(text) / chars_per_token``, rounded up."""
        return math.ceil(len(text) / self.options.chars_per_token)

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        return 0  # the serving engine caches prompt prefixes itself

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Generator[str, None, None]:
        """Yield the reply's text pieces as the server streams them. Blocking; closes the stream as soon as
        ``stop`` is set or the generator is closed. Raises ModelError (see the module docstring). ``options``
        are ignored: the server's penalties are set by ``extra_body``."""
        response = self._open(self._body(messages), stop)
        if response is None:  # stopped while connecting
            return
        watch = _StreamWatch(response, stop)
        try:
            for data in _sse_data(response, stop):
                piece = _delta(data)
                if piece:
                    yield piece
            self.last_error = None
        except httpx.TimeoutException:
            raise self._failed("llm_timeout", f"no reply from the language model server for {self._read_s} s") from None
        except (httpx.TransportError, httpx.StreamError):
            if not stop.is_set():
                raise self._failed("llm_unavailable", "the language model server dropped the reply") from None
        except ModelError as exc:  # an error event or an unreadable one in the stream
            raise self._failed(exc.code, exc.message) from None
        finally:
            watch.close()
            response.close()

    def warmup(self) -> None:
        """Check the server once: a one-token generation. Unreachable: a warning (the replica stays not ready
        until the server answers; ``require_at_startup`` makes it fatal). Refused request (e.g. an unknown
        model name): ModelLoadError."""
        body = {**self._body([ChatMessage("user", "Hello.")]), "max_tokens": 1}
        try:
            response = self._open(body, threading.Event(), retries=0)
        except ModelError as exc:
            if exc.code != "llm_unavailable" or self.options.require_at_startup:
                raise ModelLoadError(f"language model server: {exc.message}") from None
            logger.warning("language model server unreachable at startup", extra={"url": self.base_url})
            return
        assert response is not None
        try:
            response.read()
        finally:
            response.close()
        self._health, self._probed_at = EngineHealth(reachable=True), time.monotonic()

    # --- health -------------------------------------------------------------------------------------

    def probe(self) -> EngineHealth:
        """Whether the server answers ``GET /models`` (cached for a second). Blocking, at most probe_timeout_s."""
        with self._probe_lock:
            if time.monotonic() - self._probed_at < _PROBE_CACHE_S:
                return self._health
            try:
                reply = self._client.get(f"{self.base_url}/models", timeout=self.options.probe_timeout_s)
                ok = reply.status_code == 200
                self._health = EngineHealth(ok, None if ok else f"GET /models answered {reply.status_code}")
            except httpx.HTTPError as exc:
                self._health = EngineHealth(False, type(exc).__name__)
            self._probed_at = time.monotonic()
            return self._health

    def close(self) -> None:
        self._client.close()

    # --- internals ----------------------------------------------------------------------------------

    @property
    def _read_s(self) -> float:
        return self.options.read_timeout_s

    def _body(self, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "seed": s.seed,
        }
        if s.temperature > 0:
            body["top_p"] = s.top_p
        return {**body, **self.options.extra_body}

    def _open(self, body: dict[str, Any], stop: threading.Event, retries: int | None = None) -> httpx.Response | None:
        """POST the request and return the streaming response once its status is 200; None if ``stop`` was set
        while retrying. Connection failures and 502/503/504 are retried with backoff."""
        attempts = 1 + (self.options.connect_retries if retries is None else retries)
        delay = self.options.retry_backoff_s
        reason = ""
        for attempt in range(attempts):
            if attempt:
                if stop.wait(delay):
                    return None
                delay *= 2
            request = self._client.build_request("POST", f"{self.base_url}/chat/completions", json=body)
            try:
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    reason = "connection timed out"
                    continue
                raise self._failed(
                    "llm_timeout", f"no reply from the language model server for {self._read_s} s"
                ) from None
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                reason = type(exc).__name__
                continue
            if response.status_code == 200:
                return response
            detail = _error_detail(response)
            response.close()
            if response.status_code in _RETRY_STATUSES:
                reason = f"HTTP {response.status_code}"
                continue
            raise self._failed("llm_error", f"the language model server refused the request: {detail}", retryable=False)
        raise self._failed("llm_unavailable", f"the language model server is unreachable ({reason}, {attempts} tries)")

    def _failed(self, code: str, message: str, *, retryable: bool = True) -> ModelError:
        self.last_error = code
        self._health, self._probed_at = EngineHealth(False, code), time.monotonic()
        logger.warning("language model server failed", extra={"code": code, "url": self.base_url})
        return ModelError(message, code=code, retryable=retryable)


def _sse_data(response: httpx.Response, stop: threading.Event) -> Generator[dict[str, Any], None, None]:
    """The JSON ``data:`` payloads of a server-sent event stream, until ``[DONE]`` or the end of the stream."""
    for line in response.iter_lines():
        if stop.is_set():
            return
        if not line.startswith("data:"):
            continue  # comments (": ping"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            raise ModelError("the language model server sent an invalid event", code="llm_error") from None
        if isinstance(payload, dict) and "error" in payload:
            raise ModelError("the language model server failed while generating", code="llm_error")
        if isinstance(payload, dict):
            yield payload


def _delta(payload: dict[str, Any]) -> str:
    choices = payload.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""  # e.g. the usage chunk
    content = (choices[0].get("delta") or {}).get("content")
    return content if isinstance(content, str) else ""


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.read()
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return f"HTTP {response.status_code}: {str(message)[:200]}"
    except Exception:
        return f"HTTP {response.status_code}"


def load(settings: LLMSettings) -> OpenAIChatModel:
    """A client for the configured server (no request yet: ``warmup`` checks it). Not blocking."""
    options = remote_options(settings)
    if not options.base_url.startswith(("http://", "https://")):
        raise ModelLoadError(f"llm.base_url must start with http:// or https://, got {options.base_url!r}")
    logger.info("language model on a remote server", extra={"url": options.base_url, "model": settings.model})
    return OpenAIChatModel(settings, options)
