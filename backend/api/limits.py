"""Per-connection limits of /ws/voice: input byte rate, idle timeout, and the close codes the server chooses.

Every close the server decides on is preceded by an ``error`` event with a stable code, then a close frame:

| code              | close | reason                 | when                                                   |
|-------------------|-------|------------------------|--------------------------------------------------------|
| rate_limited      | 1008  | "rate limit exceeded"  | input above limits.max_bytes_per_s over rate_window_s  |
| idle_timeout      | 1001  | "idle timeout"         | no client message for a whole limits.idle_timeout_s    |
|                   |       |                        | without a turn running (InputGuard.receive)            |
| server_at_capacity| 1013  | "server at capacity"   | limits.max_connections already open                    |
| server_draining   | 1012  | "server restarting"    | a connection that arrives while the server drains      |
| (slow client)     | 1008  | "client not reading"   | a send missed limits.send_timeout_s (no event: it      |
|                   |       |                        | could not be delivered)                                |

A message over limits.ws_max_message_bytes is closed 1009 before it reaches a handler (ws_size_limit.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from starlette.types import Message
from starlette.websockets import WebSocket

from backend.config import LimitsSettings
from backend.core.exceptions import ClarityError

# WebSocket close codes (RFC 6455 section 7.4.1 and the IANA registry).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013


class ConnectionClosing(ClarityError):
    """The server ends this connection on purpose; ``close_code`` and ``close_reason`` go in the close frame."""

    close_code = CLOSE_POLICY
    close_reason = "policy violation"


class RateLimitedError(ConnectionClosing):
    code = "rate_limited"
    http_status = 429
    close_code = CLOSE_POLICY
    close_reason = "rate limit exceeded"


class IdleTimeoutError(ConnectionClosing):
    code = "idle_timeout"
    http_status = 408
    retryable = True
    close_code = CLOSE_GOING_AWAY
    close_reason = "idle timeout"


class AtCapacityError(ConnectionClosing):
    code = "server_at_capacity"
    http_status = 503
    retryable = True
    close_code = CLOSE_TRY_LATER
    close_reason = "server at capacity"


class DrainingError(ConnectionClosing):
    code = "server_draining"
    http_status = 503
    retryable = True
    close_code = CLOSE_RESTART
    close_reason = "server restarting"


class ByteRateLimiter:
    """Bytes received over a sliding window of ``window_s``; over ``max_bytes_per_s * window_s`` is too fast.

    A burst (a client catching up after a network hiccup) is fine while the window's total stays under the
    budget; only sustained input above the rate trips it. Memory: at most ``buckets`` counters.
    """

    def __init__(
        self,
        max_bytes_per_s: int,
        window_s: float,
        *,
        buckets: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = max_bytes_per_s * window_s
        self.window_s = window_s
        self._bucket_s = window_s / buckets
        self._clock = clock
        self._counts: deque[tuple[float, int]] = deque()  # (bucket start, bytes)
        self._total = 0

    @property
    def total(self) -> int:
        """Bytes counted in the current window."""
        self._expire(self._clock())
        return self._total

    def add(self, nbytes: int) -> bool:
        """Count ``nbytes`` received now; False once the window's total is over the budget."""
        now = self._clock()
        self._expire(now)
        start = now - now % self._bucket_s
        if self._counts and self._counts[-1][0] == start:
            self._counts[-1] = (start, self._counts[-1][1] + nbytes)
        else:
            self._counts.append((start, nbytes))
        self._total += nbytes
        return self._total <= self.budget

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._counts and self._counts[0][0] + self._bucket_s <= horizon:
            self._total -= self._counts.popleft()[1]


class InputGuard:
    """Receives client messages under the idle timeout and the byte-rate limit of one connection."""

    def __init__(self, limits: LimitsSettings, busy: Callable[[], bool], *, rate_scale: float = 1.0) -> None:
        """``rate_scale`` multiplies ``max_bytes_per_s`` for a wire whose audio takes more bytes per second
        (base64 PCM at 24 kHz: 2x), so the limit stays the same multiple of real time."""
        self._idle_s = limits.idle_timeout_s
        self._busy = busy
        self._rate = ByteRateLimiter(int(limits.max_bytes_per_s * rate_scale), limits.rate_window_s)

    async def receive(self, ws: WebSocket) -> Message:
        """The next message. Raises IdleTimeoutError after a whole ``idle_timeout_s`` without a message in which
        no turn ran: a period that a turn was running at its start re-arms, so a client is never closed sooner
        than that after its turn ends (keepalive pings never reach the app, so they do not count).
        RateLimitedError when too fast."""
        busy = self._busy()
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), self._idle_s)
                break
            except TimeoutError:
                was_busy, busy = busy, self._busy()
                if not (busy or was_busy):
                    raise IdleTimeoutError(f"no message for {self._idle_s:g} s; closing the idle connection") from None
        data = message.get("bytes") or message.get("text") or b""
        if not self._rate.add(len(data.encode() if isinstance(data, str) else data)):
            raise RateLimitedError(
                f"input faster than {self._rate.budget / self._rate.window_s:.0f} bytes/s "
                f"over {self._rate.window_s:g} s; real-time 16 kHz PCM16 is 32000 bytes/s"
            )
        return message
