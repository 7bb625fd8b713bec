"""GET /api/sessions/{id}/insights: the session's emotional arc, topics and running summary."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import OwnerDep, ServicesDep
from backend.api.rest import AUTHED, error_responses
from backend.mentor.insights import emotional_arc
from backend.protocol.rest import ArcPointPublic, ArcPublic, InsightsPublic, TopicPublic

router = APIRouter(prefix="/api")


@router.get("/sessions/{session_id}/insights", responses=error_responses(*AUTHED, 404))
async def insights(session_id: str, services: ServicesDep, owner: OwnerDep) -> InsightsPublic:
    """The emotion and confidence of every user turn with the mood's trend, the topics talked about, and a short
    summary updated after each turn from the previous summary and the new turns (``updating`` while that runs)."""
    turns = await services.store.history(session_id, owner=owner)  # 404 for an unknown or another key's session
    state = await services.store.insights(session_id)
    users = [t for t in turns if t.role == "user"]
    flags = {t.id: t.safety for t in users if t.safety and t.safety.get("flagged")}
    arc = emotional_arc([(t.id, t.emotion, t.created_at) for t in users], flags)
    topics = sorted(state.topics.items(), key=lambda kv: (-kv[1], kv[0]))
    return InsightsPublic(
        session_id=session_id,
        arc=ArcPublic(
            points=[ArcPointPublic(**vars(p)) for p in arc.points],
            trend=arc.trend,
            slope=arc.slope,
        ),
        topics=[TopicPublic(topic=t, turns=n) for t, n in topics],
        summary=state.summary,
        summary_points=[str(p["text"]) for p in state.points],
        summary_updates=state.updates,
        summarized_through_turn_id=state.through_turn_id,
        updating=services.shared.follow_ups.updating(session_id),
        updated_at=state.updated_at,
    )
