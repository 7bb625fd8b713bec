"""API-key auth for REST and WebSocket, short-lived signed tokens, and the WebSocket Origin allowlist.

Off when no keys are configured (local use; a loud warning at startup). With keys, every /api route and
/ws/voice needs one: header ``X-API-Key`` (or ``Authorization: Bearer``), or for browsers, which cannot set
headers on a WebSocket, the ``api_key`` query parameter. A session belongs to the key that made it: the owner
stored with it is a fingerprint of the key, never the key itself.

Tokens: ``POST /api/tokens`` (API key required) returns an HS256 JWT with ``sub`` = the key's owner fingerprint,
``iat``, ``exp`` = now + ``auth.jwt_ttl_s`` and ``aud`` = "claritymentor". It is accepted wherever a key is
(``?token=`` or ``Authorization: Bearer``) and acts as that owner, so a page never has to hold the long-lived key.
The HMAC key is SHA-256 of ``auth.jwt_secret``; with no secret configured it is random per process (tokens die
with the process and do not cross workers). A token whose owner's key was removed from the config is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from backend.config import AuthSettings, resolve_path
from backend.core.exceptions import ForbiddenError, UnauthorizedError

logger = logging.getLogger(__name__)

TOKEN_AUDIENCE = "claritymentor"
TOKEN_ALGORITHM = "HS256"
ANONYMOUS_OWNER = "anonymous"  # the ``sub`` of tokens issued while auth is off; never matches a key
_PROCESS_SECRET = os.urandom(32)  # signs tokens when no auth.jwt_secret is configured
clock: Callable[[], float] = time.time  # token issue and expiry time; tests may replace it


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


def _matching_key(key: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key (no early exit), so the timing does not tell which prefix matched.
    found = False
    for k in keys:
        found |= hmac.compare_digest(key.encode(), k.encode())
    return found


def authenticate_key(conn: HTTPConnection, settings: AuthSettings) -> str | None:
    """Like ``authenticate`` but only an API key will do (no token): for minting tokens."""
    keys = configured_keys(settings)
    if not keys:
        return None
    key = presented_key(conn)
    if key is None:
        raise UnauthorizedError("an API key is required (X-API-Key header or api_key query parameter)")
    if not _matching_key(key, keys):
        raise UnauthorizedError("the API key is not valid")
    return fingerprint(key)


def authenticate(conn: HTTPConnection, settings: AuthSettings) -> str | None:
    """The owner fingerprint of the caller, None when auth is off; raises UnauthorizedError otherwise.
    Accepts an API key (header, Bearer, ``api_key``) or a token from ``issue_token`` (Bearer or ``token``)."""
    keys = configured_keys(settings)
    if not keys:
        return None
    token = conn.query_params.get("token")
    if token:
        return _owner_of_token(token.strip(), settings, keys)
    key = presented_key(conn)
    if key is None:
        raise UnauthorizedError("an API key or token is required (X-API-Key header, api_key or token parameter)")
    if _matching_key(key, keys):
        return fingerprint(key)
    if key.count(".") == 2:  # shaped like a JWT (header.payload.signature), sent as a Bearer token
        return _owner_of_token(key, settings, keys)
    raise UnauthorizedError("the API key is not valid")


# --- tokens ---------------------------------------------------------------------------------------------


def _signing_key(settings: AuthSettings) -> bytes:
    if not settings.jwt_secret:
        return _PROCESS_SECRET
    return hashlib.sha256(b"claritymentor-jwt:" + settings.jwt_secret.encode("utf-8")).digest()


def issue_token(owner: str | None, settings: AuthSettings) -> tuple[str, int]:
    """A signed token acting as ``owner`` (``anonymous`` when auth is off) and its expiry (Unix seconds)."""
    now = int(clock())
    expires = now + max(1, settings.jwt_ttl_s)
    claims: dict[str, Any] = {
        "sub": owner or ANONYMOUS_OWNER,
        "aud": TOKEN_AUDIENCE,
        "iat": now,
        "exp": expires,
    }
    return jwt.encode(claims, _signing_key(settings), algorithm=TOKEN_ALGORITHM), expires


def verify_token(token: str, settings: AuthSettings) -> dict[str, Any]:
    """The claims of a valid token; UnauthorizedError ``token_invalid`` or ``token_expired`` otherwise.
    Expiry is checked here against ``clock`` (PyJWT's own check reads the wall clock)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _signing_key(settings),
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["sub", "exp", "iat", "aud"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise UnauthorizedError("the token is not valid", code="token_invalid") from None
    exp, sub = claims.get("exp"), claims.get("sub")
    if not isinstance(exp, int | float) or not isinstance(sub, str):
        raise UnauthorizedError("the token is not valid", code="token_invalid")
    if clock() >= exp:
        raise UnauthorizedError("the token has expired; ask /api/tokens for a new one", code="token_expired")
    return claims


def _owner_of_token(token: str, settings: AuthSettings, keys: tuple[str, ...]) -> str:
    owner = str(verify_token(token, settings)["sub"])
    if owner not in {fingerprint(k) for k in keys}:  # the key behind it was revoked
        raise UnauthorizedError("the token is not valid", code="token_invalid")
    return owner


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


_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:api_key|token)=)[^&\s\"]*", re.IGNORECASE)
_REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_secrets(text: str) -> str:
    """``text`` with the values of ``api_key=`` and ``token=`` query parameters replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


class SecretQueryFilter(logging.Filter):
    """Keeps credentials passed as query parameters out of uvicorn's access and handshake log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secrets(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """Attach SecretQueryFilter to the uvicorn loggers that print request paths (idempotent)."""
    for name in _REDACTED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, SecretQueryFilter) for f in target.filters):
            target.addFilter(SecretQueryFilter())


def log_auth_mode(settings: AuthSettings) -> None:
    """Startup: say whether auth is on (a WARNING when off), and redact query credentials from uvicorn logs."""
    install_log_redaction()
    if auth_enabled(settings):
        logger.info("API key auth is on", extra={"keys": len(configured_keys(settings))})
        if settings.jwt_secret is not None and len(settings.jwt_secret) < 32:
            logger.warning("auth.jwt_secret is shorter than 32 characters: tokens are easier to forge")
        if not settings.jwt_secret:
            logger.info("no auth.jwt_secret: tokens are signed with a per-process random key")
    else:
        logger.warning(
            "API key auth is OFF: anyone who can reach this server can use it and read every session. "
            "Set CM_AUTH__API_KEYS='[\"...\"]' or auth.api_keys_file before exposing it beyond localhost."
        )
