"""The engine registry: config names pick implementations; typos are clear startup errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from backend.config import EmotionSettings, LLMSettings, Settings, STTSettings, TTSSettings, VADSettings
from backend.core.exceptions import ConfigError
from backend.engines import registry
from backend.engines.registry import EngineKind, check_options, validate_backends
from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = pytest.mark.fast


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str
    timeout_s: float = 10.0


def test_unknown_backend_lists_the_choices() -> None:
    """A typo in a backend name names the section and every valid choice."""
    with pytest.raises(ConfigError) as err:
        registry.TTS.loader(TTSSettings(backend="espeek"))
    assert err.value.code == "config_error"
    assert "tts.backend 'espeek'" in err.value.message
    assert "espeak, piper" in err.value.message


def test_validate_backends_checks_every_kind() -> None:
    """validate_backends accepts the defaults and refuses a bad name in any section."""
    validate_backends(Settings())
    for kind in registry.KINDS:
        settings = Settings()
        getattr(settings, kind).backend = "nope"
        with pytest.raises(ConfigError, match=f"unknown {kind}.backend 'nope'"):
            validate_backends(settings)


def test_engine_options_are_validated_by_the_engine() -> None:
    """Keys a section does not declare go to the engine's Options; unknown or mistyped ones are refused."""
    section = LLMSettings.model_validate({"backend": "remote", "base_url": "http://127.0.0.1:1", "timeout_s": "2"})
    options = check_options("llm", "remote", section, _Options)
    assert isinstance(options, _Options) and options.timeout_s == 2.0
    with pytest.raises(ConfigError, match="base_url"):
        check_options("llm", "remote", LLMSettings.model_validate({"backend": "remote"}), _Options)
    typo = LLMSettings.model_validate({"backend": "remote", "base_url": "x", "timout_s": 2})
    with pytest.raises(ConfigError, match="timout_s"):
        check_options("llm", "remote", typo, _Options)


def test_engine_without_options_refuses_unknown_keys() -> None:
    """An engine that declares no options (espeak) refuses any key its section does not know."""
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) for tts backend 'espeak': speed"):
        registry.TTS.loader(TTSSettings.model_validate({"speed": 2}))


def test_shipped_engines_declare_their_own_settings() -> None:
    """Whisper's, webrtc's, the fused detector's and transformers' keys are validated by each engine."""
    with pytest.raises(ConfigError, match="stt backend 'whisper': modle"):
        registry.STT.loader(STTSettings.model_validate({"modle": "tiny.en"}))
    with pytest.raises(ConfigError, match="vad backend 'webrtc': aggressiveness"):
        registry.VAD.loader(VADSettings.model_validate({"aggressiveness": 7}))
    with pytest.raises(ConfigError, match="llm backend 'transformers': dtype"):
        registry.LLM.loader(LLMSettings.model_validate({"dtype": "float8"}))
    with pytest.raises(ConfigError, match="emotion backend 'fused': text_weight"):
        registry.EMOTION.loader(EmotionSettings.model_validate({"text_weight": 3}))
    registry.STT.loader(STTSettings.model_validate({"compute_type": "float32", "window_s": 30}))


def test_loader_imports_the_chosen_module_lazily() -> None:
    """A new kind entry is just a name -> 'module:function' line; the loader calls it with the section."""
    kind: EngineKind[str] = EngineKind("stt", {"echo": "tests.engines.test_registry:_echo_engine"})
    assert kind.loader(STTSettings(backend="echo"))() == "echo engine for tiny.en"


def _echo_engine(section: STTSettings) -> str:
    return f"echo engine for {section.model.removeprefix('embedded:')}"


def test_app_refuses_to_start_with_an_unknown_backend(tmp_path: Path) -> None:
    """create_app's startup fails with the clear error (before any model loads) on a typo."""
    settings = make_settings(tmp_path)
    settings.llm.backend = "transformer"
    app = create_app(settings, models=FakeModels().service(settings))
    with pytest.raises(ConfigError, match=r"choose one of: .*transformers"), TestClient(app):
        pass
