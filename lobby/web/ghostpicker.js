// Ghosts from anywhere on the page: docs/API.md "Ghost races".
// - A private race's lobby: the ghosts added so far and, for the host of an open race, "Add a
//   ghost" (POST /v1/private-races/{code}/ghosts): their personal best, today's daily leader or
//   another player on today's board, or any clean finisher of their last races of the race's
//   type. The node then races the ghost with everyone.
// - The results screen right after a race: "Race ghost" on every clean finisher's row
//   (POST /v1/ghost-races). app.js tells this module about both through two DOM events
//   ("arena:private-race" with the private race's view, "arena:results" with the race and its
//   results), so it only draws on what app.js already shows.
import { api, apiFailed, app, banner, connectRace, esc, setText } from "./app.js";

const $ = (id) => document.getElementById(id);
const MAX_GHOSTS = 3; // gameserver/ghost.py MAX_GHOSTS: the API refuses a 4th with ghosts_full
const CLEAN_REVIEW = ["clear", "released"]; // held or rejected results cannot be ghosts
// Persistence stores a race within about a second of its results: a ghost asked for sooner is
// "not found"; ask again a few times, further apart each time (about 6 s in all).
const STORED_WAITS_MS = [400, 600, 1000, 1500, 2500];
const RECENT_RACES = 3; // the host's last races whose finishers the picker offers
const picker = { view: null, choicesFor: null, racers: [], daily: null, list: null };

// ---------------------------------------------------------------- a private race's ghosts

function ghostLine(g) {
  return `<li>${esc(g.name)} (ghost) · ${Number(g.wpm).toFixed(1)} WPM</li>`;
}

// What the host may pick besides their best: today's daily board (quick races; every attempt on
// it is clean) and every clean finisher of their last few races of this race's type, read from
// those races' replays (cacheable, GET /v1/races/{id}/replay). Read once per private race.
async function loadChoices(view) {
  const me = app.session?.player_id;
  const key = `${me}/${view.code}`;
  if (!me || picker.choicesFor === key) return;
  picker.choicesFor = key; // a failed read is not retried: best and the daily leader still work
  const [recent, board] = await Promise.all([
    api("GET", `/v1/players/${encodeURIComponent(me)}/races?limit=20`).catch(() => ({ races: [] })),
    view.race_type === "quick" ? api("GET", "/v1/daily?limit=5").catch(() => null) : null,
  ]);
  const races = recent.races.filter((x) => x.race_type === view.race_type).slice(0, RECENT_RACES);
  const replays = await Promise.all(races.map((x) => api("GET", `/v1/races/${encodeURIComponent(x.race_id)}/replay`).catch(() => null)));
  if (picker.choicesFor !== key) return;
  picker.racers = [];
  for (const d of replays) {
    if (!d || d.state !== "finished" || d.passage.text == null) continue; // no ghost from these
    const when = new Date(d.ended_at).toLocaleString();
    for (const p of d.players) {
      if (p.status !== "finished" || p.flagged || !CLEAN_REVIEW.includes(p.review)) continue;
      const who = p.player_id === me ? "You" : p.name;
      picker.racers.push({ value: `race:${d.race_id}:${p.player_id}`, passage: d.passage.id,
        label: `${who}, ${Number(p.wpm).toFixed(1)} WPM (race of ${when})` });
    }
  }
  picker.daily = board;
  if (picker.view) renderPrivate(picker.view);
}

function options(view) {
  const opts = [["best", "Your personal best"]];
  if (view.race_type === "quick") { // a daily attempt is a quick race
    opts.push(["daily", "Today's daily challenge leader"]);
    for (const e of picker.daily?.board || []) {
      if (e.rank > 1) opts.push([`daily:${e.player_id}`, `Today's daily #${e.rank}: ${e.name}, ${Number(e.wpm).toFixed(1)} WPM`]);
    }
  }
  // Once the race has a ghost, its passage is the race's: only racers of that passage can join it.
  const passage = view.ghosts?.[0]?.passage_id;
  for (const x of picker.racers) if (!passage || x.passage === passage) opts.push([x.value, x.label]);
  return opts;
}

function renderPrivate(view) {
  picker.view = view;
  const ghosts = view.ghosts || [];
  const list = ghosts.map(ghostLine).join("");
  if (picker.list !== list) { $("private-ghost-list").innerHTML = list; picker.list = list; } // a live region: only changes
  $("private-ghost-count").textContent = `(${ghosts.length} of ${MAX_GHOSTS})`;
  const host = view.host.player_id === app.session?.player_id;
  const open = view.state === "open";
  const custom = view.race_type === "custom";
  const canAdd = host && open && !custom && ghosts.length < MAX_GHOSTS;
  $("ghost-add").hidden = !canAdd;
  let note = "";
  if (custom) note = "A race on your own text has no ghosts (only stored passages can be replayed).";
  else if (host && open && ghosts.length >= MAX_GHOSTS) note = `At most ${MAX_GHOSTS} ghosts in a race.`;
  else if (!ghosts.length) note = host ? "Add a ghost to race a stored run with your friends." : "No ghosts in this race.";
  else if (host && open) note = "Every ghost must come from a race on the same passage.";
  setText("private-ghost-status", note);
  if (canAdd) {
    const sel = $("ghost-pick");
    const want = options(view);
    const now = [...sel.options].map((o) => o.value).join("|");
    if (now !== want.map(([v]) => v).join("|")) { // keep the player's choice unless the list changed
      sel.innerHTML = want.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join("");
    }
    loadChoices(view);
  }
}

async function body(choice) {
  if (choice === "best") return { best: true };
  // Today as the server counts it (a wrong client clock must not pick yesterday's leader).
  const today = async () => picker.daily?.day || (await api("GET", "/v1/daily?limit=1")).day;
  if (choice === "daily") return { daily: await today() };
  if (choice.startsWith("daily:")) return { daily: await today(), player_id: choice.slice("daily:".length) };
  const [, raceId, playerId] = choice.split(":"); // race:RACE_ID:PLAYER_ID (ids have no ":")
  return { race_id: raceId, player_id: playerId };
}

$("ghost-add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const view = picker.view;
  if (!view) return;
  banner(null);
  const go = $("ghost-add-go");
  go.disabled = true;
  try {
    const path = `/v1/private-races/${encodeURIComponent(view.code)}/ghosts`;
    const before = view.ghosts.length;
    const next = await api("POST", path, await body($("ghost-pick").value));
    if (app.privateCode !== next.code) return; // the player left this race meanwhile
    renderPrivate(next); // the list (a live region) announces the new ghost
    if (next.ghosts.length === before) setText("private-ghost-status", "That ghost is already in this race.");
  } catch (err) {
    apiFailed(err); // e.g. ghost_race_type, ghost_passage_mismatch, ghost_not_found: the server's reason
  } finally {
    go.disabled = false;
  }
});

document.addEventListener("arena:private-race", (ev) => renderPrivate(ev.detail));

// ---------------------------------------------------------------- results rows

// A finisher of this race can be raced as a ghost if the API will take them: a finished race on
// a stored passage (not a custom text, not a typing test), finished, unflagged, not a ghost.
function clean(race, m, row) {
  return m.state === "finished" && !race.test && race.raceType !== "custom"
    && row.status === "finished" && !(row.flags && row.flags.length) && !row.ghost;
}

function decorateResults(race, m) {
  const rows = $("results-table").tBodies[0].rows;
  m.results.forEach((row, i) => {
    if (!rows[i] || !clean(race, m, row)) return;
    const who = row.player_id === race.me ? "your own" : `${row.name}'s`;
    rows[i].cells[1].insertAdjacentHTML("beforeend",
      ` <button type="button" class="link" data-ghost-race="${esc(m.race_id)}" data-ghost-player="${esc(row.player_id)}" aria-label="${esc(`Race ${who} ghost from this race`)}">Race ghost</button>`);
  });
}

// The race was just stored, or is about to be: "not found" is asked again for a few seconds.
async function raceStoredGhost(raceId, playerId, button) {
  button.disabled = true;
  banner(null);
  const body = { race_id: raceId, player_id: playerId, region: app.region };
  try {
    for (let i = 0; ; i++) {
      try {
        const g = await api("POST", "/v1/ghost-races", body);
        connectRace(g.assignment, { raceType: g.race_type, label: `against ${g.ghost.name}'s ghost` });
        return;
      } catch (err) {
        if (err.code !== "ghost_not_found" || i >= STORED_WAITS_MS.length) { apiFailed(err); return; }
        banner("Storing the race's result…", "info");
        await new Promise((resolve) => setTimeout(resolve, STORED_WAITS_MS[i]));
        if (document.body.dataset.screen !== "results") return; // the player moved on
      }
    }
  } finally { button.disabled = false; }
}

document.addEventListener("arena:results", (ev) => decorateResults(ev.detail.race, ev.detail.results));
$("results-table").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-ghost-race]");
  if (b) raceStoredGhost(b.dataset.ghostRace, b.dataset.ghostPlayer, b);
});
