"""Device resolution for model loaders."""

from __future__ import annotations

import pytest

from backend.core import devices
from backend.core.exceptions import ModelLoadError

pytestmark = pytest.mark.fast


def test_cpu_is_cpu() -> None:
    """An explicit "cpu" never probes CUDA."""
    assert devices.resolve_device("cpu") == "cpu"


def test_auto_follows_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "auto" gives cuda exactly when the named backend sees a GPU."""
    monkeypatch.setattr(devices, "cuda_available", lambda backend: backend == "ctranslate2")
    assert devices.resolve_device("auto", backend="ctranslate2") == "cuda"
    assert devices.resolve_device("auto", backend="torch") == "cpu"


def test_explicit_cuda_without_gpu_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for cuda with no GPU fails early with ModelLoadError; unknown settings too."""
    monkeypatch.setattr(devices, "cuda_available", lambda backend: False)
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        devices.resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown device"):
        devices.resolve_device("tpu")
