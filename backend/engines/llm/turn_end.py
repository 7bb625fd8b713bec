"""What the turn-end reading of every LLM engine shares (``end_of_turn_probability``): the words it reads, the chat
template's text before them, and the tokens that would end the message or its sentence there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.engines.protocols import ChatMessage

_SENTINEL = "\u2063"  # marks where the user's words go in the chat template
_TRAILING_MARKS = ".?!,;:\u2026- "  # punctuation STT may put at the end: the model judges the words alone


def words_to_read(text: str) -> str:
    """``text`` without the final punctuation speech-to-text may have added ("" when nothing is left)."""
    return text.strip().rstrip(_TRAILING_MARKS).strip()


def user_message_start(render: Callable[[list[ChatMessage]], str]) -> str:
    """The chat template's text before a first user message's words; ``render`` applies the template without a
    generation prompt."""
    return render([ChatMessage("user", _SENTINEL)]).split(_SENTINEL)[0]


def turn_end_ids(tokenizer: Any) -> list[int]:
    """Tokens that end a message or its sentence: the end of message, and . ? ! (alone or after a space)."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>"):
        found = tokenizer.convert_tokens_to_ids(token)
        if isinstance(found, int) and found != tokenizer.unk_token_id:
            ids.add(found)
    for mark in (".", "?", "!", "..", "..."):
        for variant in (mark, " " + mark):
            encoded = tokenizer.encode(variant, add_special_tokens=False)
            if len(encoded) == 1:
                ids.add(encoded[0])
    return sorted(i for i in ids if isinstance(i, int))
