"""Train the mentor's LoRA adapter (peft) on data/mentor/train.jsonl over the embedded base LLM.

Every assistant turn of a conversation is one example. Its prompt is built exactly as the server builds it
(``prompt_builder.build_messages`` + ``TransformersChatModel.prompt_text``, i.e. the tokenizer's chat template
with the generation prompt); the loss is computed only on the reply tokens and the end-of-turn token.

    python -m scripts.training.train_lora                       # full run -> models/claritymentor-lora/
    python -m scripts.training.train_lora --max-steps 3 --limit 8 --out /tmp/lora   # smoke test

Writes into --out: adapter_model.safetensors, adapter_config.json, train_log.jsonl (step, loss, lr, elapsed),
training_args.json, and README.md (model card; results filled in by python -m scripts.evals.mentor --update-card).
Seeded and reproducible on a given machine. Uses CUDA when available, else the CPU with 2 threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, LLMSettings, MentorSettings, Settings, resolve_path
from backend.engines.protocols import ChatMessage
from backend.mentor.personas import PersonaCatalog, load_personas
from backend.mentor.prompt_builder import MentorPrompt, build_messages, load_mentor_prompt
from scripts.common.mentor_data import Exchange, exchanges, load_conversations

IGNORE = -100
# Tensor sizes are rounded up to these multiples so that only a few distinct shapes occur: the CPU kernels
# (oneDNN) are prepared once per shape, which costs far more than the padding does.
PAD_MULTIPLE = 96  # suffix (history + user turn + reply) widths: 96, 192, ...
PREFIX_MULTIPLE = 32  # system prefixes (one per emotion) are left-padded to one common width
SELECT_MULTIPLE = 64
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens
    prefix_len: int = 0  # leading tokens of the system message, shared by examples of the same emotion

    @property
    def reply_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    @property
    def prefix(self) -> tuple[int, ...]:
        return tuple(self.input_ids[: self.prefix_len])


class PromptRenderer:
    """Builds an example's prompt through the server's own code path (build_messages + prompt_text), with the
    example's persona (its system prompt and guidance, as the server builds them) and remembered facts."""

    def __init__(
        self, tokenizer: Any, llm: LLMSettings, prompt: MentorPrompt, personas: PersonaCatalog | None = None
    ) -> None:
        from backend.engines.llm.transformers import TransformersChatModel

        # The chat model is only used for its prompt rendering and token counting (no generation).
        self._chat = TransformersChatModel(None, tokenizer, llm)
        self._llm = llm
        self.prompt = prompt
        self.personas = personas or load_personas(MentorSettings())
        self.tokenizer = tokenizer

    def messages(self, ex: Exchange) -> list[ChatMessage]:
        return build_messages(
            self.personas.get(ex.persona).prompt(self.prompt),
            ex.history,
            ex.user_text,
            ex.emotion,
            count_tokens=self._chat.count_tokens,
            max_prompt_tokens=self._llm.max_prompt_tokens,
            memories=ex.memories,
        )

    def prompt_text(self, ex: Exchange) -> str:
        return self._chat.prompt_text(self.messages(ex))

    def encode(self, ex: Exchange) -> Encoded:
        """Prompt tokens (masked) + reply tokens + the end-of-turn token (learned, so replies stop)."""
        tok = self.tokenizer
        messages = self.messages(ex)
        prompt_ids = tok.encode(self._chat.prompt_text(messages), add_special_tokens=False)
        reply_ids = [*tok.encode(ex.reply.strip(), add_special_tokens=False), tok.eos_token_id]
        system = [{"role": m.role, "content": m.content} for m in messages[:1]]
        system_ids = tok.encode(tok.apply_chat_template(system, tokenize=False), add_special_tokens=False)
        shared = len(system_ids) if prompt_ids[: len(system_ids)] == system_ids else 0
        return Encoded(prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids, shared)


def _causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _reply_loss(causal: Any, hidden: Any, labels: Any) -> tuple[Any, int]:
    """Summed cross-entropy of the labelled next tokens; logits only where a label exists (saves time)."""
    import torch.nn.functional as F

    targets = labels[:, 1:]
    keep = targets != IGNORE
    selected = hidden[:, :-1][keep]
    n = selected.size(0)
    rows = -(-n // SELECT_MULTIPLE) * SELECT_MULTIPLE
    padded = F.pad(selected, (0, 0, 0, rows - n))
    logits = causal.lm_head(padded)[:n].float()
    return F.cross_entropy(logits, targets[keep], reduction="sum"), n


def _pad(rows: Sequence[list[int]], value: int, multiple: int = 1) -> Any:
    """Right-padded tensor; the width is rounded up to ``multiple`` so few distinct shapes occur (the CPU
    kernels are prepared once per shape)."""
    import torch

    width = -(-max(len(r) for r in rows) // multiple) * multiple
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def token_losses(model: Any, items: Sequence[Encoded], pad_id: int) -> tuple[Any, int]:
    """Summed reply-token loss of a batch and its token count, one plain forward pass (right padding)."""
    import torch

    causal = _causal_lm(model)
    device = causal.device
    ids = _pad([e.input_ids for e in items], pad_id).to(device)
    labels = _pad([e.labels for e in items], IGNORE).to(device)
    mask = _pad([[1] * len(e.input_ids) for e in items], 0).to(device)
    hidden = causal.model(input_ids=ids, attention_mask=mask).last_hidden_state
    return _reply_loss(causal, hidden, labels) if len(items) else (torch.zeros(()), 0)


def shared_prefix_losses(
    model: Any, items: Sequence[Encoded], pad_id: int, rows: int | None = None, prefix_width: int = 0
) -> tuple[Any, int]:
    """Same result as ``token_losses`` for a batch whose examples share one system-message prefix, faster.

    The prefix runs once (with gradients) and its key/value cache is broadcast to every row, so each row
    only computes its own history, user turn and reply. Exact: the rows attend to the same prefix keys.
    ``rows`` pads the batch with empty rows (no loss) up to a fixed size and ``prefix_width`` left-pads the
    prefix (masked, real positions kept), again so that only a few distinct shapes occur.
    """
    import torch
    from transformers import DynamicCache

    prefix = items[0].prefix
    if not prefix or any(e.prefix != prefix for e in items):
        return token_losses(model, items, pad_id)
    causal = _causal_lm(model)
    device = causal.device
    filler = Encoded([pad_id], [IGNORE])
    items = [*items, *[filler] * max(0, (rows or 0) - len(items))]
    p, b = len(prefix), len(items)
    lead = max(0, prefix_width - p)
    prefix_ids = torch.tensor([[pad_id] * lead + list(prefix)], device=device)
    prefix_mask = torch.tensor([[0] * lead + [1] * p], dtype=torch.long, device=device)
    prefix_pos = torch.tensor([[0] * lead + list(range(p))], device=device)
    cached = causal.model(
        input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=prefix_pos, use_cache=True
    ).past_key_values
    shared = DynamicCache()
    for i, layer in enumerate(cached.layers):
        shared.update(layer.keys.expand(b, -1, -1, -1), layer.values.expand(b, -1, -1, -1), i)
    suffixes = [e.input_ids[p:] if e is not filler else [] for e in items]
    ids = _pad([s or [pad_id] for s in suffixes], pad_id, PAD_MULTIPLE).to(device)
    labels = _pad([e.labels[p:] if e is not filler else [IGNORE] for e in items], IGNORE, PAD_MULTIPLE)
    labels = labels.to(device)
    suffix_mask = _pad([[1] * len(s) or [0] for s in suffixes], 0, PAD_MULTIPLE).to(device)
    mask = torch.cat([prefix_mask.expand(b, -1), suffix_mask], dim=1)
    positions = torch.arange(p, p + ids.size(1), device=device).unsqueeze(0).expand(b, -1)
    hidden = causal.model(
        input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=shared, use_cache=True
    ).last_hidden_state
    return _reply_loss(causal, hidden, labels)


def mean_reply_loss(model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int = 8) -> float:
    """Mean per-token loss on reply tokens (perplexity = exp of it). Blocking."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        ordered = sorted(encoded, key=lambda e: len(e.input_ids))
        for start in range(0, len(ordered), batch_size):
            loss, n = token_losses(model, ordered[start : start + batch_size], pad_id)
            total += float(loss.item())
            count += n
    return total / max(1, count)


def batches(items: list[Encoded], batch_size: int, rng: random.Random) -> list[list[Encoded]]:
    """Shuffled batches whose examples share a system prefix (one emotion) and have similar lengths."""
    groups: dict[tuple[int, ...], list[Encoded]] = {}
    for e in items:
        groups.setdefault(e.prefix, []).append(e)
    out: list[list[Encoded]] = []
    for key in sorted(groups):
        group = groups[key][:]
        rng.shuffle(group)
        pool = batch_size * 4
        for start in range(0, len(group), pool):
            chunk = sorted(group[start : start + pool], key=lambda e: len(e.input_ids))
            out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def use_bf16(choice: str, device: Any) -> bool:
    """Whether to train under bfloat16 autocast: about twice as fast on CPUs with AVX512-BF16 or AMX."""
    import torch

    if choice != "auto":
        return choice == "bf16"
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train the ClarityMentor LoRA adapter.")
    p.add_argument("--train", type=Path, default=REPO_ROOT / "data/mentor/train.jsonl")
    p.add_argument("--val", type=Path, default=REPO_ROOT / "data/mentor/val.jsonl")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "models/claritymentor-lora")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument(
        "--target-modules",
        default=",".join(TARGET_MODULES),
        help="comma-separated module names to adapt (add gate_proj,up_proj,down_proj for the MLPs)",
    )
    p.add_argument("--warmup", type=float, default=0.06, help="share of steps with a linear warm-up")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training exchanges")
    p.add_argument(
        "--special-repeat",
        type=int,
        default=1,
        help="times each exchange with a persona or remembered facts is seen per epoch (more when they are few)",
    )
    p.add_argument("--val-limit", type=int, default=None, help="use only the first N val exchanges")
    p.add_argument("--no-val", action="store_true", help="skip the validation loss at the end")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: llm.threads, 2)")
    p.add_argument(
        "--time-budget", type=float, default=None, help="stop (and save) after this many seconds of training"
    )
    p.add_argument(
        "--autocast",
        choices=("auto", "bf16", "off"),
        default="auto",
        help="bfloat16 autocast for the training passes (auto: when the CPU or GPU supports it)",
    )
    p.add_argument("--seed", type=int, default=1234)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    from backend.engines.llm.transformers import load_base
    from scripts.common.model_card import write_card

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    settings = Settings()
    llm = settings.llm.model_copy(update={"adapter_path": None})
    if args.threads is not None:
        llm = llm.model_copy(update={"threads": args.threads})
    model, tokenizer = load_base(llm)  # sets 2 CPU threads (settings.llm.threads) or moves to CUDA
    device = model.device
    renderer = PromptRenderer(tokenizer, llm, load_mentor_prompt(settings.mentor), load_personas(settings.mentor))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    train_ex = list(exchanges(load_conversations(args.train)))[: args.limit]
    # The persona and memory examples are few next to the default persona's: seen more often, they are followed.
    train_ex += [e for e in train_ex if e.persona or e.memories] * max(0, args.special_repeat - 1)
    train_enc = [renderer.encode(e) for e in train_ex]
    steps_per_epoch = len(batches(train_enc, args.batch_size, random.Random(0)))
    total_steps = max(1, math.ceil(steps_per_epoch * args.epochs))
    if args.max_steps is not None and args.max_steps > 0:
        total_steps = args.max_steps  # wins over --epochs
    warmup = max(1, int(total_steps * args.warmup))

    target_modules = [m.strip() for m in str(args.target_modules).split(",") if m.strip()]
    lora = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to 10%
        peak = float(args.lr)
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train_log.jsonl"
    rng = random.Random(args.seed)
    bf16 = use_bf16(args.autocast, device)
    longest_prefix = max(e.prefix_len for e in train_enc)
    prefix_width = -(-longest_prefix // PREFIX_MULTIPLE) * PREFIX_MULTIPLE
    model.train()
    started = time.perf_counter()

    def out_of_time() -> bool:
        return args.time_budget is not None and time.perf_counter() - started > args.time_budget

    step, epoch = 0, 0
    with log_path.open("w", encoding="utf-8") as log, tqdm(total=total_steps, desc="lora", unit="step") as bar:
        while step < total_steps and not out_of_time():
            for batch_items in batches(train_enc, args.batch_size, rng):
                if step >= total_steps or out_of_time():
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss_sum, n = shared_prefix_losses(model, batch_items, pad_id, args.batch_size, prefix_width)
                loss = loss_sum / max(1, n)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                record = {
                    "step": step,
                    "epoch": round(epoch + min(1.0, step / steps_per_epoch - epoch), 3),
                    "loss": round(float(loss.item()), 4),
                    "lr": round(lr_at(step - 1), 7),
                    "elapsed_s": round(time.perf_counter() - started, 2),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=record["loss"])
                bar.update(1)
            epoch += 1
    train_seconds = time.perf_counter() - started

    model.eval()
    val_loss: float | None = None
    val_count = 0
    if not args.no_val and args.val.is_file():
        val_ex = list(exchanges(load_conversations(args.val)))[: args.val_limit]
        val_count = len(val_ex)
        val_loss = mean_reply_loss(model, [renderer.encode(e) for e in val_ex], pad_id)

    model.peft_config["default"].base_model_name_or_path = settings.llm.model
    model.save_pretrained(str(args.out))
    summary: dict[str, Any] = {
        "command": " ".join(["python -m scripts.training.train_lora", *(sys.argv[1:] if argv is None else argv)]),
        "base_model": settings.llm.model,
        "train_file": _rel(args.train),
        "val_file": _rel(args.val),
        "train_exchanges": len(train_enc),
        "train_reply_tokens": sum(e.reply_tokens for e in train_enc),
        "val_exchanges": val_count,
        "epochs": round(step / steps_per_epoch, 2),
        "steps": step,
        "planned_steps": total_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": f"linear warm-up {warmup} steps, cosine to 10%",
        "rank": args.rank,
        "alpha": args.alpha,
        "dropout": args.dropout,
        "target_modules": target_modules,
        "trainable_parameters": trainable,
        "seed": args.seed,
        "device": str(device),
        "autocast": "bfloat16" if bf16 else "off",
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(train_seconds, 1),
        "final_train_loss": record["loss"] if total_steps else None,
        "val_reply_loss": None if val_loss is None else round(val_loss, 4),
        "val_reply_ppl": None if val_loss is None else round(math.exp(val_loss), 3),
    }
    (args.out / "training_args.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_card(args.out)
    print(json.dumps(summary, indent=2))
    return 0


def _rel(path: Path) -> str:
    p = resolve_path(path)
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


if __name__ == "__main__":
    sys.exit(main())
