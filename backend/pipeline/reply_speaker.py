"""The reply half of a turn: LLM tokens -> sentence chunks -> speech, sent to the turn's output.

Streaming: each chunk is synthesized and sent as soon as the chunker releases it, so the first audio leaves
while the LLM is still generating. Sequential (the seed product's way, for comparison): the full reply, then
one synthesis of all of it, then send. Replies stop at three sentences.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from backend.config import Settings
from backend.core.async_bridge import iterate_in_thread, run_blocking
from backend.engines.model_service import ModelService
from backend.engines.protocols import ChatMessage, GenerationOptions, Pausable, VoiceStyle
from backend.mentor.safety_protocol import Line
from backend.mentor.speakable import clean_for_speech
from backend.pipeline.events import (
    ReplyAudioChunk,
    ReplyAudioDone,
    ReplyAudioStarted,
    ReplyTextDelta,
    ReplyTextDone,
    StageStarted,
)
from backend.pipeline.llm_scheduler import LLMScheduler, Ticket
from backend.pipeline.phrase_audio import PhraseAudio
from backend.pipeline.sentence_chunker import SentenceChunker
from backend.pipeline.turn_types import Executors, TurnInput, TurnOutput, TurnState

MAX_REPLY_SENTENCES = 3
SENTENCE_ENDS = (".", "!", "?")


@dataclass(frozen=True)
class _Chunk:
    text: str
    phrase: bool = False  # the opening clause: its speech may be kept already (pipeline/phrase_audio.py)
    say: str | None = None  # what is spoken, when it differs from what is shown (written replies' numbers)


@dataclass(frozen=True)
class _EndOfReply:
    pass


@dataclass
class ReplySpeaker:
    turn: TurnInput
    out: TurnOutput
    state: TurnState
    messages: list[ChatMessage]
    style: VoiceStyle
    models: ModelService
    executors: Executors
    llm_scheduler: LLMScheduler
    settings: Settings
    stages: dict[str, float]
    options: GenerationOptions | None = None  # the persona's (pipeline/turn_pipeline.py)
    opener: str = ""  # the reply's opening clause (mentor/openers.py): spoken first, continued by the LLM
    phrase_audio: PhraseAudio | None = None  # the clauses' speech, synthesized once
    # The safety protocol (pipeline/safety_guard.py): the reply check, the written sentences said instead of a
    # reply it stops, and the written check-in that follows the model's reply in safety mode.
    check_reply: Callable[[str], str | None] | None = None
    holds: Callable[[str], bool] | None = None  # a fragment that must wait for the rest of its sentence
    blocked_lines: list[Line] = field(default_factory=list)
    closing: list[Line] = field(default_factory=list)
    blocked: str | None = field(default=None, init=False)  # why the reply check stopped the model's reply
    _held: str = field(default="", init=False)  # a fragment waiting for the rest of its sentence
    _ticket: Ticket | None = field(default=None, init=False)  # the generation's, while it runs
    _audio_s: float = field(default=0.0, init=False)  # seconds of reply audio sent so far

    def mark(self, name: str) -> None:
        self.turn.marks[name] = round(time.perf_counter() - self.turn.t0, 4)

    async def run(self) -> str:
        if self.settings.pipeline.mode == "streaming":
            return await self.streaming()
        return await self.sequential()

    async def streaming(self) -> str:
        turn, state = self.turn, self.state
        stop = threading.Event()
        chunker = SentenceChunker(
            first_chunk_min_words=self.settings.pipeline.first_chunk_min_words,
            first_chunk_max_words=self.settings.pipeline.first_chunk_max_words,
        )
        speech_queue: asyncio.Queue[_Chunk | _EndOfReply] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak(speech_queue)) if turn.speak else None
        parts: list[str] = []
        emitted: list[str] = []
        sentences = 0
        if self.opener:  # spoken now, before the LLM has its slot; the gate holds it until the end of speech
            emitted.append(self.opener)
            speech_queue.put_nowait(_Chunk(self.opener, phrase=True))
            state.reply_text = self.opener
            await self.out.emit(ReplyTextDelta(turn.turn_id, self.opener))
        try:
            pausable = self.settings.pipeline.first_words_first and isinstance(self.models.llm, Pausable)
            async with self.llm_scheduler.generation(stop, pausable=pausable) as ticket:
                self._ticket = ticket
                if self.opener:  # its first words are out already: due when the opener's audio runs out
                    self.llm_scheduler.first_words_out(ticket)
                    self.llm_scheduler.audio_sent(ticket, self._audio_s)
                options = replace(self.options or GenerationOptions(), gate=ticket, reply_prefix=self.opener)
                start = time.perf_counter()
                async for piece in iterate_in_thread(
                    self.executors.llm, lambda: self.models.llm.stream(self.messages, stop, options), stop
                ):
                    if not parts:
                        self.mark("first_token")
                        self.stages["llm_first_token"] = time.perf_counter() - start
                        if self.opener and not piece[:1].isspace():
                            piece = " " + piece
                    parts.append(piece)
                    # Text goes out a clause at a time, each read by the reply check first.
                    for chunk in chunker.push(piece):
                        if not await self._release(chunk, emitted, speech_queue):
                            break
                        self.llm_scheduler.first_words_out(ticket)  # now due when its audio runs out
                        sentences += chunk.rstrip().endswith(SENTENCE_ENDS)
                    if sentences >= MAX_REPLY_SENTENCES or self.blocked:
                        stop.set()
                        break
                self.stages["llm_total"] = time.perf_counter() - start
                self._ticket = None
            capped = sentences >= MAX_REPLY_SENTENCES
            if not capped and not self.blocked:
                rest = chunker.flush()
                if self._held and not rest:
                    rest = [""]
                for i, chunk in enumerate(rest):
                    if not await self._release(chunk, emitted, speech_queue, last=i == len(rest) - 1):
                        break
            elif self._held and not self.blocked:  # capped with a fragment held: it is said, once checked
                await self._release("", emitted, speech_queue, last=True)
            for line in self.blocked_lines if self.blocked else self.closing:
                await self._written_line(line, emitted, speech_queue)
            speech_queue.put_nowait(_EndOfReply())
            # What is said is exactly what was released (cut at the sentence cap, or where the check stopped it).
            reply = clean_for_speech(" ".join(emitted))
            state.reply_text = reply
            self.mark("response")
            await self.out.emit(ReplyTextDone(turn.turn_id, reply))
            if speaker is not None:
                await speaker
            return reply
        finally:
            stop.set()
            if speaker is not None and not speaker.done():
                speaker.cancel()

    async def _release(
        self, chunk: str, emitted: list[str], queue: asyncio.Queue[_Chunk | _EndOfReply], last: bool = False
    ) -> bool:
        """Send one clause of the model's reply, unless the reply check stops it (then nothing more of it). A
        fragment cut mid-sentence that ends where an unsafe sentence would go on waits for the next clause."""
        if self._held:
            chunk, self._held = f"{self._held} {chunk.lstrip()}".strip(), ""
        if (
            not last
            and self.holds is not None
            and not chunk.rstrip().endswith(SENTENCE_ENDS)
            and self.holds(" ".join([*emitted, chunk]))
        ):
            self._held = chunk
            return True
        if self.check_reply is not None:
            reason = self.check_reply(" ".join([*emitted, chunk]))
            if reason is not None:
                self.blocked = reason
                return False
        text = chunk if not emitted else " " + chunk.lstrip()
        emitted.append(chunk)
        queue.put_nowait(_Chunk(chunk))
        self.state.reply_text = " ".join(emitted)
        await self.out.emit(ReplyTextDelta(self.turn.turn_id, text))
        return True

    async def _written_line(self, line: Line, emitted: list[str], queue: asyncio.Queue[_Chunk | _EndOfReply]) -> None:
        text = line.text if not emitted else " " + line.text
        emitted.append(line.text)
        queue.put_nowait(_Chunk(line.text, phrase=True, say=line.say))
        self.state.reply_text = " ".join(emitted)
        await self.out.emit(ReplyTextDelta(self.turn.turn_id, text))

    async def written(self, lines: list[Line]) -> str:
        """Say the team's written sentences (the safety protocol), with no model at all: shown as written,
        spoken with their spoken forms, each sentence's speech kept once made."""
        queue: asyncio.Queue[_Chunk | _EndOfReply] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak(queue)) if self.turn.speak else None
        emitted: list[str] = []
        try:
            for line in lines:
                await self._written_line(line, emitted, queue)
            queue.put_nowait(_EndOfReply())
            reply = " ".join(emitted)
            self.state.reply_text = reply
            self.mark("first_token")
            self.mark("response")
            await self.out.emit(ReplyTextDone(self.turn.turn_id, reply))
            if speaker is not None:
                await speaker
            return reply
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()

    async def sequential(self) -> str:
        turn, state = self.turn, self.state
        stop = threading.Event()
        async with self.llm_scheduler.generation(stop, pausable=False):
            start = time.perf_counter()
            pieces = await run_blocking(
                self.executors.llm, lambda: list(self.models.llm.stream(self.messages, stop, self.options))
            )
            self.stages["llm_total"] = time.perf_counter() - start
        self.mark("first_token")
        chunker = SentenceChunker(first_chunk_min_words=10_000)
        sentences = [c for p in pieces for c in chunker.push(p)] + chunker.flush()
        reply = clean_for_speech(" ".join(sentences[:MAX_REPLY_SENTENCES]))
        if self.check_reply is not None and (reason := self.check_reply(reply)) is not None:
            self.blocked, reply = reason, ""
        said = self.blocked_lines if self.blocked else self.closing
        spoken = " ".join([reply, *(line.say for line in said)]).strip()
        reply = " ".join([reply, *(line.text for line in said)]).strip()
        state.reply_text = reply
        self.mark("response")
        await self.out.emit(ReplyTextDone(turn.turn_id, reply))
        if turn.speak and reply:
            queue: asyncio.Queue[_Chunk | _EndOfReply] = asyncio.Queue()
            queue.put_nowait(_Chunk(reply, say=spoken))
            queue.put_nowait(_EndOfReply())
            await self._speak(queue)
        return reply

    async def _speak(self, queue: asyncio.Queue[_Chunk | _EndOfReply]) -> None:
        """Synthesize queued chunks in order and send their audio between audio.start and audio.end."""
        turn, state, tts = self.turn, self.state, self.models.tts
        sent_bytes = 0
        tts_time = 0.0
        while True:
            item = await queue.get()
            if isinstance(item, _EndOfReply):
                break
            start = time.perf_counter()
            said = item.say or item.text
            if item.phrase and self.phrase_audio is not None:
                speech = await self.phrase_audio.speech(said, self.style)
            else:
                speech = await run_blocking(self.executors.tts, tts.synthesize, said, self.style)
            tts_time += time.perf_counter() - start
            if not speech.pcm:
                continue
            seconds = len(speech.pcm) / 2 / speech.sample_rate
            self._audio_s += seconds
            if self._ticket is not None:  # the reply is due again when this audio has played
                self.llm_scheduler.audio_sent(self._ticket, seconds)
            index = len(state.chunks)
            state.chunks.append(item.text)
            if sent_bytes == 0:
                self.stages["tts_first_chunk"] = tts_time
                await self.out.emit(StageStarted(turn.turn_id, "synthesizing"))
                await self.out.emit(ReplyAudioStarted(turn.turn_id, speech.sample_rate))
            step = max(2, int(speech.sample_rate * self.settings.pipeline.audio_chunk_ms / 1000) * 2)
            for offset in range(0, len(speech.pcm), step):
                if "first_audio" not in turn.marks:
                    self.mark("first_audio")
                if "first_llm_audio" not in turn.marks and (index > 0 or not self.opener):
                    self.mark("first_llm_audio")  # the first audio of words the LLM wrote
                await self.out.emit(ReplyAudioChunk(turn.turn_id, speech.pcm[offset : offset + step], index))
            sent_bytes += len(speech.pcm)
        self.stages["tts_total"] = tts_time
        if sent_bytes:
            self.mark("last_audio")
            await self.out.emit(
                ReplyAudioDone(turn.turn_id, bytes=sent_bytes, duration_s=round(sent_bytes / 2 / tts.sample_rate, 3))
            )
