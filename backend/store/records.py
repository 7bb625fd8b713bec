"""Plain records the store hands out: the history a prompt is built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class HistoryTurn:
    role: Literal["user", "assistant"]
    text: str
    emotion: str | None = None
