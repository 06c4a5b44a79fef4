// The daily challenge (GET /v1/daily, POST /v1/daily/attempts) and ghost races
// (POST /v1/ghost-races) on the page: docs/API.md "Daily challenge", "Ghost races".
import { api, apiFailed, app, connectRace, esc } from "./app.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 30000; // the board is re-read this often while the home screen shows
const daily = { view: null, endsAt: 0, loaded: 0, loadedAs: null, timer: null, rows: "" };

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
}

// Every attempt on the board is clean (the board's rules), so every row can be raced as a ghost.
function ghostButton(e) {
  const who = e.player_id === app.session?.player_id ? "your own" : `${e.name}'s`;
  return ` <button type="button" class="link" data-daily-ghost="${esc(e.player_id)}" aria-label="${esc(`Race ${who} daily attempt as a ghost`)}">Race ghost</button>`;
}

function render() {
  const v = daily.view;
  if (!v) return;
  const left = (daily.endsAt - Date.now()) / 1000;
  $("daily-countdown").textContent = left > 0
    ? `${v.day}: next challenge in ${clock(left)}`
    : `${v.day}: the next challenge is out`;
  $("daily-passage").textContent = v.passage;
  const signedIn = !!app.session;
  $("daily-go").hidden = !signedIn;
  $("daily-leader").hidden = !signedIn || !v.board.length;
  $("daily-you").textContent = !signedIn ? "Sign in to attempt it."
    : v.you ? `You: #${v.you.rank} of ${v.players}, ${Number(v.you.wpm).toFixed(1)} WPM (your best attempt counts).`
    : "You have no attempt on today's board yet.";
  // render() runs every second: rewrite the rows only when they change (a focused button stays).
  const rows = v.board.length
    ? v.board.map((e) => `<tr${e.player_id === app.session?.player_id ? ' class="me"' : ""}><td>${e.rank}</td><td>${esc(e.name)}${signedIn ? ghostButton(e) : ""}</td><td>${Number(e.wpm).toFixed(1)}</td><td>${Number(e.accuracy).toFixed(1)}%</td></tr>`).join("")
    : `<tr><td colspan="4">No attempts yet today.</td></tr>`;
  if (rows !== daily.rows) { $("daily-table").tBodies[0].innerHTML = rows; daily.rows = rows; }
}

async function load() {
  daily.loadedAs = app.session?.player_id || null; // "you" is the caller's: reload on sign-in or out
  daily.loaded = Date.now(); // a failure too: the next try is a refresh period later
  try {
    const v = await api("GET", "/v1/daily?limit=10");
    daily.view = v;
    // The server's countdown, not the client's clock: a wrong clock still counts down right.
    daily.endsAt = Date.now() + v.seconds_left * 1000;
    render();
  } catch {
    $("daily-countdown").textContent = "The daily challenge is unavailable right now.";
  }
}

function tick() {
  if ($("screen-home").hidden) return;
  const stale = Date.now() - daily.loaded > REFRESH_MS || (daily.view && Date.now() >= daily.endsAt);
  if (stale || (app.session?.player_id || null) !== daily.loadedAs) load();
  else render();
}

async function attempt() {
  try {
    const a = await api("POST", "/v1/daily/attempts", { region: app.region });
    connectRace(a.assignment, { raceType: a.race_type, label: `daily challenge ${a.day}` });
  } catch (err) { apiFailed(err); }
}

// A solo race against a ghost: body {race_id, player_id} | {best: true} | {daily: day}.
export async function raceGhost(body) {
  try {
    const g = await api("POST", "/v1/ghost-races", { ...body, region: app.region });
    connectRace(g.assignment, { raceType: g.race_type, label: `against ${g.ghost.name}'s ghost` });
  } catch (err) { apiFailed(err); }
}

$("daily-go").addEventListener("click", attempt);
$("daily-leader").addEventListener("click", () => daily.view && raceGhost({ daily: daily.view.day }));
$("daily-table").addEventListener("click", (ev) => {
  const id = ev.target.closest("button[data-daily-ghost]")?.dataset.dailyGhost;
  if (id && daily.view) raceGhost({ daily: daily.view.day, player_id: id });
});
// "Race ghost" on result rows: the recent races list and the replay viewer's racers.
for (const list of ["recent", "replay-racers"]) {
  $(list).addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-ghost-race]");
    if (b) raceGhost({ race_id: b.dataset.ghostRace, player_id: b.dataset.ghostPlayer });
  });
}

load();
daily.timer = setInterval(tick, 1000);
