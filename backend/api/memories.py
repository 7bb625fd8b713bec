"""/api/memories: what the mentor remembers of the caller (the API key, and ``user_id`` when the app has users).

Only the caller's own memories are ever listed or deleted: another key's memory answers 404
``memory_not_found``, exactly like one that does not exist. Deleting a session deletes what was learned in it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from backend.api.deps import OwnerDep, ServicesDep
from backend.api.rest import AUTHED, error_responses
from backend.protocol.rest import MemoriesDeletedPublic, MemoriesPublic, MemoryPublic
from backend.protocol.v1 import SESSION_ID_PATTERN
from backend.store.memories import memory_scope

router = APIRouter(prefix="/api")

UserIdQuery = Annotated[str | None, Query(pattern=SESSION_ID_PATTERN, description="the app's own user id")]


@router.get("/memories", responses=error_responses(*AUTHED))
async def list_memories(
    services: ServicesDep,
    owner: OwnerDep,
    user_id: UserIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MemoriesPublic:
    """The caller's memories, newest first: the events, people, worries and goals they mentioned."""
    records, total = await services.store.list_memories(memory_scope(owner, user_id), limit, offset)
    return MemoriesPublic(
        user_id=user_id,
        total=total,
        memories=[MemoryPublic.model_validate(r, from_attributes=True) for r in records],
    )


@router.delete("/memories/{memory_id}", status_code=204, responses=error_responses(*AUTHED, 404))
async def delete_memory(
    memory_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    services: ServicesDep,
    owner: OwnerDep,
    user_id: UserIdQuery = None,
) -> Response:
    """Forget one memory (404 ``memory_not_found`` if it is not the caller's)."""
    await services.store.delete_memory(memory_scope(owner, user_id), memory_id)
    return Response(status_code=204)


@router.delete("/memories", responses=error_responses(*AUTHED))
async def delete_memories(services: ServicesDep, owner: OwnerDep, user_id: UserIdQuery = None) -> MemoriesDeletedPublic:
    """Forget everything the mentor remembers of the caller."""
    return MemoriesDeletedPublic(deleted=await services.store.delete_memories(memory_scope(owner, user_id)))
