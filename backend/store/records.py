"""Plain records the store hands out: the history a prompt is built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class HistoryTurn:
    role: Literal["user", "assistant"]
    text: str
    emotion: str | None = None
    safety: dict[str, Any] | None = None  # the turn's safety record (store/schema.py TurnRow.safety)

    @property
    def flagged(self) -> bool:
        """A crisis turn, or the protocol's written answer to one: kept out of every prompt."""
        return bool(self.safety and (self.safety.get("flagged") or self.safety.get("written")))
