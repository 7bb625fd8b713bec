"""A session's running analysis (summary, its points, topics) and the turns not yet folded into it. Blocking."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from backend.core.exceptions import SessionNotFoundError
from backend.store.schema import InsightRow, SessionRow, TurnRow, utcnow


@dataclass(frozen=True)
class InsightState:
    summary: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)  # {"text", "kind", "turn_id"}
    topics: dict[str, int] = field(default_factory=dict)  # topic -> user turns that touched it
    through_turn_id: int = 0  # the newest turn folded in
    updates: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True)
class NewUserTurn:
    id: int
    text: str


class InsightStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def get(self, session_id: str) -> InsightState:
        """The stored state (an empty one before the first update)."""
        with self._sessions() as db:
            row = db.get(InsightRow, session_id)
            if row is None:
                return InsightState()
            return InsightState(
                row.summary, list(row.points), dict(row.topics), row.through_turn_id, row.updates, row.updated_at
            )

    def user_turns_after(self, session_id: str, turn_id: int) -> list[NewUserTurn]:
        """The session's user turns newer than ``turn_id``, oldest first (what an update folds in). Turns the
        crisis protocol answered are left out: their words never go into a summary."""
        stmt = (
            select(TurnRow.id, TurnRow.text, TurnRow.safety)
            .where(TurnRow.session_id == session_id, TurnRow.id > turn_id, TurnRow.role == "user")
            .order_by(TurnRow.id)
        )
        with self._sessions() as db:
            rows = db.execute(stmt).all()
        return [NewUserTurn(int(i), str(t)) for i, t, safety in rows if not (safety and safety.get("flagged"))]

    def put(self, session_id: str, state: InsightState) -> None:
        """Store the new state, unless a newer one was stored meanwhile. SessionNotFoundError if it is gone."""
        with self._sessions.begin() as db:
            if db.get(SessionRow, session_id) is None:
                raise SessionNotFoundError("session not found")
            row = db.get(InsightRow, session_id, with_for_update=True)
            if row is not None and row.through_turn_id > state.through_turn_id:
                return
            values = {
                "summary": state.summary,
                "points": state.points,
                "topics": state.topics,
                "through_turn_id": state.through_turn_id,
                "updates": state.updates,
                "updated_at": utcnow(),
            }
            if row is None:
                db.add(InsightRow(session_id=session_id, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
