"""The generations running now, by session, whatever wire started them, so that one call stops them all.

``POST /api/sessions/{id}/cancel`` asks every entry of the session: a /ws/voice (or Realtime) conversation
interrupts its reply as a barge-in does; a REST or SSE text turn cancels its task, storing the reply as far as
it went. Entries live on the replica that serves the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Canceller = Callable[[], Awaitable[bool]]  # stops the running generation; True if one was running


class RunningTurns:
    def __init__(self) -> None:
        self._by_session: dict[str, dict[object, Canceller]] = {}

    def add(self, session_id: str, key: object, cancel: Canceller) -> None:
        """Register ``cancel`` for ``session_id`` under ``key`` (a conversation, a turn id)."""
        self._by_session.setdefault(session_id, {})[key] = cancel

    def remove(self, session_id: str, key: object) -> None:
        entries = self._by_session.get(session_id)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._by_session[session_id]

    async def cancel(self, session_id: str) -> bool:
        """Stop every generation running for ``session_id``; True if at least one was running."""
        cancellers = list(self._by_session.get(session_id, {}).values())
        results = await asyncio.gather(*(cancel() for cancel in cancellers))
        return any(results)
