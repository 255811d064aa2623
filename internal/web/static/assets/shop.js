// The storefront: log in, browse the catalogue with its stock, fill a
// cart, pay, and watch the order go through its saga live over /ws.
import { api, login, logout, session, Live, h, money, time, describe } from "./api.js";

const main = document.getElementById("main");
const alertBox = document.getElementById("alert");
const DECLINED = "4000000000000002";
let live = null;
let products = [];
let onPage = null; // the open page's own use of live events
let stockTimer = null; // the catalogue's refresh of the stock
let liveState = "…";
const cart = new Map(JSON.parse(sessionStorage.getItem("junction.cart") || "[]"));

function saveCart() {
  sessionStorage.setItem("junction.cart", JSON.stringify([...cart]));
  const n = [...cart.values()].reduce((a, b) => a + b, 0);
  document.getElementById("cart-link").textContent = n ? `Cart (${n})` : "Cart";
}

export function showError(e) {
  alertBox.textContent = e instanceof Error ? e.message : String(e);
  alertBox.hidden = false;
}

function clearError() {
  alertBox.hidden = true;
  alertBox.textContent = "";
}

function view(title, ...content) {
  main.replaceChildren(h("h1", {}, title), ...content);
  document.title = title + " · Junction shop";
  main.focus({ preventScroll: true });
}

function header() {
  const s = session();
  const who = document.getElementById("who");
  if (!s) {
    who.replaceChildren(h("a", { href: "#/login", id: "login-link" }, "Log in"));
    return;
  }
  who.replaceChildren(
    h("span", { id: "live-state", class: "live", title: "Live updates over the WebSocket" }, liveState),
    " ", h("span", {}, s.username), " ",
    h("button", { type: "button", class: "link", onclick: () => { logout(); if (live) live.close(); live = null; route(); } }, "Log out"));
}

function startLive() {
  if (live || !session()) return;
  live = new Live({
    onEvent: (ev) => {
      const row = document.querySelector(`[data-order="${ev.orderId}"] .status`);
      if (row && ev.kind === "status") row.textContent = ev.status;
      if (ev.kind === "status" && ev.status !== "pending") refreshStock();
      if (onPage) onPage(ev);
    },
    onState: (st) => { liveState = st; const el = document.getElementById("live-state"); if (el) el.textContent = st; },
    onError: (f) => { if (f.code !== "not_found") showError(f.detail || f.code); else showError("That order is not yours, or does not exist."); },
  });
  live.followMine();
}

function eventItem(ev) {
  const d = describe(ev);
  return h("li", { class: "ev " + d.tone, "data-seq": ev.seq, "data-kind": ev.kind, "data-status": ev.status || "" },
    h("span", { class: "seq" }, "#" + ev.seq), " ", h("time", { datetime: ev.at }, time(ev.at)), " ", h("span", { class: "what" }, d.text));
}

function loginView(next) {
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, value: "alice" });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card narrow", onsubmit: async (e) => {
    e.preventDefault();
    clearError();
    try {
      await login(user.value.trim(), pass.value);
      header();
      startLive();
      if (location.hash === next) route();
      else location.hash = next; // the hashchange routes
    } catch (err) { showError(err); }
  } },
  h("label", { for: "username" }, "User name"), user,
  h("label", { for: "password" }, "Password"), pass,
  h("button", { type: "submit", id: "login" }, "Log in"),
  h("p", { class: "hint" }, "Demo accounts: alice and bob (customers), admin; the password is the one junction up printed (\"junction\" by default)."));
  view("Log in", form);
  pass.focus();
}

async function refreshStock() {
  try {
    const r = await api("GET", "/api/products");
    products = r.items;
    for (const p of products) {
      const el = document.querySelector(`[data-sku="${CSS.escape(p.sku)}"] .stock`);
      if (el) el.textContent = p.stock > 0 ? `${p.stock} in stock` : "Out of stock";
    }
  } catch { /* the catalogue view says so when it loads */ }
}

async function catalogue() {
  const r = await api("GET", "/api/products");
  products = r.items;
  const grid = h("ul", { class: "grid", "aria-label": "Products" }, products.map((p) =>
    h("li", { class: "card product", "data-sku": p.sku },
      h("h2", {}, p.name),
      h("p", {}, p.description),
      h("p", { class: "price" }, money(p.price, p.currency)),
      h("p", { class: "stock" }, p.stock > 0 ? `${p.stock} in stock` : "Out of stock"),
      h("button", { type: "button", class: "add", onclick: () => { cart.set(p.sku, (cart.get(p.sku) || 0) + 1); saveCart(); } }, "Add to cart", h("span", { class: "sr" }, " " + p.name)))));
  view("Catalogue", h("p", { class: "hint" }, "Stock as it is now: it refreshes every few seconds, and at once when one of your orders is decided."), grid);
  stockTimer = setInterval(refreshStock, 5000);
}

function cartView() {
  if (cart.size === 0) {
    view("Cart", h("p", {}, "Your cart is empty. ", h("a", { href: "#/" }, "Browse the catalogue.")));
    return;
  }
  const bySku = new Map(products.map((p) => [p.sku, p]));
  let total = 0;
  const rows = [...cart].map(([sku, qty]) => {
    const p = bySku.get(sku);
    if (p) total += p.price * qty;
    const input = h("input", { type: "number", min: 0, max: 99, value: qty, id: "qty-" + sku, class: "qty",
      onchange: () => { const n = Math.max(0, Math.min(99, Number(input.value) || 0)); if (n) cart.set(sku, n); else cart.delete(sku); saveCart(); cartView(); } });
    return h("tr", {}, h("th", { scope: "row" }, p ? p.name : sku),
      h("td", {}, h("label", { for: "qty-" + sku, class: "sr" }, "Quantity of " + (p ? p.name : sku)), input),
      h("td", {}, p ? money(p.price * qty, p.currency) : "?"));
  });
  const card = h("input", { id: "card", name: "card", inputmode: "numeric", autocomplete: "cc-number", value: "4242424242424242", required: true, pattern: "[0-9 ]{12,23}" });
  const pay = h("button", { type: "submit", id: "pay" }, "Pay and place the order");
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    clearError();
    pay.disabled = true;
    try {
      const items = [...cart].map(([sku, quantity]) => ({ sku, quantity }));
      const key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
      const o = await api("POST", "/api/orders", { items, card: card.value.replace(/\s/g, "") }, { headers: { "Idempotency-Key": key } });
      cart.clear();
      saveCart();
      location.hash = "#/orders/" + o.orderId;
    } catch (err) {
      showError(err);
      pay.disabled = false;
    }
  } },
  h("table", {}, h("caption", { class: "sr" }, "Your cart"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Product"), h("th", { scope: "col" }, "Quantity"), h("th", { scope: "col" }, "Price"))),
    h("tbody", {}, rows)),
  h("p", { class: "price" }, "Total: " + money(total, "EUR")),
  h("label", { for: "card" }, "Card number"), card,
  h("p", { class: "hint" }, `Nothing is charged. Card ${DECLINED} is always declined (to see a compensation); any other is accepted.`),
  pay);
  view("Cart", form);
}

async function ordersView() {
  const r = await api("GET", "/api/orders?limit=50");
  const list = h("ul", { class: "orders" }, r.items.map((o) =>
    h("li", { class: "card", "data-order": o.orderId },
      h("a", { href: "#/orders/" + o.orderId }, "Order " + o.orderId), " ",
      h("span", { class: "status badge" }, o.status), " ",
      h("span", { class: "hint" }, o.items.map((i) => `${i.quantity} × ${i.sku}`).join(", "), " · ", new Date(o.createdAt).toLocaleString()))));
  view("My orders", r.items.length ? list : h("p", {}, "No orders yet."));
}

async function orderView(id) {
  const o = await api("GET", "/api/orders/" + id);
  const list = h("ol", { class: "timeline", id: "timeline", "aria-live": "polite", "aria-label": "What happened to the order" });
  const status = h("span", { class: "status badge", id: "order-status" }, o.status);
  const reason = h("span", { id: "reason" }, o.reason ? " — " + o.reason : "");
  view("Order " + id,
    h("div", { class: "card", "data-order": id },
      h("p", {}, "Status: ", status, reason),
      h("p", { class: "hint" }, o.items.map((i) => `${i.quantity} × ${i.sku}`).join(", "))),
    h("h2", {}, "Timeline"),
    h("p", { class: "hint" }, "Each step of the order's saga as it happens, pushed over the WebSocket; compensations are marked as such."),
    list);
  // The history so far from the API, then each live event after it; a
  // gap (an event missed while the page loaded) is read from the API.
  let shown = 0;
  let reading = Promise.resolve();
  const show = (ev) => {
    if (ev.seq !== shown + 1) return false;
    list.append(eventItem(ev));
    shown = ev.seq;
    if (ev.kind === "status") {
      status.textContent = ev.status;
      if (ev.detail) reason.textContent = " — " + ev.detail;
    }
    return true;
  };
  const catchUp = () => {
    reading = reading.then(async () => {
      const page = await api("GET", `/api/orders/${id}/events?after=${shown}&limit=500`);
      for (const ev of page.events) show({ ...ev, orderId: id });
    }).catch(showError);
    return reading;
  };
  onPage = (ev) => {
    if (ev.orderId === id && ev.seq > shown && !show(ev)) catchUp();
  };
  await catchUp();
  if (live) live.followOrder(id);
}

async function notificationsView() {
  const r = await api("GET", "/api/notifications?limit=50");
  view("Notifications", r.items.length
    ? h("ul", { class: "orders" }, r.items.map((n) => h("li", { class: "card" }, h("a", { href: "#/orders/" + n.orderId }, "Order " + n.orderId), ": ", n.text, " ", h("span", { class: "hint" }, new Date(n.createdAt).toLocaleString()))))
    : h("p", {}, "Nothing yet."));
}

async function route() {
  clearError();
  header();
  const hash = location.hash || "#/";
  onPage = null;
  clearInterval(stockTimer);
  if (hash === "#/login") return session() ? (location.hash = "#/") : loginView("#/");
  if (!session() && hash !== "#/" && hash !== "#/cart") return loginView(hash);
  try {
    let m;
    if (hash === "#/" || hash === "") await catalogue();
    else if (hash === "#/cart") { if (!products.length) await refreshStock(); cartView(); }
    else if (hash === "#/orders") await ordersView();
    else if ((m = hash.match(/^#\/orders\/(\d+)$/))) await orderView(Number(m[1]));
    else if (hash === "#/notifications") await notificationsView();
    else view("Not found", h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Back to the catalogue.")));
  } catch (e) {
    if (e.status === 401) return loginView(hash);
    view("Something went wrong", h("p", {}, e.message));
    showError(e);
  }
}

window.addEventListener("hashchange", route);
saveCart();
startLive();
route();
