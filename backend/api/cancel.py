"""POST /api/sessions/{id}/cancel: stop the generation running for a session, whichever wire started it."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import OwnerDep, ServicesDep
from backend.api.rest import AUTHED, error_responses
from backend.core.exceptions import ClarityError
from backend.protocol.rest import CancelPublic

router = APIRouter(prefix="/api")


class NothingToCancelError(ClarityError):
    code = "nothing_to_cancel"
    http_status = 409


@router.post("/sessions/{session_id}/cancel", responses=error_responses(*AUTHED, 404, 409))
async def cancel(session_id: str, services: ServicesDep, owner: OwnerDep) -> CancelPublic:
    """Stop the reply being generated for the session on any connection (REST, SSE, WebSocket), as a barge-in
    does: the reply is kept as far as it went, marked interrupted, and the client gets ``interrupted``. 409
    ``nothing_to_cancel`` when no reply is being generated for it (on this server)."""
    await services.store.get_session(session_id, owner)  # 404 for an unknown or another key's session
    if not await services.shared.running.cancel(session_id):
        raise NothingToCancelError("no reply is being generated for this session")
    return CancelPublic(session_id=session_id, cancelled=True)
