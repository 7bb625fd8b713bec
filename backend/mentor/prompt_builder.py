"""The one place the mentor's chat messages are built: shared by the server and scripts/training/train_lora.py.

Training and serving call the same ``build_messages`` so the prompt the LoRA adapter learns on is the prompt
it is served with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml

from backend.config import MentorSettings, resolve_path
from backend.engines.protocols import EMOTIONS, ChatMessage, EmotionResult
from backend.store.records import HistoryTurn

NEUTRAL = "neutral"
# How remembered facts from earlier sessions are introduced in the guidance message (backend/mentor/memory.py).
MEMORY_INTRO = "From earlier conversations you remember that the user said:"
# Tokens the chat template adds around each message (<|im_start|>role\n ... <|im_end|>\n).
MESSAGE_OVERHEAD_TOKENS = 5


@dataclass(frozen=True)
class MentorPrompt:
    system_prompt: str
    emotion_guidance: dict[str, str]


def load_mentor_prompt(settings: MentorSettings) -> MentorPrompt:
    """Read the system prompt and the per-emotion guidance from the config files. Blocking (disk)."""
    system_prompt = resolve_path(settings.system_prompt_path).read_text(encoding="utf-8").strip()
    raw = yaml.safe_load(resolve_path(settings.emotion_guidance_path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{settings.emotion_guidance_path}: expected a mapping of emotion -> guidance")
    guidance = {str(k).strip().lower(): " ".join(str(v).split()) for k, v in raw.items() if v}
    missing = [e for e in EMOTIONS if e not in guidance]
    if missing:
        raise ValueError(f"{settings.emotion_guidance_path}: no guidance for {', '.join(missing)}")
    return MentorPrompt(system_prompt=system_prompt, emotion_guidance=guidance)


def guidance_emotion(emotion: EmotionResult, min_confidence: float) -> str:
    """The emotion the reply is guided by: the detected one, or neutral when the detector is unsure (below
    ``emotion.min_confidence``). The server and the evaluations (scripts/common/reply_fit.py) both use this."""
    return emotion.label if emotion.confidence >= min_confidence else NEUTRAL


def guidance_for(prompt: MentorPrompt, emotion: str | None) -> str:
    """The guidance for ``emotion`` (unknown or None -> neutral)."""
    key = (emotion or NEUTRAL).strip().lower()
    return prompt.emotion_guidance.get(key) or prompt.emotion_guidance.get(NEUTRAL, "")


def guidance_text(prompt: MentorPrompt, emotion: str | None, memories: Sequence[str] = ()) -> str:
    """The system message before the user's turn: the emotion guidance, then what is remembered (if any)."""
    guidance = guidance_for(prompt, emotion)
    facts = [" ".join(m.split()) for m in memories if m.strip()]
    if not facts:
        return guidance
    quoted = " ".join(f'"{f}"' for f in facts)
    return f"{guidance} {MEMORY_INTRO} {quoted} Use it if it fits."


def _approx_tokens(text: str) -> int:
    """Rough token count when no tokenizer is given: about four characters per token."""
    return len(text) // 4 + 1


def _pairs(history: Sequence[HistoryTurn]) -> list[list[HistoryTurn]]:
    """Group turns into exchanges starting with a user turn, so trimming never leaves a stray reply first."""
    groups: list[list[HistoryTurn]] = []
    for turn in history:
        if not turn.text.strip():
            continue
        if turn.role == "user" or not groups:
            groups.append([turn])
        else:
            groups[-1].append(turn)
    return groups


def build_messages(
    prompt: MentorPrompt,
    history: Sequence[HistoryTurn],
    user_text: str,
    emotion: str | None,
    *,
    count_tokens: Callable[[str], int] | None = None,
    max_prompt_tokens: int = 1024,
    memories: Sequence[str] = (),
) -> list[ChatMessage]:
    """The system prompt, the newest history that fits the budget, the emotion guidance (with ``memories``,
    facts remembered from earlier sessions), then the user message.

    The guidance is a system message just before the new user turn, so everything before it (system prompt and
    history) is the same prefix from turn to turn and its KV cache is reused (llm prefix cache). Older exchanges
    are dropped first, whole (a user turn with the replies after it). The system, guidance and user messages are
    always kept, even if they alone exceed the budget. Pure and deterministic.
    """
    count = count_tokens or _approx_tokens

    def cost(text: str) -> int:
        return count(text) + MESSAGE_OVERHEAD_TOKENS

    system = ChatMessage("system", prompt.system_prompt)
    guidance = ChatMessage("system", guidance_text(prompt, emotion, memories))
    user = ChatMessage("user", user_text.strip())
    budget = max_prompt_tokens - cost(system.content) - cost(guidance.content) - cost(user.content)
    kept: list[list[HistoryTurn]] = []
    for group in reversed(_pairs(history)):
        group_cost = sum(cost(t.text.strip()) for t in group)
        if group_cost > budget:
            break
        budget -= group_cost
        kept.append(group)
    messages = [system]
    for group in reversed(kept):
        if group[0].role != "user":
            continue  # a reply without its question (only possible at the very start of the history)
        messages.extend(ChatMessage(t.role, t.text.strip()) for t in group)
    messages.extend((guidance, user))
    return messages


def next_prompt_prefix(
    prompt: MentorPrompt,
    history: Sequence[HistoryTurn],
    *,
    count_tokens: Callable[[str], int] | None = None,
    max_prompt_tokens: int = 1024,
) -> list[ChatMessage]:
    """The messages the next turn's prompt will start with (system prompt and the history that fits), known
    before the user speaks: everything ``build_messages`` puts before the guidance and the user message."""
    messages = build_messages(prompt, history, "", None, count_tokens=count_tokens, max_prompt_tokens=max_prompt_tokens)
    return messages[:-2]
