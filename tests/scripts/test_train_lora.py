"""LoRA training and evaluation scripts on the real embedded LLM: a tiny run the server can load and use."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from backend.config import REPO_ROOT, Settings
from backend.mentor.personas import load_personas
from backend.mentor.prompt_builder import build_messages, load_mentor_prompt
from backend.store.records import HistoryTurn
from scripts.common.mentor_data import Exchange, exchanges, load_conversations

pytestmark = pytest.mark.real

VAL = REPO_ROOT / "data" / "mentor" / "val.jsonl"


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step adapter trained on 8 exchanges (seconds)."""
    from scripts.training.train_lora import main

    out = tmp_path_factory.mktemp("lora")
    assert main(["--max-steps", "3", "--limit", "8", "--val-limit", "4", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def base_chat() -> Any:
    from backend.engines.llm.transformers import load as load_llm

    return load_llm(Settings().llm.model_copy(update={"adapter_path": None}))


def test_tiny_run_writes_adapter_log_and_card(tiny_adapter: Path) -> None:
    """Training writes the adapter, its config, a JSON-lines log of every step and a model card."""
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "training_args.json"):
        assert (tiny_adapter / name).is_file(), name
    log = [json.loads(line) for line in (tiny_adapter / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all({"loss", "lr", "elapsed_s"} <= set(r) and r["loss"] > 0 for r in log)
    config = json.loads((tiny_adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_server_loads_the_adapter_and_streams_a_reply(tiny_adapter: Path) -> None:
    """load_llm with llm.adapter_path pointing at the new folder loads it and streams text."""
    from backend.engines.llm.transformers import load as load_llm

    llm = Settings().llm.model_copy(update={"adapter_path": tiny_adapter, "max_new_tokens": 8})
    chat = load_llm(llm)
    assert chat.adapter_loaded
    prompt = load_mentor_prompt(Settings().mentor)
    pieces = list(chat.stream(build_messages(prompt, [], "I feel sad today.", "sad"), threading.Event()))
    assert "".join(pieces).strip()


def test_training_prompt_is_what_the_server_renders(base_chat: Any) -> None:
    """The training prompt of an exchange with history equals the server's prompt for the same turn."""
    from scripts.training.train_lora import PromptRenderer

    settings = Settings()
    history = (
        HistoryTurn("user", "I got passed over for the promotion again.", "sad"),
        HistoryTurn("assistant", "That stings. What were they looking for?"),
    )
    ex = Exchange("c9999", 1, history, "They gave it to someone newer.", "angry", "That is unfair.")
    renderer = PromptRenderer(base_chat.tokenizer, settings.llm, load_mentor_prompt(settings.mentor))
    # The server speaks as the session's persona (the default one here): its prompt over the base prompt.
    server_prompt_of_persona = load_personas(settings.mentor).default.prompt(load_mentor_prompt(settings.mentor))
    server_messages = build_messages(
        server_prompt_of_persona,
        list(history),
        ex.user_text,
        ex.emotion,
        count_tokens=base_chat.count_tokens,
        max_prompt_tokens=settings.llm.max_prompt_tokens,
    )
    server_prompt = base_chat.prompt_text(server_messages)
    assert renderer.prompt_text(ex) == server_prompt
    assert "passed over" in server_prompt and server_prompt.endswith("<|im_start|>assistant\n")
    encoded = renderer.encode(ex)
    prompt_ids = base_chat.tokenizer.encode(server_prompt, add_special_tokens=False)
    assert encoded.input_ids[: len(prompt_ids)] == prompt_ids
    reply_ids = [t for t in encoded.labels if t != -100]
    assert reply_ids[-1] == base_chat.tokenizer.eos_token_id  # the end-of-turn token is learned
    assert base_chat.tokenizer.decode(reply_ids[:-1]) == ex.reply


def test_shared_prefix_loss_equals_the_plain_loss(base_chat: Any) -> None:
    """The fast training pass (system prefix computed once per batch) gives the plain forward's loss."""
    import torch

    from scripts.training.train_lora import PromptRenderer, batches, shared_prefix_losses, token_losses

    settings = Settings()
    renderer = PromptRenderer(base_chat.tokenizer, settings.llm, load_mentor_prompt(settings.mentor))
    encoded = [renderer.encode(e) for e in exchanges(load_conversations(VAL))]
    batch = max(batches(encoded, 4, random.Random(0)), key=len)
    assert len(batch) > 1 and batch[0].prefix_len > 100
    pad = base_chat.tokenizer.eos_token_id
    with torch.inference_mode():
        plain, n_plain = token_losses(base_chat.model, batch, pad)
        fast, n_fast = shared_prefix_losses(base_chat.model, batch, pad)
    assert n_plain == n_fast > 0
    assert abs(float(plain) / n_plain - float(fast) / n_fast) < 1e-3


def test_eval_script_writes_a_complete_report(tiny_adapter: Path, tmp_path: Path) -> None:
    """eval_mentor on 3 val turns reports loss, perplexity and every speakability figure for both models."""
    from scripts.evals.mentor import main

    out = tmp_path / "eval.json"
    args = ["--adapter", str(tiny_adapter), "--limit", "3", "--loss-limit", "4", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    figures = {
        "val_reply_loss",
        "val_reply_ppl",
        "markdown_or_emoji",
        "empty",
        "mean_words",
        "one_to_three_sentences",
        "asks_question",
    }
    for side in ("base", "adapter"):
        assert figures <= set(report[side]), side
        assert len(report[side]["replies"]) == 3 and report["val_exchanges"] == 4
        assert report[side]["val_reply_ppl"] > 1.0
    assert report["adapter"]["adapter_loaded"] and not report["base"]["adapter_loaded"]
    assert (tmp_path / "samples.md").read_text().count("**Adapter:**") == 3


def test_target_modules_choose_what_is_adapted(tmp_path: Path) -> None:
    """--target-modules adapts the MLP projections too when asked; the card records the choice."""
    from scripts.training.train_lora import main

    out = tmp_path / "mlp"
    args = ["--max-steps", "1", "--limit", "4", "--no-val", "--target-modules", "q_proj,gate_proj", "--out", str(out)]
    assert main(args) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"q_proj", "gate_proj"}
    assert json.loads((out / "training_args.json").read_text())["target_modules"] == ["q_proj", "gate_proj"]
