"""Small dependencies: routes get the app's services through these, so tests can build the app with fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from backend.api.auth import authenticate
from backend.config import Settings
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.store.async_store import AsyncSessionStore


@dataclass
class AppServices:
    settings: Settings
    models: ModelService
    store: AsyncSessionStore
    pipeline: TurnPipeline
    metrics: Metrics
    shared: PipelineServices  # what all turns share: personas, running turns, follow-ups, the crisis protocol
    connections: set[object] = field(default_factory=set)


def get_services(conn: HTTPConnection) -> AppServices:
    services: AppServices = conn.app.state.services
    return services


def get_owner(request: Request) -> str | None:
    """The owner of the request's sessions: the caller's API-key fingerprint, or None when auth is off."""
    return authenticate(request, get_services(request).settings.auth)


ServicesDep = Annotated[AppServices, Depends(get_services)]
OwnerDep = Annotated[str | None, Depends(get_owner)]
