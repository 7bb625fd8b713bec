"""/api/memories: what the mentor remembers of the caller (the API key, and ``user_id`` when the app has users).

Which memories: ``?user_id=`` the key's memories of that user (recalled in any of their sessions);
``?session_id=`` what that session recalls (its user's memories when it has a user id, else its own, learned in it);
neither: everything the key kept without a user id (every such session's own memories, listed together; with auth
off, every anonymous session's). Only the caller's own memories are ever listed or deleted: another key's memory
answers 404 ``memory_not_found``, exactly like one that does not exist, another key's session 404
``session_not_found``. Deleting a session deletes what was learned in it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from backend.api.deps import AppServices, OwnerDep, ServicesDep
from backend.api.rest import AUTHED, error_responses
from backend.protocol.rest import MemoriesDeletedPublic, MemoriesPublic, MemoryPublic
from backend.protocol.v1 import SESSION_ID_PATTERN
from backend.store.memories import memory_scope, sessions_scope

router = APIRouter(prefix="/api")

UserIdQuery = Annotated[str | None, Query(pattern=SESSION_ID_PATTERN, description="the app's own user id")]
SessionIdQuery = Annotated[
    str | None, Query(pattern=SESSION_ID_PATTERN, description="a session of the caller: what it recalls")
]


async def _scope(services: AppServices, owner: str | None, user_id: str | None, session_id: str | None) -> str:
    """The scope a request names (see the module's docstring); an unknown or another key's session is 404."""
    if session_id is not None:
        record = await services.store.get_session(session_id, owner)
        return memory_scope(owner, user_id or record.user_id, record.id)
    if user_id is not None:
        return memory_scope(owner, user_id, "")  # "-" is no user id: a scope of no session, empty
    return sessions_scope(owner)


@router.get("/memories", responses=error_responses(*AUTHED, 404))
async def list_memories(
    services: ServicesDep,
    owner: OwnerDep,
    user_id: UserIdQuery = None,
    session_id: SessionIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MemoriesPublic:
    """The caller's memories, newest first: the events, people, worries and goals they mentioned (``user_id``:
    that user's; ``session_id``: what that session recalls; neither: those kept without a user id)."""
    scope = await _scope(services, owner, user_id, session_id)
    records, total = await services.store.list_memories(scope, limit, offset)
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
    session_id: SessionIdQuery = None,
) -> Response:
    """Forget one memory (404 ``memory_not_found`` if it is not among those ``user_id``/``session_id`` name)."""
    await services.store.delete_memory(await _scope(services, owner, user_id, session_id), memory_id)
    return Response(status_code=204)


@router.delete("/memories", responses=error_responses(*AUTHED, 404))
async def delete_memories(
    services: ServicesDep, owner: OwnerDep, user_id: UserIdQuery = None, session_id: SessionIdQuery = None
) -> MemoriesDeletedPublic:
    """Forget everything the mentor remembers of the caller (as ``GET /api/memories`` names it)."""
    scope = await _scope(services, owner, user_id, session_id)
    return MemoriesDeletedPublic(deleted=await services.store.delete_memories(scope))
