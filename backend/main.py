"""create_app(settings) and the lifespan that loads and warms every engine once.

Run it with ``python -m backend.main`` (the draining server of backend/server.py) or, as the seed product
documented, ``uvicorn backend.main:app`` (``--reload`` included). Either way the settings are read when the
server starts, not when this module is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api import (
    cancel,
    chat_completions,
    index,
    insights,
    memories,
    pages,
    personas,
    probes,
    realtime_ws,
    rest,
    text_chat,
    voice_ws,
)
from backend.api.auth import log_auth_mode
from backend.api.deps import AppServices
from backend.api.ws_size_limit import WebSocketSizeLimit
from backend.config import Settings, get_settings
from backend.core.exceptions import ClarityError
from backend.core.logging_setup import configure_logging
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.registry import validate_backends
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.protocol.v1 import ErrorEvent
from backend.server import build_server, run_server
from backend.store.async_store import AsyncSessionStore
from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionStore

logger = logging.getLogger(__name__)


def _error_body(code: str, message: str, retryable: bool = False) -> dict[str, object]:
    return {"error": ErrorEvent(code=code, message=message, retryable=retryable).model_dump()}


def open_store(settings: Settings) -> AsyncSessionStore:
    """The configured database, migrated to the current schema, behind its async facade."""
    engine = make_engine(settings.database.url)
    init_db(engine)
    return AsyncSessionStore(SessionStore(engine))


def create_app(
    settings: Settings | None = None,
    *,
    models: ModelService | None = None,
    store: AsyncSessionStore | None = None,
) -> FastAPI:
    """Build the app. Without ``settings`` they are read at startup (config file + environment). Pass
    ``models`` (e.g. fakes via ModelService.from_components) to skip real loading."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = settings or get_settings()
        app.state.settings = current
        configure_logging(current.server.log_level)
        validate_backends(current)
        log_auth_mode(current.auth)
        session_store = store if store is not None else await asyncio.to_thread(open_store, current)
        model_service = models or ModelService(current)
        if models is None and current.server.load_models:
            logger.info("loading models")
            await asyncio.to_thread(model_service.load_all)
        metrics = Metrics()
        shared = PipelineServices(model_service, session_store, current, metrics)
        pipeline = TurnPipeline(model_service, session_store, current, metrics, services=shared)
        if model_service.loaded:
            shared.warm_next_turn(None)  # the system prompt, before the first session's first turn
            if models is None:  # models given to create_app (tests, embedders) are not spent on warm-ups
                shared.warm_openers()  # the opening clauses' speech
                shared.warm_safety()  # the crisis protocol's sentences' speech
        app.state.services = AppServices(current, model_service, session_store, pipeline, metrics, shared)
        metrics.sessions.set_function(session_store.sync.count)
        logger.info("server ready", extra={"device": model_service.device, "mode": current.pipeline.mode})
        try:
            yield
        finally:
            await shared.safety.alerts.aclose()
            shared.close()
            if store is None:
                session_store.close()

    app = FastAPI(
        title="ClarityMentor",
        version="0.1.0",
        description="A real-time voice mentor: speech in, emotion-aware spoken answers out. Protocol v1.",
        lifespan=lifespan,
    )
    if settings is not None:
        app.state.settings = settings
    # The WebSocket message cap however the server is started (plain uvicorn too), not only by backend/server.py.
    app.add_middleware(WebSocketSizeLimit, max_bytes=lambda: app.state.settings.limits.ws_max_message_bytes)

    @app.exception_handler(ClarityError)
    async def clarity_error(_: Request, exc: ClarityError) -> JSONResponse:
        return JSONResponse(_error_body(exc.code, exc.message, exc.retryable), status_code=exc.http_status)

    app.add_exception_handler(StarletteHTTPException, rest.http_error_handler)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(_error_body("invalid_input", f"{where}: {first.get('msg')}"), status_code=422)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        services: AppServices = request.app.state.services
        return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    app.include_router(index.router)
    app.include_router(rest.router)
    app.include_router(text_chat.router)
    app.include_router(personas.router)
    app.include_router(memories.router)
    app.include_router(insights.router)
    app.include_router(cancel.router)
    app.include_router(probes.router)
    app.include_router(pages.router)
    app.include_router(voice_ws.router)
    app.include_router(realtime_ws.router)
    app.include_router(chat_completions.router)
    return app


app = create_app()  # for ``uvicorn backend.main:app``: settings are read by the lifespan, at startup


def main() -> None:
    settings = get_settings()
    configure_logging(settings.server.log_level)
    run_server(build_server(settings, create_app(settings)))


if __name__ == "__main__":
    main()
