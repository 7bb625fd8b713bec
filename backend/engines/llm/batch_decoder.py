"""Continuous batching for the transformers engine: every active reply advances by one token in one forward pass.

A 135M model on a CPU is bound by reading its weights, not by arithmetic: one decoding step for eight sequences
costs about twice a step for one (docs/PERFORMANCE.md). So one decoding thread owns the model's replies. A new
reply is prefilled alone (on the prompt cache it was given) at the next step boundary, then joins the batch; the
batch's KV cache holds every row left-padded to the longest, with an attention mask hiding the padding and each
row's own positions, so a row computes what it would alone. A reply that ends, is stopped or must pause (its
``GenerationOptions.gate``) leaves the batch with its own cache; a paused one joins again when its gate opens.

transformers' own continuous batching (``generate_batch``, paged attention) runs on a CPU too, but it has no
per-reply prompt cache of ours, no pause and one set of logits processors for all; measured on this machine,
eight 25-token replies took 5.7 s there against ~2.5 s here.

Greedy decoding gives each reply the tokens it gets alone (tests/engines/test_llm_batch_decoder.py): padded
positions weigh exactly zero in attention, and the rest is the same arithmetic on more rows.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from backend.engines.protocols import GenerationGate

logger = logging.getLogger(__name__)

_IDLE_POLL_S = 0.05  # a decoding thread with only paused replies re-reads their gates this often
_IDLE_EXIT_S = 2.0  # a decoding thread with nothing to do for this long ends


@dataclass
class Sampling:
    """How a reply's next token is chosen: greedy (temperature 0) or sampled; the repetition penalty counts the
    generated tokens, and the prompt's too when ``penalty_counts_prompt``."""

    max_new_tokens: int
    end_ids: frozenset[int]
    repetition_penalty: float = 1.0
    penalty_counts_prompt: bool = False
    temperature: float = 0.0
    top_p: float = 1.0


@dataclass
class _Reply:
    """One reply in the decoder: its own cache while outside the batch, its place in the batch while inside."""

    prompt: list[int]
    cache: Any  # DynamicCache of prompt[:reused], or None; the reply's own cache while outside the batch
    reused: int
    sampling: Sampling
    stop: threading.Event
    gate: GenerationGate | None
    closed: threading.Event = field(default_factory=threading.Event)  # its caller stopped listening
    out: queue.Queue[int | BaseException | None] = field(default_factory=queue.Queue)
    generated: list[int] = field(default_factory=list)
    length: int = 0  # positions in its cache (real tokens, no padding)
    pending: int = -1  # the token to feed next
    pad: int = 0  # left padding in the batch cache

    def stopped(self) -> bool:
        return self.stop.is_set() or self.closed.is_set()

    def penalty_ids(self) -> list[int]:
        return (self.prompt + self.generated) if self.sampling.penalty_counts_prompt else self.generated

    def finished(self) -> bool:
        s = self.sampling
        return bool(self.generated) and (self.generated[-1] in s.end_ids or len(self.generated) >= s.max_new_tokens)


class BatchDecoder:
    """One thread decoding up to ``max_batch`` replies together (module docstring).

    ``model_lock`` is held around every forward pass, so other users of the model (prefilling a prompt cache)
    run between two steps instead of slowing both. ``on_finished(ids, cache)`` receives a finished reply's
    tokens (prompt and reply but the last token) and its cache, for the prompt cache."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch: int,
        model_lock: threading.Lock,
        on_finished: Callable[[list[int], Any], None],
    ) -> None:
        self.model = model
        self.max_batch = max(1, max_batch)
        self.model_lock = model_lock
        self.on_finished = on_finished
        self._inbox: queue.Queue[_Reply] = queue.Queue()
        self._batch: list[_Reply] = []
        self._cache: Any = None  # the batch's DynamicCache, rows in ``_batch`` order
        self._parked: list[_Reply] = []  # paused: out of the batch with their own caches
        self._waiting: list[_Reply] = []  # admitted from the inbox, not yet prefilled (batch full)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closing = threading.Event()
        atexit.register(_close_at_exit, weakref.ref(self))
        self._ended = threading.Condition()  # notified whenever a reply ends
        self._submitted = 0
        self._ended_count = 0
        self.steps = 0
        self.last_batch_size = 0

    # --- the callers' side ---------------------------------------------------------------------------------

    def submit(
        self,
        prompt: list[int],
        cache: Any,
        reused: int,
        sampling: Sampling,
        stop: threading.Event,
        gate: GenerationGate | None = None,
    ) -> Generator[int, None, None]:
        """The reply's token ids as they are decoded (the end token included). Ends when the reply ends or ``stop``
        is set; a model error is raised here. ``cache`` holds ``prompt[:reused]`` (or is None)."""
        reply = _Reply(list(prompt), cache, reused, sampling, stop, gate)
        with self._ended:
            self._submitted += 1
        with self._start_lock:  # the thread ends when idle: start one, or hand the reply to the running one
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-batch", daemon=True)
                self._thread.start()
            self._inbox.put(reply)
        try:
            while True:
                try:
                    item = reply.out.get(timeout=_IDLE_POLL_S)
                except queue.Empty:
                    if reply.stop.is_set():
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reply.closed.set()  # the decoder drops it at the next step boundary

    @property
    def active(self) -> int:
        """Replies submitted and not yet ended: decoding, paused or waiting for a place."""
        with self._ended:
            return self._submitted - self._ended_count

    @property
    def decoding(self) -> int:
        """Replies in the batch now (``/metrics``: the batch size)."""
        return len(self._batch)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted reply has ended (True) or ``timeout`` passed (False)."""
        with self._ended:
            return self._ended.wait_for(lambda: self._submitted == self._ended_count, timeout)

    # --- the decoding thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        idle_since: float | None = None
        with torch.inference_mode():
            while True:
                try:
                    self._admit(block=not (self._batch or self._waiting))
                    self._drop_stopped()
                    self._park_and_resume()
                    if self._batch:
                        self._step()
                except Exception as exc:  # every reply in flight gets the error; the decoder goes on
                    logger.exception("batched decoding failed")
                    self._fail_all(exc)
                if self._closing.is_set():
                    self._fail_all(RuntimeError("the language model is shutting down"))
                    return
                if self._batch or self._parked or self._waiting:
                    idle_since = None
                    continue
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= _IDLE_EXIT_S:
                    with self._start_lock:  # nothing came meanwhile: end (the next reply starts a thread)
                        if self._inbox.empty():
                            self._thread = None
                            return

    def _admit(self, *, block: bool) -> None:
        """Take new replies from the inbox; prefill as many as there is room for and let them join the batch."""
        try:
            while True:
                self._waiting.append(self._inbox.get(timeout=_IDLE_POLL_S) if block else self._inbox.get_nowait())
                block = False
        except queue.Empty:
            pass
        while self._waiting and len(self._batch) < self.max_batch:
            reply = self._waiting.pop(0)
            if reply.stopped():
                self._end(reply)
                continue
            try:
                self._prefill(reply)
            except Exception as exc:
                reply.out.put(exc)
                self._count_end()
                continue
            if reply.finished() or reply.stopped():
                self._end(reply)
            else:
                self._join(reply)

    def _prefill(self, reply: _Reply) -> None:
        import torch
        from transformers import DynamicCache

        cache = reply.cache if reply.cache is not None else DynamicCache()
        todo = torch.tensor([reply.prompt[reply.reused :]], device=self.model.device)
        with self.model_lock:
            out = self.model(input_ids=todo, past_key_values=cache, use_cache=True, logits_to_keep=1)
        reply.cache, reply.length = cache, len(reply.prompt)
        self._emit(reply, self._choose(reply, out.logits[0, -1]))

    def _step(self) -> None:
        """One token for every reply in the batch."""
        import torch

        rows = self._batch
        width = self._cache.get_seq_length()
        tokens = torch.tensor([[r.pending] for r in rows], device=self.model.device)
        positions = torch.tensor([[r.length] for r in rows], device=self.model.device)
        mask = torch.ones((len(rows), width + 1), dtype=torch.long, device=self.model.device)
        for i, r in enumerate(rows):
            mask[i, : r.pad] = 0
        with self.model_lock:
            out = self.model(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=self._cache,
                use_cache=True,
            )
        self.steps += 1
        self.last_batch_size = len(rows)
        done: list[int] = []
        for i, r in enumerate(rows):
            r.length += 1
            self._emit(r, self._choose(r, out.logits[i, -1]))
            if r.finished():
                done.append(i)
        for i in reversed(done):
            self._end(self._leave(i))

    def _choose(self, reply: _Reply, logits: Any) -> int:
        import torch

        s = reply.sampling
        scores = logits.float().unsqueeze(0)
        seen = reply.penalty_ids()
        if s.repetition_penalty != 1.0 and seen:
            index = torch.tensor([seen], device=scores.device)
            picked = torch.gather(scores, 1, index)
            picked = torch.where(picked < 0, picked * s.repetition_penalty, picked / s.repetition_penalty)
            scores = scores.scatter(1, index, picked)
        if s.temperature <= 0:
            return int(scores.argmax(dim=-1))
        probs = torch.softmax(scores / s.temperature, dim=-1)[0]
        if s.top_p < 1.0:
            ordered, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(ordered, dim=0) - ordered < s.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(probs, 1))

    def _emit(self, reply: _Reply, token: int) -> None:
        reply.generated.append(token)
        reply.pending = token
        reply.out.put(token)

    # --- joining and leaving the batch -------------------------------------------------------------------------

    def _join(self, reply: _Reply) -> None:
        """Add a reply with its own cache as the batch's last row, padding whichever side is shorter."""
        import torch
        from transformers import DynamicCache

        own = reply.cache
        reply.cache = None
        if not self._batch:
            self._batch, self._cache, reply.pad = [reply], own, 0
            return
        width = self._cache.get_seq_length()
        extra = own.get_seq_length() - width
        if extra > 0:  # the new row is longer: pad every row already in the batch
            for r in self._batch:
                r.pad += extra
        layers = []
        for mine, theirs in zip(own.layers, self._cache.layers, strict=True):
            k, v = mine.keys, mine.values
            bk, bv = theirs.keys, theirs.values
            if extra > 0:
                bk, bv = _left_pad(bk, extra), _left_pad(bv, extra)
            elif extra < 0:
                k, v = _left_pad(k, -extra), _left_pad(v, -extra)
            layers.append((torch.cat([bk, k]), torch.cat([bv, v])))
        reply.pad = max(0, -extra)
        self._batch.append(reply)
        self._cache = DynamicCache(ddp_cache_data=layers)

    def _leave(self, index: int) -> _Reply:
        """Take row ``index`` out of the batch; it gets its own cache back (without padding)."""
        import torch
        from transformers import DynamicCache

        reply = self._batch.pop(index)
        row = slice(index, index + 1)
        reply.cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys[row, :, reply.pad :].clone(), layer.values[row, :, reply.pad :].clone())
                for layer in self._cache.layers
            ]
        )
        reply.pad = 0
        if not self._batch:
            self._cache = None
            return reply
        keep = torch.tensor([i for i in range(len(self._batch) + 1) if i != index], device=self.model.device)
        trim = min(r.pad for r in self._batch)  # padding every remaining row has: cut it
        for r in self._batch:
            r.pad -= trim
        self._cache = DynamicCache(
            ddp_cache_data=[(layer.keys[keep, :, trim:], layer.values[keep, :, trim:]) for layer in self._cache.layers]
        )
        return reply

    def _drop_stopped(self) -> None:
        for i in reversed(range(len(self._batch))):
            if self._batch[i].stopped():
                self._end(self._leave(i))
        for reply in [r for r in self._parked if r.stopped()]:
            self._parked.remove(reply)
            self._end(reply)

    def _park_and_resume(self) -> None:
        """Replies whose gate says pause leave the batch; paused ones whose gate opened join again (room allowing)."""
        for i in reversed(range(len(self._batch))):
            gate = self._batch[i].gate
            if gate is not None and gate.must_pause():
                self._parked.append(self._leave(i))
        for reply in list(self._parked):
            if len(self._batch) >= self.max_batch:
                break
            if reply.gate is None or not reply.gate.must_pause():
                self._parked.remove(reply)
                self._join(reply)

    def _end(self, reply: _Reply) -> None:
        """The reply is over (finished or stopped): its caller's iterator ends; its cache goes to the prompt
        cache, as the prompt and reply so far start the conversation's next prompt."""
        reply.out.put(None)
        self._count_end()
        if reply.cache is not None:
            ids = (reply.prompt + reply.generated)[: reply.cache.get_seq_length()]
            try:
                self.on_finished(ids, reply.cache)
            except Exception:
                logger.exception("keeping a finished reply's cache failed")
        reply.cache = None

    def _count_end(self) -> None:
        with self._ended:
            self._ended_count += 1
            self._ended.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """End the decoding thread (replies in flight get an error); called at interpreter exit, so the thread
        is not inside torch while the process tears torch down."""
        self._closing.set()
        with self._start_lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _fail_all(self, exc: BaseException) -> None:
        for reply in [*self._batch, *self._parked, *self._waiting]:
            reply.out.put(exc)
            self._count_end()
        self._batch, self._parked, self._waiting, self._cache = [], [], [], None


def _close_at_exit(ref: weakref.ref[BatchDecoder]) -> None:
    decoder = ref()
    if decoder is not None:
        decoder.close()


def _left_pad(tensor: Any, width: int) -> Any:
    """``tensor`` (batch, heads, positions, dim) with ``width`` zero positions in front."""
    import torch

    b, h, _, d = tensor.shape
    return torch.cat([tensor.new_zeros((b, h, width, d)), tensor], dim=2)
