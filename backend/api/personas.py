"""GET /api/personas: the mentors a session can have (config/personas/), and the default one."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import ServicesDep
from backend.protocol.rest import PersonaPublic, PersonasPublic, PersonaVoicePublic

router = APIRouter(prefix="/api")


@router.get("/personas")
async def list_personas(services: ServicesDep) -> PersonasPublic:
    """Every persona with its name, title, description and voice; pass its ``id`` as ``persona`` (REST) or
    ``mentor`` (session.start). Open without a key, like the page that shows them."""
    catalog = services.shared.personas
    return PersonasPublic(
        default=catalog.default_id,
        personas=[
            PersonaPublic(
                id=p.id,
                name=p.name,
                title=p.title,
                description=p.description,
                voice=PersonaVoicePublic(voice=p.voice.voice, rate=p.voice.rate, pitch=p.voice.pitch),
            )
            for p in catalog
        ],
    )
