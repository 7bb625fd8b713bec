"""Settings come from config/voice_config.yaml, then a .env file, then CM_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import Settings

pytestmark = pytest.mark.fast


def test_dotenv_overrides_yaml_and_the_environment_overrides_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values in the .env file (CM_ENV_FILE) beat the YAML file, nested keys merge with the YAML section, other
    names and comments are ignored, and a real environment variable beats the .env file."""
    env_file = tmp_path / "test.env"
    env_file.write_text(
        "# local overrides\nCM_SERVER__PORT=9123\nCM_LLM__MAX_NEW_TOKENS=33\nCM_MEMORY__TOP_K=5\nOTHER_TOOL=1\n"
    )
    monkeypatch.setenv("CM_ENV_FILE", str(env_file))
    settings = Settings()
    assert (settings.server.port, settings.llm.max_new_tokens, settings.memory.top_k) == (9123, 33, 5)
    assert settings.llm.repetition_penalty == 1.15  # the rest of the YAML's llm section is kept
    monkeypatch.setenv("CM_SERVER__PORT", "9000")
    assert Settings().server.port == 9000


def test_a_missing_dotenv_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a .env file the YAML values stand."""
    monkeypatch.setenv("CM_ENV_FILE", str(tmp_path / "absent.env"))
    assert Settings().server.port == 8000
