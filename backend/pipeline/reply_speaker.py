"""The reply half of a turn: LLM tokens -> sentence chunks -> speech, sent to the turn's output.

Streaming: each chunk is synthesized and sent as soon as the chunker releases it, so the first audio leaves
while the LLM is still generating. Sequential (the seed product's way, for comparison): the full reply, then
one synthesis of all of it, then send. Replies stop at three sentences.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field, replace

from backend.config import Settings
from backend.core.async_bridge import iterate_in_thread, run_blocking
from backend.engines.model_service import ModelService
from backend.engines.protocols import ChatMessage, GenerationOptions, VoiceStyle
from backend.mentor.openers import continue_after
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
            pausable = self.settings.pipeline.first_words_first and bool(getattr(self.models.llm, "pausable", False))
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
                    state.reply_text = continue_after(self.opener, "".join(parts))
                    await self.out.emit(ReplyTextDelta(turn.turn_id, piece))
                    for chunk in chunker.push(piece):
                        emitted.append(chunk)
                        speech_queue.put_nowait(_Chunk(chunk))
                        self.llm_scheduler.first_words_out(ticket)  # now due when its audio runs out
                        sentences += chunk.rstrip().endswith(SENTENCE_ENDS)
                    if sentences >= MAX_REPLY_SENTENCES:
                        stop.set()
                        break
                self.stages["llm_total"] = time.perf_counter() - start
                self._ticket = None
            capped = sentences >= MAX_REPLY_SENTENCES
            if not capped:
                for chunk in chunker.flush():
                    emitted.append(chunk)
                    speech_queue.put_nowait(_Chunk(chunk))
            speech_queue.put_nowait(_EndOfReply())
            # A reply cut at the sentence cap is exactly what will be spoken.
            reply = clean_for_speech(" ".join(emitted) if capped else continue_after(self.opener, "".join(parts)))
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
        state.reply_text = reply
        self.mark("response")
        await self.out.emit(ReplyTextDone(turn.turn_id, reply))
        if turn.speak and reply:
            queue: asyncio.Queue[_Chunk | _EndOfReply] = asyncio.Queue()
            queue.put_nowait(_Chunk(reply))
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
            if item.phrase and self.phrase_audio is not None:
                speech = await self.phrase_audio.speech(item.text, self.style)
            else:
                speech = await run_blocking(self.executors.tts, tts.synthesize, item.text, self.style)
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
