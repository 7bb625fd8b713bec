"""create_app(settings) and the lifespan that loads and warms every model once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.api import pages, rest, websocket
from backend.api.auth import log_auth_mode
from backend.api.deps import AppServices
from backend.config import Settings, get_settings
from backend.core.exceptions import ClarityError
from backend.core.logging_setup import configure_logging
from backend.core.metrics import Metrics
from backend.models.response import ErrorEvent
from backend.services.db import init_db, make_engine
from backend.services.model_service import ModelService
from backend.services.session_service import SessionStore
from backend.services.turn_pipeline import TurnPipeline

logger = logging.getLogger(__name__)


def _error_body(code: str, message: str, retryable: bool = False) -> dict[str, object]:
    return {"error": ErrorEvent(code=code, message=message, retryable=retryable).model_dump()}


def create_app(
    settings: Settings | None = None,
    *,
    models: ModelService | None = None,
    store: SessionStore | None = None,
) -> FastAPI:
    """Build the app. Pass ``models`` (e.g. fakes via ModelService.from_components) to skip real loading."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.server.log_level)
        log_auth_mode(settings.auth)
        session_store = store
        if session_store is None:
            engine = make_engine(settings.database.url)
            init_db(engine)
            session_store = SessionStore(engine)
        model_service = models or ModelService(settings)
        if models is None and settings.server.load_models:
            logger.info("loading models")
            await asyncio.to_thread(model_service.load_all)
        metrics = Metrics()
        pipeline = TurnPipeline(model_service, session_store, settings, metrics)
        app.state.services = AppServices(settings, model_service, session_store, pipeline, metrics)
        metrics.sessions.set_function(session_store.count)
        logger.info("server ready", extra={"device": model_service.device, "mode": settings.pipeline.mode})
        try:
            yield
        finally:
            pipeline.close()
            if store is None:
                session_store.close()

    app = FastAPI(
        title="ClarityMentor",
        version="0.1.0",
        description="A real-time voice mentor: speech in, emotion-aware spoken answers out. Protocol v1.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    @app.exception_handler(ClarityError)
    async def clarity_error(_: Request, exc: ClarityError) -> JSONResponse:
        return JSONResponse(_error_body(exc.code, exc.message, exc.retryable), status_code=exc.http_status)

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

    app.include_router(rest.router)
    app.include_router(pages.router)
    app.include_router(websocket.router)
    return app


def main() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings.server.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        ws="websockets-sansio",
        ws_max_size=settings.limits.ws_max_message_bytes,
        ws_per_message_deflate=False,
        log_level=settings.server.log_level.lower(),
    )


if __name__ == "__main__":
    main()
