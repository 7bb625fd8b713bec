// The mentor side panel: persona picker (GET /api/personas), session insights (emotional arc chart, summary,
// topics; GET /api/sessions/{id}/insights) and memories with delete buttons (GET/DELETE /api/memories).

import { api } from "./connection.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const UPDATE_POLL_MS = 400; // while the server says the summary is still being updated after a turn
const UPDATE_POLL_MAX_MS = 3000; // polls back off up to this interval on a busy server
const UPDATE_DEADLINE_MS = 120_000; // then give up until the next turn

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** The persona <select>: filled from the server, reports the user's choice, follows the session's persona. */
export class PersonaPicker {
  /** @param {{onChoose: (id: string) => void, onError: (msg: string) => void}} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.select = $("persona");
    this.about = $("persona-about");
    this.personas = new Map();
    this.select.addEventListener("change", () => {
      this.describe(this.select.value);
      this.hooks.onChoose(this.select.value);
    });
  }

  async load() {
    let body;
    try {
      body = await api("/api/personas");
    } catch (err) {
      this.hooks.onError(`Could not load the mentors: ${err.message}`);
      return;
    }
    this.select.replaceChildren();
    for (const p of body.personas) {
      this.personas.set(p.id, p);
      const option = el("option", null, `${p.name}, ${p.title.toLowerCase()}`);
      option.value = p.id;
      this.select.append(option);
    }
    this.show(this.current || body.default);
  }

  /** The session's persona (from the server's session event). */
  show(id) {
    if (!id) return;
    this.current = id;
    if (this.personas.has(id)) this.select.value = id;
    this.describe(id);
  }

  describe(id) {
    const p = this.personas.get(id);
    this.about.textContent = p ? p.description : "";
  }
}

const EMOTION_COLORS = {
  happy: "#2f8f4e",
  surprised: "#b7791f",
  neutral: "#6b7780",
  anxious: "#8a5cb8",
  angry: "#c0392b",
  sad: "#2f5f9f",
};

/** The insights of the current session: the emotional arc as a small chart, the trend, topics and summary. */
export class InsightsPanel {
  /** @param {{sessionId: () => string | null, onUpdate: (insights: object | null) => void}} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.chart = $("arc-chart");
    this.trend = $("arc-trend");
    this.summary = $("summary");
    this.topics = $("topics");
    this.generation = 0;
  }

  clear() {
    this.generation += 1;
    this.render(null);
  }

  /** Fetch the insights; while the server is still updating them after a turn (or briefly cannot answer),
   * fetch again, backing off, until they are up to date. */
  async refresh() {
    const generation = ++this.generation;
    const id = this.hooks.sessionId();
    const deadline = Date.now() + UPDATE_DEADLINE_MS;
    let wait = UPDATE_POLL_MS;
    while (id && Date.now() < deadline) {
      let body;
      let retry = false;
      try {
        body = await api(`/api/sessions/${encodeURIComponent(id)}/insights`);
      } catch (err) {
        body = null; // 404: not stored yet (a fresh session before its first turn)
        retry = err.status !== 404 && err.status !== 401 && err.status !== 403;
      }
      if (generation !== this.generation) return; // another refresh or a session switch took over
      if (body || !retry) this.render(body);
      if (!retry && (!body || !body.updating)) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(UPDATE_POLL_MAX_MS, Math.round(wait * 1.5));
      if (generation !== this.generation) return;
    }
    if (!id) this.render(null);
  }

  render(insights) {
    this.drawArc(insights ? insights.arc : { points: [], trend: "too_few_turns" });
    const summary = insights && insights.summary;
    this.summary.textContent = summary || "The summary appears after the first things you share.";
    this.summary.classList.toggle("placeholder", !summary);
    this.topics.replaceChildren(
      ...(insights ? insights.topics : []).map((t) => el("li", "chip", `${t.topic} · ${t.turns}`)),
    );
    this.hooks.onUpdate(insights);
  }

  drawArc(arc) {
    const width = 256;
    const height = 84;
    const pad = 10;
    const points = arc.points;
    const x = (i) => (points.length < 2 ? width / 2 : pad + (i * (width - 2 * pad)) / (points.length - 1));
    const y = (v) => height / 2 - v * (height / 2 - pad);
    this.chart.replaceChildren(
      svg("line", { x1: pad, x2: width - pad, y1: y(0), y2: y(0), class: "axis" }),
      svg("text", { x: 2, y: pad + 2, class: "axis-label" }),
      svg("text", { x: 2, y: height - 2, class: "axis-label" }),
    );
    const [top, bottom] = this.chart.querySelectorAll("text");
    top.textContent = "pleasant";
    bottom.textContent = "unpleasant";
    if (points.length > 1) {
      const path = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.valence).toFixed(1)}`).join(" ");
      this.chart.append(svg("path", { d: path, class: "arc-line" }));
    }
    points.forEach((p, i) => {
      const dot = svg("circle", {
        cx: x(i).toFixed(1),
        cy: y(p.valence).toFixed(1),
        r: 4.5,
        fill: EMOTION_COLORS[p.emotion] || EMOTION_COLORS.neutral,
        class: "arc-point",
        "data-emotion": p.emotion,
      });
      const title = svg("title", {});
      title.textContent = `Turn ${i + 1}: ${p.emotion} ${Math.round(p.confidence * 100)}%`;
      dot.append(title);
      this.chart.append(dot);
    });
    const trends = {
      improving: "Mood improving",
      declining: "Mood declining",
      steady: "Mood steady",
      too_few_turns: points.length ? "One turn so far" : "No turns yet",
    };
    this.trend.textContent = trends[arc.trend] || arc.trend;
    this.trend.dataset.trend = arc.trend;
    this.chart.setAttribute(
      "aria-label",
      `Emotional arc: ${points.map((p) => p.emotion).join(", ") || "no turns yet"}. ${this.trend.textContent}.`,
    );
  }
}

/** What the mentor remembers of this user, each with a delete button. */
export class MemoryList {
  /**
   * @param {{sessionId: () => string | null, onError: (msg: string) => void, onUpdate: (memories: object[]) => void}} hooks
   * sessionId: the stored session whose memories to show (without a user id, memory stays with its session).
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.list = $("memories");
  }

  query() {
    const id = this.hooks.sessionId();
    return id ? `session_id=${encodeURIComponent(id)}` : null;
  }

  async refresh() {
    const query = this.query();
    if (query === null) {  // a session not stored yet has nothing remembered
      this.render([]);
      return;
    }
    let body;
    try {
      body = await api(`/api/memories?limit=50&${query}`);
    } catch (err) {
      this.hooks.onError(`Could not load the memories: ${err.message}`);
      return;
    }
    this.render(body.memories);
  }

  render(memories) {
    this.list.replaceChildren();
    if (memories.length === 0) {
      this.list.append(el("li", "empty", "Nothing remembered yet. Events, people, worries and goals you mention are kept here."));
    }
    for (const m of memories) {
      const li = el("li", "memory");
      li.dataset.memoryId = String(m.id);
      const text = el("span", "memory-text", m.text);
      const kind = el("span", "memory-kind", m.kind);
      const del = el("button", "delete quiet", "Forget");
      del.type = "button";
      del.setAttribute("aria-label", `Forget: ${m.text}`);
      del.addEventListener("click", () => this.remove(m.id));
      li.append(kind, text, del);
      this.list.append(li);
    }
    this.hooks.onUpdate(memories);
  }

  async remove(id) {
    try {
      const query = this.query();
      await api(`/api/memories/${id}${query ? `?${query}` : ""}`, { method: "DELETE" });
    } catch (err) {
      this.hooks.onError(`Could not forget that: ${err.message}`);
      return;
    }
    await this.refresh();
  }
}
