"""A conversation's persona: set_persona (the hook for wires with free-text instructions) and the stored choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.engines.protocols import GenerationOptions
from backend.mentor.personas import UnknownPersonaError
from backend.pipeline import events
from backend.pipeline.conversation import Conversation
from backend.pipeline.output_queue import OutputQueue
from backend.pipeline.session_binding import SessionContext, new_id
from tests.pipeline.recording import pipeline_harness, run_async

pytestmark = pytest.mark.fast


async def _until_turn_done(out: OutputQueue) -> None:
    while not isinstance(await out.get(), events.TurnDone):
        pass


def test_set_persona_switches_the_prompt_and_is_stored(tmp_path: Path) -> None:
    """set_persona (as a Realtime session.update whose instructions name a persona would call it, after
    personas.from_instructions) gives the next turn that persona's prompt and stores it with the session; an
    unknown id is refused and changes nothing; None goes back to the default."""
    with pipeline_harness(tmp_path) as h:
        catalog = h.pipeline.services.personas

        async def scenario() -> None:
            out = OutputQueue(256)
            session = SessionContext(new_id())
            conversation = Conversation(
                pipeline=h.pipeline,
                store=h.store,
                settings=h.settings,
                out=out,
                session=session,
                output_sample_rate=16000,
            )
            conversation.start()
            try:
                persona = catalog.from_instructions("You are a mentor. persona: career-mentor")
                assert persona is not None
                await conversation.set_persona(persona.id)
                with pytest.raises(UnknownPersonaError):
                    await conversation.set_persona("pirate")
                await conversation.add_text("hi")
                await _until_turn_done(out)
                assert h.fakes.llm.prompts[-1][0].content == catalog.get("career-mentor").system_prompt
                assert h.fakes.llm.options[-1] == catalog.get("career-mentor").generation  # its penalty scope
                assert (await h.store.get_session(session.session_id)).persona == "career-mentor"
                await conversation.set_persona(None)
                assert (await h.store.get_session(session.session_id)).persona is None
                await conversation.add_text("and now?")
                await _until_turn_done(out)
                default_prompt = catalog.default.prompt(h.pipeline.services.mentor_prompt).system_prompt
                assert h.fakes.llm.prompts[-1][0].content == default_prompt
                assert h.fakes.llm.options[-1] == GenerationOptions()  # the engine's own scope
            finally:
                await conversation.close()

        run_async(scenario())
