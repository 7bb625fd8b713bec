"""A connection's session and its storage: which session its turns belong to, created in the store on the first
turn that needs it, switched by ``session.start``, its persona and crisis locale kept with it, and registered
with the running turns (POST /api/sessions/{id}/cancel) under its id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from backend.core.exceptions import InvalidInputError, SessionNotFoundError
from backend.pipeline.events import SessionReady
from backend.pipeline.running_turns import Canceller
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_types import TurnInput
from backend.store.async_store import AsyncSessionStore
from backend.store.memories import memory_scope
from backend.store.sessions import SessionExistsError, SessionRecord


def new_id() -> str:
    return uuid.uuid4().hex[:16]


async def open_session(
    store: AsyncSessionStore,
    session_id: str,
    owner: str | None,
    *,
    persona: str | None = None,
    user_id: str | None = None,
) -> tuple[SessionRecord, bool]:
    """The caller's session ``session_id`` and whether it was created now: an unknown id creates that session
    (custom ids: any wire may name a new session). Another owner's id answers SessionNotFoundError, exactly as
    an unknown id did before custom ids (its existence stays private)."""
    try:
        return await store.get_session(session_id, owner), False
    except SessionNotFoundError:
        pass
    try:
        record = await store.create_session(
            owner=owner, session_id=session_id, persona=persona, user_id=user_id, exist_ok=False
        )
        return record, True
    except SessionExistsError:  # created by a racing call of the same owner a moment ago
        return await store.get_session(session_id, owner), False
    except InvalidInputError as exc:
        if exc.code == "session_id_unavailable":
            raise SessionNotFoundError("session not found") from None
        raise


@dataclass
class SessionContext:
    session_id: str
    owner: str | None = None
    persisted: bool = False
    resumed: bool = False
    persona: str | None = None  # None: the default persona
    user_id: str | None = None  # the app's own user (memory across sessions; without one, memory stays in the session)
    safety_locale: str | None = None  # whose crisis numbers (None: safety.locale)

    @property
    def memory_scope(self) -> str:
        return memory_scope(self.owner, self.user_id, self.session_id)


class SessionBinding:
    """``key`` and ``interrupt``: how the connection is listed with the running turns of its session."""

    def __init__(
        self, services: PipelineServices, session: SessionContext, *, key: object, interrupt: Canceller
    ) -> None:
        self.services = services
        self.store = services.store
        self.session = session
        self._key, self._interrupt = key, interrupt

    def register(self) -> None:
        self.services.running.add(self.session.session_id, self._key, self._interrupt)

    def unregister(self) -> None:
        self.services.running.remove(self.session.session_id, self._key)

    async def ensure_persisted(self) -> None:
        if not self.session.persisted:
            session = self.session
            await self.store.create_session(
                owner=session.owner,
                session_id=session.session_id,
                persona=session.persona,
                user_id=session.user_id,
                safety_locale=session.safety_locale,
            )
            self.session.persisted = True

    def stamp(self, turn: TurnInput) -> TurnInput:
        """The session's persona and memory scope on a turn about to run."""
        turn.persona, turn.memory_scope = self.session.persona, self.session.memory_scope
        turn.safety_locale = self.session.safety_locale
        return turn

    async def switch(self, session_id: str, *, persona: str | None, user_id: str | None) -> None:
        """Resume ``session_id`` (an unknown id creates that session), listed under its id from now on."""
        record, created = await open_session(
            self.store, session_id, self.session.owner, persona=persona, user_id=user_id
        )
        self.unregister()
        self.session = SessionContext(
            session_id,
            self.session.owner,
            persisted=True,
            resumed=not created,
            persona=record.persona,
            user_id=record.user_id,
            safety_locale=record.safety_locale,
        )
        self.register()

    async def start(
        self,
        session_id: str | None,
        *,
        persona: str | None,
        user_id: str | None,
        safety_locale: str | None,
        busy: bool,
    ) -> None:
        """``session.start``: resume or create ``session_id`` (not while ``busy`` with a turn), name the user of
        a session not yet stored, switch its persona and crisis locale (stored with it)."""
        if session_id is not None and session_id != self.session.session_id:
            if busy:
                raise InvalidInputError("cannot switch sessions during a turn", code="session_busy")
            await self.switch(session_id, persona=persona, user_id=user_id)
        elif user_id is not None and not self.session.persisted:
            self.session.user_id = user_id
        if persona is not None:
            await self.set_persona(persona)
        if safety_locale is not None:
            await self.set_safety_locale(safety_locale)

    def ready(
        self, input_sample_rate: int, output_sample_rate: int, mode: Literal["streaming", "sequential"]
    ) -> SessionReady:
        """The SessionReady event that answers ``session.start`` (and opens a connection)."""
        return SessionReady(
            session_id=self.session.session_id,
            resumed=self.session.resumed,
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            mode=mode,
            persona=self.services.personas.get(self.session.persona).id,
        )

    async def set_persona(self, persona: str | None) -> None:
        """``persona`` (checked) from the next turn on, stored with the session."""
        self.services.personas.check(persona)
        if persona == self.session.persona:
            return
        self.session.persona = persona
        if self.session.persisted:
            await self.store.set_persona(self.session.session_id, persona)

    async def set_safety_locale(self, safety_locale: str) -> None:
        if safety_locale != self.session.safety_locale:
            self.session.safety_locale = safety_locale
            if self.session.persisted:
                await self.store.set_safety_locale(self.session.session_id, safety_locale)
