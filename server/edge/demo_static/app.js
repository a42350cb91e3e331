// The demo page (docs/demo.md): one user of the chat, on the TypeScript SDK bundled for
// browsers (rendezvous-sdk.js, built from clients/js). Swipes and unmatch go to the HTTP API
// (same origin); messages, typing, receipts and presence go over the WebSocket with the SDK.
// Tokens come from POST /demo/token (a node on its development secret, loopback only) or are
// pasted; browsers cannot set Authorization on a WebSocket, so the SDK sends an `auth` frame.
import { RendezvousClient, compareIds } from "./rendezvous-sdk.js";

const $ = (id) => document.getElementById(id);
const TYPING_REFRESH_MS = 3000; // the server forgets an unrefreshed `on` after 6 s
const TYPING_IDLE_MS = 2500;
const PEER_TYPING_TTL_MS = 7000;
const LOG_LINES = 200;

const state = {
  user: "",
  token: "",
  client: null,
  matches: new Map(), // match id -> {id, peer, unread, closed, msgs: Map(id -> msg), peerRead, peerDelivered}
  presence: new Map(), // user -> {on, seen}
  open: null, // the match shown
  typingSent: 0,
  typingIdle: undefined,
  peerTyping: new Map(), // match id -> timer
};

// -- the event log: what the SDK hands the app, and what the app asks ---------------------

function log(direction, name, detail) {
  const li = document.createElement("li");
  const time = new Date().toISOString().slice(11, 23);
  li.innerHTML = `<span class="muted">${time}</span> <span class="${direction === "→" ? "out" : "ev"}"></span> `;
  li.querySelector("span:nth-child(2)").textContent = `${direction} ${name}`;
  li.append(detail === undefined ? "" : JSON.stringify(detail));
  li.dataset.event = name;
  const list = $("log");
  list.append(li);
  while (list.children.length > LOG_LINES) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

// -- HTTP: tokens, swipes, matches ---------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(`${response.status} ${data?.error?.code}: ${data?.error?.msg}`);
  return data;
}

async function devToken(user) {
  const response = await fetch("/demo/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data?.error?.msg ?? `demo token: HTTP ${response.status}`);
  state.token = data.token;
  return data.token;
}

function matchOf(id, peer) {
  let match = state.matches.get(id);
  if (match === undefined) {
    match = { id, peer, unread: 0, closed: false, msgs: new Map(), peerRead: undefined, peerDelivered: undefined };
    state.matches.set(id, match);
  }
  return match;
}

async function loadMatches() {
  const page = await api("GET", "/v1/matches?limit=100");
  for (const m of page.matches) matchOf(m.id, m.peer).unread = m.unread ?? 0;
  renderMatches();
}

async function refreshPresence() {
  const users = await state.client.presence();
  for (const u of users) state.presence.set(u.u, { on: u.on, seen: u.seen });
  renderMatches();
  renderChatHead();
}

async function swipe(action) {
  const target = $("target").value.trim();
  if (!target) return;
  log("→", "POST /v1/swipes", { target, action });
  try {
    const result = await api("POST", "/v1/swipes", { target, action });
    if (result.match) {
      $("swipe-result").textContent = `It's a match with ${result.match.peer}!`;
      matchOf(result.match.id, result.match.peer);
      renderMatches();
      openMatch(result.match.id);
      refreshPresence().catch(() => {});
    } else {
      $("swipe-result").textContent = action === "pass" ? `Passed on ${target}.` : `You liked ${target}: a match when they like you back.`;
    }
    $("target").value = "";
  } catch (error) {
    $("swipe-result").textContent = String(error.message ?? error);
  }
}

async function unmatch() {
  const match = state.matches.get(state.open);
  if (!match) return;
  log("→", "DELETE /v1/matches/{id}", { m: match.id });
  try {
    await api("DELETE", `/v1/matches/${encodeURIComponent(match.id)}`);
  } catch (error) {
    log("←", "error", String(error.message ?? error));
  }
}

// -- rendering -------------------------------------------------------------------------------

function presenceText(peer) {
  const p = state.presence.get(peer);
  if (p?.on) return "online";
  if (p?.seen) return `last seen ${new Date(p.seen).toLocaleTimeString()}`;
  return "offline";
}

function renderMatches() {
  const list = $("matches");
  list.replaceChildren();
  const open = [...state.matches.values()].filter((m) => !m.closed);
  if (open.length === 0) {
    list.innerHTML = '<li class="muted empty">No matches yet.</li>';
    return;
  }
  for (const match of open) {
    const li = document.createElement("li");
    li.dataset.match = match.id;
    li.dataset.peer = match.peer;
    li.className = match.id === state.open ? "active" : "";
    const dot = document.createElement("span");
    dot.className = `dot${state.presence.get(match.peer)?.on ? " on" : ""}`;
    const name = document.createElement("span");
    name.textContent = match.peer;
    li.append(dot, name);
    if (match.unread > 0 && match.id !== state.open) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = String(match.unread);
      li.append(badge);
    }
    li.addEventListener("click", () => openMatch(match.id));
    list.append(li);
  }
}

function renderChatHead() {
  const match = state.matches.get(state.open);
  if (!match) return;
  $("peer").textContent = match.peer;
  const on = state.presence.get(match.peer)?.on === true;
  $("peer-dot").className = `dot${on ? " on" : ""}`;
  $("peer-presence").textContent = presenceText(match.peer);
  $("peer-presence").dataset.online = String(on);
}

function receiptOf(match, msg) {
  if (match.peerRead !== undefined && compareIds(msg.id, match.peerRead) <= 0) return "read";
  if (match.peerDelivered !== undefined && compareIds(msg.id, match.peerDelivered) <= 0) return "delivered";
  return "sent";
}

const RECEIPT_TEXT = { sent: "✓ sent", delivered: "✓✓ delivered", read: "✓✓ read" };

function renderMessages() {
  const match = state.matches.get(state.open);
  if (!match) return;
  const list = $("messages");
  list.replaceChildren();
  const msgs = [...match.msgs.values()].sort((a, b) => compareIds(a.id, b.id));
  for (const msg of msgs) {
    const li = document.createElement("li");
    const mine = msg.from === state.user;
    li.className = `msg ${mine ? "mine" : "theirs"}`;
    li.dataset.id = msg.id;
    li.dataset.from = msg.from;
    const text = document.createElement("span");
    text.className = "body";
    text.textContent = msg.deleted ? "(unsent)" : msg.body ?? `[${msg.media?.kind ?? "media"}]`;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = new Date(msg.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (mine) {
      const receipt = document.createElement("span");
      receipt.className = "receipt";
      receipt.dataset.receipt = receiptOf(match, msg);
      receipt.textContent = ` · ${RECEIPT_TEXT[receipt.dataset.receipt]}`;
      meta.append(receipt);
    }
    li.append(text, meta);
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
  const closed = match.closed;
  $("closed-note").hidden = !closed;
  for (const id of ["text", "send", "unmatch"]) $(id).disabled = closed;
}

function renderTyping() {
  const match = state.matches.get(state.open);
  const typing = match !== undefined && state.peerTyping.has(match.id);
  $("typing").textContent = typing ? `${match.peer} is typing…` : "";
}

// -- chat ------------------------------------------------------------------------------------

async function openMatch(id) {
  const match = state.matches.get(id);
  if (!match) return;
  state.open = id;
  $("chat-empty").hidden = true;
  $("chat").hidden = false;
  renderMatches();
  renderChatHead();
  renderMessages();
  renderTyping();
  if (!match.closed) {
    try {
      const page = await state.client.history(id, { limit: 50 });
      for (const msg of page.msgs) match.msgs.set(msg.id, msg);
    } catch (error) {
      log("←", "error", String(error.message ?? error));
    }
  }
  if (state.open === id) {
    renderMessages();
    markRead(match);
  }
  $("text").focus();
}

function newestFromPeer(match) {
  let newest;
  for (const msg of match.msgs.values()) {
    if (msg.from !== state.user && (newest === undefined || compareIds(msg.id, newest) > 0)) newest = msg.id;
  }
  return newest;
}

function markRead(match) {
  const newest = newestFromPeer(match);
  match.unread = 0;
  renderMatches();
  if (newest === undefined || match.closed || document.visibilityState !== "visible") return;
  if (match.readSent !== undefined && compareIds(newest, match.readSent) <= 0) return;
  match.readSent = newest;
  log("→", "read", { m: match.id, id: newest });
  state.client.read(match.id, newest);
}

async function sendMessage() {
  const match = state.matches.get(state.open);
  const body = $("text").value.trim();
  if (!match || !body || match.closed) return;
  $("text").value = "";
  stopTyping(match);
  log("→", "send", { m: match.id, body });
  try {
    const ack = await state.client.send(match.id, { body });
    log("←", "ack", { id: ack.id, c: ack.c });
    match.msgs.set(ack.id, { t: "msg", m: match.id, id: ack.id, from: state.user, ts: ack.ts, body, c: ack.c });
    if (state.open === match.id) renderMessages();
  } catch (error) {
    log("←", "error", String(error.message ?? error));
  }
}

function onInput() {
  const match = state.matches.get(state.open);
  if (!match || match.closed) return;
  const now = Date.now();
  if (now - state.typingSent > TYPING_REFRESH_MS) {
    state.typingSent = now;
    if (state.client.typing(match.id, true)) log("→", "typing", { m: match.id, on: true });
  }
  clearTimeout(state.typingIdle);
  state.typingIdle = setTimeout(() => stopTyping(match), TYPING_IDLE_MS);
}

function stopTyping(match) {
  clearTimeout(state.typingIdle);
  if (state.typingSent === 0) return;
  state.typingSent = 0;
  if (state.client.typing(match.id, false)) log("→", "typing", { m: match.id, on: false });
}

// -- the SDK's events --------------------------------------------------------------------------

function wire(client) {
  client.on("state", (s) => {
    $("state").dataset.state = s;
    $("state").textContent = s;
    log("←", "state", s);
  });
  client.on("welcome", (w) => {
    state.user = w.user;
    log("←", "welcome", { user: w.user, session: w.session, node: w.node, hb: w.hb });
    refreshPresence().catch(() => {});
  });
  client.on("msg", (msg, source) => {
    log("←", "msg", { m: msg.m, id: msg.id, from: msg.from, body: msg.body, source });
    const match = state.matches.get(msg.m) ?? matchOf(msg.m, msg.from);
    match.msgs.set(msg.id, msg);
    if (msg.from !== state.user) {
      client.delivered(msg.m, msg.id);
      if (state.open === msg.m) markRead(match);
      else if (source === "live") match.unread += 1; // a sync's are in GET /v1/matches' count
    }
    renderMatches();
    if (state.open === msg.m) renderMessages();
  });
  client.on("typing", (e) => {
    log("←", "typing", { m: e.m, from: e.from, on: e.on });
    clearTimeout(state.peerTyping.get(e.m));
    if (e.on) state.peerTyping.set(e.m, setTimeout(() => { state.peerTyping.delete(e.m); renderTyping(); }, PEER_TYPING_TTL_MS));
    else state.peerTyping.delete(e.m);
    renderTyping();
  });
  for (const kind of ["read", "delivered"]) {
    client.on(kind, (e) => {
      log("←", kind, { m: e.m, from: e.from, id: e.id });
      const match = state.matches.get(e.m);
      if (!match || e.from === state.user) return;
      const field = kind === "read" ? "peerRead" : "peerDelivered";
      if (match[field] === undefined || compareIds(e.id, match[field]) > 0) match[field] = e.id;
      if (state.open === e.m) renderMessages();
    });
  }
  client.on("presence", (e) => {
    log("←", "presence", { u: e.u, on: e.on, seen: e.seen });
    state.presence.set(e.u, { on: e.on, seen: e.seen });
    renderMatches();
    renderChatHead();
  });
  client.on("match", (e) => {
    log("←", "match", { m: e.m, peer: e.peer });
    matchOf(e.m, e.peer);
    renderMatches();
    refreshPresence().catch(() => {});
  });
  client.on("unmatch", (e) => {
    log("←", "unmatch", { m: e.m });
    const match = state.matches.get(e.m);
    if (!match) return;
    match.closed = true;
    state.peerTyping.delete(e.m);
    renderMatches();
    if (state.open === e.m) {
      renderMessages();
      renderTyping();
    }
  });
  client.on("synced", (info) => {
    log("←", "synced", { convs: info.convs.length, delivered: info.delivered });
    for (const conv of info.convs) {
      const match = matchOf(conv.m, conv.peer);
      if (conv.peer_read !== undefined) match.peerRead = conv.peer_read;
    }
    if (state.open) renderMessages();
    loadMatches().catch(() => {}); // the unread counts after what the sync brought
  });
  client.on("cursor", (cursor) => sessionStorage.setItem(`rdv-cursor:${state.user}`, cursor));
  client.on("disconnected", (d) => log("←", "disconnected", { code: d.code, reason: d.reason, reconnectInMs: d.reconnectInMs }));
  client.on("error", (error) => log("←", "error", String(error.message ?? error)));
  client.on("closed", (error) => {
    if (error) $("login-error").textContent = String(error.message ?? error);
  });
}

// -- signing in --------------------------------------------------------------------------------

async function signIn(user, subprotocol, pasted) {
  state.user = user;
  let token;
  if (pasted) {
    state.token = pasted;
    token = pasted;
  } else {
    await devToken(user);
    token = () => devToken(user); // the SDK calls it again before the token expires
  }
  const client = new RendezvousClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:${state.config.ws_port}${state.config.ws_path}`,
    token,
    subprotocol,
    cursor: sessionStorage.getItem(`rdv-cursor:${user}`) ?? undefined,
  });
  state.client = client;
  wire(client);
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").hidden = false;
  $("me").textContent = user;
  $("proto").textContent = subprotocol;
  document.title = `${user} · Rendezvous demo`;
  await loadMatches();
  await client.connect();
}

async function main() {
  state.config = await (await fetch("/demo/config")).json();
  $("token-field").hidden = state.config.dev_tokens;
  const params = new URLSearchParams(location.search);
  if (params.get("user")) $("user").value = params.get("user");
  if (params.get("subprotocol")) $("subprotocol").value = params.get("subprotocol");
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    const pasted = state.config.dev_tokens ? "" : $("token").value.trim();
    signIn($("user").value.trim(), $("subprotocol").value, pasted).catch((error) => {
      $("login").hidden = false;
      $("app").hidden = true;
      $("login-error").textContent = String(error.message ?? error);
    });
  });
  $("swipe-form").addEventListener("submit", (event) => {
    event.preventDefault();
    swipe("like");
  });
  $("pass").addEventListener("click", () => swipe("pass"));
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  $("text").addEventListener("input", onInput);
  $("unmatch").addEventListener("click", unmatch);
  document.addEventListener("visibilitychange", () => {
    const match = state.matches.get(state.open);
    if (match) markRead(match);
  });
  document.body.dataset.ready = "true";
}

main();
