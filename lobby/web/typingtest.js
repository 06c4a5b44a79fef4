// The typing-test screen: docs/API.md "Typing tests". A test is a one-seat race on a node, so the
// race screen (app.js connectRace) does the connecting and typing; this module adds the mode
// picker, the live WPM and accuracy line, and the result: the server's verdict, the percentile
// and the personal best (GET /v1/tests/{id}, .../tests/bests) and the recent tests, each of which
// opens its result again with its speed chart (GET /v1/tests/{id}/replay).
import { api, apiFailed, app, banner, connectRace, drawChart, drawSpeed, esc, flagged, serverNow, setText, show } from "./app.js";

const $ = (id) => document.getElementById(id);
const LIVE_MS = 200; // the live line's refresh: fast enough to read, slow enough to cost nothing
// Persistence stores a result within about a second of the node's verdict: ask a few times,
// further apart each time, then give up (about 10 s in all).
const RESULT_WAITS_MS = [300, 500, 800, 1200, 1500, 2000, 2000, 2000];
const MODE_TEXT = {
  "time-15": "15 s", "time-30": "30 s", "time-60": "60 s", "time-120": "120 s",
  "words-10": "10 words", "words-25": "25 words", "words-50": "50 words", "words-100": "100 words", quote: "quote",
};
const tests = { mode: null, testId: null, loadedAs: undefined, shown: null };

const modeName = (mode) => MODE_TEXT[mode] || mode;
const pct = (x) => `${Number(x).toFixed(1)}%`;
// A history row's time: the clock time today, the date before.
function when(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleDateString();
}

// What the player's own keys say: correct characters so far, and the share of keystrokes that
// were right when typed (backspaces are not keystrokes here; the server's accuracy is the verdict).
function localStats(r) {
  let ok = 0;
  while (ok < r.typed.length && ok < r.passage.length && r.typed[ok] === r.passage[ok]) ok++;
  const keys = r.keyLog.length;
  const wrong = r.keyLog.filter((k) => !k.ok).length;
  const minutes = r.startAt ? (Math.min(serverNow(r), r.endsAt || Infinity) - r.startAt) / 60000 : 0;
  return {
    wpm: minutes > 0 ? ok / 5 / minutes : 0,
    accuracy: keys ? (100 * (keys - wrong)) / keys : 100,
    errors: wrong,
    elapsedMs: r.keyLog.length ? r.keyLog[r.keyLog.length - 1].t : 0,
  };
}

// The live line under the countdown while a test runs (not announced: it changes 5 times a second).
function live() {
  const r = app.race;
  const on = !!(r && r.test && !r.done && document.body.dataset.screen === "race");
  const el = $("test-live");
  el.hidden = !on;
  if (!on || !r.startAt || serverNow(r) < r.startAt) { if (on) setText("test-live", "WPM 0 · accuracy 100%"); return; }
  const s = localStats(r);
  const left = r.test.startsWith("time-") && r.endsAt ? ` · ${Math.max(0, Math.ceil((r.endsAt - serverNow(r)) / 1000))} s left` : "";
  setText("test-live", `WPM ${Math.round(s.wpm)} · accuracy ${s.accuracy.toFixed(1)}%${left}`);
}

async function start(mode) {
  banner(null);
  tests.mode = mode;
  try {
    const t = await api("POST", "/v1/tests", { mode, region: app.region });
    tests.testId = t.test_id;
    connectRace(t.assignment, { raceType: "custom", label: `Typing test: ${modeName(mode)}`, test: mode, onResults: (r, m) => finished(t, r, m) });
  } catch (err) { apiFailed(err); }
}

// The node's verdict first (at once), then the stored result with its percentile and the bests.
async function finished(t, r, m) {
  tests.shown = t.test_id;
  const mine = m.results.find((row) => row.player_id === r.me);
  const local = localStats(r);
  $("test-title").textContent = `Typing test: ${modeName(t.mode)}`;
  setText("test-wpm", mine ? mine.wpm.toFixed(1) : "—");
  setText("test-accuracy", mine ? pct(mine.accuracy) : "—");
  setText("test-errors", String(local.errors));
  setText("test-raw", mine ? mine.raw_wpm.toFixed(1) : "—");
  setText("test-time", mine ? `${(mine.elapsed_ms / 1000).toFixed(1)} s` : "—");
  $("test-flags").hidden = !(mine && mine.flags.length);
  $("test-flags").textContent = mine && mine.flags.length ? flagged(mine.flags) : "";
  setText("test-percentile", m.state === "aborted" ? "The test was aborted." : mine?.status === "dnf" ? "Nothing typed: not counted." : "Ranking your result…");
  setText("test-best", "");
  drawChart(r.keyLog, $("test-chart"));
  show("test");
  $("test-title").focus();
  if (m.state === "aborted" || !mine) return;
  const stored = await storedResult(t.test_id);
  if (tests.shown !== t.test_id) return; // another test started meanwhile
  if (!stored) { setText("test-percentile", "Your result is not stored yet; it will show in your recent tests."); }
  else showStored(stored);
  await loadPlayer(stored);
}

async function storedResult(testId) {
  for (const wait of RESULT_WAITS_MS) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    if (tests.shown !== testId) return null;
    try {
      const v = await api("GET", `/v1/tests/${encodeURIComponent(testId)}`);
      if (v.result) return v.result;
    } catch { /* not there yet, or the lobby is busy: ask again */ }
  }
  return null;
}

// A test of "Your recent tests" opened again: the stored verdict, percentile, best and chart.
async function openStored(testId) {
  banner(null);
  tests.shown = testId;
  try {
    const [view, replay] = await Promise.all([
      api("GET", `/v1/tests/${encodeURIComponent(testId)}`),
      api("GET", `/v1/tests/${encodeURIComponent(testId)}/replay`),
    ]);
    if (tests.shown !== testId || !view.result) return;
    const res = view.result;
    tests.mode = res.mode;
    $("test-title").textContent = `Typing test: ${modeName(res.mode)}, ${when(res.ended_at)}`;
    setText("test-raw", Number(res.raw_wpm).toFixed(1));
    setText("test-time", `${(res.elapsed_ms / 1000).toFixed(1)} s`);
    $("test-flags").hidden = !res.flags.length;
    $("test-flags").textContent = res.flags.length ? flagged(res.flags) : "";
    showStored(res);
    setText("test-best", "");
    drawSpeed(replay.speed, $("test-chart"));
    show("test");
    $("test-title").focus();
    await loadPlayer(res);
  } catch (err) { apiFailed(err); }
}

function showStored(res) {
  // The stored result is the verdict: its errors count every wrong key the server applied.
  setText("test-wpm", Number(res.wpm).toFixed(1));
  setText("test-accuracy", pct(res.accuracy));
  setText("test-errors", String(res.errors));
  setText("test-percentile", res.percentile == null
    ? "Not counted for percentiles (not a clean finish)."
    : `Faster than ${Number(res.percentile).toFixed(1)} % of ${modeName(res.mode)} tests in the last 7 days (${res.window_results} result${res.window_results === 1 ? "" : "s"}).`);
}

// Bests and recent tests: on the home card, and on the result screen (with "new best").
async function loadPlayer(stored = null) {
  const me = app.session?.player_id;
  tests.loadedAs = me || null;
  if (!me) { $("test-bests").tBodies[0].innerHTML = ""; $("test-history").tBodies[0].innerHTML = ""; return; }
  const base = `/v1/players/${encodeURIComponent(me)}/tests`;
  try {
    const [bests, recent] = await Promise.all([api("GET", `${base}/bests`), api("GET", `${base}?limit=10`)]);
    $("test-bests").tBodies[0].innerHTML = bests.bests.length
      ? bests.bests.map((b) => `<tr><td>${esc(modeName(b.mode))}</td><td>${Number(b.wpm).toFixed(1)}</td><td>${pct(b.accuracy)}</td></tr>`).join("")
      : `<tr><td colspan="3">No tests yet.</td></tr>`;
    $("test-history").tBodies[0].innerHTML = recent.tests.length
      ? recent.tests.map((x) => `<tr${stored && x.test_id === stored.test_id ? ' class="me"' : ""}><td><button type="button" class="link" data-test-open="${esc(x.test_id)}" aria-label="${esc(`Open the ${modeName(x.mode)} test of ${when(x.ended_at)}`)}">${esc(modeName(x.mode))}</button></td><td>${Number(x.wpm).toFixed(1)}${x.valid ? "" : " (flagged)"}</td>` +
          `<td>${pct(x.accuracy)}</td><td>${Number(x.errors)}</td><td>${esc(when(x.ended_at))}</td></tr>`).join("")
      : `<tr><td colspan="5">No tests yet.</td></tr>`;
    if (stored) {
      const best = bests.bests.find((b) => b.mode === stored.mode);
      setText("test-best", !best ? "No personal best in this mode yet."
        : best.test_id === stored.test_id ? `New personal best for ${modeName(stored.mode)}: ${Number(best.wpm).toFixed(1)} WPM!`
        : `Your personal best for ${modeName(stored.mode)}: ${Number(best.wpm).toFixed(1)} WPM.`);
    }
  } catch {
    setText("tests-status", "Your tests are unavailable right now.");
  }
}

// The home card: the picker shows to a signed-in player; bests reload on sign-in or out.
function tick() {
  if ($("screen-home").hidden) return;
  const signedIn = !!app.session;
  $("test-form").hidden = !signedIn;
  $("test-bests").hidden = !signedIn;
  setText("tests-status", signedIn ? $("tests-status").textContent : "Sign in to take a typing test.");
  if ((app.session?.player_id || null) !== tests.loadedAs) { setText("tests-status", ""); loadPlayer(); }
}

$("test-form").addEventListener("submit", (ev) => { ev.preventDefault(); start($("test-mode").value); });
$("test-again").addEventListener("click", () => start(tests.mode || $("test-mode").value));
$("test-history").addEventListener("click", (ev) => {
  const id = ev.target.closest("button[data-test-open]")?.dataset.testOpen;
  if (id) openStored(id);
});
$("test-home").addEventListener("click", () => { tests.shown = null; show("home"); loadPlayer(); $("test-mode").focus(); });

setInterval(live, LIVE_MS);
setInterval(tick, 1000);
tick();
