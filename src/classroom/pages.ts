import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../paths.ts";
import type { SeatBackend } from "./backend.ts";
import { type ClassState, type Seat, seatLabel } from "./state.ts";

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The recipe's lab guide as HTML. Its topology picture is a file beside the guide: the page
 * loads it from /assets/ (the server serves that one picture).
 */
export async function renderGuide(recipe: string): Promise<string> {
  const { marked } = await import("marked"); // only `classroom up` needs it (see server.ts)
  const md = readFileSync(join(ROOT, "labs", `${recipe}.md`), "utf8");
  const html = marked.parse(md, { async: false });
  return html.replace(/src="([a-z0-9-]+\.svg)"/g, 'src="/assets/$1"');
}

const STYLE = `
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: #1d2125; background: #f6f7f9; }
header { padding: 8px 16px; background: #1d2b3a; color: #fff; font-weight: 600; }
main.attendee { display: grid; grid-template-columns: minmax(320px, 42%) 1fr; height: calc(100vh - 38px); }
.guide { overflow: auto; padding: 0 20px 40px; background: #fff; border-right: 1px solid #dde1e6; }
.guide img { max-width: 100%; }
.guide pre { background: #f0f2f5; padding: 8px; overflow: auto; }
.guide table { border-collapse: collapse; font-size: 12px; }
.guide td, .guide th { border: 1px solid #dde1e6; padding: 2px 6px; }
.work { display: flex; flex-direction: column; min-width: 0; }
#exercises { padding: 8px 16px; max-height: 40%; overflow: auto; }
#exercises ul { list-style: none; padding: 0; margin: 6px 0; }
#exercises li { padding: 4px 0; border-bottom: 1px solid #e6e9ed; }
.state { display: inline-block; min-width: 60px; font-weight: 600; }
li[data-state=pass] .state { color: #1a7f37; }
li[data-state=not-yet] .state { color: #9a6700; }
.hint { color: #57606a; font-size: 13px; margin-left: 64px; }
#tabs { padding: 4px 16px; background: #e9ecf0; }
#tabs button.active { font-weight: 700; }
#terminal { flex: 1; min-height: 200px; background: #000; padding: 4px; }
table.grid { border-collapse: collapse; margin: 16px; background: #fff; }
table.grid td, table.grid th { border: 1px solid #dde1e6; padding: 4px 10px; text-align: center; }
td[data-state=pass] { background: #d1f4dc; }
td[data-state=not-yet] { background: #fff1c9; }
td.stuck { color: #b42318; font-weight: 600; }
td.topology { text-align: left; font-size: 12px; }
.engine[data-ok="false"] { color: #b00; font-weight: bold; }
td.actions { text-align: left; white-space: nowrap; font-size: 12px; }
.node { display: inline-block; padding: 0 4px; margin: 1px; border-radius: 3px; background: #ffd8d3; }
.node[data-state=running] { background: #d1f4dc; }
.path[data-path=direct] { color: #1a7f37; }
.path[data-path=derp] { color: #9a6700; }
`;

function shell(title: string, body: string, head = ""): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>${head}<style>${STYLE}</style></head>
<body>${body}</body></html>`;
}

/** One seat's page: the guide, its exercises with check and solve, a terminal per node of its lab. */
export function attendeePage(state: ClassState, seat: Seat, backend: SeatBackend, guideHtml: string): string {
  const r = backend.recipe;
  const exercises = r.exercises
    .map(
      (e) =>
        `<li data-exercise="${escapeHtml(e.id)}" data-state="unknown"><span class="state">?</span> <b>${escapeHtml(e.id)}</b>: ${escapeHtml(e.title)}` +
        (e.solve.length ? ` <button class="solve" data-exercise="${escapeHtml(e.id)}">Solve</button>` : "") +
        `<div class="hint"></div></li>`,
    )
    .join("\n");
  const tabs = backend
    .nodes()
    .map(
      (n, i) =>
        `<button data-node="${escapeHtml(n.key)}"${i ? "" : ' class="active"'} title="${escapeHtml(n.role)}">${escapeHtml(n.key)}</button>`,
    )
    .join(" ");
  const body = `<header>Seat ${seatLabel(seat.n)} · ${escapeHtml(r.title)} (${escapeHtml(state.recipe)})</header>
<main class="attendee">
<section class="guide" id="guide">${guideHtml}</section>
<section class="work">
<div id="exercises"><button id="check">Check</button> <span id="status"></span>
<ul>${exercises}</ul></div>
<div id="tabs">Terminal on: ${tabs}
<small>(the guide's <code>podman container exec NODE ...</code> commands: type the part after the container name in NODE's terminal)</small></div>
<div id="terminal"></div>
</section></main>
<script src="/assets/xterm.js"></script><script src="/assets/addon-fit.js"></script>
<script>${ATTENDEE_JS.replace("__SEAT__", seatLabel(seat.n))}</script>`;
  return shell(`Seat ${seatLabel(seat.n)} · ${state.recipe}`, body, '<link rel="stylesheet" href="/assets/xterm.css">');
}

const ATTENDEE_JS = `
const SEAT = "__SEAT__";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const q = (extra) => "?token=" + encodeURIComponent(TOKEN) + (extra || "");
const statusLine = (t) => { document.getElementById("status").textContent = t; };
const term = new Terminal({ cursorBlink: true, fontSize: 14, lineHeight: 1.15, scrollback: 2000 });
const fit = new FitAddon.FitAddon();
term.loadAddon(fit);
term.open(document.getElementById("terminal"));
fit.fit();
let ws;
function connect(node) {
  if (ws) { ws.onclose = null; ws.close(); }
  term.reset();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(proto + "://" + location.host + "/seat/" + SEAT + "/terminal" + q("&node=" + encodeURIComponent(node) + "&cols=" + term.cols + "&rows=" + term.rows));
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => term.write(new Uint8Array(e.data));
  ws.onclose = (e) => term.write("\\r\\n[terminal closed" + (e.reason ? ": " + e.reason : "") + "]\\r\\n");
  term.focus();
}
const send = (m) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(m)); };
term.onData((d) => send({ t: "in", d }));
term.onResize(({ cols, rows }) => send({ t: "resize", cols, rows }));
window.addEventListener("resize", () => fit.fit());
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll("#tabs button")) o.classList.toggle("active", o === b);
    connect(b.dataset.node);
  });
}
connect(document.querySelector("#tabs button").dataset.node);
function show(exercises) {
  for (const x of exercises) {
    const li = document.querySelector('li[data-exercise="' + x.id + '"]');
    if (!li) continue;
    li.dataset.state = x.state === "pass" ? "pass" : "not-yet";
    li.querySelector(".state").textContent = x.state === "pass" ? "done" : "not yet";
    const seen = (x.seen || []).map((s) => " Seen: " + s).join("");
    li.querySelector(".hint").textContent = x.state === "pass" ? "" : "Hint: " + (x.hint || "") + seen;
  }
}
async function post(path) {
  const r = await fetch("/seat/" + SEAT + path + q(), { method: "POST" });
  const j = await r.json().catch(() => ({ error: "HTTP " + r.status }));
  if (!r.ok) throw new Error(j.error || "HTTP " + r.status);
  return j;
}
document.getElementById("check").addEventListener("click", async () => {
  statusLine("checking...");
  try { show((await post("/check")).exercises); statusLine("checked at " + new Date().toLocaleTimeString()); }
  catch (e) { statusLine(e.message); }
});
for (const b of document.querySelectorAll("button.solve")) {
  b.addEventListener("click", async () => {
    statusLine("applying the solution of " + b.dataset.exercise + "...");
    try { await post("/solve/" + encodeURIComponent(b.dataset.exercise)); statusLine("solution of " + b.dataset.exercise + " applied: press Check"); }
    catch (e) { statusLine(e.message); }
  });
}
`;

/**
 * The facilitator's page: every seat's exercises, live from /events, how long since each last
 * turned green, its lab's nodes and paths at the last survey, and reset/solve/look-again buttons.
 */
export function facilitatorPage(state: ClassState): string {
  const body = `<header>Classroom ${escapeHtml(state.name)} · ${escapeHtml(state.recipe)} · <span id="count">${state.seats.length}</span> seats</header>
<p style="margin:16px" id="engines"></p>
<table class="grid" id="grid"><thead></thead><tbody></tbody></table>
<p style="margin:16px" id="conn">connecting...</p>
<script>${FACILITATOR_JS}</script>`;
  return shell(`Classroom ${state.name}`, body);
}

const FACILITATOR_JS = `
const KEY = new URLSearchParams(location.search).get("key") || "";
let snap;
/** seat -> what the facilitator's last button on it is doing or did. */
const note = {};
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const pad = (n) => String(n).padStart(2, "0");
function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function since(s) {
  return s.lastGreenAt ? ago(s.lastGreenAt) : "none yet (" + ago(s.resetAt || snap.startedAt) + ")";
}
function stuck(s) {
  return (Date.now() - Date.parse(s.lastGreenAt || s.resetAt || snap.startedAt)) > 10 * 60 * 1000 && Object.values(s.exercises).some((x) => x !== "pass");
}
/** The seat's lab at its last survey: a badge per node (green: running), each Tailscale pair's path. */
function topology(s) {
  const t = s.topology;
  if (!t) return "?";
  const nodes = t.nodes.map((n) => '<span class="node" data-node="' + esc(n.key) + '" data-state="' + esc(n.state) + '" title="' + esc(n.key + ": " + n.state) + '">' + esc(n.key) + "</span>").join(" ");
  const paths = t.paths.map((p) => '<div class="path" data-from="' + esc(p.from) + '" data-to="' + esc(p.to) + '" data-path="' + esc(p.path) + '" title="' + esc(p.via) + '">' + esc(p.from) + " → " + esc(p.to) + ": " + esc(p.path) + "</div>").join("");
  return nodes + paths;
}
function checked(s) {
  return s.error ? esc(s.error) : s.checkedAt ? ago(s.checkedAt) + " ago" : "not yet";
}
/** Where the seats run: one line per engine, red when it does not answer. */
function engines() {
  return (snap.engines || []).map((e) => '<span class="engine" data-host="' + esc(e.host) + '" data-ok="' + e.ok + '">' + esc(e.host) + " (" + esc(e.detail) + "): seats " + (e.seats.map(pad).join(", ") || "none") + "</span>").join(" · ");
}
function render() {
  if (!snap) return;
  document.getElementById("count").textContent = snap.seats.length;
  document.getElementById("engines").innerHTML = engines();
  document.querySelector("#grid thead").innerHTML = "<tr><th>seat</th>" + snap.exercises.map((e) => '<th title="' + esc(e.title) + '">' + esc(e.id) + "</th>").join("") + "<th>since last green</th><th>checked</th><th>lab now</th><th></th></tr>";
  document.querySelector("#grid tbody").innerHTML = snap.seats.map((s) => {
    const cells = snap.exercises.map((e) => {
      const st = s.exercises[e.id];
      const solve = e.solvable && st !== "pass" ? ' <button class="solve" data-seat="' + s.seat + '" data-exercise="' + esc(e.id) + '" title="apply the solution of ' + esc(e.id) + ' in this seat">solve</button>' : "";
      return '<td data-seat="' + s.seat + '" data-exercise="' + esc(e.id) + '" data-state="' + (st === "pass" ? "pass" : st ? "not-yet" : "unknown") + '">' + (st === "pass" ? "✓" : st ? "·" : "?") + solve + "</td>";
    }).join("");
    return '<tr data-seat="' + s.seat + '"><td>' + pad(s.seat) + "</td>" + cells +
      '<td class="since' + (stuck(s) ? " stuck" : "") + '" data-last-green="' + esc(s.lastGreenAt || "") + '">' + since(s) + "</td>" +
      '<td class="checked">' + checked(s) + "</td>" +
      '<td class="topology" data-seat="' + s.seat + '">' + topology(s) + "</td>" +
      '<td class="actions"><button class="survey" data-seat="' + s.seat + '" title="check this seat and read its lab again now">look again</button> <button class="reset" data-seat="' + s.seat + '" title="remove this seat\\'s lab and start it fresh (same URL)">reset</button> <span class="note" data-seat="' + s.seat + '">' + esc(note[s.seat] || "") + "</span></td></tr>";
  }).join("");
}
/** The clocks, every second, without redrawing the rows (a button being clicked stays put). */
function tick() {
  if (!snap) return;
  for (const s of snap.seats) {
    const row = document.querySelector('tr[data-seat="' + s.seat + '"]');
    if (!row) continue;
    row.querySelector("td.since").textContent = since(s);
    row.querySelector("td.since").classList.toggle("stuck", stuck(s));
    row.querySelector("td.checked").innerHTML = checked(s);
  }
}
async function act(seat, path, doing) {
  note[seat] = doing + "...";
  render();
  try {
    const r = await fetch("/facilitator/seat/" + pad(seat) + path + "?key=" + encodeURIComponent(KEY), { method: "POST" });
    const j = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    note[seat] = r.ok ? doing + ": done " + new Date().toLocaleTimeString() : doing + " failed: " + (j.error || "HTTP " + r.status);
  } catch (e) {
    note[seat] = doing + " failed: " + e.message;
  }
  render();
}
document.querySelector("#grid tbody").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  const seat = Number(b.dataset.seat);
  if (b.classList.contains("reset")) {
    if (confirm("Reset seat " + pad(seat) + "? Its lab is removed and started fresh; the attendee's URL stays the same.")) act(seat, "/reset", "reset");
  } else if (b.classList.contains("survey")) act(seat, "/survey", "look again");
  else if (b.classList.contains("solve")) act(seat, "/solve/" + encodeURIComponent(b.dataset.exercise), "solve " + b.dataset.exercise);
});
const es = new EventSource("/events?key=" + encodeURIComponent(KEY));
es.onmessage = (e) => { snap = JSON.parse(e.data); document.getElementById("conn").textContent = "live (updated " + new Date().toLocaleTimeString() + ")"; render(); };
es.onerror = () => { document.getElementById("conn").textContent = "connection lost; retrying..."; };
setInterval(tick, 1000);
`;
