// The ops dashboard: the system's topology and health, its resilience
// policies, its messaging and consistency lag, sagas, dead letters, one
// order's journey across every hop, and the fault knobs.
import { api, login, logout, session, h, time } from "./api.js";

const main = document.getElementById("main");
const alertBox = document.getElementById("alert");
let timer = null;
let previous = null; // the last metrics scrape, for rates

function showError(e) {
  alertBox.textContent = e instanceof Error ? e.message : String(e);
  alertBox.hidden = false;
}
function clearError() { alertBox.hidden = true; }

function view(title, ...content) {
  main.replaceChildren(h("h1", {}, title), ...content);
  document.title = title + " · Junction ops";
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.getAttribute("href") === (location.hash || "#/overview"));
  for (const a of document.querySelectorAll("nav a[aria-current]")) a.setAttribute("aria-current", "page");
}

function header() {
  const s = session();
  document.getElementById("who").replaceChildren(...(s ? [h("span", {}, s.username), " ",
    h("button", { type: "button", class: "link", onclick: () => { logout(); route(); } }, "Log out")] : []));
}

function loginView() {
  const user = h("input", { id: "username", autocomplete: "username", required: true, value: "admin" });
  const pass = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  view("Log in", h("form", { class: "card narrow", onsubmit: async (e) => {
    e.preventDefault();
    clearError();
    try { await login(user.value.trim(), pass.value); route(); } catch (err) { showError(err); }
  } }, h("label", { for: "username" }, "User name"), user, h("label", { for: "password" }, "Password"), pass,
  h("button", { type: "submit", id: "login" }, "Log in"),
  h("p", { class: "hint" }, "The dashboard is for administrators (the demo's admin).")));
  pass.focus();
}

// table is a panel of rows under head; a wide one takes the whole width
// of the overview, for tables with many columns.
function table(caption, head, rows, empty = "None.", wide = false) {
  if (!rows.length) return h("div", {}, h("h2", {}, caption), h("p", { class: "hint" }, empty));
  return h("div", { class: wide ? "panel wide" : "panel" }, h("table", {}, h("caption", {}, h("h2", {}, caption)),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => i === 0 ? h("th", { scope: "row" }, c) : h("td", { class: typeof c === "number" ? "num" : "" }, typeof c === "number" ? fmt(c) : c)))))));
}

function fmt(n) {
  if (!Number.isFinite(n)) return "–";
  return Math.abs(n) >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(2);
}

// sum adds the samples of name in scrape s matching the labels of want.
function samples(s, name, want = {}) {
  return s.samples.filter((x) => x.name === name && Object.entries(want).every(([k, v]) => x.labels && x.labels[k] === v));
}
function total(s, name, want) { return samples(s, name, want).reduce((a, x) => a + x.value, 0); }

// rate is per second between the previous scrape and this one.
function rate(now, id, name, want) {
  if (!previous) return NaN;
  const before = previous.byId.get(id);
  const after = now.byId.get(id);
  if (!before || !after) return NaN;
  const dt = (now.at - previous.at) / 1000;
  return dt > 0 ? Math.max(0, total(after, name, want) - total(before, name, want)) / dt : NaN;
}

async function scrape() {
  const m = await api("GET", "/api/admin/ops/metrics");
  m.at = Date.parse(m.at);
  m.byId = new Map(m.instances.map((i) => [i.id, i]));
  return m;
}

async function overview() {
  const [m, graph] = await Promise.all([scrape(), api("GET", "/api/admin/ops/graph?window=60s").catch(() => ({ edges: [] }))]);
  const byService = new Map();
  for (const i of m.instances) byService.set(i.service, [...(byService.get(i.service) || []), i]);
  const topo = [...byService].sort().map(([svc, list]) => [svc,
    h("span", {}, list.map((i) => h("span", { class: i.ready ? "up" : "down", title: i.error || "" }, i.id + (i.ready ? " ✓" : " ✗ not ready") + " ")) ),
    list.reduce((a, i) => a + rate(m, i.id, "http_server_requests_total"), 0),
    (() => { const all = list.reduce((a, i) => a + rate(m, i.id, "http_server_requests_total"), 0); const bad = list.reduce((a, i) => a + ["500", "502", "503", "504"].reduce((b, c) => b + rate(m, i.id, "http_server_requests_total", { code: c }), 0), 0); return all > 0 ? bad / all : 0; })()]);
  const edges = graph.edges.map((e) => [e.from + " → " + e.to, e.calls / 60, e.calls ? e.errors / e.calls : 0, e.meanMs]);
  const breakers = [];
  for (const i of m.instances) for (const s of samples(i, "resilience_breaker_state")) {
    const st = ["closed", "half-open", "open"][s.value] || String(s.value);
    breakers.push([i.id + " → " + s.labels.dependency, h("span", { class: "state-" + st }, st), total(i, "resilience_breaker_opened_total", { dependency: s.labels.dependency }),
      rate(m, i.id, "resilience_retries_total", { dependency: s.labels.dependency }), rate(m, i.id, "resilience_rejected_total", { dependency: s.labels.dependency })]);
  }
  const gw = m.instances.filter((i) => i.service === "gateway").map((i) => [i.id, total(i, "gateway_shed_total"), total(i, "gateway_rate_limited_total"), total(i, "gateway_fallbacks_total"), total(i, "gateway_retries_total"), total(i, "gateway_websockets")]);
  // What each process admits and refuses: the gateway's throttle of new
  // orders, order-service's admission of them, every server's limit.
  const admission = [];
  for (const i of m.instances) {
    if (i.service === "gateway") admission.push([i.id + " throttle of new orders", "", "", "", "", rate(m, i.id, "gateway_throttled_total")]);
    if (samples(i, "order_admission_limit").length) {
      const bound = total(i, "order_admission_time_bound");
      admission.push([i.id + " order admission", total(i, "order_admission_limit"), bound > 0 ? bound : "lifted", total(i, "order_admission_in_flight"), "", rate(m, i.id, "orders_refused_total")]);
    }
    if (samples(i, "server_limit").length) admission.push([i.id + " server limit", total(i, "server_limit"), "", total(i, "server_limit_in_flight"), total(i, "server_limit_queued"), rate(m, i.id, "server_limit_refused_total")]);
  }
  const outbox = m.instances.filter((i) => samples(i, "outbox_unsent_messages").length).map((i) => [i.id, total(i, "outbox_unsent_messages"), total(i, "outbox_oldest_unsent_age_seconds")]);
  const groups = [];
  for (const i of m.instances) for (const s of samples(i, "jetstream_consumer_pending_messages")) {
    groups.push([s.labels.stream + " / " + s.labels.consumer, s.value, total(i, "jetstream_consumer_ack_pending_messages", s.labels), total(i, "jetstream_consumer_redelivered_messages", s.labels)]);
  }
  groups.sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
  const sagas = [];
  for (const i of m.instances) for (const s of samples(i, "saga_instances")) sagas.push([i.id + " " + s.labels.saga + " " + s.labels.status, s.value]);
  view("Overview",
    h("p", { class: "hint" }, "Refreshed every 3 s. Rates are per second between two refreshes; calls between services come from the traces of the last minute (sampled)."),
    h("div", { class: "panels" },
      table("Services and instances", ["service", "instances", "requests/s", "5xx ratio"], topo),
      table("Calls between services (traces, last 60 s)", ["call", "calls/s", "error ratio", "mean ms"], edges, "No traces yet (or tracing is off)."),
      table("Circuit breakers, retries, refusals", ["caller → dependency", "state", "opened", "retries/s", "refused/s"], breakers, "None.", true),
      table("Gateway policies", ["instance", "shed", "429", "fallbacks", "retries", "websockets"], gw),
      table("Admission: work let in and refused", ["instance · what", "limit", "time bound", "in flight", "queued", "refused/s"], admission, "None.", true),
      table("Outbox: written, not yet at the broker", ["instance", "unsent", "oldest (s)"], outbox),
      table("Consumers: at the broker, not yet read (the lag of every reader)", ["stream / group", "pending", "unacked", "redelivered"], groups.slice(0, 30), "None.", true),
      table("Sagas now", ["instance saga status", "count"], sagas)));
  previous = m;
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

async function sagasView(params) {
  const status = params.get("status") || "";
  const q = "/api/admin/sagas?limit=50" + (status ? "&status=" + encodeURIComponent(status) : "");
  const r = await api("GET", q);
  const select = h("select", { id: "saga-status", onchange: () => { location.hash = "#/sagas" + (select.value ? "?status=" + select.value : ""); } },
    ["", "running", "compensating", "completed", "compensated", "needs_attention"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  const detail = h("div", { id: "saga-detail" });
  view("Sagas", h("label", { for: "saga-status" }, "Status "), select,
    table("Saga instances, newest first", ["id", "saga", "status", "step", "reason", "updated"], r.items.map((s) => [
      h("button", { type: "button", class: "link", onclick: () => showSaga(s.id, detail) }, s.id), s.saga, s.status, s.step, s.reason || "", new Date(s.updatedAt).toLocaleTimeString()])),
    detail);
}

async function showSaga(id, into) {
  const s = await api("GET", "/api/admin/sagas/" + encodeURIComponent(id));
  into.replaceChildren(h("h2", {}, "Saga " + s.id + " (" + s.saga + ", " + s.status + ")"),
    h("ol", { class: "timeline" }, (s.history || []).map((e) => h("li", { class: "ev " + (e.event.startsWith("undo") ? "undo" : e.event === "failed" ? "bad" : e.event === "succeeded" ? "ok" : "") },
      h("time", { datetime: e.at }, time(e.at)), " ", h("span", { class: "what" }, (e.step ? e.step + ": " : "") + e.event + (e.detail ? " (" + e.detail + ")" : ""))))),
    h("p", {}, h("a", { href: "#/journey?order=" + parseInt(s.id, 10) }, "Its order's journey")));
}

async function deadLettersView() {
  const r = await api("GET", "/api/admin/deadletters?limit=50");
  const detail = h("div", { id: "dl-detail" });
  view("Dead letters",
    h("p", { class: "hint" }, "Messages a consumer gave up on. Redrive sends one back to its topic, for its group, once the cause is fixed."),
    table("Dead letters, newest first", ["id", "topic / group", "type", "reason", "attempts", "status", ""], r.items.map((d) => [
      h("button", { type: "button", class: "link", onclick: () => showDeadLetter(d.id, detail) }, String(d.id)), d.topic + " / " + d.group, d.type, d.reason, d.attempts, d.status + (d.redrives ? ` (${d.redrives}×)` : ""),
      h("button", { type: "button", class: "small", "data-redrive": d.id, onclick: async (e) => {
        e.target.disabled = true;
        try { await api("POST", "/api/admin/deadletters/" + d.id + "/redrive"); await deadLettersView(); } catch (err) { showError(err); e.target.disabled = false; }
      } }, "Redrive")]), "No dead letters."),
    detail);
}

async function showDeadLetter(id, into) {
  const d = await api("GET", "/api/admin/deadletters/" + id);
  into.replaceChildren(h("h2", {}, "Dead letter " + d.id), h("p", {}, d.reason), h("h3", {}, "Headers"), h("pre", {}, JSON.stringify(d.headers || {}, null, 2)), h("h3", {}, "Body"), h("pre", {}, d.body || d.bodyBase64 || ""));
}

// journey stitches every trace of an order (each HTTP call, gRPC call,
// message and saga step, across the traces that link to one another)
// into one timeline.
async function journeyView(params) {
  const input = h("input", { id: "order-id", inputmode: "numeric", value: params.get("order") || "", required: true });
  const out = h("div", { id: "journey" });
  view("Order journey", h("form", { class: "card narrow", onsubmit: (e) => { e.preventDefault(); location.hash = "#/journey?order=" + encodeURIComponent(input.value.trim()); } },
    h("label", { for: "order-id" }, "Order id"), input, h("button", { type: "submit" }, "Show")), out);
  const id = params.get("order");
  if (!id) return;
  if (!/^\d+$/.test(id)) { showError("An order id is a number."); return; }
  const sums = await api("GET", "/api/admin/ops/orders/" + id + "/traces");
  const traces = await Promise.all(sums.traces.map((t) => api("GET", "/api/admin/ops/traces/" + t.traceId)));
  // Linked traces (a public entry links the caller's) join too, when kept.
  const have = new Set(traces.map((t) => t.traceId));
  for (const t of [...traces]) for (const sp of t.spans) for (const l of sp.links || []) {
    if (have.has(l.traceId)) continue;
    have.add(l.traceId);
    try { traces.push(await api("GET", "/api/admin/ops/traces/" + l.traceId)); } catch { /* evicted or never kept */ }
  }
  const spans = traces.flatMap((t) => t.spans).sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  if (!spans.length) {
    out.replaceChildren(h("p", {}, "No trace of order " + id + " is kept: it may be older than the store's latest spans, or was not sampled (junction up --traces-per-second -1 keeps every one)."));
    return;
  }
  const t0 = Date.parse(spans[0].start);
  const t1 = Math.max(...spans.map((s) => Date.parse(s.end)));
  const width = Math.max(1, t1 - t0);
  const services = [...new Set(spans.map((s) => s.service))].sort();
  // Each message: from its write (create, in the writer's transaction) to
  // each reader's processing: how far behind the owner every reader is.
  const byMessage = new Map();
  for (const sp of spans) {
    const id = sp.attributes && sp.attributes["messaging.message.id"];
    if (!id) continue;
    if (!byMessage.has(id)) byMessage.set(id, []);
    byMessage.get(id).push(sp);
  }
  const lags = [];
  for (const list of byMessage.values()) {
    const created = list.find((sp) => sp.name.startsWith("create "));
    if (!created) continue;
    const sent = list.find((sp) => sp.name.startsWith("send "));
    for (const p of list.filter((sp) => sp.name.startsWith("process "))) {
      lags.push([created.name.slice(7) + ": " + created.service + " → " + p.service + (p.attributes["junction.message.delivery_count"] > 1 ? ` (delivery ${p.attributes["junction.message.delivery_count"]})` : ""),
        sent ? Date.parse(sent.start) - Date.parse(created.start) : NaN, Date.parse(p.start) - Date.parse(created.start)]);
    }
  }
  lags.sort((a, b) => b[2] - a[2]);
  out.replaceChildren(
    h("p", {}, `${spans.length} spans in ${traces.length} trace(s) across ${services.length} services (${services.join(", ")}), over ${fmt(width)} ms.`),
    table("From each write to its readers (eventual consistency: the owner had it at once)", ["message: writer → reader", "outbox wait (ms)", "lag to the reader (ms)"], lags.slice(0, 40), "No messages in these traces."),
    h("h2", {}, "Every hop, by start time"),
    h("div", { class: "waterfall", role: "table", "aria-label": "The order's spans by start time" },
      spans.map((s) => {
        const start = Date.parse(s.start) - t0;
        const dur = Math.max(0, Date.parse(s.end) - Date.parse(s.start));
        const messaging = s.attributes && s.attributes["messaging.system"];
        const bar = h("span", { class: "span-bar" + (s.status === "error" ? " error" : messaging ? " messaging" : ""), title: s.name });
        bar.style.left = (100 * start / width) + "%";
        bar.style.width = Math.max(0.2, 100 * dur / width) + "%";
        return h("div", { class: "row", role: "row", "data-service": s.service },
          h("span", { role: "cell" }, h("span", { class: "svc" }, s.service), " ", s.name, s.status === "error" ? h("span", { class: "down" }, " error" + (s.statusMessage ? ": " + s.statusMessage : "")) : ""),
          h("span", { class: "bar-track", role: "cell" }, bar),
          h("span", { class: "num", role: "cell" }, fmt(dur) + " ms"));
      })));
}

// linksPanel lists the links of junction up --fault-links, each with its
// faults and a form to set them (as junction chaos link does).
function linksPanel(links) {
  if (links.error) return h("div", { class: "card" }, h("h2", {}, "Links"), h("p", { class: "hint" }, "Start the system with junction up --fault-links to put a link (Toxiproxy) in front of every instance and its broker connection; then its latency, blackhole, reset and outage are set here."));
  const rows = links.links.map((l) => {
    const latency = h("input", { type: "number", min: 0, max: 60000, value: 0, class: "qty", id: "lat-" + l.name, "aria-label": "Latency of " + l.name + " in ms" });
    const mode = h("select", { id: "mode-" + l.name, "aria-label": "Fault of " + l.name },
      ["none", "blackhole", "reset", "down"].map((m) => h("option", { value: m }, m)));
    const set = async (e) => {
      e.target.disabled = true;
      try {
        await api("PUT", "/api/admin/ops/links/" + encodeURIComponent(l.name), { latencyMs: Number(latency.value), blackhole: mode.value === "blackhole", reset: mode.value === "reset", down: mode.value === "down" });
        await faultsView();
      } catch (err) { showError(err); e.target.disabled = false; }
    };
    return [l.name, (l.down ? "down " : "") + (l.toxics.join(", ") || (l.down ? "" : "healthy")), h("span", {}, latency, " ms ", mode, " ", h("button", { type: "button", class: "small", "data-link": l.name, onclick: set }, "Set"))];
  });
  return h("div", { class: "card" }, table("Links", ["link", "faults now", "set (replaces)"], rows),
    h("p", { class: "hint" }, "A link named after an instance carries every call to it; NAME->broker is that instance's broker connection. Set with latency 0 and none to heal a link."));
}

async function faultsView() {
  const [inst, faults, links] = await Promise.all([api("GET", "/api/admin/ops/instances"), api("GET", "/api/admin/ops/provider").catch((e) => ({ error: e.message })),
    api("GET", "/api/admin/ops/links").catch((e) => ({ error: e.message }))]);
  const latency = h("input", { id: "latency", type: "number", min: 0, max: 60000, value: faults.latencyMs || 0 });
  const errors = h("input", { id: "error-rate", type: "number", min: 0, max: 1, step: 0.05, value: faults.errorRate || 0 });
  const outage = h("input", { id: "outage", type: "checkbox", checked: !!faults.outage });
  outage.style.width = "auto";
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    clearError();
    try {
      await api("PUT", "/api/admin/ops/provider", { latencyMs: Number(latency.value), errorRate: Number(errors.value), outage: outage.checked });
      await faultsView();
    } catch (err) { showError(err); }
  } }, h("h2", {}, "Payment provider"),
  faults.error ? h("p", { class: "down" }, faults.error) : null,
  h("label", { for: "latency" }, "Latency added to every call (ms)"), latency,
  h("label", { for: "error-rate" }, "Share of calls answered 503 (0 to 1)"), errors,
  h("label", { for: "outage" }, outage, " Outage: every call answered 503"),
  h("button", { type: "submit", id: "set-faults" }, "Set"),
  h("button", { type: "button", class: "quiet", id: "clear-faults", onclick: async () => { try { await api("PUT", "/api/admin/ops/provider", {}); await faultsView(); } catch (err) { showError(err); } } }, "Clear"),
  h("p", { class: "hint" }, "Watch the overview: payment-service's breaker on payment-provider opens, orders are rejected and their sagas compensate."));
  const act = (id, action) => async (e) => {
    e.target.disabled = true;
    try { await api("POST", `/api/admin/ops/instances/${encodeURIComponent(id)}/${action}`); } catch (err) { showError(err); }
    e.target.disabled = false;
  };
  const rows = inst.instances.map((i) => [i.id, i.service, Object.entries(i.endpoints || {}).map(([k, v]) => k + " " + v).join(", "),
    inst.control ? h("span", { class: "actions" }, ["kill", "stop", "pause", "resume"].map((a) => h("button", { type: "button", class: "small" + (a === "kill" ? " danger" : ""), "data-action": a, "data-instance": i.id, onclick: act(i.id, a) }, a))) : "—"]);
  view("Faults", h("div", { class: "panels" }, form,
    h("div", { class: "card" }, table("Instances", ["instance", "service", "endpoints", "actions"], rows),
      h("p", { class: "hint" }, inst.control ? "kill: SIGKILL (restarted by junction up); stop: SIGTERM; pause: SIGSTOP (it stops answering; probes take it out); resume: SIGCONT. A paused instance leaves this list; resume it with junction chaos resume ID." : "Instances can be stopped from here in a system run by junction up.")),
    linksPanel(links)));
}

async function route() {
  clearError();
  header();
  clearInterval(timer);
  if (!session()) return loginView();
  if (session().role !== "admin") {
    view("Administrators only", h("p", {}, "You are signed in as " + session().username + ", a customer. ", h("button", { type: "button", class: "link", onclick: () => { logout(); route(); } }, "Log in as an administrator")));
    return;
  }
  const [path, query] = (location.hash || "#/overview").slice(1).split("?");
  const params = new URLSearchParams(query || "");
  try {
    switch (path) {
      case "/sagas": await sagasView(params); break;
      case "/deadletters": await deadLettersView(); break;
      case "/journey": await journeyView(params); break;
      case "/faults": await faultsView(); break;
      default:
        previous = null;
        await overview();
        timer = setInterval(() => overview().catch(showError), 3000);
    }
  } catch (e) {
    if (e.status === 401) return loginView();
    if (e.status === 403) return view("Administrators only", h("p", {}, e.message));
    view("Something went wrong", h("p", {}, e.message));
    showError(e);
  }
}

window.addEventListener("hashchange", route);
route();
