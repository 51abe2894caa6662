// tickmesh-web: the live tape and mesh view. One websocket; DOM updates batched per animation frame.
"use strict";

const MAX_ROWS = 500;        // rows in the tape's DOM
const MAX_KEPT = 5000;       // events kept in memory for re-filtering
const MAX_HELD = 50000;      // events held while the tape is paused
const COMMON = new Set(["id", "kind", "ticker", "source", "priority", "time", "price", "record_seq",
  "ingest_ns", "detected_ns", "seq", "epoch", "published_ns", "latency_us"]);
const $ = (id) => document.getElementById(id);

const state = {
  ws: null, kept: [], pending: [], held: [], heldDropped: 0, paused: false, drawScheduled: false,
  token: sessionStorage.getItem("tickmesh-token") || "", authed: false, mesh: null, guarded: false,
  epoch: 0, seq: 0, configKey: "",  // the last event shown: the recent ring and the live stream may overlap
};

function fresh(e) {
  if (e.marker) return true;
  if (e.epoch === state.epoch && e.seq <= state.seq) return false;
  state.epoch = e.epoch; state.seq = e.seq;
  return true;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/stream`);
  state.ws = ws;
  ws.onopen = () => {
    $("status").textContent = "live"; $("status").className = "status up";
    if (state.token) send({ type: "hello", token: state.token });
    if (state.token) send({ type: "login", token: state.token });
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401) { state.token = ""; sessionStorage.removeItem("tickmesh-token"); }
    $("status").textContent = ev.code === 4401 ? "wrong token: the admin token is required to read" : "disconnected — retrying";
    $("status").className = "status down";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => receive(JSON.parse(ev.data));
}

function receive(msg) {
  switch (msg.type) {
    case "locked": $("status").textContent = "enter the admin token to read"; break;
    case "hello": state.guarded = msg.guarded; addEvents(msg.recent); break;
    case "events": addEvents(msg.events); break;
    case "dropped": addEvents([{ marker: `${msg.count} events dropped (this browser fell behind)` }]); break;
    case "mesh": state.mesh = msg; schedule(); break;
    case "login": setAuthed(msg.ok, msg.ok ? "actions unlocked" : msg.error); break;
    case "ack": showAck(msg); break;
    case "history": showHistory(msg); break;
    case "error": showAck({ ok: false, error: msg.error }); break;
  }
}

// ---- the tape -----------------------------------------------------------------------------
function addEvents(incoming) {
  const events = incoming.filter(fresh);
  if (state.paused) {
    for (const e of events) {
      if (state.held.length >= MAX_HELD) { state.held.shift(); state.heldDropped++; }
      state.held.push(e);
    }
    $("queued").textContent = `${state.held.length} queued` + (state.heldDropped ? `, ${state.heldDropped} dropped` : "");
    return;
  }
  for (const e of events) state.pending.push(e);
  schedule();
}

function schedule() {
  if (!state.drawScheduled) { state.drawScheduled = true; requestAnimationFrame(draw); }
}

function filters() {
  return { channel: $("f-channel").value, kind: $("f-kind").value.trim().toLowerCase(),
           ticker: $("f-ticker").value.trim().toUpperCase() };
}

function matches(e, f) {
  if (e.marker) return true;
  return (!f.channel || e.source === f.channel) && (!f.kind || e.kind === f.kind) && (!f.ticker || e.ticker === f.ticker);
}

function fields(e) {
  return Object.keys(e).filter((k) => !COMMON.has(k)).map((k) => `${k}=${e[k]}`).join(" ");
}

function row(e) {
  const tr = el("tr");
  if (e.marker) { tr.className = "marker"; const td = el("td", e.marker); td.colSpan = 7; tr.append(td); return tr; }
  tr.className = [e.kind, e.direction || ""].join(" ");
  tr.dataset.id = e.id; tr.dataset.kind = e.kind; tr.dataset.ticker = e.ticker; tr.dataset.channel = e.source;
  const time = new Date(e.time / 1e6).toISOString().slice(11, 23);
  const latency = e.latency_us === null || e.latency_us === undefined ? "-" : `${(e.latency_us / 1000).toFixed(2)} ms`;
  tr.append(el("td", time), el("td", e.source, "channel"), el("td", e.kind, "kind"), el("td", e.ticker, "ticker"),
    el("td", e.price, "price"), el("td", fields(e), "fields"), el("td", latency, "latency"));
  return tr;
}

function drawTape() {
  const batch = state.pending; state.pending = [];
  if (!batch.length) return;
  for (const e of batch) state.kept.push(e);
  if (state.kept.length > MAX_KEPT) state.kept.splice(0, state.kept.length - MAX_KEPT);
  const f = filters(), frag = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) if (matches(batch[i], f)) frag.append(row(batch[i]));
  const body = $("tape").tBodies[0];
  body.prepend(frag);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  $("shown").textContent = `${body.rows.length} shown`;
}

function refilter() {
  const f = filters(), frag = document.createDocumentFragment();
  let n = 0;
  for (let i = state.kept.length - 1; i >= 0 && n < MAX_ROWS; i--) {
    if (matches(state.kept[i], f)) { frag.append(row(state.kept[i])); n++; }
  }
  const body = $("tape").tBodies[0];
  body.replaceChildren(frag);
  $("shown").textContent = `${n} shown`;
}

function togglePause() {
  state.paused = !state.paused;
  $("pause-tape").textContent = state.paused ? "Resume" : "Pause";
  if (!state.paused) {
    const held = state.held; state.held = []; state.heldDropped = 0;
    $("queued").textContent = "";
    for (const e of held) state.pending.push(e);
    schedule();
  }
}

// ---- the mesh -----------------------------------------------------------------------------
function draw() {
  state.drawScheduled = false;
  drawTape();
  if (state.mesh) { drawMesh(state.mesh); state.mesh = null; }
}

const fmt = (n) => Math.round(n).toLocaleString("en-US");
const ms = (us) => (us ? (us / 1000).toFixed(2) : "-");

function chart(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 50"); svg.setAttribute("preserveAspectRatio", "none");
  if (points.length < 2) return svg;
  const t0 = points[0][0], span = Math.max(1, points[points.length - 1][0] - t0);
  const top = Math.max(1, ...points.map((p) => p[3]));
  for (const [idx, cls] of [[2, "p50"], [3, "p99"]]) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", points.map((p) => `${((p[0] - t0) / span * 300).toFixed(1)},${(48 - p[idx] / top * 46).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

function card(ch, paused) {
  const div = el("div", null, "card");
  div.dataset.channel = ch.channel;
  const h = el("h3", ch.channel);
  if (paused) h.append(el("span", "PAUSED", "paused"));
  const dl = el("dl");
  const items = [["received", ch.received], ["routed", ch.routed], ["processed", ch.processed],
    ["rejected", ch.rejected], ["conflated", ch.conflated], ["queue", ch.queue], ["events/s", ch.rate],
    ["events", ch.events]];
  for (const [name, value] of items) {
    const dd = el("dd", fmt(value)); dd.dataset.field = name;
    dl.append(el("dt", name), dd);
  }
  const legend = el("div", null, "legend");
  legend.append("ingest→publish ms ", el("span", `p50 ${ms(ch.p50_us)}`, "p50"), " ", el("span", `p99 ${ms(ch.p99_us)}`, "p99"));
  div.append(h, dl, legend, chart(ch.history || []));
  return div;
}

function drawMesh(m) {
  $("mesh-error").hidden = !m.error;
  if (m.error) { $("mesh-error").textContent = m.error; return; }
  $("config-version").textContent = `config version ${m.config_version}`;
  const paused = Object.fromEntries(m.config.map((c) => [c.name, c.paused]));
  $("cards").replaceChildren(...m.channels.map((ch) => card(ch, paused[ch.channel])));
  const key = JSON.stringify([state.authed, m.config]);  // redrawn only on change: keeps what is being typed
  if (key !== state.configKey) { state.configKey = key; $("config").tBodies[0].replaceChildren(...m.config.map(configRow)); }
  $("processes").tBodies[0].replaceChildren(...m.processes.map(processRow));
}

function configRow(c) {
  const tr = el("tr"); tr.dataset.channel = c.name;
  const rules = Object.entries(c.rules).map(([k, v]) => `${k}=${v}`).join(" ");
  const paused = el("td", c.paused ? "PAUSED" : "no", c.paused ? "paused" : ""); paused.dataset.field = "paused";
  tr.append(el("td", c.name), el("td", c.data_type), el("td", c.priority), el("td", c.batch_size),
    el("td", c.timeout_ms), paused, el("td", c.shards), el("td", c.overflow), el("td", c.config_version));
  const details = el("details"), rulesTd = el("td", null, "fields");
  details.append(el("summary", `${Object.keys(c.rules).length} rules`), rules);
  rulesTd.append(details); tr.append(rulesTd);
  if (state.authed) tr.append(actions(c));
  return tr;
}

function actions(c) {
  const td = el("td", null, "action");
  const toggle = el("button", c.paused ? "Resume" : "Pause");
  toggle.type = "button"; toggle.dataset.action = c.paused ? "resume" : "pause";
  toggle.onclick = () => send({ type: "action", action: toggle.dataset.action, channel: c.name, token: state.token });
  const key = el("select"); key.setAttribute("aria-label", "setting");
  for (const k of ["batch_size", "timeout_ms", ...Object.keys(c.rules)]) key.append(el("option", k));
  const value = el("input"); value.size = 6; value.setAttribute("aria-label", "value");
  const set = el("button", "Set"); set.type = "button"; set.dataset.action = "set";
  set.onclick = () => send({ type: "action", action: "set", channel: c.name, token: state.token,
                             changes: { [key.value]: value.value } });
  td.append(toggle, " ", key, value, set);
  return td;
}

function processRow(p) {
  const tr = el("tr", null, p.live ? "" : "stale"); tr.dataset.process = p.process;
  tr.append(el("td", p.process + (p.live ? "" : " (stale)")), el("td", p.role), el("td", p.host), el("td", p.pid),
    el("td", (p.rss_bytes / 1048576).toFixed(1)), el("td", p.cpu_percent.toFixed(1)), el("td", p.config_version),
    el("td", `${p.heartbeat_age_s.toFixed(1)} s`));
  return tr;
}

function showAck(a) {
  const p = $("ack"); p.hidden = false;
  p.className = a.ok ? "ack" : "error";
  p.textContent = a.ok
    ? `${a.action} ${a.channel}: config version ${a.config_version}, applied by ${a.acked.join(", ") || "nobody"}${a.changed ? "" : " (nothing changed)"}`
    : `refused: ${a.error}`;
  p.dataset.version = a.ok ? a.config_version : "";
}

function setAuthed(ok, note) {
  state.authed = ok;
  if (!ok) { state.token = ""; sessionStorage.removeItem("tickmesh-token"); }
  $("auth-status").textContent = note || "";
  $("logout").hidden = !ok;
  for (const th of document.querySelectorAll("th.action")) th.hidden = !ok;
  if (!ok) for (const td of document.querySelectorAll("td.action")) td.remove();
}

function showHistory(h) {
  $("history").hidden = false;
  $("history-ticker").textContent = h.ticker;
  $("history-source").textContent = h.source === "journal" ? "from the journal" : "from the web process's ring";
  $("history").querySelector("tbody").replaceChildren(...h.events.slice().reverse().map(row));
}

function setup() {
  for (const id of ["f-channel", "f-kind", "f-ticker"]) $(id).addEventListener("input", refilter);
  $("pause-tape").onclick = togglePause;
  $("login-form").onsubmit = (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim(); $("token").value = "";
    sessionStorage.setItem("tickmesh-token", state.token);
    send({ type: "hello", token: state.token });  // off loopback, reading starts with this
    send({ type: "login", token: state.token });
  };
  $("logout").onclick = () => setAuthed(false, "");
  $("tape").addEventListener("click", (ev) => {
    const td = ev.target.closest("td.ticker");
    if (td) send({ type: "history", ticker: td.textContent });
  });
  $("history-close").onclick = () => { $("history").hidden = true; };
  connect();
}

setup();
