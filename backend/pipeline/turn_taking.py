"""How a conversation takes turns, and what the listener actually heard of a reply.

``TurnTaking`` holds the options a wire may change per connection; /ws/voice uses the defaults (the VAD ends
turns, each turn is answered at once, speech interrupts the reply, replies are spoken). A wire whose client
commits the audio itself and asks for each reply (push-to-talk, an API client) turns detection and automatic
replies off; the held input then waits for ``Conversation.respond()``.

``PlaybackLedger`` remembers, for the last few replies, which text chunk each piece of sent audio spoke, so a
client that says "playback stopped at 2.3 s" can have the stored reply cut to the words it heard.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from backend.core.exceptions import InvalidInputError
from backend.pipeline.events import ReplyAudioChunk
from backend.pipeline.turn_types import TurnInput, TurnState


@dataclass(frozen=True)
class TurnTaking:
    detect_turns: bool = True  # the VAD ends turns; False: audio is only buffered until commit()
    respond: bool = True  # a finished turn is answered at once; False: it waits for respond()
    barge_in: bool = True  # speech during a reply interrupts it
    speak: bool = True  # replies are spoken; False: text only


def merge_held(held: list[TurnInput]) -> list[TurnInput]:
    """Held user input -> the turns to run: consecutive texts become one turn (joined by new lines), consecutive
    audio one turn (its audio joined); each turn keeps the id of its last part."""
    turns: list[TurnInput] = []
    for item in held:
        last = turns[-1] if turns else None
        if last is not None and last.text is not None and item.text is not None:
            turns[-1] = replace(item, text=f"{last.text}\n{item.text}")
        elif last is not None and last.audio is not None and item.audio is not None:
            duration = (last.duration_s or 0.0) + (item.duration_s or 0.0)
            turns[-1] = replace(item, audio=last.audio + item.audio, transcript=None, duration_s=duration)
        else:
            turns.append(item)
    return turns


@dataclass
class _Played:
    state: TurnState
    chunk_bytes: dict[int, int] = field(default_factory=dict)  # audio bytes sent per text chunk


class PlaybackLedger:
    """Audio sent per reply chunk, for the last ``keep`` replies (bounded memory)."""

    def __init__(self, keep: int = 16) -> None:
        self._keep = keep
        self._replies: OrderedDict[str, _Played] = OrderedDict()

    def record(self, state: TurnState, chunk: ReplyAudioChunk) -> None:
        played = self._replies.get(state.turn_id)
        if played is None:
            played = self._replies[state.turn_id] = _Played(state)
            while len(self._replies) > self._keep:
                self._replies.popitem(last=False)
        played.chunk_bytes[chunk.chunk_index] = played.chunk_bytes.get(chunk.chunk_index, 0) + len(chunk.pcm)

    def state(self, turn_id: str) -> TurnState | None:
        played = self._replies.get(turn_id)
        return played.state if played is not None else None

    def heard_text(self, turn_id: str, audio_end_s: float, sample_rate: int) -> str:
        """The words of the reply spoken in its first ``audio_end_s`` seconds of sent audio (a chunk cut midway
        keeps its words in proportion, rounded down). Raises InvalidInputError past the audio sent."""
        played = self._replies.get(turn_id)
        if played is None:
            raise InvalidInputError("no reply audio was sent for that item", code="item_not_found")
        total_s = sum(played.chunk_bytes.values()) / 2 / sample_rate
        if audio_end_s > total_s + 0.001:
            raise InvalidInputError(
                f"audio_end_ms {audio_end_s * 1000:.0f} is past the {total_s * 1000:.0f} ms of audio sent",
                code="invalid_audio_end",
            )
        words: list[str] = []
        elapsed = 0.0
        for index in sorted(played.chunk_bytes):
            if index >= len(played.state.chunks):
                break
            seconds = played.chunk_bytes[index] / 2 / sample_rate
            chunk_words = played.state.chunks[index].split()
            if elapsed + seconds <= audio_end_s + 0.001:
                words.extend(chunk_words)
            else:
                heard = max(0.0, audio_end_s - elapsed) / seconds if seconds else 0.0
                words.extend(chunk_words[: int(len(chunk_words) * heard)])
                break
            elapsed += seconds
        return " ".join(words)
