"""Prompt prefix KV cache: a new prompt that starts like a recent one (the system prompt, the earlier turns of
the same conversation) only pays prefill for the tokens that are new.

Two generations never share one cache object: without ``copy`` an entry is taken out while a generation extends
it and put back afterwards; with ``copy`` (the transformers engine) a generation gets a copy of the entry's
shared start and the entry stays, so eight new sessions at once all start from the cached system prompt (a copy
of ~200 positions costs a few milliseconds; prefilling them ~0.4 s). Memory per entry is about 46 KiB per token
for SmolLM2-135M (30 layers, 3 KV heads of 64).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Entry:
    ids: list[int]
    cache: Any  # transformers DynamicCache holding exactly len(ids) positions


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    def __init__(
        self, max_entries: int = 4, min_tokens: int = 16, copy: Callable[[Any, int], Any] | None = None
    ) -> None:
        self.max_entries = max_entries
        self.min_tokens = min_tokens
        self.copy = copy  # copy(cache, n): a new cache of its first n positions
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, ids: list[int]) -> tuple[Any | None, int]:
        """The cache with the longest common prefix with ``ids``, cropped to it and removed from the store.

        At least one token of ``ids`` is always left to compute. Returns (None, 0) when nothing useful matches.
        """
        if self.max_entries <= 0:
            return None, 0
        with self._lock:
            best, best_len = None, 0
            for entry in self._entries:
                shared = min(common_prefix(entry.ids, ids), len(ids) - 1)
                if shared > best_len:
                    best, best_len = entry, shared
            if best is None or best_len < self.min_tokens:
                return None, 0
            self._entries.remove(best)
            if self.copy is not None:  # kept, as the most recent
                self._entries.append(best)
        if self.copy is not None:
            return self.copy(best.cache, best_len), best_len
        extra = len(best.ids) - best_len
        if extra > 0:
            best.cache.crop(-extra)
        return best.cache, best_len

    def put(self, ids: list[int], cache: Any) -> None:
        """Keep ``cache`` (holding the positions of ``ids``) for later prompts; the oldest entry goes first."""
        if self.max_entries <= 0 or len(ids) < self.min_tokens:
            return
        with self._lock:
            if self.copy is not None:  # an entry this one extends (or repeats) is no longer needed
                self._entries = [e for e in self._entries if not _starts(ids, e.ids)]
            self._entries.append(_Entry(list(ids), cache))
            del self._entries[: -self.max_entries]


def _starts(ids: list[int], start: list[int]) -> bool:
    return len(start) <= len(ids) and ids[: len(start)] == start
