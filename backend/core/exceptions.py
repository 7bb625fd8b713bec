"""One error base with stable codes, mapped to HTTP errors and WebSocket ``error`` events in one place."""

from __future__ import annotations


class ClarityError(Exception):
    """Base of every error the server reports to a client. ``code`` is stable; ``message`` is for humans."""

    code = "internal_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class InvalidInputError(ClarityError):
    code = "invalid_input"
    http_status = 422


class InvalidJSONError(InvalidInputError):
    code = "invalid_json"


class UnknownEventError(InvalidInputError):
    code = "unknown_event"


class InvalidAudioError(InvalidInputError):
    code = "invalid_audio"


class UnsupportedSampleRateError(InvalidInputError):
    code = "unsupported_sample_rate"


class SessionNotFoundError(ClarityError):
    code = "session_not_found"
    http_status = 404


class UnauthorizedError(ClarityError):
    code = "unauthorized"
    http_status = 401


class ForbiddenError(ClarityError):
    code = "forbidden"
    http_status = 403


class LimitExceededError(ClarityError):
    code = "limit_exceeded"
    http_status = 429
    retryable = True


class BusyError(ClarityError):
    code = "server_busy"
    http_status = 503
    retryable = True


class ModelLoadError(ClarityError):
    """A model failed to load at startup; the message names it."""

    code = "model_load_failed"
    http_status = 503


class ModelError(ClarityError):
    """A model call failed during a turn."""

    code = "model_error"
    http_status = 500
    retryable = True


class ConfigError(ClarityError):
    """A setting that cannot work (an unknown engine name, an unknown engine option): a startup error."""

    code = "config_error"
