"""Streaming sentence chunker: LLM text pieces in, speakable chunks out as soon as a sentence ends.

The first chunk may also end at a clause boundary (, ; : or a dash) once it has enough words, or after
``first_chunk_max_words`` words when no boundary came, so the first audio of a reply starts early. A boundary
is only taken once the character after it has arrived, so feeding the text token by token gives exactly the
chunks of feeding it whole. Pure, not thread-safe (one per reply).
"""

from __future__ import annotations

from backend.mentor.speakable import clause_ends, clean_for_speech, sentence_ends, word_count


class SentenceChunker:
    def __init__(
        self, first_chunk_min_words: int = 4, max_chunk_chars: int = 220, first_chunk_max_words: int | None = None
    ) -> None:
        if max_chunk_chars < 20:
            raise ValueError("max_chunk_chars must be at least 20")
        self.first_chunk_min_words = first_chunk_min_words
        self.first_chunk_max_words = first_chunk_max_words
        self.max_chunk_chars = max_chunk_chars
        self._buffer = ""
        self._emitted = 0

    @property
    def pending(self) -> str:
        """Text received but not yet emitted."""
        return self._buffer

    def push(self, piece: str) -> list[str]:
        """Add a piece of streamed text; return the cleaned chunks that are complete now (maybe none)."""
        self._buffer += piece
        return self._drain()

    def flush(self) -> list[str]:
        """End of the stream: return whatever is left as chunks, and reset for the next reply."""
        chunks = self._drain()
        rest = clean_for_speech(self._buffer)
        if rest:
            chunks.append(rest)
        self._buffer = ""
        self._emitted = 0
        return chunks

    def _next_end(self, text: str) -> int | None:
        """Where the next chunk ends in ``text``, or None to wait for more text."""
        limit = self.max_chunk_chars
        candidates = [e for e in sentence_ends(text) if e <= limit and _balanced(text[:e])]
        if self._emitted == 0:
            candidates += [
                e
                for e in clause_ends(text)
                if e <= limit and _balanced(text[:e]) and word_count(text[:e]) >= self.first_chunk_min_words
            ]
            if self.first_chunk_max_words is not None:
                cut = _end_of_word(text, self.first_chunk_max_words)
                if cut is not None and cut <= limit and _balanced(text[:cut]):
                    candidates.append(cut)
        if candidates:
            return min(candidates)
        if len(text) > limit:  # no boundary in sight: cut at the last space before the limit
            cut = text.rfind(" ", 0, limit + 1)
            return cut if cut > 0 else limit
        return None

    def _drain(self) -> list[str]:
        chunks: list[str] = []
        while True:
            self._buffer = self._buffer.lstrip()
            end = self._next_end(self._buffer)
            if end is None:
                return chunks
            chunk = clean_for_speech(self._buffer[:end])
            self._buffer = self._buffer[end:]
            if chunk:
                chunks.append(chunk)
                self._emitted += 1


def _balanced(text: str) -> bool:
    """False inside an open *stage direction* (an odd number of single asterisks)."""
    return text.replace("**", "").count("*") % 2 == 0


def _end_of_word(text: str, n: int) -> int | None:
    """End of the ``n``-th word, once the word after it has begun (so the ``n``-th is complete); else None."""
    words, end = 0, 0
    in_word = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if in_word:
                words += 1
                in_word = False
                if words == n:
                    end = i
        elif not in_word:
            in_word = True
            if words >= n:
                return end
    return None
