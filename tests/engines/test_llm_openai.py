"""The remote LLM engine (llm.backend: openai) against a scripted OpenAI-compatible server on 127.0.0.1:
streaming, the request it sends, interruption, retries, timeouts, errors, probe and warmup. By events and
order only; how soon is checked in the slow tier (tests/test_wall_clock.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backend.config import LLMSettings
from backend.core.exceptions import ConfigError, ModelError, ModelLoadError
from backend.engines import registry
from backend.engines.llm.openai import OpenAIChatModel, load
from backend.engines.protocols import ChatMessage, RemoteEngine
from tests.fake_openai import REPLY, FakeOpenAI, Running, dead_port, serve_fake_openai, set_when

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

MESSAGES = [ChatMessage("system", "Be kind."), ChatMessage("user", "I feel lost.")]


def _engine(base_url: str, **options: Any) -> OpenAIChatModel:
    section = LLMSettings.model_validate(
        {"backend": "openai", "model": "mentor", "base_url": base_url, "retry_backoff_s": 0.05, **options}
    )
    engine = registry.LLM.loader(section)()
    assert isinstance(engine, OpenAIChatModel)
    return engine


@pytest.fixture
def server() -> Iterator[Running]:
    with serve_fake_openai() as running:
        yield running


def test_streams_the_reply_and_sends_the_prompt_as_built(server: Running) -> None:
    """The pieces arrive in order and join to the reply; the request carries the served model name, the
    messages unchanged, stream, max_tokens, temperature, seed, the extra body fields and the bearer key."""
    engine = _engine(server.base_url, api_key="sk-test", max_new_tokens=40, extra_body={"repetition_penalty": 1.15})
    pieces = list(engine.stream(MESSAGES, threading.Event()))
    assert len(pieces) == len(REPLY.split(" ")) and "".join(pieces) == REPLY
    body = server.fake.requests[-1]
    assert body["model"] == "mentor" and body["stream"] is True and body["max_tokens"] == 40
    assert body["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "I feel lost."}]
    assert body["temperature"] == 0.0 and body["seed"] == 1234 and body["repetition_penalty"] == 1.15
    assert "top_p" not in body  # greedy: no sampling parameters
    assert server.fake.headers[-1]["authorization"] == "Bearer sk-test"
    assert engine.last_error is None
    engine.close()


def test_stop_closes_the_stream_while_the_server_is_between_tokens() -> None:
    """Setting stop while the server holds the next token (and never releases it) ends the stream without that
    token: the socket is shut down rather than waiting, the server sees the client leave, and generation stops
    at the 3 words sent. (How soon: tests/test_wall_clock.py.)"""
    fake = FakeOpenAI(hold_after=3)
    with serve_fake_openai(fake) as server:
        engine = _engine(server.base_url)
        stop = threading.Event()
        got: list[str] = []
        for piece in engine.stream(MESSAGES, stop):
            got.append(piece)
            if len(got) == 3:
                assert fake.holding.wait(5)
                threading.Timer(0.1, stop.set).start()  # set while the engine waits in its read, not before
        assert len(got) == 3
        assert fake.disconnected.wait(5), "the server did not see the stream closed"
        assert fake.words_sent == 3 and not fake.release.is_set()
        engine.close()


def test_closing_the_generator_closes_the_stream() -> None:
    """A consumer that stops iterating (the pipeline's sentence cap, a cancelled turn) closes the generator:
    the HTTP stream is closed and the server stops generating."""
    fake = FakeOpenAI(hold_after=2)
    with serve_fake_openai(fake) as server:
        engine = _engine(server.base_url)
        stream = engine.stream(MESSAGES, threading.Event())
        assert next(stream) and next(stream)
        stream.close()
        assert fake.disconnected.wait(5)
        engine.close()


def test_refused_connection_is_retried_with_backoff_then_fails_retryable() -> None:
    """Nothing listening: 1 + connect_retries attempts with doubling backoff (0.05 + 0.1 + 0.2 s), then
    ModelError llm_unavailable, retryable; the engine remembers the failure for health."""
    engine = _engine(f"http://127.0.0.1:{dead_port()}/v1", connect_retries=3)
    started = time.monotonic()
    with pytest.raises(ModelError) as failed:
        list(engine.stream(MESSAGES, threading.Event()))
    elapsed = time.monotonic() - started
    assert failed.value.code == "llm_unavailable" and failed.value.retryable
    assert "4 tries" in failed.value.message
    assert elapsed >= 0.35  # the backoff was waited (a lower bound: a busy machine only adds to it)
    assert engine.last_error == "llm_unavailable"
    assert engine.probe().reachable is False


def test_stop_during_retries_ends_quietly() -> None:
    """A turn interrupted while the engine waits to retry (a 503, then a 1 s backoff) ends with no error and no
    more attempts, however many retries were left."""
    fake = FakeOpenAI(fail_statuses=[503] * 50)
    with serve_fake_openai(fake) as server:
        engine = _engine(server.base_url, connect_retries=50, retry_backoff_s=1.0)
        stop = threading.Event()
        set_when(fake.requested, stop)
        assert list(engine.stream(MESSAGES, stop)) == []
        assert stop.is_set() and len(fake.requests) == 1
        engine.close()


def test_unavailable_statuses_are_retried_until_the_server_answers() -> None:
    """502 and 503 (a balancer with no backend, a server still loading) are retried; the third try streams."""
    fake = FakeOpenAI(fail_statuses=[503, 502])
    with serve_fake_openai(fake) as server:
        engine = _engine(server.base_url, connect_retries=3)
        assert "".join(engine.stream(MESSAGES, threading.Event())) == REPLY
        assert len(fake.requests) == 3
        engine.close()


def test_refused_request_is_not_retried_and_names_the_reason(server: Running) -> None:
    """An unknown model name (HTTP 404) fails at once with llm_error, not retryable, quoting the server."""
    engine = _engine(server.base_url, model="no-such-adapter")
    with pytest.raises(ModelError) as failed:
        list(engine.stream(MESSAGES, threading.Event()))
    assert failed.value.code == "llm_error" and not failed.value.retryable
    assert "404" in failed.value.message and "not found" in failed.value.message
    assert len(server.fake.requests) == 1


def test_a_silent_server_times_out() -> None:
    """A server that accepts the request and never answers fails the turn after read_timeout_s (llm_timeout,
    retryable): never a hung turn."""
    with serve_fake_openai(FakeOpenAI(silent=True)) as server:
        engine = _engine(server.base_url, read_timeout_s=0.5)
        with pytest.raises(ModelError) as failed:
            list(engine.stream(MESSAGES, threading.Event()))
        assert failed.value.code == "llm_timeout" and failed.value.retryable
        engine.close()


def test_stall_mid_stream_times_out() -> None:
    """A server that stops sending in the middle of a reply fails it after read_timeout_s."""
    with serve_fake_openai(FakeOpenAI(hold_after=2)) as server:
        engine = _engine(server.base_url, read_timeout_s=0.5)
        got: list[str] = []
        with pytest.raises(ModelError) as failed:
            got.extend(engine.stream(MESSAGES, threading.Event()))
        assert failed.value.code == "llm_timeout" and len(got) == 2
        engine.close()


def test_error_event_in_the_stream_fails_the_turn() -> None:
    """An error object sent as a stream event (servers report mid-generation failures that way) fails the turn
    with llm_error after the pieces already streamed, and is remembered for health."""
    with serve_fake_openai(FakeOpenAI(error_after=3)) as server:
        engine = _engine(server.base_url)
        got: list[str] = []
        with pytest.raises(ModelError) as failed:
            got.extend(engine.stream(MESSAGES, threading.Event()))
        assert failed.value.code == "llm_error" and len(got) == 3
        assert engine.last_error == "llm_error"
        engine.close()


def test_probe_and_warmup(server: Running) -> None:
    """probe() reports a reachable server (cached for a second); warmup asks for one token and succeeds."""
    engine = _engine(server.base_url)
    assert isinstance(engine, RemoteEngine)
    engine.warmup()
    assert server.fake.requests[-1]["max_tokens"] == 1
    assert engine.probe().reachable
    engine.close()


def test_warmup_tolerates_an_absent_server_unless_required() -> None:
    """At startup an unreachable server is only a warning (the replica is not ready until it answers);
    with require_at_startup it is a ModelLoadError. A wrong model name is always a ModelLoadError."""
    url = f"http://127.0.0.1:{dead_port()}/v1"
    _engine(url).warmup()
    with pytest.raises(ModelLoadError):
        _engine(url, require_at_startup=True).warmup()
    with serve_fake_openai() as server, pytest.raises(ModelLoadError, match="not found"):
        _engine(server.base_url, model="other").warmup()


def test_token_estimate_and_no_local_prefix_cache() -> None:
    """count_tokens is len/chars_per_token rounded up (a budget, documented as approximate); warm_prefix
    does nothing (the serving engine caches prefixes)."""
    engine = _engine("http://127.0.0.1:9/v1", chars_per_token=4.0)
    assert engine.count_tokens("") == 0 and engine.count_tokens("abcd") == 1 and engine.count_tokens("abcde") == 2
    assert engine.warm_prefix(MESSAGES) == 0


def test_options_are_validated_by_the_registry() -> None:
    """llm.backend openai validates its own keys: a misspelt key or a base_url without a scheme stops startup."""
    typo = LLMSettings.model_validate({"backend": "openai", "base_ur": "http://x/v1"})
    with pytest.raises(ConfigError, match="base_ur"):
        registry.LLM.loader(typo)
    with pytest.raises(ModelLoadError, match="http"):
        load(LLMSettings.model_validate({"backend": "openai", "base_url": "127.0.0.1:8080/v1"}))
