"""Waiting for the turns' background follow-ups (memory, insights) of an app under Starlette's TestClient."""

from __future__ import annotations

import asyncio
from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.deps import AppServices


def services_of(client: TestClient) -> AppServices:
    app = cast(FastAPI, client.app)
    services: AppServices = app.state.services
    return services


def settle(client: TestClient) -> None:
    """Wait until every follow-up scheduled so far has finished (the event, not a sleep)."""
    portal = client.portal
    assert portal is not None, "use the TestClient as a context manager"
    portal.call(services_of(client).pipeline.follow_ups.idle)


def new_event(client: TestClient) -> asyncio.Event:
    """An asyncio.Event made on the app's event loop."""

    async def make() -> asyncio.Event:
        return asyncio.Event()

    portal = client.portal
    assert portal is not None
    return portal.call(make)


def set_event(client: TestClient, event: asyncio.Event) -> None:
    portal = client.portal
    assert portal is not None

    async def fire() -> None:
        event.set()

    portal.call(fire)
