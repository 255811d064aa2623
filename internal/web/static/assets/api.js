// The shop's API as the pages use it: the session, JSON calls whose
// errors carry the problem document's detail, and the live WebSocket.

const KEY = "junction.session";

// session is the signed-in user, while the access token lives or a refresh
// token can renew it.
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (s && (s.expires > Date.now() || s.refreshToken)) return s;
  } catch { /* a broken entry is no session */ }
  sessionStorage.removeItem(KEY);
  return null;
}

// logout ends the session at user-service too (its refresh token).
export function logout() {
  const s = session();
  sessionStorage.removeItem(KEY);
  if (s && s.refreshToken) {
    fetch("/api/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refreshToken: s.refreshToken }) }).catch(() => {});
  }
}

function keep(t, fallbackName) {
  const c = claims(t.accessToken);
  const s = { token: t.accessToken, refreshToken: t.refreshToken, username: c.name || fallbackName, role: c.role, userId: Number(c.sub), expires: Date.now() + t.expiresIn * 1000 };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

// renew trades the session's refresh token for a new access token; false
// when the session is over.
let renewing = null;
export function renew() {
  const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
  if (!s || !s.refreshToken) return Promise.resolve(false);
  renewing = renewing || fetch("/api/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refreshToken: s.refreshToken }) })
    .then(async (r) => {
      if (!r.ok) { sessionStorage.removeItem(KEY); return false; }
      keep(await r.json(), s.username);
      return true;
    })
    .catch(() => false)
    .finally(() => { renewing = null; });
  return renewing;
}

// claims reads a JWT's payload (for the name and role it names; the
// services verify it).
function claims(token) {
  const part = token.split(".")[1] || "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(json);
}

export async function login(username, password) {
  const t = await api("POST", "/api/auth/login", { username, password }, { anonymous: true });
  return keep(t, username);
}

// ApiError is a failed call: status and the problem's detail.
export class ApiError extends Error {
  constructor(status, detail, problem) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  const s = session();
  if (s && !opts.anonymous) headers.Authorization = "Bearer " + s.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  Object.assign(headers, opts.headers || {});
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "The shop cannot be reached: " + e.message);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const detail = (data && (data.detail || data.title)) || `${resp.status} ${resp.statusText}`;
    if (resp.status === 401 && !opts.anonymous && !opts.renewed && await renew()) {
      return api(method, path, body, { ...opts, renewed: true });
    }
    if (resp.status === 401 && !opts.anonymous) sessionStorage.removeItem(KEY);
    throw new ApiError(resp.status, detail, data);
  }
  return data;
}

// Live is the gateway's WebSocket (docs/websocket.md): it signs in with
// its first message, follows what it was asked to, and after a drop
// connects again and resumes every order after the last seq it saw, so
// onEvent gets each event once, in seq order.
export class Live {
  constructor({ onEvent, onState, onError }) {
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.onError = onError || (() => {});
    this.last = new Map();   // order id -> last seq seen
    this.orders = new Set(); // followed by id
    this.mine = false;
    this.wait = 250;
    this.closed = false;
    this.connect();
  }

  connect() {
    const s = session();
    if (!s || this.closed) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const ws = new WebSocket(url);
    this.ws = ws;
    this.onState("connecting");
    ws.onopen = () => {
      this.wait = 250;
      ws.send(JSON.stringify({ type: "auth", token: s.token }));
      if (this.mine) ws.send(JSON.stringify({ type: "subscribe", orders: "mine", after: Object.fromEntries(this.last) }));
      for (const id of this.orders) ws.send(JSON.stringify({ type: "subscribe", orderId: id, after: this.last.get(id) || 0 }));
      this.onState("live");
    };
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.type === "event") {
        if (f.seq <= (this.last.get(f.orderId) || 0)) return; // seen
        this.last.set(f.orderId, f.seq);
        this.onEvent(f);
      } else if (f.type === "error") {
        this.onError(f);
      }
    };
    ws.onclose = async (e) => {
      if (this.ws !== ws || this.closed) return;
      if (e.code === 1008 && !(await renew())) { // the token expired and the session is over
        this.onState("signed out");
        return;
      }
      this.onState("reconnecting");
      setTimeout(() => this.connect(), this.wait);
      this.wait = Math.min(this.wait * 2, 5000);
    };
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  followOrder(id, after = 0) {
    this.orders.add(id);
    if (!this.last.has(id)) this.last.set(id, after);
    this.send({ type: "subscribe", orderId: id, after: this.last.get(id) });
  }

  followMine() {
    this.mine = true;
    this.send({ type: "subscribe", orders: "mine", after: Object.fromEntries(this.last) });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000, "page left");
  }
}

// h builds an element: h("p", {class: "x"}, "text", child, …). Text is
// always text (never parsed as HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function money(minor, currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(minor / 100);
}

export function time(at) {
  if (!at) return "";
  const d = new Date(at);
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// describe says what an order event means, for people.
export function describe(ev) {
  const step = (ev.step || "").replace(/-/g, " ");
  switch (ev.kind) {
    case "status":
      return { text: "Order " + ev.status + (ev.detail ? ": " + ev.detail : ""), tone: { confirmed: "ok", shipped: "ok", rejected: "bad", cancelled: "bad", needs_attention: "bad" }[ev.status] || "" };
    case "saga":
      return { text: (ev.saga || "saga").replace(/-/g, " ") + " " + ev.outcome, tone: ev.outcome === "compensated" ? "undo" : ev.outcome === "completed" ? "ok" : "" };
    default: {
      const undo = ["undo_sent", "undone", "undo_failed"].includes(ev.outcome);
      const words = { sent: "requested", succeeded: "done", failed: "failed", timed_out: "timed out", undo_sent: "being undone (compensation)", undone: "undone (compensation)", undo_failed: "could not be undone", aborted: "aborted", needs_attention: "needs attention" };
      return { text: step + ": " + (words[ev.outcome] || ev.outcome) + (ev.detail ? " (" + ev.detail + ")" : ""), tone: undo ? "undo" : ev.outcome === "failed" || ev.outcome === "timed_out" ? "bad" : ev.outcome === "succeeded" ? "ok" : "" };
    }
  }
}
