"""The operator's alert on a flagged turn (``safety.webhook_url``): a JSON POST with the session id, category
and level (the user's words only when ``safety.webhook_include_transcript``), sent in the background with
retries, so it never delays the reply. A receiver that is down costs nothing but a warning and a metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from backend.config import SafetySettings
from backend.core.metrics import Metrics
from backend.engines.protocols import SafetyVerdict

logger = logging.getLogger(__name__)
RETRY_BASE_S = 0.5  # waits 0.5 s, 1 s, 2 s ... between attempts


class SafetyAlerts:
    def __init__(self, settings: SafetySettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhook_url)

    def notify(self, session_id: str, turn_id: str, verdict: SafetyVerdict, text: str) -> asyncio.Task[bool] | None:
        """Send the alert of one flagged turn in the background; the task's result says whether it arrived."""
        if not self.settings.webhook_url:
            return None
        payload: dict[str, Any] = {
            "event": "safety.flagged",
            "session_id": session_id,
            "turn_id": turn_id,
            "category": verdict.category,
            "level": verdict.level,
            "at": time.time(),
        }
        if self.settings.webhook_include_transcript:
            payload["transcript"] = text
        task = asyncio.create_task(self._send(self.settings.webhook_url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, url: str, payload: dict[str, Any]) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s)
        attempts = self.settings.webhook_retries + 1
        for attempt in range(attempts):
            try:
                response = await self._client.post(url, json=payload)
                if response.status_code < 300:
                    self.metrics.safety_alerts.labels(outcome="sent").inc()
                    return True
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if attempt + 1 < attempts:
                await asyncio.sleep(RETRY_BASE_S * 2**attempt)
        logger.warning("safety alert could not be delivered", extra={"session_id": payload["session_id"],
                                                                     "reason": reason, "attempts": attempts})
        self.metrics.safety_alerts.labels(outcome="failed").inc()
        return False

    async def idle(self) -> None:
        """Wait for every alert sent so far (tests, shutdown)."""
        while tasks := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(tasks)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
