"""The page's mentor features in real headless Chromium against the real server (real models): the persona
picker, the whole transcript with every turn's emotion, the emotional arc chart, the insights summary and the
memories with their delete button. Writes the README screenshot (docs/screenshot.png)."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from backend.config import REPO_ROOT
from tests.browser.conftest import LiveServer, espeak_wav, needs_chromium, padded_wav
from tests.browser.test_browser_client import TURN_TIMEOUT_MS, browser_page, start_hands_free

pytestmark = [pytest.mark.browser, needs_chromium]

SPOKEN = "My driving test is on Friday and I am really nervous about it."
TYPED = "My boss at work said I could take Friday off for it, so I feel better now."
EMOTION_CHIP = re.compile(r"^[a-z_]+ · \d{1,3}%$")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _settled(page: Any, user_turns: int) -> None:
    """Wait until the page shows the insights of ``user_turns`` turns, no longer updating, and the memories."""
    page.wait_for_function(
        f"""() => {{
            const i = window.__cm.insights;
            return i && !i.updating && i.arc.points.length === {user_turns} && i.summary_updates >= {user_turns};
        }}""",
        timeout=TURN_TIMEOUT_MS,
    )


def test_persona_transcript_arc_summary_and_memories_on_the_page(
    live_server: LiveServer, speech_dir: Path, artifacts_dir: Path
) -> None:
    """Pick the study coach, say a fact, type a follow-up: the session keeps the persona (and the sessions list
    shows its turn count, last update and creation); the transcript shows all four turns, each user turn with
    its emotion; the arc chart has one point per user turn in the emotions
    the server reported; the summary and topics are the server's; the fact is among the memories, and its
    Forget button deletes it on the server. No console errors."""
    wav = padded_wav(espeak_wav(SPOKEN, speech_dir / "fact.wav"), speech_dir / "fact_pad.wav", 0.5, 2.0)
    with browser_page(live_server, wav) as (page, errors):
        page.wait_for_function("document.querySelectorAll('#persona option').length >= 3")
        assert page.input_value("#persona") == "wellbeing"
        page.select_option("#persona", "study-coach")
        page.wait_for_function("window.__cm.persona === 'study-coach'")
        assert "study coach" in page.inner_text("#persona-about").lower()

        start_hands_free(page, live_server)
        page.wait_for_function("window.__cm.events.includes('metrics')", timeout=TURN_TIMEOUT_MS)
        _settled(page, 1)
        page.fill("#text-input", TYPED)
        page.press("#text-input", "Enter")
        page.wait_for_function("window.__cm.events.filter((e) => e === 'metrics').length >= 2", timeout=TURN_TIMEOUT_MS)
        _settled(page, 2)
        page.wait_for_function("window.__cm.memories.some((m) => /driving test/i.test(m))", timeout=TURN_TIMEOUT_MS)

        cm = page.evaluate("() => window.__cm")
        sid = cm["sessionId"]
        users = page.locator("#conversation .turn.user")
        assert users.count() == 2 and page.locator("#conversation .turn.mentor").count() == 2
        chips = page.locator("#conversation .turn.user .chip").all_inner_texts()
        assert len(chips) == 2 and all(EMOTION_CHIP.match(c) for c in chips), chips
        assert "driving test" in users.nth(0).inner_text().lower()

        server = get_json(f"{live_server.url}/api/sessions/{sid}/insights")
        dots = page.locator("#arc-chart circle.arc-point")
        assert dots.count() == 2
        assert [dots.nth(i).get_attribute("data-emotion") for i in range(2)] == [
            p["emotion"] for p in server["arc"]["points"]
        ]
        history = get_json(f"{live_server.url}/api/sessions/{sid}/history")["turns"]
        assert [c.split(" · ")[0] for c in chips] == [t["emotion"]["label"] for t in history if t["role"] == "user"]
        assert page.inner_text("#summary") == server["summary"] and "driving test" in server["summary"]
        assert page.locator("#topics .chip").count() == len(server["topics"]) >= 1
        sessions = {s["id"]: s for s in get_json(f"{live_server.url}/api/sessions")["sessions"]}
        assert sessions[sid]["persona"] == "study-coach" and page.input_value("#persona") == "study-coach"
        listed = f"#sessions [data-session-id='{sid}']"
        page.wait_for_function(f'/4 turns/.test(document.querySelector("{listed}").innerText)')
        entry = page.inner_text(listed)
        assert "4 turns · updated" in entry and "started" in entry, entry  # the list: count, last update, creation

        shot = artifacts_dir / "mentor.png"
        page.screenshot(path=str(shot), full_page=True)
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "screenshot.png")

        remembered = get_json(f"{live_server.url}/api/memories")["memories"]
        fact = next(m for m in remembered if "driving test" in m["text"].lower())
        page.click(f"#memories [data-memory-id='{fact['id']}'] button.delete")
        page.wait_for_function(f"!document.querySelector(\"#memories [data-memory-id='{fact['id']}']\")")
        assert fact["id"] not in [m["id"] for m in get_json(f"{live_server.url}/api/memories")["memories"]]
        assert not errors, errors
