"""API keys, browser tokens (JWT), session ownership and the WebSocket Origin check.

REST checks use the in-process TestClient; handshake checks (HTTP 403 before accept) use a real uvicorn."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus

from backend.api import auth
from backend.config import Settings
from backend.core.exceptions import UnauthorizedError
from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeModels
from tests.hardening.live import Live, live_server, recv_event, recv_until, text_turn, ws_connect

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

K1 = {"X-API-Key": "k1"}
K2 = {"X-API-Key": "k2"}


@pytest.fixture
def keyed(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, auth__api_keys=["k1", "k2"])


@pytest.fixture
def api(keyed: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(keyed, models=FakeModels().service(keyed))) as client:
        yield client


@pytest.fixture
def live(keyed: Settings) -> Iterator[Live]:
    with live_server(create_app(keyed, models=FakeModels().service(keyed))) as server:
        yield server


def _code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def _session_of(api: TestClient, headers: dict[str, str]) -> str:
    response = api.post("/api/text-chat", json={"text": "hello there"}, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["session_id"])


def _refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, **kwargs)
    return int(refused.value.response.status_code)


# --- API keys on REST -------------------------------------------------------------------------------------


def test_rest_without_a_key_is_401_unauthorized(api: TestClient) -> None:
    """Every keyed route answers 401 with code ``unauthorized`` when no key is presented."""
    for method, path in [("GET", "/api/sessions"), ("POST", "/api/sessions"), ("POST", "/api/tokens")]:
        response = api.request(method, path)
        assert response.status_code == 401 and _code(response) == "unauthorized", (path, response.text)
    response = api.post("/api/text-chat", json={"text": "hi"})
    assert response.status_code == 401 and _code(response) == "unauthorized"


def test_rest_with_a_wrong_key_is_401(api: TestClient) -> None:
    """A key that is not configured is refused, in each place a key may be presented."""
    for kwargs in (
        {"headers": {"X-API-Key": "nope"}},
        {"headers": {"Authorization": "Bearer nope"}},
        {"params": {"api_key": "nope"}},
    ):
        response = api.get("/api/sessions", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 401 and _code(response) == "unauthorized"


@pytest.mark.parametrize(
    "kwargs",
    [{"headers": {"X-API-Key": "k1"}}, {"headers": {"Authorization": "Bearer k1"}}, {"params": {"api_key": "k1"}}],
    ids=["x-api-key", "bearer", "query"],
)
def test_each_way_of_presenting_a_key_works(api: TestClient, kwargs: dict[str, Any]) -> None:
    """X-API-Key, Authorization: Bearer and ?api_key= all authenticate as the same owner."""
    sid = _session_of(api, K1)
    response = api.get("/api/sessions", **kwargs)
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [sid]


def test_health_stays_open(api: TestClient) -> None:
    """The health probe needs no key (load balancers, the page before login)."""
    assert api.get("/api/health").status_code == 200


def test_another_key_cannot_see_use_or_delete_a_session(api: TestClient) -> None:
    """k2 gets exactly the answer an unknown id gets for k1's session: read, continue, delete, list."""
    sid = _session_of(api, K1)
    unknown = api.get("/api/sessions/doesnotexist/history", headers=K2)
    assert unknown.status_code == 404 and _code(unknown) == "session_not_found"

    history = api.get(f"/api/sessions/{sid}/history", headers=K2)
    assert (history.status_code, history.json()) == (404, unknown.json())
    chat = api.post("/api/text-chat", json={"text": "let me in", "session_id": sid}, headers=K2)
    assert chat.status_code == 404 and _code(chat) == "session_not_found"
    stream = api.post("/api/text-chat/stream", json={"text": "let me in", "session_id": sid}, headers=K2)
    assert stream.status_code == 404 and _code(stream) == "session_not_found"
    deleted = api.delete(f"/api/sessions/{sid}", headers=K2)
    assert deleted.status_code == 404 and _code(deleted) == "session_not_found"
    assert api.get("/api/sessions", headers=K2).json()["sessions"] == []

    mine = api.get(f"/api/sessions/{sid}/history", headers=K1)
    assert mine.status_code == 200 and len(mine.json()["turns"]) == 2  # untouched by k2's attempts
    assert api.delete(f"/api/sessions/{sid}", headers=K1).status_code == 204


def test_keys_from_api_keys_file(tmp_path: Path) -> None:
    """Keys listed in auth.api_keys_file (comments and blank lines skipped) authenticate; others do not."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\n\nfile-key-1\n  file-key-2  \n", encoding="utf-8")
    settings = make_settings(tmp_path, auth__api_keys_file=keys_file)
    with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
        assert api.get("/api/sessions", headers={"X-API-Key": "file-key-2"}).status_code == 200
        assert api.get("/api/sessions").status_code == 401
        assert api.get("/api/sessions", headers={"X-API-Key": "# team keys"}).status_code == 401


def test_auth_off_is_open_and_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With no keys every route and /ws/voice is open, and startup logs a WARNING that says so."""
    settings = make_settings(tmp_path)
    with caplog.at_level(logging.INFO):
        with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
            assert api.post("/api/sessions").status_code == 201
            assert len(api.get("/api/sessions").json()["sessions"]) == 1
            with api.websocket_connect("/ws/voice") as ws:
                assert ws.receive_json()["type"] == "session"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "auth is OFF" in r.getMessage()]
    assert warnings and warnings[0].name == "backend.api.auth"


# --- tokens -----------------------------------------------------------------------------------------------


def _token(api: TestClient, headers: dict[str, str] = K1) -> dict[str, Any]:
    response = api.post("/api/tokens", headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_token_carries_the_key_owner_and_ttl(api: TestClient, keyed: Settings) -> None:
    """The token is an HS256 JWT: sub = k1's fingerprint, exp = iat + jwt_ttl_s; the key itself is not in it."""
    body = _token(api)
    header = jwt.get_unverified_header(body["token"])
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert claims["sub"] == auth.fingerprint("k1") and claims["aud"] == "claritymentor"
    assert claims["exp"] - claims["iat"] == keyed.auth.jwt_ttl_s == body["expires_in"]
    assert "k1" not in json.dumps(claims) and body["token_type"] == "Bearer"


def test_token_acts_as_its_owner_via_query_and_bearer(api: TestClient) -> None:
    """?token= and Authorization: Bearer <jwt> see k1's sessions and not k2's."""
    sid = _session_of(api, K1)
    _session_of(api, K2)
    token = _token(api)["token"]
    for kwargs in ({"params": {"token": token}}, {"headers": {"Authorization": f"Bearer {token}"}}):
        response = api.get("/api/sessions", **kwargs)
        assert response.status_code == 200
        assert [s["id"] for s in response.json()["sessions"]] == [sid]


def test_a_token_cannot_mint_tokens(api: TestClient) -> None:
    """POST /api/tokens needs the API key itself, so a leaked token cannot extend its own life."""
    token = _token(api)["token"]
    response = api.post("/api/tokens", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and _code(response) == "unauthorized"
    assert api.post("/api/tokens", params={"token": token}).status_code == 401


def test_tampered_and_foreign_tokens_are_token_invalid(api: TestClient) -> None:
    """A changed payload, another signing key, alg=none and garbage are all refused with token_invalid."""
    good = _token(api)["token"]
    head, _, sig = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged_payload = jwt.encode({**claims, "sub": auth.fingerprint("k2")}, "x" * 32).split(".")[1]
    candidates = {
        "payload swapped": f"{head}.{forged_payload}.{sig}",
        "other secret": jwt.encode(claims, "another-secret-of-at-least-32-bytes!", algorithm="HS256"),
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "garbage": "not-a-token",
        "truncated": good[:-3],
    }
    for name, token in candidates.items():
        response = api.get("/api/sessions", params={"token": token})
        assert response.status_code == 401 and _code(response) == "token_invalid", name


def test_expired_token_is_token_expired(api: TestClient, keyed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ttl 1 s the token works now and is refused as token_expired once the (injected) clock passes exp."""
    keyed.auth.jwt_ttl_s = 1
    start = float(int(time.time()))  # tokens carry whole seconds
    monkeypatch.setattr(auth, "clock", lambda: start)
    token = _token(api)["token"]
    assert api.get("/api/sessions", params={"token": token}).status_code == 200
    monkeypatch.setattr(auth, "clock", lambda: start + 0.999)
    assert api.get("/api/sessions", params={"token": token}).status_code == 200
    monkeypatch.setattr(auth, "clock", lambda: start + 1.0)
    response = api.get("/api/sessions", params={"token": token})
    assert response.status_code == 401 and _code(response) == "token_expired"


def test_token_of_a_removed_key_is_refused(api: TestClient, keyed: Settings) -> None:
    """Removing k2 from the config revokes the tokens minted with it, before they expire."""
    token = _token(api, K2)["token"]
    assert api.get("/api/sessions", params={"token": token}).status_code == 200
    keyed.auth.api_keys = ["k1"]
    response = api.get("/api/sessions", params={"token": token})
    assert response.status_code == 401 and _code(response) == "token_invalid"


def test_configured_secret_makes_tokens_portable(tmp_path: Path) -> None:
    """With auth.jwt_secret set, a token minted by one app instance is accepted by another (workers,
    restarts); without one, each process signs with its own random key."""
    secret = "s" * 40
    tokens: list[str] = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, auth__api_keys=["k1"], auth__jwt_secret=secret)
        (tmp_path / name).mkdir()
        with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
            if tokens:
                assert api.get("/api/sessions", params={"token": tokens[0]}).status_code == 200
            tokens.append(_token(api)["token"])
    unsigned = make_settings(tmp_path, auth__api_keys=["k1"]).auth
    with pytest.raises(UnauthorizedError) as refused:
        auth.verify_token(tokens[0], unsigned)
    assert refused.value.code == "token_invalid"


# --- /ws/voice handshake ----------------------------------------------------------------------------------


def test_ws_without_a_key_is_refused_at_the_handshake(live: Live) -> None:
    """No key, a wrong key, a bad token: HTTP 403 before the WebSocket opens."""
    assert _refused(live.ws_url()) == 403
    assert _refused(live.ws_url("api_key=wrong")) == 403
    assert _refused(live.ws_url("token=a.b.c")) == 403


def test_ws_with_api_key_or_token_works(live: Live) -> None:
    """?api_key= and ?token= (minted over REST) both open a session and run a turn."""
    import httpx

    token = httpx.post(f"{live.http}/api/tokens", headers=K1).json()["token"]
    for query in ("api_key=k1", f"token={token}"):
        with ws_connect(live.ws_url(query)) as ws:
            assert recv_event(ws)["type"] == "session"
            assert any(e["type"] == "response" for e in text_turn(ws, "hello"))


def test_ws_origin_check(tmp_path: Path) -> None:
    """With an allowlist only listed Origins get in; without one (auth on) only the server's own host;
    clients that send no Origin (non-browser) are let through on the key alone."""
    settings = make_settings(tmp_path, auth__api_keys=["k1"], auth__allowed_origins=["https://app.example"])
    with live_server(create_app(settings, models=FakeModels().service(settings))) as live:
        url = live.ws_url("api_key=k1")
        assert _refused(url, origin="https://evil.example") == 403
        with ws_connect(url, origin="https://app.example") as ws:
            assert recv_event(ws)["type"] == "session"
        settings.auth.allowed_origins = []
        assert _refused(url, origin="https://evil.example") == 403
        with ws_connect(url, origin=f"http://{live.host}:{live.port}") as ws:
            assert recv_event(ws)["type"] == "session"
        with ws_connect(url) as ws:
            assert recv_event(ws)["type"] == "session"


def test_ws_cannot_resume_another_keys_session(live: Live) -> None:
    """session.start with k1's session id over a k2 connection gets session_not_found; k1 resumes it."""
    import httpx

    sid = httpx.post(f"{live.http}/api/text-chat", json={"text": "mine"}, headers=K1).json()["session_id"]
    with ws_connect(live.ws_url("api_key=k2")) as ws:
        recv_event(ws)
        ws.send(json.dumps({"type": "session.start", "session_id": sid}))
        error = recv_event(ws)
        assert error["type"] == "error" and error["code"] == "session_not_found"
    with ws_connect(live.ws_url("api_key=k1")) as ws:
        recv_event(ws)
        ws.send(json.dumps({"type": "session.start", "session_id": sid}))
        resumed = recv_until(ws, "session")[-1]
        assert resumed["session_id"] == sid and resumed["resumed"] is True


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_query_credentials_are_redacted_from_server_logs(tmp_path: Path) -> None:
    """uvicorn's access and handshake lines print the path with its query: api_key and token values are
    replaced by *** before any handler sees them."""
    import httpx

    secret_key = "k-secret-7391-do-not-log"
    settings = make_settings(tmp_path, auth__api_keys=[secret_key])
    collect = _Collect()
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
    with live_server(create_app(settings, models=FakeModels().service(settings)), log_level="info") as live:
        for target in loggers:
            target.addHandler(collect)
        try:
            token = httpx.post(f"{live.http}/api/tokens", params={"api_key": secret_key}).json()["token"]
            assert httpx.get(f"{live.http}/api/sessions", params={"token": token}).status_code == 200
            with ws_connect(live.ws_url(f"api_key={secret_key}")) as ws:
                recv_event(ws)
        finally:
            for target in loggers:
                target.removeHandler(collect)
    logged = "\n".join(collect.lines)
    assert "/api/sessions?token=***" in logged and "api_key=***" in logged, logged
    assert secret_key not in logged and token not in logged
