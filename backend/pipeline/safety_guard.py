"""The crisis protocol in a turn (docs/SAFETY.md): what the safety check decides for one user message, given
the session's safety mode.

- A flagged message is answered with the team's written reply for its category and level (no LLM words).
- After it the session is in safety mode: a person who says they are not safe (or are unsure) gets the protocol
  again, one who says they are safe gets a written acknowledgement and the mode ends, anything else gets the
  mentor's own reply followed by a written check-in.
- Flagged turns and the written answers to them are kept out of every prompt and out of memory.

The mode lives in the stored turns (``TurnRow.safety``), so it survives a restart; a stateless caller (chat
completions) sends its history, which is checked again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from backend.config import Settings, resolve_path
from backend.core.async_bridge import run_blocking
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.protocols import NOT_FLAGGED, SafetyCategory, SafetyLevel, SafetyVerdict
from backend.mentor.safety_protocol import Line, SafetyProtocol, says_safe
from backend.pipeline.safety_alerts import SafetyAlerts
from backend.pipeline.turn_types import Executors
from backend.store.records import HistoryTurn

logger = logging.getLogger(__name__)

Action = Literal["normal", "protocol", "safe_ack", "check_in"]


@dataclass(frozen=True)
class SafetyDecision:
    action: Action
    verdict: SafetyVerdict = NOT_FLAGGED
    mode: bool = False  # the session is in safety mode after this turn
    # A stateless caller's history with the safety records it would have had if stored (None: as given).
    history: list[HistoryTurn] | None = None

    def record(self) -> dict[str, Any] | None:
        """What is stored with the user turn (None for an ordinary turn outside safety mode)."""
        if self.action == "normal":
            return None
        return {**self.verdict.to_dict(), "mode": self.mode, "safe": self.action == "safe_ack"}

    def public(self) -> dict[str, Any]:
        """The ``safety`` object of every reply on every wire."""
        return {**self.verdict.to_dict(), "mode": self.mode}


@dataclass
class SafetyGuard:
    """Process-wide: the checker (an engine), the written replies, the operator alerts and the counts."""

    models: ModelService
    settings: Settings
    metrics: Metrics
    executors: Executors
    protocol: SafetyProtocol = field(init=False)
    alerts: SafetyAlerts = field(init=False)

    def __post_init__(self) -> None:
        safety = self.settings.safety
        self.protocol = SafetyProtocol.load(resolve_path(safety.resources_path), safety.locale)
        self.alerts = SafetyAlerts(safety, self.metrics)

    @property
    def enabled(self) -> bool:
        return self.settings.safety.enabled

    async def decide(self, text: str, history: list[HistoryTurn], stateless: bool) -> SafetyDecision:
        """The protocol's decision for one user message. A check that fails flags nothing (and is logged):
        the reply check still reads what the model says."""
        if not self.enabled:
            return SafetyDecision("normal")
        checker = self.models.safety
        marked: list[HistoryTurn] | None = None
        try:
            if stateless:
                marked = await run_blocking(self.executors.emotion, self.mark_history, history)
                history = marked
            verdict: SafetyVerdict = await run_blocking(self.executors.emotion, checker.check_message, text)
        except Exception:
            logger.error("safety check failed", exc_info=True)
            verdict = NOT_FLAGGED
        mode = safety_mode(history)
        if verdict.flagged:
            return SafetyDecision("protocol", verdict, mode=True, history=marked)
        if mode is None:
            return SafetyDecision("normal", history=marked)
        answer = says_safe(text)
        if answer is False:  # not safe, or unsure, after being asked: the protocol again, as urgent
            verdict = SafetyVerdict(True, mode[0], "urgent", "not_safe_answer")
            return SafetyDecision("protocol", verdict, mode=True, history=marked)
        if answer is True:
            return SafetyDecision("safe_ack", mode=False, history=marked)
        return SafetyDecision("check_in", mode=True, history=marked)

    def mark_history(self, history: list[HistoryTurn]) -> list[HistoryTurn]:
        """A stateless caller's history with the safety records it would have had if stored. Blocking."""
        marked: list[HistoryTurn] = []
        mode = False
        after_flag = False
        for turn in history:
            safety: dict[str, Any] | None = None
            if turn.role == "user":
                verdict = self.models.safety.check_message(turn.text)
                after_flag = verdict.flagged
                if verdict.flagged:
                    mode = True
                elif mode and says_safe(turn.text) is True:
                    mode = False
                if verdict.flagged or mode:
                    safety = {**verdict.to_dict(), "mode": mode}
            elif after_flag:  # the answer to a flagged message: the protocol's words, not the model's
                safety = {"written": True}
            marked.append(HistoryTurn(turn.role, turn.text, turn.emotion, safety))
        return marked

    def lines(self, decision: SafetyDecision, locale: str | None) -> list[Line]:
        """The written sentences a decision says (before the model's reply for none, after it for check_in)."""
        if decision.action == "protocol":
            assert decision.verdict.category is not None and decision.verdict.level is not None
            return self.protocol.reply(decision.verdict.category, decision.verdict.level, locale)
        if decision.action == "safe_ack":
            return self.protocol.safe_ack(locale)
        if decision.action == "check_in":
            return self.protocol.check_in(locale)
        return []

    def flagged(self, session_id: str, turn_id: str, verdict: SafetyVerdict, text: str) -> None:
        """Count, log (without the words) and alert the operator about one flagged turn."""
        self.metrics.safety_flags.labels(category=verdict.category, level=verdict.level).inc()
        logger.warning(
            "safety protocol answered a turn",
            extra={"session_id": session_id, "turn_id": turn_id, "category": verdict.category, "level": verdict.level},
        )
        self.alerts.notify(session_id, turn_id, verdict, text)

    def check_reply(self, text: str) -> str | None:
        """Why the model's reply so far must not be sent (None: it may). Counted when it stops one."""
        if not self.enabled:
            return None
        reason = self.models.safety.check_reply(text)
        if reason is not None:
            self.metrics.safety_replies_blocked.labels(reason=reason).inc()
            logger.warning("safety check stopped a model reply", extra={"reason": reason})
        return reason


    def holds(self, text: str) -> bool:
        """Whether the model's reply so far, cut mid-sentence, must wait for the rest of its sentence."""
        return self.enabled and self.models.safety.unfinished_risk(text)


def safety_mode(history: list[HistoryTurn]) -> tuple[SafetyCategory, SafetyLevel] | None:
    """The category and level the session is in safety mode for: its latest user turn with a record says
    whether it is in the mode, the latest flagged one what for."""
    users = [t.safety for t in history if t.role == "user" and t.safety is not None]
    if not users or not users[-1].get("mode"):
        return None
    for safety in reversed(users):
        if safety.get("flagged") and safety.get("category"):
            return safety["category"], safety.get("level") or "concern"
    return "suicide", "concern"  # flagged longer ago than the history reaches
