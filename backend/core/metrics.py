"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGES = ("stt", "emotion", "llm_first_token", "llm_total", "tts_first_chunk", "tts_total", "turn_total")


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
        self.turns = Counter("claritymentor_turns", "Turns completed", ["kind", "outcome"], registry=self.registry)
        self.interruptions = Counter(
            "claritymentor_interruptions", "Replies cut short by barge-in or cancel", registry=self.registry
        )
        self.errors = Counter("claritymentor_errors", "Errors reported to clients", ["code"], registry=self.registry)
        self.connections = Gauge("claritymentor_ws_connections", "Open /ws/voice connections", registry=self.registry)
        self.active_turns = Gauge("claritymentor_active_turns", "Turns being processed now", registry=self.registry)
        self.sessions = Gauge("claritymentor_sessions", "Sessions in the store", registry=self.registry)

    def observe_timings(self, stages: dict[str, float]) -> None:
        for stage, seconds in stages.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage=stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
