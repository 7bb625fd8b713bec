"""Choosing the compute device for a model from its ``device`` setting ("auto", "cpu" or "cuda")."""

from __future__ import annotations

import logging
from typing import Literal

from backend.core.exceptions import ModelLoadError

logger = logging.getLogger(__name__)

Backend = Literal["torch", "ctranslate2"]


def cuda_available(backend: Backend) -> bool:
    """Whether ``backend`` (PyTorch or CTranslate2) can see a CUDA device. Imports it lazily."""
    try:
        if backend == "ctranslate2":
            import ctranslate2

            return int(ctranslate2.get_cuda_device_count()) > 0
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install means no CUDA, not a crash
        logger.debug("CUDA probe failed", exc_info=True)
        return False


def resolve_device(setting: str, *, backend: Backend = "torch") -> Literal["cpu", "cuda"]:
    """Map a device setting to "cpu" or "cuda" for the given backend.

    "auto" picks CUDA when the backend sees a GPU. An explicit "cuda" with no visible GPU raises
    ModelLoadError rather than failing later inside the model library.
    """
    if setting == "cpu":
        return "cpu"
    if setting == "auto":
        return "cuda" if cuda_available(backend) else "cpu"
    if setting == "cuda" or setting.startswith("cuda:"):
        if not cuda_available(backend):
            raise ModelLoadError(f"device '{setting}' was requested but {backend} sees no CUDA device")
        return "cuda"
    raise ModelLoadError(f"unknown device setting '{setting}' (use auto, cpu or cuda)")
