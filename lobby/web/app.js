// Typogram Arena browser client: plain ES module, no build step.
// HTTP API: docs/API.md; WebSocket protocol (msgpack binary frames): docs/PROTOCOL.md.
import { encode, decode } from "/static/vendor/msgpack/index.mjs";

const $ = (id) => document.getElementById(id);
const GRACE_MS = 15000; // ARENA_RACE_GRACE_S: how long the server keeps a dropped player
const FLUSH_MS = 150; // input batching interval when the race gives no cadence (100-500 ms)
// A link can die without a close (phone changing networks): the page pings every WATCH_MS and
// treats SILENCE_MS without any frame as a drop, so it reconnects within the grace window.
const WATCH_MS = 3000;
const SILENCE_MS = 10000;
// A race whose node died is adopted by another node within a few seconds, which extends the
// grace window by the outage (docs/PROTOCOL.md, "Reconnecting after a node's death"): the page
// keeps trying this much longer than the grace, asking the lobby where the race is now.
const ADOPTION_MS = 10000;
// Close codes after which reconnecting cannot help.
const FINAL_CLOSES = {
  4001: "The server refused the ticket (forged, malformed or expired).",
  4002: "Too many malformed messages: the server closed the connection.",
  4003: "Too many messages: the server closed the connection (flood).",
  4004: "That race does not exist on this server.",
  4006: "The race is full.",
  4009: "You connected again from another tab or device.",
  4010: "The race is over and cannot be joined.",
};
const ERROR_TEXT = {
  race_full: "The race is full.",
  draining: "This server is shutting down (draining) and takes no new races. Try again.",
  race_over: "The race is already over.",
  race_not_found: "No such live race.",
  rate_limited: "Slow down: too many requests.",
  queue_full: "The queue is full right now. Try again in a few seconds.",
  no_node: "No game server can take a race right now (they are full or draining for maintenance). Try again shortly.",
  bad_token: "Your session is invalid; pick a name again.",
  token_expired: "Your session expired; pick a name again.",
  private_race_not_found: "No private race with that code (or it expired).",
  race_started: "That private race has already started.",
  not_host: "Only the host can start this race.",
  already_started: "The race has already started.",
  already_starting: "The race is being started.",
  unavailable: "The server cannot reach its storage right now. Try again shortly.",
  name_taken: "That account name is taken.",
  bad_credentials: "Wrong account name or password.",
  bad_password: "The password must be 8 to 256 characters.",
  bad_name: "Names are 1 to 32 printable characters.",
  tournament_not_found: "No such tournament.",
  tournament_full: "The tournament is full.",
  registration_closed: "Registration is closed: the tournament has started.",
  already_registered: "You are already registered for this tournament.",
  not_registered: "You are not registered for this tournament.",
  bad_invite_code: "This private tournament needs its invite code.",
  invite_not_found: "No tournament with that invite code.",
};
// Fair-play flags (docs/PROTOCOL.md): why a result is not ranked.
const FLAG_TEXT = {
  too_fast: "faster than a person can type",
  robotic: "key timing too regular",
  paste: "pasted text",
  bad_timing: "key times out of order",
  held_back: "keys arrived long after the times they claim",
  arrived_too_fast: "text arrived faster than anyone types",
};

const app = {
  session: null, // {player_id, name, token}
  region: "local",
  raceType: "quick",
  ticketId: null,
  privateCode: null,
  cancelled: false,
  race: null, // the current race state (see newRace)
};

// ---------------------------------------------------------------- UI helpers

function show(screen) {
  for (const el of document.querySelectorAll(".screen")) el.hidden = el.id !== `screen-${screen}`;
  document.body.dataset.screen = screen;
  liveRefresh(screen === "home");
}

// Live regions are announced on every change: only touch them when the text really changes.
function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

function banner(text, kind = "error") {
  const el = $("banner");
  if (!text) { el.hidden = true; el.textContent = ""; return; }
  el.className = kind === "error" ? "banner" : "banner info";
  el.textContent = text;
  el.hidden = false;
}

function explain(code, reason) {
  return ERROR_TEXT[code] ? `${ERROR_TEXT[code]}${reason ? ` (${reason})` : ""}` : reason || code;
}

// A result's review state (docs/API.md "review"); clear and released need no mark.
const REVIEW_TEXT = { held: " · under review", rejected: " · rejected on review" };

function flagged(flags) {
  return `Your result was flagged (${flags.map((f) => FLAG_TEXT[f] || f).join(", ")}) and will not be ranked.`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---------------------------------------------------------------- HTTP API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.reason || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || "http_error";
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (app.session) headers.Authorization = `Bearer ${app.session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function apiFailed(err) {
  if (err instanceof ApiError) {
    const retry = err.code === "rate_limited" ? err.body?.retry_after_s : null;
    banner(retry ? `${ERROR_TEXT.rate_limited} Try again in ${retry} s.` : explain(err.code, err.body?.reason));
    if (err.code === "bad_token" || err.code === "token_expired") signOut();
  } else {
    banner(`Cannot reach the server: ${err.message}`);
  }
}

// ---------------------------------------------------------------- session

function signedIn(session) {
  app.session = session;
  sessionStorage.setItem("arena.session", JSON.stringify({ ...session, region: app.region }));
  $("who").textContent = `${session.name}${session.guest ? " (guest)" : ""} · ${app.region}`;
  $("guest-form").hidden = true;
  $("account").hidden = true;
  $("account").open = false;
  $("sign-out").hidden = false;
  $("play").hidden = false;
  loadRecent();
  heartbeat();
}

function signOut() {
  app.session = null;
  sessionStorage.removeItem("arena.session");
  clearTimeout(presenceTimer);
  $("who").textContent = "";
  $("guest-form").hidden = false;
  $("account").hidden = false;
  $("sign-out").hidden = true;
  $("play").hidden = true;
  $("recent").innerHTML = "";
  $("recent-title").hidden = true;
  show("home");
}
$("sign-out").addEventListener("click", () => { stopRace(); closeTournament(); signOut(); $("name").focus(); });

// Presence: one heartbeat at sign-in, then every interval the lobby asks for, while the page is open.
let presenceTimer = null;

async function heartbeat() {
  clearTimeout(presenceTimer);
  if (!app.session) return;
  let interval = 120;
  try {
    interval = (await api("POST", "/v1/presence", { region: app.region })).interval_s || interval;
  } catch (err) {
    if (err instanceof ApiError && (err.code === "bad_token" || err.code === "token_expired")) { apiFailed(err); return; }
    interval = 30; // the lobby was unreachable or busy: try again sooner
  }
  if (app.session) presenceTimer = setTimeout(heartbeat, interval * 1000);
}

async function loadRegions() {
  try {
    const data = await api("GET", "/v1/regions");
    const sel = $("region");
    sel.innerHTML = "";
    for (const r of data.regions) {
      const opt = document.createElement("option");
      opt.value = r.id;
      opt.textContent = `${r.id}${r.accepting ? "" : " (no servers)"}`;
      sel.append(opt);
    }
    const firstOpen = data.regions.find((r) => r.accepting);
    if (firstOpen) sel.value = firstOpen.id;
  } catch (err) { apiFailed(err); }
}

$("guest-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  banner(null);
  app.region = $("region").value;
  try {
    signedIn(await api("POST", "/v1/guests", { name: $("name").value.trim() }));
    $("race-type").focus();
  } catch (err) { apiFailed(err); }
});

// Named accounts: "Log in" (POST /v1/sessions) or "Create account" (POST /v1/players), same form.
$("account-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  banner(null);
  app.region = $("region").value;
  const path = ev.submitter?.value === "register" ? "/v1/players" : "/v1/sessions";
  const body = { name: $("account-name").value.trim(), password: $("account-password").value };
  try {
    signedIn(await api("POST", path, body));
    $("account-password").value = "";
    $("race-type").focus();
  } catch (err) { apiFailed(err); }
});

// ---------------------------------------------------------------- matchmaking

$("queue-form").addEventListener("submit", (ev) => { ev.preventDefault(); queue($("race-type").value); });

async function queue(raceType) {
  banner(null);
  app.raceType = raceType;
  app.cancelled = false;
  app.privateCode = null;
  $("private-view").hidden = true;
  $("queue-title").textContent = "Finding a race…";
  $("queue-status").textContent = `Queued for a ${raceType} race in ${app.region}.`;
  show("queue");
  $("queue-cancel").focus();
  let view;
  try {
    view = await api("POST", "/v1/tickets", { race_type: raceType, region: app.region });
  } catch (err) {
    if (err instanceof ApiError && err.code === "already_queued" && err.body.ticket_id) {
      view = { ticket_id: err.body.ticket_id, state: "queued" };
    } else { apiFailed(err); show("home"); return; }
  }
  app.ticketId = view.ticket_id;
  while (!app.cancelled) {
    if (view.state === "matched") { connectRace(view.assignment, { raceType, locate: ticketLocator(app.ticketId) }); return; }
    if (view.state === "cancelled") { show("home"); return; }
    if (view.state === "node_lost") { banner(view.reason || "The race's server was lost. Queue again."); show("home"); return; }
    if (view.expected_wait_s != null) {
      $("queue-status").textContent = `Queued for a ${raceType} race in ${app.region}; about ${Math.ceil(view.expected_wait_s)} s to go.`;
    }
    try {
      view = await api("GET", `/v1/tickets/${encodeURIComponent(app.ticketId)}?wait=20`);
    } catch (err) {
      apiFailed(err);
      if (err instanceof ApiError && err.status < 500 && err.status !== 429) { show("home"); return; }
      await sleep(2000);
    }
  }
}

$("queue-cancel").addEventListener("click", async () => {
  app.cancelled = true;
  if (app.ticketId) {
    try {
      await api("DELETE", `/v1/tickets/${encodeURIComponent(app.ticketId)}`);
    } catch (err) {
      if (err instanceof ApiError && err.code === "already_matched") {
        connectRace(err.body.ticket.assignment, { raceType: app.raceType });
        return;
      }
    }
  }
  app.ticketId = null;
  show("home");
});

// ---------------------------------------------------------------- private races

$("private-create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  banner(null);
  const text = $("custom-text").value.trim();
  const body = text ? { race_type: "custom", custom_text: text, region: app.region } : { race_type: app.raceType = $("race-type").value, region: app.region };
  try { privateRace(await api("POST", "/v1/private-races", body)); } catch (err) { apiFailed(err); }
});

$("private-join").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  banner(null);
  const code = $("invite-code").value.trim().toUpperCase();
  try { privateRace(await api("POST", `/v1/private-races/${encodeURIComponent(code)}/join`)); } catch (err) { apiFailed(err); }
});

$("private-start").addEventListener("click", async () => {
  try { await api("POST", `/v1/private-races/${app.privateCode}/start`); } catch (err) { apiFailed(err); }
});

async function privateRace(view) {
  app.cancelled = false;
  app.ticketId = null;
  app.privateCode = view.code;
  $("queue-title").textContent = "Private race";
  $("private-view").hidden = false;
  show("queue");
  while (!app.cancelled) {
    $("private-code").textContent = view.code;
    $("queue-status").textContent = view.state === "open" ? "Share the code; the host starts the race." : view.reason || view.state;
    $("private-members").innerHTML = view.members.map((m) => `<li>${esc(m.name)}${m.host ? " (host)" : ""}</li>`).join("");
    const host = view.host.player_id === app.session.player_id;
    $("private-start").hidden = !(host && (view.state === "open" || view.state === "node_lost"));
    document.dispatchEvent(new CustomEvent("arena:private-race", { detail: view })); // ghostpicker.js: its ghosts
    if (view.state === "started" && view.assignment) { connectRace(view.assignment, { raceType: view.race_type, locate: privateLocator(view.code) }); return; }
    try {
      view = await api("GET", `/v1/private-races/${view.code}?wait=20&since=${view.version}`);
    } catch (err) { apiFailed(err); show("home"); return; }
  }
}

// ---------------------------------------------------------------- the race

// Where the lobby says a race is now (its node died: the node that adopted it), or null.
function ticketLocator(ticketId) {
  return async () => {
    const view = await api("GET", `/v1/tickets/${encodeURIComponent(ticketId)}`);
    return view.state === "matched" ? view.assignment.url : null;
  };
}

function privateLocator(code) {
  return async () => {
    const view = await api("GET", `/v1/private-races/${encodeURIComponent(code)}`);
    return view.state === "started" && view.assignment ? view.assignment.url : null;
  };
}

function newRace(assignment, opts) {
  return {
    url: assignment?.url, ticket: assignment?.ticket, token: assignment?.player_token,
    spectate: opts.spectate || null, raceType: opts.raceType, returnTo: opts.returnTo || "home",
    locate: opts.locate || null, // asks the lobby for the race's current node (after a node's death)
    label: opts.label || null, // e.g. the tournament heat, for the heading
    test: opts.test || null, // a typing test's mode (typingtest.js)
    onResults: opts.onResults || null, // shows the results itself instead of the results screen
    ws: null, me: null, raceId: null, passage: "", state: "waiting",
    startAt: null, endsAt: null, offset: 0, bestRtt: Infinity, inputEvery: 0, inputOffset: 0,
    typed: "", pendingKeys: "", pendingTimes: [], seq: 0, sent: [], lastTime: 0,
    keyLog: [], players: new Map(), done: false, droppedAt: null, retries: 0,
    flushTimer: null, tickTimer: null, watchTimer: null, lastHeard: 0,
    results: null, finish: null, lastError: null, reconnects: 0,
  };
}

function connectRace(assignment, opts = {}) {
  stopRace();
  app.race = newRace(assignment, opts);
  banner(null);
  $("race-title").textContent = opts.spectate ? "Watching a race" : "Race";
  $("typing").disabled = !!opts.spectate;
  $("race-leave").textContent = opts.spectate ? "Stop watching" : opts.test ? "Stop test" : "Leave race";
  $("countdown").textContent = "";
  $("time-left").textContent = "";
  $("race-status").textContent = "Connecting…";
  $("lanes").innerHTML = "";
  $("passage").textContent = "";
  show("race");
  openSocket(app.race);
  const r = app.race;
  r.watchTimer = setInterval(() => watchLink(r), WATCH_MS);
}

// Keep the link busy and notice when it went silent (see SILENCE_MS).
function watchLink(r) {
  if (app.race !== r || r.done || r.results) { clearInterval(r.watchTimer); return; }
  const ws = r.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (Date.now() - r.lastHeard < SILENCE_MS) { send(r, { t: "ping", sent: Date.now() }); return; }
  ws.onclose = null; // forget it: a dead link may take minutes to report its close
  ws.onmessage = null;
  ws.close(4000, "silent");
  onClosed(r, { code: 1006 });
}

function stopRace() {
  const r = app.race;
  if (!r) return;
  r.done = true;
  stopFlushing(r);
  clearInterval(r.watchTimer);
  cancelAnimationFrame(r.tickTimer);
  if (r.ws && r.ws.readyState <= 1) r.ws.close(1000);
}

function send(r, msg) {
  if (r.ws && r.ws.readyState === WebSocket.OPEN) { r.ws.send(encode(msg)); return true; }
  return false;
}

function serverNow(r) { return Date.now() + r.offset; }

function openSocket(r, url = r.url || r.spectate.url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  r.ws = ws;
  ws.onopen = () => {
    r.retries = 0;
    r.lastHeard = Date.now();
    send(r, r.token ? { t: "hello", token: r.token, client: "web/0.1" } : { t: "hello", token: app.session?.token || "", client: "web/0.1" });
  };
  ws.onmessage = (ev) => {
    if (r !== app.race || r.ws !== ws) return;
    r.lastHeard = Date.now();
    const msg = ev.data instanceof ArrayBuffer ? decode(new Uint8Array(ev.data)) : JSON.parse(ev.data);
    onMessage(r, msg);
  };
  ws.onclose = (ev) => {
    if (r !== app.race || r.ws !== ws || r.done) return;
    onClosed(r, ev);
  };
}

function onClosed(r, ev) {
  if (r.redirectTo) { const url = r.redirectTo; r.redirectTo = null; r.url = url; openSocket(r, url); return; }
  // 4004 once joined: the race's node is gone and the race not yet moved; the lobby will know.
  const moving = ev.code === 4004 && r.locate && r.raceId;
  if (FINAL_CLOSES[ev.code] && !moving) {
    // The error message just before the close says more (e.g. token_expired vs a forged ticket).
    r.done = true;
    banner(r.lastError || FINAL_CLOSES[ev.code]);
    $("race-status").textContent = "Disconnected.";
    if (ev.code === 4001 && r.lastErrorCode === "token_expired") signOut();
    return;
  }
  if (ev.code === 1001) banner("The game server is shutting down; the race was aborted.", "info");
  if (r.results) return;
  // Dropped: reconnect with backoff while the server still keeps our seat.
  if (r.droppedAt === null) r.droppedAt = Date.now();
  const left = GRACE_MS + (r.locate ? ADOPTION_MS : 0) - (Date.now() - r.droppedAt);
  if (left <= 0) { r.done = true; banner("The connection was lost for too long; you were counted as not finishing."); return; }
  const attempt = ++r.retries;
  const delay = Math.min(125 * 2 ** attempt, 2000);
  // What is typed meanwhile stays pending (flush keeps it) and goes out after the rejoin.
  $("race-status").textContent = `Connection lost, reconnecting (${Math.ceil(left / 1000)} s left)…`;
  setTimeout(async () => {
    if (app.race !== r || r.done) return;
    // First the race's node again; every other try, where the lobby says the race is now.
    let url = r.url;
    if (attempt % 2 === 0 && r.locate) {
      try { url = (await r.locate()) || r.url; } catch { url = r.url; }
    }
    if (app.race === r && !r.done) { r.url = url; openSocket(r, url); }
  }, delay);
}

function syncClock(r) {
  for (let i = 0; i < 5; i++) setTimeout(() => send(r, { t: "ping", sent: Date.now() }), i * 120);
}

function onMessage(r, m) {
  switch (m.t) {
    case "welcome":
      r.me = m.player_id;
      r.offset = m.server_time - Date.now();
      syncClock(r);
      if (r.spectate) send(r, { t: "spectate", race_id: r.spectate.raceId });
      else send(r, { t: "join", ticket: r.ticket });
      break;
    case "pong": {
      const now = Date.now();
      const rtt = now - m.echo;
      if (rtt <= r.bestRtt) { r.bestRtt = rtt; r.offset = m.time - (m.echo + rtt / 2); }
      break;
    }
    case "ping": send(r, { t: "pong", echo: m.sent, time: Date.now() }); break;
    case "joined": case "watching": onJoined(r, m); break;
    case "roster": setPlayers(r, m.players); break;
    case "countdown": r.startAt = m.start_at; r.state = "countdown"; tick(r); break;
    case "start": r.startAt = m.start_at; r.endsAt = m.ends_at; r.state = "running"; r.serverStarted = true; tick(r); flush(r); break;
    case "progress":
      for (const [id, position, wpm, place] of m.players) {
        const p = r.players.get(id);
        if (p) { p.position = position; p.wpm = wpm; p.place = place || p.place; }
      }
      drawLanes(r);
      break;
    case "finish":
      if (m.player_id === r.me) {
        r.finish = m;
        if (m.flags && m.flags.length) banner(flagged(m.flags));
        $("race-status").textContent = `Finished${m.place ? `, place ${m.place}` : ""}: ${m.wpm.toFixed(1)} WPM. Waiting for the others…`;
      }
      break;
    case "results": onResults(r, m); break;
    case "redirect": r.redirectTo = m.url; break;
    case "error":
      if (m.code === "already_joined" || m.code === "rate_limited" || m.code === "not_running") break;
      r.lastError = explain(m.code, m.reason);
      r.lastErrorCode = m.code;
      banner(r.lastError);
      break;
    default: break;
  }
}

function onJoined(r, m) {
  const rejoin = r.raceId === m.race_id;
  if (rejoin) { r.reconnects++; r.resumedFrom = m.you || null; }
  r.droppedAt = null;
  r.raceId = m.race_id;
  r.passage = m.passage;
  r.state = m.state;
  r.startAt = m.start_at;
  r.serverStarted = m.state !== "waiting" && m.state !== "countdown"; // else the start message says so
  r.inputEvery = m.input_every_ms || 0;
  r.inputOffset = m.input_offset_ms || 0;
  r.endsAt = m.ends_at;
  r.raceType = m.race_type;
  $("race-title").textContent = r.test ? r.label : `${r.spectate ? "Watching" : "Race"}: ${r.label || m.race_type}`;
  $("passage-plain").textContent = m.passage;
  setPlayers(r, m.players);
  if (m.you) {
    if (rejoin) {
      // Resend what the server has not applied yet, with fresh sequence numbers above its view.
      const unsent = r.sent.filter((s) => s.seq > m.you.seq);
      r.seq = Math.max(r.seq, m.you.seq);
      r.sent = [];
      for (const s of unsent) { r.pendingKeys = s.keys + r.pendingKeys; r.pendingTimes = s.times.concat(r.pendingTimes); }
      flush(r);
    } else {
      r.seq = m.you.seq;
    }
    $("typing").disabled = m.you.status !== "racing" && m.you.status !== "waiting" && m.state !== "countdown" && m.state !== "waiting" && m.state !== "running";
    if (!r.flushTimer) scheduleFlush(r);
    $("typing").focus();
  }
  $("race-status").textContent = r.spectate ? "Watching." : rejoin ? "Reconnected." : "Waiting for the start. Click the text or press any key when it starts.";
  drawPassage(r);
  tick(r);
}

// A roster says who is in and connected; its wpm can be 0 mid-race (not measured there), so a
// speed we already know is kept until the next progress frame.
function setPlayers(r, players) {
  for (const p of players) {
    const known = r.players.get(p.id) || {};
    r.players.set(p.id, { ...known, ...p, wpm: p.wpm || known.wpm || 0 });
  }
  drawLanes(r);
}

function drawLanes(r) {
  const ol = $("lanes");
  const len = Math.max(r.passage.length, 1);
  for (const [id, p] of r.players) {
    let li = ol.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (!li) {
      li = document.createElement("li");
      li.className = "lane";
      li.dataset.id = id;
      li.innerHTML = `<span class="name"></span><span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><span></span></span><span class="wpm"></span>`;
      ol.append(li);
    }
    const pct = Math.round((100 * (p.position || 0)) / len);
    li.classList.toggle("me", id === r.me);
    li.classList.toggle("off", p.connected === false);
    li.classList.toggle("ghost", !!p.ghost);
    li.querySelector(".name").textContent = `${p.place ? `#${p.place} ` : ""}${p.name}${id === r.me ? " (you)" : ""}${p.ghost ? " (ghost)" : ""}`;
    const bar = li.querySelector(".bar");
    bar.setAttribute("aria-label", `${p.name}: ${pct}%`);
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = `${pct}%`;
    li.querySelector(".wpm").textContent = `${Math.round(p.wpm || 0)} wpm`;
  }
}

function tick(r) {
  cancelAnimationFrame(r.tickTimer);
  const step = () => {
    if (app.race !== r || r.done) return;
    const now = serverNow(r);
    if (r.startAt && now < r.startAt) {
      setText("countdown", String(Math.ceil((r.startAt - now) / 1000)));
    } else if (r.startAt && r.state !== "finished" && !r.results) {
      setText("countdown", "Go!");
      setText("time-left", r.endsAt && !r.test ? `${Math.max(0, Math.ceil((r.endsAt - now) / 1000))} s left` : "");
      if (r.state !== "running") {
        r.state = "running";
        if (!r.spectate && !r.finish) $("race-status").textContent = "Type the passage.";
      }
    } else if (!r.startAt) {
      setText("countdown", "Waiting for players…");
    }
    r.tickTimer = requestAnimationFrame(step);
  };
  step();
}

// Typed text against the passage: green for correct, red for wrong, a caret at the typing point.
function drawPassage(r) {
  const p = r.passage, t = r.typed;
  let ok = 0;
  while (ok < t.length && ok < p.length && t[ok] === p[ok]) ok++;
  const wrongEnd = Math.min(t.length, p.length);
  const caret = Math.min(t.length, p.length);
  $("passage").innerHTML =
    `<span class="ok">${esc(p.slice(0, ok))}</span>` +
    `<span class="bad">${esc(p.slice(ok, wrongEnd))}</span>` +
    `<span class="caret" aria-hidden="true"></span>` +
    `<span class="rest">${esc(p.slice(caret))}</span>`;
  if (!r.spectate) {
    const me = r.players.get(r.me);
    if (me && r.state !== "finished") {
      // The server does not echo a frame whose only news is our own typing: show our speed locally.
      const minutes = r.startAt ? (serverNow(r) - r.startAt) / 60000 : 0;
      me.position = Math.max(me.position || 0, ok);
      if (minutes > 0) me.wpm = ok / 5 / minutes;
      drawLanes(r);
    }
  }
}

function running(r) {
  return r.startAt && serverNow(r) >= r.startAt && !r.finish && !r.results && !r.spectate;
}

function key(r, ch) {
  if (!running(r)) return;
  if (ch !== "\b" && r.typed.length >= r.passage.length + 10) return; // far past the end: ignore
  if (ch === "\b" && r.typed.length === 0) return;
  const t = Math.max(r.lastTime, Math.round(serverNow(r) - r.startAt));
  r.lastTime = t;
  r.typed = ch === "\b" ? r.typed.slice(0, -1) : r.typed + ch;
  r.pendingKeys += ch;
  r.pendingTimes.push(t);
  if (ch !== "\b") r.keyLog.push({ t, ok: r.typed.length <= r.passage.length && r.typed === r.passage.slice(0, r.typed.length) });
  drawPassage(r);
  if (r.typed === r.passage || r.pendingKeys.length >= 60) flush(r);
}

// Keys go out at the race's send instants (start_at + input_offset_ms + k * input_every_ms, server
// time): room-mates sending together share one progress frame. Without a cadence, every FLUSH_MS.
function scheduleFlush(r) {
  const every = r.inputEvery || FLUSH_MS;
  let wait = every;
  if (r.inputEvery && r.startAt) {
    const since = serverNow(r) - (r.startAt + r.inputOffset);
    wait = every - (((since % every) + every) % every);
  }
  r.flushTimer = setTimeout(() => {
    if (r.flushTimer === null) return;
    flush(r);
    scheduleFlush(r);
  }, wait);
}

function stopFlushing(r) {
  clearTimeout(r.flushTimer);
  r.flushTimer = null;
}

function flush(r) {
  // Not before the server's own start: "Go!" follows our estimate of its clock, which can be a few
  // ms early, and keys arriving before the start are refused (not_running), so they would be lost.
  // Held keys keep their times and go out with the start message (within half a round trip).
  if (!r.serverStarted) return;
  while (r.pendingKeys.length) {
    const msg = { t: "input", seq: r.seq + 1, keys: r.pendingKeys.slice(0, 60), times: r.pendingTimes.slice(0, 60) };
    if (!send(r, msg)) return; // kept pending; sent after the reconnect
    r.seq = msg.seq;
    r.sent.push({ seq: msg.seq, keys: msg.keys, times: msg.times });
    if (r.sent.length > 50) r.sent.shift();
    r.pendingKeys = r.pendingKeys.slice(60);
    r.pendingTimes = r.pendingTimes.slice(60);
  }
}

$("typing").addEventListener("keydown", (ev) => {
  const r = app.race;
  if (!r || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Backspace") { ev.preventDefault(); key(r, "\b"); return; }
  if (ev.key.length === 1 && ev.key >= " " && ev.key <= "~") { ev.preventDefault(); key(r, ev.key); }
});
// Phone keyboards often send no usable keydown: take the characters from the input event instead.
$("typing").addEventListener("input", (ev) => {
  const r = app.race;
  const el = ev.target;
  if (r && el.value) {
    for (const ch of el.value) if (ch >= " " && ch <= "~") key(r, ch);
  } else if (r && ev.inputType === "deleteContentBackward") key(r, "\b");
  el.value = "";
});
$("passage").addEventListener("click", () => $("typing").focus());
document.addEventListener("keydown", (ev) => {
  if (document.body.dataset.screen === "race" && document.activeElement !== $("typing") && ev.key.length === 1 && !$("typing").disabled) $("typing").focus();
});

$("race-leave").addEventListener("click", () => {
  const r = app.race;
  if (r && !r.results && !r.spectate) send(r, { t: "leave" });
  stopRace();
  leaveRace(r);
});

// ---------------------------------------------------------------- results

function onResults(r, m) {
  r.results = m;
  r.state = m.state;
  stopFlushing(r);
  if (m.state === "aborted") banner(`The race was aborted${m.reason ? `: ${m.reason}` : ""}.`, "info");
  if (r.onResults) {
    r.done = true;
    if (r.ws) r.ws.close(1000);
    r.onResults(r, m);
    return;
  }
  const mine = m.results.find((row) => row.player_id === r.me);
  const pct = (x) => `${Number(x).toFixed(1)}%`;
  $("my-result").innerHTML = r.spectate || !mine
    ? `<p>Race ${esc(m.race_id)} is over.</p>`
    : `<p class="big" id="my-place">${mine.place ? `Place ${mine.place}` : mine.status === "dnf" ? "Did not finish" : "Not ranked"}</p>
       <dl class="stats">
         <dt>WPM</dt><dd id="my-wpm">${mine.wpm.toFixed(1)}</dd>
         <dt>Raw</dt><dd>${mine.raw_wpm.toFixed(1)}</dd>
         <dt>Accuracy</dt><dd>${pct(mine.accuracy)}</dd>
         <dt>Consistency</dt><dd>${pct(mine.consistency)}</dd>
         <dt>Time</dt><dd>${(mine.elapsed_ms / 1000).toFixed(1)} s</dd>
       </dl>${mine.flags.length ? `<p>${esc(flagged(mine.flags))}</p>` : ""}`;
  $("results-table").tBodies[0].innerHTML = m.results.map((row) =>
    `<tr${row.player_id === r.me ? ' class="me"' : ""}><td>${row.place ?? "—"}</td><td>${esc(row.name)}${row.ghost ? " (ghost)" : ""}</td><td>${row.wpm.toFixed(1)}</td><td>${row.raw_wpm.toFixed(1)}</td><td>${pct(row.accuracy)}</td><td>${pct(row.consistency)}</td></tr>`).join("");
  document.dispatchEvent(new CustomEvent("arena:results", { detail: { race: r, results: m } })); // ghostpicker.js: "Race ghost"
  drawChart(r.keyLog);
  $("results-title").textContent = r.label ? `Results: ${r.label}` : "Results";
  $("again").hidden = !!r.spectate || r.returnTo !== "home";
  show("results");
  r.done = true;
  if (r.ws) r.ws.close(1000);
  (r.spectate ? $("home") : $("again")).focus();
  loadRecent();
}

// WPM per one-second bucket of correct keystrokes: (chars / 5) per minute. The server computes
// a stored test's the same way (lobby/speed_chart.py, GET /v1/tests/{id}/replay "speed").
function drawChart(log, svg = $("chart")) {
  if (!log.length) { svg.innerHTML = ""; return; }
  const secs = Math.max(1, Math.ceil(log[log.length - 1].t / 1000));
  const buckets = new Array(secs).fill(0);
  for (const k of log) if (k.ok) buckets[Math.min(secs - 1, Math.floor(k.t / 1000))]++;
  drawSpeed(buckets.map((n) => n * 12), svg);
}

// One WPM per second, as a line.
function drawSpeed(series, svg) {
  const wpm = series.map((w) => Number(w) || 0);
  if (!wpm.length) { svg.innerHTML = ""; return; }
  const secs = wpm.length;
  const top = Math.max(...wpm, 1);
  // One second of typing is a flat line across (a single point would draw nothing).
  const y = (w) => 100 - (w * 95) / top;
  const pts = secs === 1 ? `0,${y(wpm[0])} 300,${y(wpm[0])}`
    : wpm.map((w, i) => `${(i * 300) / (secs - 1)},${y(w)}`).join(" ");
  svg.innerHTML = `<polyline points="${pts}"></polyline><title>Peak ${top} WPM over ${secs} s</title>`;
}

$("again").addEventListener("click", () => queue(app.race?.raceType && app.race.raceType !== "custom" ? app.race.raceType : app.raceType));
$("home").addEventListener("click", () => leaveRace(app.race));

// Back from a race or its results: to the tournament it belongs to, or home.
function leaveRace(r) {
  if (r && r.returnTo === "tournament" && tour.id) { show("tournament"); fetchTournament(); $("tournament-title").focus(); return; }
  show("home");
  loadBoard();
  loadRecent();
}

// ---------------------------------------------------------------- leaderboards, history, watching

async function loadBoard() {
  const body = $("board-table").tBodies[0];
  try {
    const data = await api("GET", `/v1/leaderboards/${$("board-type").value}/${$("board-time").value}?limit=10`);
    body.innerHTML = data.entries.length
      ? data.entries.map((e) => `<tr><td>${e.rank}</td><td>${esc(e.name)}</td><td>${Number(e.wpm).toFixed(1)}</td><td>${Number(e.accuracy).toFixed(1)}%</td></tr>`).join("")
      : `<tr><td colspan="4">No races yet.</td></tr>`;
  } catch (err) {
    body.innerHTML = `<tr><td colspan="4">Leaderboard unavailable${err.message ? `: ${esc(err.message)}` : ""}.</td></tr>`;
  }
}
$("board-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadBoard(); loadRecent(); });

async function loadRecent() {
  if (!app.session) return;
  try {
    const data = await api("GET", `/v1/players/${encodeURIComponent(app.session.player_id)}/races?limit=5`);
    $("recent-title").hidden = !data.races.length;
    $("recent").innerHTML = data.races.map((race) => {
      const what = `${esc(race.race_type || "race")}: ${race.wpm != null ? `${Number(race.wpm).toFixed(1)} WPM` : ""}${race.place ? `, place ${race.place}` : ""}${REVIEW_TEXT[race.review] || ""}`;
      return `<li class="recent-row"><span>${what}</span> <button type="button" class="link" data-replay="${esc(race.race_id)}" aria-label="${esc(`Replay ${race.race_type || "race"} race`)}">Replay</button>` +
        ` <button type="button" class="link" data-ghost-race="${esc(race.race_id)}" data-ghost-player="${esc(app.session.player_id)}" aria-label="${esc(`Race your ghost from this ${race.race_type || "race"} race`)}">Race ghost</button></li>`;
    }).join("");
  } catch { /* history is optional on this page */ }
}
$("recent").addEventListener("click", (ev) => {
  const id = ev.target.closest("button[data-replay]")?.dataset.replay;
  if (id) openReplay(id);
});

// ---------------------------------------------------------------- replays

// A stored race played back (GET /v1/races/{id}/replay): every racer's text as it was typed,
// wrong characters included until they were deleted. replayTextAt mirrors lobby/replay_text.py
// (text_at), which is the tested reference: keep the two in step.
const BACKSPACE_KEY = "Backspace";
const MAX_ERROR_RUN = 32; // the server's ScoringLimits.max_error_run
const replay = { data: null, t: 0, playing: false, speed: 1, frame: 0, last: 0 };

function replayTextAt(keys, t, passage) {
  let applied = 0;
  while (applied < keys.length && keys[applied].t_ms <= t) applied++;
  const buffer = [];
  let correct = 0;
  for (let i = 0; i < applied; i++) {
    const key = keys[i].key;
    if (key === BACKSPACE_KEY) {
      if (buffer.length) { buffer.pop(); correct = Math.min(correct, buffer.length); }
    } else if (passage == null) {
      buffer.push(key);
    } else if (buffer.length === correct && correct < passage.length && key === passage[correct]) {
      buffer.push(key);
      correct++;
    } else if (buffer.length - correct < MAX_ERROR_RUN) {
      buffer.push(key);
    } // else: past the server's cap, a wrong key never reached the buffer
  }
  const text = buffer.join("");
  if (passage == null) return { text, correct: null, applied, finished: false };
  return { text, correct, applied, finished: passage.length > 0 && correct === passage.length && buffer.length === correct };
}

async function openReplay(raceId) {
  replayPause();
  let data;
  try { data = await api("GET", `/v1/races/${encodeURIComponent(raceId)}/replay`); } catch (err) { apiFailed(err); return; }
  replay.data = data;
  replay.t = 0;
  $("replay-title").textContent = `Replay: ${data.race_type} race`;
  const when = data.started_at ? new Date(data.started_at).toLocaleString() : "";
  setText("replay-meta", `${data.players.length} racer${data.players.length === 1 ? "" : "s"}${when ? ` · ${when}` : ""}${data.passage.text == null ? " · custom text" : ""}`);
  $("replay-seek").max = String(data.duration_ms);
  $("replay-racers").innerHTML = data.players.map((p, i) => {
    const result = p.flagged ? "flagged" : `${p.place ? `#${Number(p.place)} · ` : ""}${Number(p.wpm).toFixed(1)} WPM · ${Number(p.accuracy).toFixed(1)}%${REVIEW_TEXT[p.review] || ""}`;
    return `<li class="replay-racer" data-i="${i}"><div class="replay-head"><span class="name">${esc(p.name)}</span>` +
      `<span class="replay-result">${esc(result)}</span><span class="wpm replay-wpm"></span>` +
      (p.flagged || p.status !== "finished" || data.state !== "finished" || data.passage.text == null ? "" :
        `<button type="button" class="link" data-ghost-race="${esc(data.race_id)}" data-ghost-player="${esc(p.player_id)}" aria-label="${esc(`Race ${p.name}'s ghost`)}">Race ghost</button>`) +
      `</div>` +
      `<p class="passage replay-text" aria-label="${esc(`${p.name}'s text`)}"><span class="ok"></span><span class="bad"></span><span class="caret"></span><span class="rest"></span></p></li>`;
  }).join("");
  show("replay");
  renderReplay();
  $("replay-title").focus();
}

function replayClock(ms) {
  const s = Math.max(0, ms) / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
}

function renderReplay() {
  const d = replay.data;
  if (!d) return;
  const passage = d.passage.text;
  d.players.forEach((p, i) => {
    const li = $("replay-racers").children[i];
    const now = replayTextAt(p.keys, replay.t, passage);
    const [ok, bad, , rest] = li.querySelector(".replay-text").children;
    const good = now.correct == null ? now.text : now.text.slice(0, now.correct);
    const wrong = now.correct == null ? "" : now.text.slice(now.correct);
    if (ok.textContent !== good) ok.textContent = good;
    if (bad.textContent !== wrong) bad.textContent = wrong;
    const after = passage == null ? "" : passage.slice(Math.min(passage.length, now.text.length));
    if (rest.textContent !== after) rest.textContent = after;
    const chars = now.correct ?? now.text.length;
    const wpm = replay.t > 0 ? Math.round((chars / 5) / (replay.t / 60000)) : 0;
    li.querySelector(".replay-wpm").textContent = now.finished ? "done" : `${wpm} wpm`;
    li.classList.toggle("finished", now.finished);
  });
  $("replay-seek").value = String(Math.round(replay.t));
  setText("replay-time", `${replayClock(replay.t)} / ${replayClock(d.duration_ms)}`);
}

function replayStep(now) {
  if (!replay.playing) return;
  replay.t = Math.min(replay.data.duration_ms, replay.t + (now - replay.last) * replay.speed);
  replay.last = now;
  renderReplay();
  if (replay.t >= replay.data.duration_ms) { replayPause(); return; }
  replay.frame = requestAnimationFrame(replayStep);
}

function replayPlay() {
  if (!replay.data) return;
  if (replay.t >= replay.data.duration_ms) replay.t = 0; // at the end: play from the start
  replay.playing = true;
  replay.last = performance.now();
  $("replay-play").textContent = "Pause";
  replay.frame = requestAnimationFrame(replayStep);
}

function replayPause() {
  replay.playing = false;
  cancelAnimationFrame(replay.frame);
  $("replay-play").textContent = "Play";
}

$("replay-play").addEventListener("click", () => (replay.playing ? replayPause() : replayPlay()));
$("replay-speed").addEventListener("change", () => { replay.speed = Number($("replay-speed").value) || 1; });
$("replay-seek").addEventListener("input", () => { replay.t = Number($("replay-seek").value) || 0; renderReplay(); });
$("replay-back").addEventListener("click", () => { replayPause(); replay.data = null; leaveRace(null); });

async function watch(raceId, url, returnTo = "home", label = null) {
  if (!raceId || !url) { banner("Give a race id and a node URL to watch."); return; }
  if (!app.session) {
    try { signedIn(await api("POST", "/v1/guests", { name: $("name").value.trim() || "spectator" })); } catch (err) { apiFailed(err); return; }
  }
  connectRace(null, { spectate: { raceId, url }, returnTo, label });
}
$("watch-form").addEventListener("submit", (ev) => { ev.preventDefault(); watch($("watch-race").value.trim(), $("watch-node").value.trim()); });

// "Live now": running races (GET /v1/live/races) with each racer's progress and speed, refreshed
// while the home screen shows. The figures come from the race's mirror, which its node rewrites
// at most once a second while someone types (ARENA_RACE_LIVE_MIRROR_MS).
const LIVE_REFRESH_MS = 5000;
let liveTimer = null;

function liveRefresh(on) {
  if (on && !liveTimer) {
    liveTimer = setInterval(() => { loadLive(); loadTournaments(); }, LIVE_REFRESH_MS);
    loadLive();
    loadTournaments();
  } else if (!on && liveTimer) {
    clearInterval(liveTimer);
    liveTimer = null;
  }
}

const LIVE_DONE = { finished: "finished", dnf: "out" };

// One row per racer: name, a progress bar (share of the passage typed) and WPM.
function liveRacersHtml(r) {
  const len = Math.max(Number(r.passage_length) || 1, 1);
  return r.players.map((p) => {
    const pct = Math.min(100, Math.round((100 * (Number(p.position) || 0)) / len));
    const done = LIVE_DONE[p.status] ? ` · ${p.place ? `#${Number(p.place)}` : LIVE_DONE[p.status]}` : "";
    return `<li class="heat-row lane"><span class="name">${esc(p.name)}${p.ghost ? " (ghost)" : ""}</span>` +
      `<span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}" aria-label="${esc(p.name)}: ${pct}% typed" data-pct="${pct}"><span></span></span>` +
      `<span class="wpm">${Math.round(Number(p.wpm) || 0)} wpm${done}</span></li>`;
  }).join("");
}

// Bar widths through the CSSOM: the page's CSP allows no inline style attributes.
function sizeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-pct]")) bar.firstElementChild.style.width = `${bar.dataset.pct}%`;
}

async function loadLive() {
  const list = $("live-list");
  if (!list) return;
  let races;
  try {
    races = (await api("GET", "/v1/live/races?limit=10")).races;
  } catch {
    setText("live-status", "Live races are unavailable right now.");
    return;
  }
  if (!liveTimer) return; // the home screen was left while we waited
  setText("live-status", races.length ? "" : "No races running right now.");
  const shown = [...list.children].map((li) => li.dataset.race);
  if (shown.length === races.length && races.every((r, i) => r.race_id === shown[i])) {
    // The same races: only their figures move (a focused Watch button stays where it is).
    races.forEach((r, i) => {
      const ol = list.children[i].querySelector(".live-racers");
      ol.innerHTML = liveRacersHtml(r);
      sizeBars(ol);
    });
    return;
  }
  if (list.contains(document.activeElement)) return; // do not pull the focused button away
  list.innerHTML = races.map((r, i) => {
    const names = r.players.map((p) => p.name).join(", ") || "no players";
    const label = `Watch ${r.race_type} race with ${names}`;
    return `<li data-race="${esc(r.race_id)}"><div class="live-info"><span class="live-meta">${esc(r.race_type)} · ${r.players.length} player${r.players.length === 1 ? "" : "s"} · ${Number(r.passage_length)} characters</span>` +
      `<ol class="heat-players live-racers" aria-label="${esc(`Racers: ${names}`)}">${liveRacersHtml(r)}</ol></div>` +
      `<button type="button" data-live="${i}" aria-label="${esc(label)}">Watch</button></li>`;
  }).join("");
  sizeBars(list);
  for (const btn of list.querySelectorAll("button[data-live]")) {
    const r = races[Number(btn.dataset.live)];
    btn.addEventListener("click", () => watch(r.race_id, r.url));
  }
}

// ---------------------------------------------------------------- tournaments

// The open tournament: its last view (GET /v1/tournaments/{id}), the live socket, heat progress.
const tour = { id: null, invite: null, view: null, ws: null, retry: null, refetch: null, progress: new Map(), joined: null, loops: 0 };
const HEAT_STATE = { pending: "waiting", placing: "starting", placed: "racing", finished: "finished", settled: "decided" };

async function loadTournaments() {
  const status = $("tournament-status").value;
  const list = $("tournament-list");
  let items;
  try {
    items = (await api("GET", `/v1/tournaments?status=${status}&limit=10`)).tournaments;
  } catch {
    setText("tournament-list-status", "Tournaments are unavailable right now.");
    return;
  }
  if (list.contains(document.activeElement)) return; // do not pull the focused button away
  const label = $("tournament-status").selectedOptions[0].textContent.toLowerCase();
  setText("tournament-list-status", items.length ? "" : `No tournaments (${label}).`);
  list.innerHTML = items.map((t) => {
    const round = t.state === "running" ? ` · round ${t.round} of ${t.rounds_planned}` : "";
    return `<li><span class="live-info">${esc(t.name)}<span class="live-meta">${esc(t.race_type)} · ${t.players}/${t.max_players} players · ${esc(t.state)}${round}</span></span>` +
      `<button type="button" data-tournament="${esc(t.id)}" aria-label="Open tournament ${esc(t.name)}">Open</button></li>`;
  }).join("");
  for (const btn of list.querySelectorAll("button[data-tournament]")) btn.addEventListener("click", () => openTournament(btn.dataset.tournament));
}
$("tournament-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadTournaments(); });

// Private tournaments are not listed: their invite code opens them (and registers with them).
$("tournament-invite").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  banner(null);
  const code = $("tournament-code").value.trim().toUpperCase();
  try {
    const t = await api("GET", `/v1/tournaments/invites/${encodeURIComponent(code)}`);
    openTournament(t.id, code);
  } catch (err) { apiFailed(err); }
});

function openTournament(id, invite = null) {
  closeTournament();
  tour.id = id;
  tour.invite = invite;
  $("tournament-title").textContent = "Tournament";
  $("tournament-summary").textContent = "Loading…";
  $("tournament-me").textContent = "";
  $("bracket").innerHTML = "";
  $("standings-table").tBodies[0].innerHTML = "";
  $("tournament-register").hidden = true;
  show("tournament");
  $("tournament-title").focus();
  followTournament(id);
}

function closeTournament() {
  const ws = tour.ws;
  Object.assign(tour, { id: null, invite: null, view: null, ws: null, progress: new Map(), joined: null });
  clearTimeout(tour.retry);
  clearTimeout(tour.refetch);
  if (ws) ws.close(1000);
}

$("tournament-back").addEventListener("click", () => { closeTournament(); show("home"); loadTournaments(); $("tournament-status").focus(); });

// Live: a snapshot, then updates (docs/TOURNAMENTS.md). Progress moves the bars in place; any
// other update re-reads the whole tournament (a few a minute). A lost socket retries in 2 s.
function followTournament(id) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/tournaments/${encodeURIComponent(id)}/live`);
  tour.ws = ws;
  ws.onmessage = (ev) => {
    if (tour.ws !== ws) return;
    const m = JSON.parse(ev.data);
    if (m.type === "snapshot") {
      // The snapshot is the same for every follower: whether we are registered comes from our GET.
      renderTournament({ ...m.tournament, registered: tour.view?.registered ?? false });
      refetchSoon();
    }
    else if (m.type === "heat_progress") heatProgress(m);
    else refetchSoon();
  };
  ws.onclose = () => {
    if (tour.ws !== ws || tour.id !== id) return;
    tour.ws = null;
    fetchTournament(); // no update is missed while the socket is down for long
    tour.retry = setTimeout(() => { if (tour.id === id && !tour.ws) followTournament(id); }, 2000);
  };
}

function refetchSoon() {
  clearTimeout(tour.refetch);
  tour.refetch = setTimeout(fetchTournament, 200);
}

async function fetchTournament() {
  const id = tour.id;
  if (!id) return;
  try {
    const t = await api("GET", `/v1/tournaments/${encodeURIComponent(id)}`);
    if (tour.id === id) renderTournament(t);
  } catch (err) {
    if (err instanceof ApiError && err.code === "tournament_not_found") { banner(explain(err.code)); closeTournament(); show("home"); }
  }
}

function renderTournament(t) {
  tour.view = t;
  $("tournament-title").textContent = t.name;
  const adv = t.advancement.rule === "points" ? `top ${t.advancement.advance} by points over ${t.advancement.races_per_round} races` : `top ${t.advancement.advance} advance`;
  const round = t.state === "running" ? ` · round ${t.round} of ${t.rounds_planned}` : "";
  setText("tournament-summary", `${t.state}${round} · ${t.players}/${t.max_players} players · ${t.race_type} · heats of ${t.heat_size}, ${adv}${t.reason ? ` · ${t.reason}` : ""}`);
  const reg = $("tournament-register");
  reg.hidden = !(app.session && t.state === "registering");
  reg.textContent = t.registered ? "Leave tournament" : "Register";
  drawBracket(t);
  drawStandings(t);
  if (t.registered && app.session && tour.joined !== t.id) followMyHeat(t.id);
}

function drawBracket(t) {
  const box = $("bracket");
  const focused = document.activeElement?.dataset?.watch; // keep keyboard focus across redraws
  if (!t.bracket.length) {
    box.innerHTML = `<p class="status">${t.state === "registering" ? "The bracket is dealt when the tournament starts." : "No heats."}</p>`;
    return;
  }
  box.innerHTML = t.bracket.map((rnd) =>
    `<section class="round" aria-label="Round ${rnd.round}, ${rnd.state}"><h4>Round ${rnd.round}${rnd.heats.length === 1 ? " (final)" : ""} · ${rnd.state}</h4>` +
    `<ol class="heats">${rnd.heats.map((h) => heatHtml(rnd.round, h, rnd.heats.length === 1)).join("")}</ol></section>`).join("");
  for (const btn of box.querySelectorAll("button[data-watch]")) {
    btn.addEventListener("click", () => watch(btn.dataset.race, btn.dataset.url, "tournament", btn.dataset.label));
    if (btn.dataset.watch === focused) btn.focus();
  }
  for (const [key, m] of tour.progress) drawHeatProgress(key, m);
}

function heatHtml(round, h, final) {
  const key = `${round}-${h.heat}`;
  const live = h.state === "placed" && h.url && !["finished", "aborted"].includes(h.race_state);
  const watchBtn = live
    ? `<button type="button" data-watch="${key}" data-race="${esc(h.race_id)}" data-url="${esc(h.url)}" data-label="${esc(`${tour.view?.name || "tournament"}, round ${round} heat ${h.heat}`)}" aria-label="Watch round ${round} heat ${h.heat} live">Watch</button>`
    : "";
  const done = h.state === "finished" || h.state === "settled";
  const rows = done && h.standings.length
    ? h.standings.map((s, i) => `<li class="heat-row${s.advanced ? " advanced" : ""}"><span class="name">${i + 1}. ${esc(s.name)}</span>` +
        `<span class="heat-note">${s.no_show ? "no show" : `${s.points} pt${s.points === 1 ? "" : "s"} · ${Number(s.wpm).toFixed(0)} wpm`}${s.advanced && !final ? " · through" : ""}</span></li>`).join("")
    : h.players.map((p) => `<li class="heat-row lane" data-player="${esc(p.player_id)}"><span class="name">${esc(p.name)}</span>` +
        `<span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" aria-label="${esc(p.name)}: 0%"><span></span></span><span class="wpm"></span></li>`).join("");
  const state = `${HEAT_STATE[h.state] || h.state}${h.race_state && live ? ` (${h.race_state})` : ""}${h.reason ? ` · ${h.reason}` : ""}`;
  return `<li class="heat" data-heat="${key}"><div class="heat-head"><strong>Heat ${h.heat}</strong> <span class="heat-state">${esc(state)}</span>${watchBtn}</div>` +
    `<ol class="heat-players" aria-label="Round ${round} heat ${h.heat} players">${rows}</ol></li>`;
}

function heatProgress(m) {
  const key = `${m.round}-${m.heat}`;
  tour.progress.set(key, m);
  drawHeatProgress(key, m);
}

// Bars of a running heat, updated in place (progress comes ~10 times a second).
function drawHeatProgress(key, m) {
  const heat = $("bracket").querySelector(`[data-heat="${CSS.escape(key)}"]`);
  if (!heat) return;
  const len = Math.max(m.passage_chars || 1, 1);
  for (const p of m.players) {
    const row = heat.querySelector(`[data-player="${CSS.escape(p.player_id)}"]`);
    if (!row) continue;
    const pct = Math.min(100, Math.round((100 * p.position) / len));
    const bar = row.querySelector(".bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-label", `${row.querySelector(".name").textContent}: ${pct}%`);
    bar.firstElementChild.style.width = `${pct}%`;
    row.querySelector(".wpm").textContent = `${Math.round(p.wpm || 0)} wpm${p.place ? ` #${p.place}` : ""}`;
  }
}

function drawStandings(t) {
  const status = { in: "still in", out: "out", winner: "winner", finished: "finished" };
  $("standings-table").tBodies[0].innerHTML = t.standings.length
    ? t.standings.map((s) => `<tr${s.player_id === app.session?.player_id ? ' class="me"' : ""}><td>${s.rank}</td><td>${esc(s.name)}</td><td>${s.round}</td>` +
        `<td>${esc(status[s.status] || s.status)}${s.prize ? ` · ${esc(s.prize)}` : ""}</td></tr>`).join("")
    : `<tr><td colspan="4">${t.participants.length} registered; standings start with the first round.</td></tr>`;
}

$("tournament-register").addEventListener("click", async () => {
  const t = tour.view;
  if (!t || !app.session) return;
  banner(null);
  try {
    const body = !t.registered && tour.invite ? { invite_code: tour.invite } : undefined;
    await api(t.registered ? "DELETE" : "POST", `/v1/tournaments/${encodeURIComponent(t.id)}/registration`, body);
    $("tournament-me").textContent = t.registered ? "You left the tournament." : "Registered: your races start here when the tournament does.";
    tour.joined = null; // a new registration: follow its heats afresh
    await fetchTournament();
  } catch (err) { apiFailed(err); }
});

// A registered player's heats: long-poll the seat and go straight into each race it gives.
// Runs once per opened tournament (tour.joined), until the player is out or it ends.
async function followMyHeat(id) {
  if (tour.joined === id) return;
  tour.joined = id;
  const loop = ++tour.loops; // a newer loop (re-registration) ends this one
  const words = { registered: "Registered; waiting for the start.", waiting: "Waiting for your heat.", advanced: "You are through to the next round!", eliminated: "You are out of the tournament.", cancelled: "The tournament was cancelled." };
  let since = "";
  let raced = null;
  while (tour.id === id && tour.loops === loop && app.session) {
    let a;
    try {
      a = await api("GET", `/v1/tournaments/${encodeURIComponent(id)}/heat?wait=20&since=${encodeURIComponent(since)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status < 500 && err.status !== 429) { apiFailed(err); break; }
      await sleep(2000); // the lobby is busy or unreachable: keep following
      continue;
    }
    if (tour.id !== id || tour.loops !== loop) break;
    since = a.key;
    setText("tournament-me", a.status === "finished" ? `Finished: rank ${a.rank ?? "—"}.` : words[a.status] || (a.status === "racing" ? `Your heat (round ${a.round}) is on.` : ""));
    if (a.status === "racing" && a.race_id !== raced) {
      raced = a.race_id;
      const label = `${tour.view?.name || "tournament"}, round ${a.round} heat ${a.heat}`;
      connectRace({ url: a.url, player_token: a.player_token, ticket: a.ticket }, { raceType: tour.view?.race_type, returnTo: "tournament", label });
    }
    if (["not_registered", "eliminated", "finished", "cancelled"].includes(a.status)) break;
  }
}

// Test hook for tests/e2e: drop the race socket as a network failure would, to exercise reconnect.
window.__arena = {
  dropSocket() { const ws = app.race?.ws; if (!ws) return false; ws.close(4000, "test: dropped"); return true; },
  // A link that hears nothing more while the socket stays open: the watchdog must give up on it.
  silence() { const r = app.race; if (!r?.ws) return false; r.ws.onmessage = null; r.lastHeard = 0; return true; },
  reconnects() { return app.race?.reconnects ?? 0; },
  resumedFrom() { return app.race?.resumedFrom ?? null; }, // the server's view in the last re-join
  replayTextAt, // the page's copy of lobby/replay_text.py's text_at, checked against it
  replayAt() { return replay.t; },
};

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

// ---------------------------------------------------------------- start

async function main() {
  show("home");
  await loadRegions();
  const saved = JSON.parse(sessionStorage.getItem("arena.session") || "null");
  if (saved && saved.expires_at * 1000 > Date.now() + 60000) {
    app.region = saved.region || app.region;
    if ([...$("region").options].some((o) => o.value === app.region)) $("region").value = app.region;
    signedIn(saved);
  }
  loadBoard();
  // /?watch=RACE_ID&node=ws://…: open straight into spectating (links from live race lists);
  // /?tournament=ID: straight to that tournament's bracket.
  const q = new URLSearchParams(location.search);
  if (q.get("watch") && q.get("node")) watch(q.get("watch"), q.get("node"));
  else if (q.get("tournament")) openTournament(q.get("tournament"));
  else if (q.get("replay")) openReplay(q.get("replay"));
  else $(app.session ? "race-type" : "name").focus();
}
main();

// For the page's other modules (daily.js: the daily challenge and ghost races; typingtest.js;
// ghostpicker.js: a private race's ghosts and "Race ghost" on the results screen).
export { api, apiFailed, app, banner, connectRace, drawChart, drawSpeed, esc, flagged, serverNow, setText, show };
