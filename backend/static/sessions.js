// The sessions sidebar (GET/POST/DELETE /api/sessions) and the conversation log (history and live turns).

import { api } from "./connection.js";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function emotionText(data) {
  if (!data || !data.label) return "—";
  const conf = typeof data.confidence === "number" ? ` · ${Math.round(data.confidence * 100)}%` : "";
  return `${data.label}${conf}`;
}

/** The conversation log: one <li> per turn; mentor turns stream in and may be marked interrupted. */
export class ConversationLog {
  constructor(list) {
    this.list = list;
    this.mentor = new Map(); // turn_id -> text node of the mentor's bubble
    this.user = new Map(); // turn_id -> user bubble
  }

  clear() {
    this.list.replaceChildren();
    this.mentor.clear();
    this.user.clear();
  }

  addUser(turnId, text, emotion) {
    const li = el("li", "turn user");
    li.append(el("span", "who", "You"), el("span", "text", text));
    const chip = el("span", "chip", emotion ? emotionText(emotion) : "");
    chip.hidden = !emotion;
    li.append(chip);
    this.list.append(li);
    if (turnId) this.user.set(turnId, li);
    this.scroll();
  }

  setEmotion(turnId, data) {
    const li = this.user.get(turnId);
    if (!li) return;
    const chip = li.querySelector(".chip");
    chip.textContent = emotionText(data);
    chip.hidden = false;
  }

  mentorText(turnId, text, { append = false, interrupted = false } = {}) {
    let node = this.mentor.get(turnId);
    if (!node) {
      const li = el("li", "turn mentor");
      node = el("span", "text", "");
      li.append(el("span", "who", "Mentor"), node);
      this.list.append(li);
      if (turnId) this.mentor.set(turnId, node);
    }
    node.textContent = append ? node.textContent + text : text;
    if (interrupted) node.parentElement.classList.add("interrupted");
    this.scroll();
  }

  showHistory(turns) {
    this.clear();
    for (const t of turns) {
      if (t.role === "user") this.addUser(null, t.text, t.emotion);
      else this.mentorText(`history-${t.id}`, t.text, { interrupted: t.interrupted });
    }
    if (turns.length === 0) this.list.append(el("li", "empty", "No turns yet in this session."));
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

/** The sessions sidebar. */
export class SessionList {
  /** @param {{onResume: (id: string) => void, onDeleted: (id: string) => void, onError: (msg: string) => void,
   *           currentId: () => string | null}} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.list = $("sessions");
    this.count = 0;
  }

  async refresh() {
    let body;
    try {
      body = await api("/api/sessions?limit=50");
    } catch (err) {
      this.hooks.onError(`Could not load sessions: ${err.message}`);
      return;
    }
    this.render(body.sessions);
  }

  render(sessions) {
    this.count = sessions.length;
    this.list.replaceChildren();
    if (sessions.length === 0) {
      this.list.append(el("li", "empty", "No saved sessions yet."));
      return;
    }
    const current = this.hooks.currentId();
    for (const s of sessions) {
      const li = el("li", "session");
      li.dataset.sessionId = s.id;
      const format = (iso) => new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      const when = format(s.updated_at);
      const label = s.title || `Session ${s.id.slice(0, 6)}`;
      const open = el("button", "open");
      open.type = "button";
      const turns = el("span", "meta", `${s.turn_count} turns · updated ${when}`);
      const started = el("span", "meta created", `started ${format(s.created_at)}`);
      open.append(el("span", "title", label), turns, started);
      open.setAttribute(
        "aria-label",
        `Resume ${label}, ${s.turn_count} turns, started ${format(s.created_at)}, last updated ${when}`,
      );
      if (s.id === current) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => this.hooks.onResume(s.id));
      const del = el("button", "delete quiet", "Delete");
      del.type = "button";
      del.setAttribute("aria-label", `Delete ${label}`);
      del.addEventListener("click", () => this.confirmDelete(del, s.id, label));
      li.append(open, del);
      this.list.append(li);
    }
  }

  confirmDelete(button, id, label) {
    if (button.dataset.armed !== "true") {
      // Two steps, no modal dialog: the first press arms the button for a few seconds.
      button.dataset.armed = "true";
      button.textContent = "Confirm";
      button.setAttribute("aria-label", `Confirm deleting ${label}`);
      setTimeout(() => {
        button.dataset.armed = "false";
        button.textContent = "Delete";
        button.setAttribute("aria-label", `Delete ${label}`);
      }, 4000);
      return;
    }
    this.remove(id);
  }

  async remove(id) {
    try {
      await api(`/api/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (err) {
      this.hooks.onError(`Could not delete the session: ${err.message}`);
      return;
    }
    this.hooks.onDeleted(id);
    await this.refresh();
  }

  markCurrent(id) {
    for (const b of this.list.querySelectorAll("button.open")) {
      if (b.parentElement.dataset.sessionId === id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }
}
