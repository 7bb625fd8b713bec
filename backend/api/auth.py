"""API-key auth for REST and WebSocket, and the WebSocket Origin allowlist.

Off when no keys are configured (local use; a loud warning at startup). With keys, every /api route and
/ws/voice needs one: header ``X-API-Key`` (or ``Authorization: Bearer``), or for browsers, which cannot set
headers on a WebSocket, the ``api_key`` query parameter. A session belongs to the key that made it: the owner
stored with it is a fingerprint of the key, never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import lru_cache

from starlette.requests import HTTPConnection

from backend.config import AuthSettings, resolve_path
from backend.core.exceptions import ForbiddenError, UnauthorizedError

logger = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _keys_from_file(path: str, mtime: float) -> tuple[str, ...]:
    lines = resolve_path(path).read_text(encoding="utf-8").splitlines()
    return tuple(k.strip() for k in lines if k.strip() and not k.lstrip().startswith("#"))


def configured_keys(settings: AuthSettings) -> tuple[str, ...]:
    keys = list(settings.api_keys)
    if settings.api_keys_file is not None:
        path = resolve_path(settings.api_keys_file)
        keys.extend(_keys_from_file(str(path), path.stat().st_mtime))
    return tuple(keys)


def auth_enabled(settings: AuthSettings) -> bool:
    return bool(configured_keys(settings))


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def presented_key(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("x-api-key")
    if header:
        return header.strip()
    authorization = conn.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    query = conn.query_params.get("api_key")
    return query.strip() if query else None


def authenticate(conn: HTTPConnection, settings: AuthSettings) -> str | None:
    """The owner fingerprint of the caller, None when auth is off; raises UnauthorizedError otherwise."""
    keys = configured_keys(settings)
    if not keys:
        return None
    key = presented_key(conn)
    if key is None:
        raise UnauthorizedError("an API key is required (X-API-Key header or api_key query parameter)")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise UnauthorizedError("the API key is not valid")
    return fingerprint(key)


def check_origin(conn: HTTPConnection, settings: AuthSettings) -> None:
    """Cross-site WebSocket hijacking guard: with an allowlist, a browser Origin must be on it; with auth on and
    no allowlist, a browser Origin must match the Host it connects to. Non-browser clients send no Origin."""
    origin = conn.headers.get("origin")
    if origin is None:
        return
    allowed = settings.allowed_origins
    if allowed:
        if origin not in allowed and "*" not in allowed:
            raise ForbiddenError("this Origin is not allowed", code="origin_not_allowed")
        return
    if auth_enabled(settings):
        host = conn.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise ForbiddenError("cross-origin WebSocket connections are not allowed", code="origin_not_allowed")


def log_auth_mode(settings: AuthSettings) -> None:
    if auth_enabled(settings):
        logger.info("API key auth is on", extra={"keys": len(configured_keys(settings))})
    else:
        logger.warning(
            "API key auth is OFF: anyone who can reach this server can use it and read every session. "
            "Set CM_AUTH__API_KEYS='[\"...\"]' or auth.api_keys_file before exposing it beyond localhost."
        )
