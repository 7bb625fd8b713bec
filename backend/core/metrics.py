"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("stt", "emotion", "memory", "llm_first_token", "llm_total", "tts_first_chunk", "tts_total", "turn_total")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "claritymentor_stage_seconds",
            "Seconds spent in each pipeline stage of a turn",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.ttfa_seconds = Histogram(
            "claritymentor_time_to_first_audio_seconds",
            "Seconds from the end of the user's speech (or text received) to the first reply audio sent",
            ["mode"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.first_llm_audio_seconds = Histogram(
            "claritymentor_first_llm_audio_seconds",
            "Seconds from the end of the user's speech to the first audio of words the LLM wrote (after the "
            "opening clause when there is one; the same as the time to first audio when there is none)",
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.turn_end_readings = Counter(
            "claritymentor_turn_end_readings",
            "Turn-end model readings at a pause: complete (the end of speech comes sooner), unsure, error",
            ["outcome"],
            registry=self.registry,
        )
        self.turns = Counter("claritymentor_turns", "Turns completed", ["kind", "outcome"], registry=self.registry)
        self.interruptions = Counter(
            "claritymentor_interruptions", "Replies cut short by barge-in or cancel", registry=self.registry
        )
        self.errors = Counter("claritymentor_errors", "Errors reported to clients", ["code"], registry=self.registry)
        self.connections = Gauge("claritymentor_ws_connections", "Open /ws/voice connections", registry=self.registry)
        self.active_turns = Gauge("claritymentor_active_turns", "Turns being processed now", registry=self.registry)
        self.sessions = Gauge("claritymentor_sessions", "Sessions in the store", registry=self.registry)
        # Load, for autoscaling: turns waiting for a slot now, and how long they waited (turn slots:
        # limits.max_active_turns; llm slots: llm.max_concurrent). Sustained waits mean: add replicas.
        self.waiting_turns = Gauge(
            "claritymentor_waiting_turns", "Turns waiting for a slot now", ["queue"], registry=self.registry
        )
        self.queue_wait_seconds = Histogram(
            "claritymentor_queue_wait_seconds",
            "Seconds a turn waited for a free slot before running",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )

        # The crisis protocol (docs/SAFETY.md): flagged turns by category and level, replies the reply check
        # stopped, and operator alerts by outcome. No words, only counts.
        self.safety_flags = Counter(
            "claritymentor_safety_flags", "User turns flagged by the safety check", ["category", "level"],
            registry=self.registry,
        )
        self.safety_replies_blocked = Counter(
            "claritymentor_safety_replies_blocked", "Model replies stopped by the reply check before they were sent",
            ["reason"], registry=self.registry,
        )
        self.safety_alerts = Counter(
            "claritymentor_safety_alerts", "Operator webhook alerts by outcome (sent, failed)", ["outcome"],
            registry=self.registry,
        )
        self.paused_replies = Gauge(
            "claritymentor_paused_replies",
            "Replies paused mid-way while another reply gets the LLM (pipeline/llm_scheduler.py)",
            registry=self.registry,
        )
        self.llm_batch_size = Gauge(
            "claritymentor_llm_batch_size",
            "Replies the LLM decodes together now, one token each per step (engines that batch: transformers)",
            registry=self.registry,
        )

    def slots(self, queue: str, value: int) -> MeteredSemaphore:
        """A semaphore of ``value`` slots whose waiters are counted and timed as ``queue``."""
        return MeteredSemaphore(value, *self.queue(queue))

    def queue(self, queue: str) -> tuple[Gauge, Histogram]:
        """The gauge of waiters and the histogram of waits of ``queue``."""
        return self.waiting_turns.labels(queue=queue), self.queue_wait_seconds.labels(queue=queue)

    def observe_timings(self, stages: dict[str, float]) -> None:
        for stage, seconds in stages.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage=stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MeteredSemaphore(asyncio.Semaphore):
    """An asyncio.Semaphore that counts its waiters (a gauge) and times each wait (a histogram)."""

    def __init__(self, value: int, waiting: Gauge, waited: Histogram) -> None:
        super().__init__(value)
        self._waiting = waiting
        self._waited = waited

    async def acquire(self) -> Literal[True]:
        started = time.perf_counter()
        self._waiting.inc()
        try:
            return await super().acquire()
        finally:
            self._waiting.dec()
            self._waited.observe(time.perf_counter() - started)
