// The /ws/voice connection (protocol v1) with auto-reconnect, and REST calls, both carrying the API key.

const KEY_STORAGE = "claritymentor.apiKey";

export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lasts for this page only */
  }
}

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch() a JSON endpoint with the X-API-Key header; throws ApiError with a readable message. */
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = getApiKey();
  if (key) headers.set("X-API-Key", key);
  if (options.body !== undefined) headers.set("Content-Type", "application/json");
  let res;
  try {
    res = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError("The server cannot be reached. Is it running?", 0, "unreachable");
  }
  if (res.status === 204) return null;
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const err = body && body.error;
    const code = err ? err.code : `http_${res.status}`;
    let message = err ? err.message : `The server answered ${res.status}.`;
    if (res.status === 401 || res.status === 403) message = "The server refused the API key. Check it under Settings.";
    throw new ApiError(message, res.status, code);
  }
  return body;
}

export function voiceUrl() {
  const url = new URL("/ws/voice", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const key = getApiKey();
  if (key) url.searchParams.set("api_key", key);
  return url.toString();
}

/**
 * One logical connection: reconnects with exponential backoff (0.5 s doubling to 15 s, with jitter) after a
 * drop, and resumes the same session with session.start once the new socket is open.
 */
export class VoiceConnection {
  /**
   * @param {{onEvent: (e: object) => void, onAudio: (data: ArrayBuffer) => void,
   *          onState: (state: string, detail?: string) => void, resumeId: () => string | null}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.wanted = false;
    this.everOpened = false;
    this.bytesSent = 0;
  }

  connect() {
    this.wanted = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    clearTimeout(this.timer);
    this.hooks.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(voiceUrl());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.everOpened = true;
      const resume = this.hooks.resumeId();
      if (resume) this.sendJson({ type: "session.start", session_id: resume, sample_rate: 16000 });
      this.hooks.onState("open");
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        let event;
        try {
          event = JSON.parse(e.data);
        } catch {
          return;
        }
        this.hooks.onEvent(event);
      } else {
        this.hooks.onAudio(e.data);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.wanted) {
        this.hooks.onState("closed");
        return;
      }
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
      this.attempt += 1;
      const why = e.code === 1008 ? "the server closed the connection (policy)" : "the connection dropped";
      this.hooks.onState("waiting", `${why}; retrying in ${Math.round(delay / 100) / 10} s`);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Reconnect at once (e.g. after the API key changed). */
  restart() {
    this.attempt = 0;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.connect();
  }

  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  sendJson(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  sendAudio(buffer) {
    if (!this.open) return false;
    // Do not pile audio up behind a stalled socket: past ~1 s queued, drop frames instead.
    if (this.ws.bufferedAmount > 32000) return false;
    this.ws.send(buffer);
    this.bytesSent += buffer.byteLength;
    return true;
  }
}
