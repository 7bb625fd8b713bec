// ClarityMentor voice client: wires the microphone, the /ws/voice connection, playback and the page.

import { Capture, MicDeniedError, Player } from "./audio.js";
import { api, getApiKey, setApiKey, VoiceConnection } from "./connection.js";
import { InsightsPanel, MemoryList, PersonaPicker } from "./insights.js";
import { ConversationLog, emotionText, SessionList } from "./sessions.js";

const $ = (id) => document.getElementById(id);

// Test hook and live counters (read by the browser tests; handy in the console too).
const cm = {
  bytesSent: 0,
  framesSent: 0,
  maxRms: 0,
  audioChunksReceived: 0,
  audioChunksPlayed: 0,
  playbackStarted: 0,
  playbackEnded: 0,
  playbackStopped: 0,
  partialsShown: [], // transcript.delta texts shown while the person was still talking
  interrupted: 0,
  state: "idle",
  connection: "connecting",
  sessionId: null,
  latency: null,
  timings: null, // the last metrics event's timings
  micOpenedAt: null, // performance.now() when getUserMedia gave the microphone
  persona: null, // the session's persona id (from the session event)
  insights: null, // the last insights shown (GET /api/sessions/{id}/insights)
  insightsShown: 0,
  memories: [], // the memories shown
  safety: null, // the last `safety` event shown (crisis protocol): {turn_id, category, level, resources}
  events: [],
};
window.__cm = cm;

const ui = {
  state: $("state"),
  connection: $("connection"),
  notice: $("notice"),
  status: $("status"),
  transcript: $("transcript"),
  emotion: $("emotion"),
  reply: $("reply"),
  latency: $("latency"),
  start: $("start"),
  ptt: $("ptt"),
  level: $("level"),
  sessionId: $("session-id"),
  safety: $("safety"),
};

let ctx = null;
let capture = null;
let player = null;
let micOn = false;
let mode = "hands-free";
let pttHeld = false;
let pttSent = 0;
let sessionId = null;
let persisted = false; // the session exists in the server's store (safe to resume by id)
let resuming = null; // id asked for with session.start, waiting for the resumed session event
let freshId = null; // id of the new session a (re)connection was given
let audioTurn = null; // turn whose audio frames are arriving now
const dropped = new Set(); // turns whose audio the page stopped (barge-in): late frames are ignored
let replyTurn = null;
let levelFrame = 0;
let safetySession = null; // session whose crisis resources the banner shows

const log = new ConversationLog($("conversation"));
Object.defineProperty(cm, "playing", { get: () => Boolean(player && player.playing), enumerable: true });

function setState(state) {
  cm.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
}

function settle() {
  if (player && player.playing) setState("speaking");
  else setState(micOn ? "listening" : "idle");
}

function idleStatus() {
  if (!micOn) return "";
  return mode === "ptt" ? "Hold the button or the Space bar to talk." : "Listening. Just speak.";
}

function notice(message, kind = "error") {
  if (!message) {
    ui.notice.hidden = true;
    ui.notice.textContent = "";
    return;
  }
  ui.notice.textContent = message;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
}

// --- crisis resources (docs/SAFETY.md) -------------------------------------------------------------------

const capitalised = (text) => (text ? text[0].toUpperCase() + text.slice(1) : "");

// The crisis protocol answered a turn: show its numbers until the session changes.
function showSafety(e) {
  const r = e.resources || {};
  cm.safety = { turn_id: e.turn_id, category: e.category, level: e.level, resources: r };
  $("safety-lead").textContent =
    e.level === "urgent"
      ? `If you or someone else is in danger right now, please call ${r.emergency || "your local emergency number"} now.`
      : "If you or someone else is in danger right now, call the emergency number.";
  $("safety-emergency").textContent = capitalised(r.emergency || "your local emergency number");
  $("safety-crisis").textContent = capitalised(r.crisis_line || "a local crisis line");
  $("safety-abuse").textContent = capitalised(r.abuse_line || "");
  $("safety-abuse-row").hidden = !r.abuse_line;
  ui.safety.dataset.level = e.level || "";
  ui.safety.hidden = false;
  safetySession = sessionId;
}

function hideSafety() {
  ui.safety.hidden = true;
  safetySession = null;
  cm.safety = null;
}

function setText(node, text) {
  node.textContent = text;
  node.classList.toggle("placeholder", !text || text === "…" || text === "—");
}

// --- connection --------------------------------------------------------------------------------------

const conn = new VoiceConnection({
  onEvent: handleEvent,
  onAudio: handleAudio,
  resumeId: () => {
    resuming = persisted ? sessionId : null;
    return resuming;
  },
  onState: (state, detail) => {
    cm.connection = state;
    const labels = { connecting: "connecting…", reconnecting: "reconnecting…", open: "connected", closed: "offline" };
    ui.connection.textContent = labels[state] || "offline";
    ui.connection.dataset.state = state;
    if (state === "open") {
      if (ui.notice.dataset.kind === "connection") notice(null);
    } else if (state === "waiting") {
      const msg = conn.everOpened
        ? `Connection lost: ${detail}. Your session will resume when it is back.`
        : `The server cannot be reached: ${detail}.`;
      notice(msg, "connection");
      if (player) player.stop();
      settle();
    }
  },
});

function sessionShown(id) {
  if (id !== safetySession) hideSafety();
  sessionId = id;
  cm.sessionId = id;
  ui.sessionId.textContent = id ? `(${id.slice(0, 8)})` : "";
  sessions.markCurrent(id);
}

async function loadHistory(id) {
  try {
    const body = await api(`/api/sessions/${encodeURIComponent(id)}/history`);
    log.showHistory(body.turns);
  } catch (err) {
    notice(`Could not load the session's history: ${err.message}`);
  }
}

function onSession(e) {
  if (player) player.rate = e.output_sample_rate;
  cm.persona = e.persona || null;
  personas.show(e.persona);
  if (!e.resumed) {
    freshId = e.session_id;
    if (resuming) return; // a session.start for the old session is on its way
    if (e.session_id !== sessionId) {
      persisted = false;
      log.clear();
      sessionShown(e.session_id);
      insights.clear();
    }
    return;
  }
  const switched = e.session_id !== sessionId;
  resuming = null;
  persisted = true;
  sessionShown(e.session_id);
  if (switched) {
    loadHistory(e.session_id);
    insights.refresh();
  }
}

async function turnFollowUp() {
  // The server updates the insights and memories after the reply, off the turn's critical path.
  await insights.refresh();
  await memories.refresh();
}

function handleEvent(e) {
  cm.events.push(e.type);
  if (cm.events.length > 500) cm.events.splice(0, 100);
  switch (e.type) {
    case "session":
      onSession(e);
      break;
    case "speech_started":
      // The user is talking: whatever the mentor is saying stops now (the server confirms with `interrupted`).
      if (player && player.stop()) {
        cm.playbackStopped += 1;
        if (audioTurn) dropped.add(audioTurn);
      }
      setText(ui.transcript, "…");
      ui.status.textContent = "Hearing you…";
      setState("listening");
      break;
    case "speech_stopped":
      if (e.discarded) {
        ui.status.textContent = "";
        settle();
      } else setState("thinking");
      break;
    case "status":
      ui.status.textContent = e.message;
      break;
    case "transcript.delta":
      // What has been heard so far, while the person is still talking; the `transcript` event replaces it.
      setText(ui.transcript, e.text);
      ui.transcript.classList.add("partial");
      cm.partialsShown.push(ui.transcript.textContent);
      break;
    case "transcript":
      ui.transcript.classList.remove("partial");
      persisted = true;
      setText(ui.transcript, e.text);
      setText(ui.emotion, "—");
      setText(ui.reply, "…");
      replyTurn = null;
      log.addUser(e.turn_id, e.text);
      setState("thinking");
      break;
    case "safety":
      showSafety(e);
      break;
    case "emotion":
      setText(ui.emotion, emotionText(e.data));
      log.setEmotion(e.turn_id, e.data);
      break;
    case "response.delta":
      if (replyTurn !== e.turn_id) {
        replyTurn = e.turn_id;
        setText(ui.reply, "");
      }
      ui.reply.setAttribute("aria-busy", "true");
      setText(ui.reply, ui.reply.textContent + e.text);
      log.mentorText(e.turn_id, e.text, { append: true });
      break;
    case "response":
      replyTurn = e.turn_id;
      ui.reply.setAttribute("aria-busy", "false");
      setText(ui.reply, e.text);
      log.mentorText(e.turn_id, e.text);
      break;
    case "audio.start":
      audioTurn = e.turn_id;
      if (player && !dropped.has(audioTurn)) player.begin(e.sample_rate);
      break;
    case "audio.end":
      if (player && !dropped.has(e.turn_id)) player.end();
      break;
    case "interrupted":
      cm.interrupted += 1;
      dropped.add(e.turn_id);
      if (player && player.stop()) cm.playbackStopped += 1;
      ui.reply.setAttribute("aria-busy", "false");
      setText(ui.reply, `${e.spoken_text} …(interrupted)`);
      log.mentorText(e.turn_id, e.spoken_text, { interrupted: true });
      settle();
      sessions.refresh();
      turnFollowUp();
      break;
    case "metrics":
      showLatency(e.timings);
      ui.status.textContent = idleStatus();
      if (!(player && player.playing)) settle();
      sessions.refresh();
      turnFollowUp();
      break;
    case "error":
      onError(e);
      break;
    default:
      break;
  }
}

function handleAudio(data) {
  cm.audioChunksReceived += 1;
  if (!player || (audioTurn && dropped.has(audioTurn))) return;
  player.enqueue(data);
}

function showLatency(t) {
  cm.timings = t;
  const first = t.first_audio ?? t.first_token;
  if (typeof first !== "number") return;
  cm.latency = first;
  const what = t.first_audio !== undefined ? "to first audio" : "to first word";
  ui.latency.textContent = `${first.toFixed(2)} s ${what}`;
  ui.latency.title = Object.entries(t)
    .map(([k, v]) => `${k}: ${Number(v).toFixed(2)} s`)
    .join("\n");
}

function onError(e) {
  if (e.code === "session_not_found" && resuming) {
    // The session is gone (deleted elsewhere): carry on in the fresh one this connection was given.
    resuming = null;
    persisted = false;
    log.clear();
    sessionShown(freshId);
    notice("That session no longer exists; a new one was started.", "info");
    return;
  }
  if (resuming && e.code === "session_busy") resuming = null;
  if (e.code === "no_audio" && mode === "ptt") {
    ui.status.textContent = "Nothing was heard. Hold the button while you speak.";
    settle();
    return;
  }
  notice(e.message || "Something went wrong on the server.");
  settle();
}

// --- audio -------------------------------------------------------------------------------------------

function ensureAudio() {
  if (!ctx) {
    ctx = new AudioContext({ latencyHint: "interactive" });
    player = new Player(ctx, {
      onStart: () => {
        cm.playbackStarted += 1;
        setState("speaking");
      },
      onChunkEnded: () => {
        cm.audioChunksPlayed += 1;
      },
      onEnded: () => {
        cm.playbackEnded += 1;
        settle();
      },
    });
    capture = new Capture(ctx, onFrame);
  }
  if (ctx.state === "suspended") ctx.resume();
}

function onFrame(pcm, rms) {
  if (rms > cm.maxRms) cm.maxRms = rms;
  if (!levelFrame) {
    levelFrame = requestAnimationFrame(() => {
      levelFrame = 0;
      ui.level.value = Math.min(1, rms * 4);
    });
  }
  if (!micOn || (mode === "ptt" && !pttHeld)) return;
  if (conn.sendAudio(pcm)) {
    cm.bytesSent += pcm.byteLength;
    cm.framesSent += 1;
    if (pttHeld) pttSent += 1;
  }
}

function waitOpen(ms) {
  if (conn.open) return Promise.resolve(true);
  conn.connect();
  return new Promise((resolve) => {
    const t0 = performance.now();
    const tick = () => {
      if (conn.open) resolve(true);
      else if (performance.now() - t0 > ms) resolve(false);
      else setTimeout(tick, 50);
    };
    tick();
  });
}

async function startMic() {
  ui.start.disabled = true;
  try {
    ensureAudio();
    // Worklet and connection first: the microphone (and a test's fake-mic file) starts with getUserMedia.
    if (!capture.node) await capture.load();
    if (!(await waitOpen(8000))) {
      notice("The server cannot be reached, so the microphone was not started. Is the server running?", "connection");
      return;
    }
    await capture.open();
    cm.micOpenedAt = performance.now();
    micOn = true;
    notice(null);
    ui.start.textContent = "Stop talking";
    ui.start.setAttribute("aria-pressed", "true");
    ui.status.textContent = idleStatus();
    settle();
  } catch (err) {
    notice(err instanceof MicDeniedError ? err.message : `Could not start the microphone: ${err.message}`);
    capture.close();
  } finally {
    ui.start.disabled = false;
  }
}

function stopMic() {
  if (pttHeld) pttUp();
  micOn = false;
  capture.close();
  ui.start.textContent = "Start talking";
  ui.start.setAttribute("aria-pressed", "false");
  ui.level.value = 0;
  ui.status.textContent = "";
  settle();
}

// --- push-to-talk -------------------------------------------------------------------------------------

function pttDown() {
  if (mode !== "ptt" || !micOn || pttHeld) return;
  pttHeld = true;
  pttSent = 0;
  ui.ptt.setAttribute("aria-pressed", "true");
  if (player && player.stop()) {
    cm.playbackStopped += 1;
    if (audioTurn) dropped.add(audioTurn);
    conn.sendJson({ type: "response.cancel" });
  }
  setState("listening");
}

function pttUp() {
  if (!pttHeld) return;
  pttHeld = false;
  ui.ptt.setAttribute("aria-pressed", "false");
  if (pttSent > 0 && conn.sendJson({ type: "input.commit" })) setState("thinking");
  else settle();
}

function setMode(next) {
  mode = next;
  const ptt = mode === "ptt";
  ui.ptt.hidden = !ptt;
  $("ptt-hint").hidden = !ptt;
  if (!ptt && pttHeld) pttUp();
  ui.status.textContent = idleStatus();
}

// --- wiring ------------------------------------------------------------------------------------------

const sessions = new SessionList({
  currentId: () => sessionId,
  onError: (msg) => notice(msg),
  onResume: (id) => {
    if (id === sessionId) return;
    persisted = true;
    resuming = id;
    if (!conn.sendJson({ type: "session.start", session_id: id, sample_rate: 16000 })) {
      sessionId = id; // the reconnect will resume it
      conn.connect();
    }
  },
  onDeleted: (id) => {
    memories.refresh(); // what was learned in that session is gone too
    if (id !== sessionId) return;
    persisted = false;
    log.clear();
    sessionShown(null);
    insights.clear();
    conn.restart(); // a fresh connection gets a fresh session
  },
});

const personas = new PersonaPicker({
  onError: (msg) => notice(msg),
  onChoose: (id) => {
    if (!conn.sendJson({ type: "session.start", mentor: id })) {
      notice("Not connected to the server; the mentor was not changed.", "connection");
      personas.show(cm.persona);
    }
  },
});
const insights = new InsightsPanel({
  sessionId: () => (persisted ? sessionId : null),
  onUpdate: (body) => {
    cm.insights = body;
    cm.insightsShown += 1;
  },
});
const memories = new MemoryList({
  sessionId: () => (persisted ? sessionId : null),
  onError: (msg) => notice(msg),
  onUpdate: (list) => {
    cm.memories = list.map((m) => m.text);
  },
});

ui.start.addEventListener("click", () => (micOn ? stopMic() : startMic()));
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => radio.checked && setMode(radio.value));
}
ui.ptt.addEventListener("pointerdown", (e) => {
  ui.ptt.setPointerCapture(e.pointerId);
  pttDown();
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) ui.ptt.addEventListener(type, pttUp);
ui.ptt.addEventListener("keydown", (e) => {
  if ((e.key === "Enter" || e.key === " ") && !e.repeat) {
    e.preventDefault();
    pttDown();
  }
});
ui.ptt.addEventListener("keyup", (e) => (e.key === "Enter" || e.key === " ") && pttUp());
const typing = (t) => t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t.isContentEditable;
document.addEventListener("keydown", (e) => {
  if (e.key !== " " || e.repeat || mode !== "ptt" || !micOn || typing(e.target) || e.target === ui.ptt) return;
  e.preventDefault(); // no page scroll, no button click
  pttDown();
});
document.addEventListener("keyup", (e) => {
  if (e.key === " " && e.target !== ui.ptt && pttHeld) pttUp();
});
window.addEventListener("blur", pttUp);

$("text-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("text-input");
  const text = input.value.trim();
  if (!text) return;
  ensureAudio();
  if (player && player.stop()) {
    cm.playbackStopped += 1;
    if (audioTurn) dropped.add(audioTurn);
  }
  if (!conn.sendJson({ type: "text", text })) {
    notice("Not connected to the server; the message was not sent. It will reconnect on its own.", "connection");
    return;
  }
  input.value = "";
  setState("thinking");
});

$("new-session").addEventListener("click", async () => {
  try {
    const s = await api("/api/sessions", { method: "POST", body: JSON.stringify({}) });
    sessions.hooks.onResume(s.id);
    await sessions.refresh();
  } catch (err) {
    notice(`Could not create a session: ${err.message}`);
  }
});
$("refresh-sessions").addEventListener("click", () => sessions.refresh());

$("api-key").value = getApiKey();
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("api-key").value.trim());
  notice("API key saved. Reconnecting…", "info");
  conn.restart();
  sessions.refresh();
  memories.refresh();
});

async function boot() {
  setState("idle");
  conn.connect();
  try {
    const health = await api("/api/health");
    if (health.status !== "ok") notice(`The server is ${health.status}: some models are not ready yet.`, "info");
  } catch (err) {
    notice(err.message, "connection");
  }
  await Promise.all([sessions.refresh(), personas.load(), memories.refresh()]);
}

boot();
