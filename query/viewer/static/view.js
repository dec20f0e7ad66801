// scope view: the timeline of one run, fetched window by window from the local server.
// Every request is relative to the page's address, which holds the session's token.
"use strict";

const ROW = 16;         // height of one depth of calls
const LANE_HEAD = 16;   // height of a lane's title
const MIN_WINDOW = 1000; // ns: the deepest zoom

const state = {
  span: 1, since: 0, until: 1,
  lanes: [], functions: {},
  laneDepth: new Map(),   // lane key -> depths seen so far
  calls: [], blocks: [], leftOut: 0,
  gaps: new Map(),        // call id -> [[start, duration], ...]: its long suspensions
  drawn: [],              // [x0, y0, x1, y1, call] for clicks
  matches: null,          // Set of function ids, or null without a search
  selected: null,
  reveal: null,           // a call selected before its window came: scrolled to once it does
  lastMatch: null,        // where the last match stepped to began, for the next step
  request: 0,
};

const canvas = document.getElementById("timeline");
const ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);

function fmt(ns) {
  if (ns < 0) return "never ended";
  const units = [[1e9, "s"], [1e6, "ms"], [1e3, "µs"]];
  for (const [size, unit] of units) if (ns >= size) return (ns / size).toPrecision(3) + " " + unit;
  return Math.round(ns) + " ns";
}

async function ask(route) {
  const response = await fetch("api/" + route, { credentials: "same-origin" });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function colour(fn, faded) {
  const hue = (fn * 47) % 360;
  return `hsl(${hue}, ${faded ? 15 : 55}%, ${faded ? 88 : 72}%)`;
}

// A lane is a thread's, or an asyncio task's (its number in the window's answers).
function laneKey(thread, task) {
  return task === null || task === undefined ? `thread ${thread}` : `task ${task}`;
}

function laneTitle(lane) {
  if (lane.task === null || lane.task === undefined) {
    return `${lane.name} (pid ${lane.pid}, thread ${lane.thread})`;
  }
  return `task ${lane.task_name} (${lane.name}, pid ${lane.pid}, thread ${lane.thread})`;
}

function laneTops() {
  const tops = new Map();
  let y = 0;
  for (const lane of state.lanes) {
    const key = laneKey(lane.thread, lane.task);
    tops.set(key, y);
    y += LANE_HEAD + ROW * Math.max(state.laneDepth.get(key) || 1, 1) + 6;
  }
  return [tops, y];
}

// The canvas is only as big as the box shows (its backing store is width × visible
// height × devicePixelRatio², whatever the lanes' depth): a spacer below it gives the
// box its full scroll height, and only the rows within the scroll position are drawn.
const scroller = document.getElementById("timeline-scroll");
const spacer = document.getElementById("timeline-spacer");
// The canvas's size in CSS pixels, as last sized: read once, not once a bar.
let boxWidth = 1, boxHeight = 1;

function resize() {
  const ratio = window.devicePixelRatio || 1;
  const [, height] = laneTops();
  const visible = Math.max(scroller.clientHeight, 100);
  canvas.style.height = visible + "px";
  spacer.style.height = Math.max(height - visible, 0) + "px";
  boxWidth = Math.max(canvas.clientWidth, 1);
  boxHeight = visible;
  canvas.width = Math.floor(boxWidth * ratio);
  canvas.height = Math.floor(visible * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
}

function x(ns) {
  return ((ns - state.since) / (state.until - state.since)) * boxWidth;
}

function label(text, x0, width, y) {
  if (width < 24) return;
  const room = Math.floor((width - 6) / 6.5);
  const shown = text.length > room ? "…" + text.slice(text.length - room + 1) : text;
  ctx.fillText(shown, x0 + 3, y + 12);
}

// Lanes' tops as drawn: shifted up by the vertical scroll position.
function shownTops() {
  const [tops] = laneTops();
  const scrolled = scroller.scrollTop;
  for (const [key, top] of tops) tops.set(key, top - scrolled);
  return tops;
}

// Whether a row at y (canvas pixels) is within the canvas.
function onCanvas(y, height) {
  return y + height >= 0 && y <= boxHeight;
}

let drawPending = 0;
// A draw at the next frame: many events in one frame draw once.
function drawSoon() {
  if (!drawPending) drawPending = requestAnimationFrame(() => { drawPending = 0; draw(); });
}

function draw() {
  if (drawPending) { cancelAnimationFrame(drawPending); drawPending = 0; }
  const tops = shownTops();
  ctx.clearRect(0, 0, boxWidth, boxHeight);
  ctx.font = "11px system-ui, sans-serif";
  state.drawn = [];
  for (const lane of state.lanes) {
    const top = tops.get(laneKey(lane.thread, lane.task));
    if (!onCanvas(top, LANE_HEAD)) continue;
    ctx.fillStyle = "#444";
    ctx.fillText(laneTitle(lane), 4, top + 12);
  }
  ctx.fillStyle = "#d5d5d5";
  for (const [thread, depth, start, end, count, task] of state.blocks) {
    const top = tops.get(laneKey(thread, task));
    if (top === undefined) continue;
    const y = top + LANE_HEAD + depth * ROW;
    if (!onCanvas(y, ROW)) continue;
    const x0 = Math.max(x(start), 0), x1 = Math.min(Math.max(x(end), x0 + 1), boxWidth);
    ctx.fillRect(x0, y, x1 - x0, ROW - 1);
    // Labelled only where it shows: a window holds thousands of blocks a few pixels wide.
    if (x1 - x0 >= 24) {
      ctx.fillStyle = "#555";
      label(`${count.toLocaleString("en")} calls`, x0, x1 - x0, y);
      ctx.fillStyle = "#d5d5d5";
    }
  }
  for (const call of state.calls) {
    const [thread, start, duration, depth, fn, , outcome, task] = call;
    const top = tops.get(laneKey(thread, task));
    if (top === undefined) continue;
    const y = top + LANE_HEAD + depth * ROW;
    if (!onCanvas(y, ROW)) continue;
    const end = duration < 0 ? state.span : start + duration;
    const x0 = Math.max(x(start), 0), x1 = Math.min(Math.max(x(end), x0 + 1), boxWidth);
    const faded = state.matches !== null && !state.matches.has(fn);
    ctx.fillStyle = colour(fn, faded);
    ctx.fillRect(x0, y, x1 - x0, ROW - 1);
    drawGaps(call[5], y, x0, x1);
    if (outcome === "raised") {
      ctx.strokeStyle = "#c00";
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 + 1, y + 1, Math.max(x1 - x0 - 2, 1), ROW - 3);
    }
    if (state.selected === call[5]) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.strokeRect(x0, y, x1 - x0, ROW - 1);
    }
    ctx.fillStyle = faded ? "#999" : "#111";
    label(state.functions[fn] || `function ${fn}`, x0, x1 - x0, y);
    state.drawn.push([x0, y, x1, y + ROW - 1, call]);
  }
  drawRuler();
  const merged = state.blocks.reduce((n, b) => n + b[4], 0);
  $("status").textContent =
    `${fmt(state.until - state.since)} of ${fmt(state.span)} shown · ` +
    `${state.calls.length.toLocaleString("en")} calls drawn, ` +
    `${merged.toLocaleString("en")} narrower ones merged` +
    (state.leftOut ? ` · ${state.leftOut.toLocaleString("en")} more left out (zoom in)` : "");
}

// A call's suspensions: the bar is cut, and a thin line says the call goes on.
function drawGaps(id, y, x0, x1) {
  for (const [start, duration] of state.gaps.get(id) || []) {
    const g0 = Math.max(x(start), x0), g1 = Math.min(x(start + duration), x1);
    if (g1 - g0 < 1) continue;
    ctx.clearRect(g0, y, g1 - g0, ROW - 1);
    ctx.fillStyle = "#999";
    ctx.fillRect(g0, y + Math.floor(ROW / 2) - 1, g1 - g0, 1);
  }
}

function drawRuler() {
  const ruler = $("ruler");
  ruler.textContent = "";
  const length = state.until - state.since;
  const step = Math.pow(10, Math.floor(Math.log10(length / 5)));
  const first = Math.ceil(state.since / step) * step;
  for (let t = first; t <= state.until; t += step) {
    const mark = document.createElement("span");
    mark.style.left = x(t) + "px";
    mark.textContent = fmt(t);
    ruler.appendChild(mark);
  }
}

let loadTimer = 0;
function show(since, until) {
  const length = Math.max(until - since, MIN_WINDOW);
  since = Math.max(0, Math.min(since, state.span - length));
  state.since = since;
  state.until = since + length;
  drawSoon();  // at the next frame, with what is known; the window's answer follows
  clearTimeout(loadTimer);
  loadTimer = setTimeout(load, 30);
}

async function load() {
  const request = ++state.request;
  const since = Math.floor(state.since), until = Math.ceil(state.until);
  const pixel = Math.max(1, Math.floor((until - since) / Math.max(canvas.clientWidth, 1)));
  const answer = await ask(`window?since=${since}&until=${until}&pixel=${pixel}`);
  if (request !== state.request) return;  // a newer window was asked for meanwhile
  state.calls = answer.calls;
  state.blocks = answer.blocks;
  state.leftOut = answer.left_out;
  state.gaps = new Map();
  for (const [id, start, duration] of answer.gaps || []) {
    if (!state.gaps.has(id)) state.gaps.set(id, []);
    state.gaps.get(id).push([start, duration]);
  }
  let grew = false;
  const seen = (key, depth) => {
    if (depth + 1 > (state.laneDepth.get(key) || 1)) { state.laneDepth.set(key, depth + 1); grew = true; }
  };
  for (const [thread, , , depth, , , , task] of state.calls) seen(laneKey(thread, task), depth);
  for (const [thread, depth, , , , task] of state.blocks) seen(laneKey(thread, task), depth);
  if (grew) resize();
  if (state.reveal !== null && reveal(state.reveal)) state.reveal = null;
  draw();
  document.body.dataset.loaded = String(request);
  windowChanged();
}

function zoom(factor, atX) {
  const at = state.since + (atX / canvas.clientWidth) * (state.until - state.since);
  show(at - (at - state.since) * factor, at + (state.until - at) * factor);
}

function pan(fraction) {
  const shift = (state.until - state.since) * fraction;
  show(state.since + shift, state.until + shift);
}

function fitTo(start, duration) {
  const length = Math.max(duration < 0 ? state.span - start : duration, MIN_WINDOW);
  show(start - length * 0.05, start + length * 1.05);
}

function callAt(px, py) {
  for (let i = state.drawn.length - 1; i >= 0; i--) {
    const [x0, y0, x1, y1, call] = state.drawn[i];
    if (px >= x0 && px <= x1 && py >= y0 && py <= y1) return call;
  }
  return null;
}

function fact(list, name, value, cls) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  if (cls) dd.className = cls;
  list.append(dt, dd);
}

// Scroll the call's row into view, if the window holds it: a call searched for, or a
// step of a path, may be on a lane below the box.
function reveal(id) {
  const call = state.calls.find((c) => c[5] === id);
  if (!call) return false;
  const [tops] = laneTops();
  const top = tops.get(laneKey(call[0], call[7]));
  if (top === undefined) return false;
  const y = top + LANE_HEAD + call[3] * ROW;
  if (y < scroller.scrollTop || y + ROW > scroller.scrollTop + scroller.clientHeight) {
    scroller.scrollTop = Math.max(y - scroller.clientHeight / 3, 0);
  }
  return true;
}

async function select(id) {
  state.selected = id;
  state.reveal = reveal(id) ? null : id;
  draw();
  const call = await ask(`call?id=${encodeURIComponent(id)}`);
  $("details").hidden = false;
  $("details-name").textContent = `${call.module}.${call.qualname}`;
  const facts = $("details-facts");
  facts.textContent = "";
  fact(facts, "call", call.short_id);
  fact(facts, "where", call.file ? `${call.file}:${call.line}` : "-");
  fact(facts, "thread", `${call.thread_name || "thread"} (${call.thread})`);
  fact(facts, "process", `pid ${call.pid}`);
  fact(facts, "task", call.task ? `${call.task.name} (${call.task.short_id})` : "none");
  fact(facts, "start", fmt(call.start));
  fact(facts, "duration", fmt(call.duration_ns));
  fact(facts, "active", fmt(call.active_ns));
  fact(facts, "suspended", `${fmt(call.suspended_ns)} (${call.suspensions} times)`);
  fact(facts, "outcome", call.outcome, call.outcome === "raised" ? "raised" : "");
  fact(facts, "calls under it", call.callees.toLocaleString("en"));
  const values = $("details-values").tBodies[0];
  values.textContent = "";
  for (const value of call.values) {
    const row = values.insertRow();
    row.insertCell().textContent = value.role + (value.name ? " " + value.name : "");
    row.insertCell().textContent = value.value === null ? value.type || "" : value.value;
    if (value.role === "raise") row.className = "raised";
  }
  if (!call.values.length) values.insertRow().insertCell().textContent = "none recorded";
  const path = $("details-path");
  path.textContent = "";
  for (const step of call.path) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.textContent = `${step.name} (${step.short_id})`;
    link.addEventListener("click", () => { fitTo(step.start, step.duration_ns); select(step.id); });
    item.appendChild(link);
    path.appendChild(item);
  }
  showChildren(id, 0);
}

let searchTimer = 0;
async function search() {
  const pattern = $("search").value;
  state.lastMatch = null;
  if (!pattern) { state.matches = null; $("matches").textContent = ""; draw(); return; }
  try {
    const found = await ask(`search?pattern=${encodeURIComponent(pattern)}`);
    state.matches = new Set(found.functions);
    $("matches").textContent = `${found.functions.length} functions`;
  } catch (error) {
    state.matches = new Set();
    $("matches").textContent = "not a regular expression";
  }
  draw();
}

async function step(direction) {
  const pattern = $("search").value;
  if (!pattern) return;
  // From the match shown last, else from the middle of the window.
  const after = state.lastMatch !== null
    ? state.lastMatch : Math.floor((state.since + state.until) / 2);
  const found = await ask(
    `find?pattern=${encodeURIComponent(pattern)}&after=${after}&direction=${direction}`);
  if (found.call === null) { $("matches").textContent = "no more matches"; return; }
  const [id, start, duration] = found.call;
  state.lastMatch = start;
  const length = Math.max(duration, MIN_WINDOW);
  // Keep the zoom if the call shows in it; else zoom until it is a twentieth of the window.
  let wanted = state.until - state.since;
  if (wanted > length * 1000 || wanted < length) wanted = length * 20;
  const middle = start + length / 2;
  show(middle - wanted / 2, middle + wanted / 2);
  select(id);
}

function listen() {
  let drag = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoom(Math.exp(event.deltaY * (event.ctrlKey ? 0.01 : 0.002)), event.clientX - rect.left);
  }, { passive: false });
  canvas.addEventListener("mousedown", (event) => {
    drag = { x: event.clientX, since: state.since, until: state.until, moved: false };
    canvas.classList.add("dragging");
  });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    if (Math.abs(dx) > 2) drag.moved = true;
    const shift = (dx / canvas.clientWidth) * (drag.until - drag.since);
    show(drag.since - shift, drag.until - shift);
  });
  window.addEventListener("mouseup", (event) => {
    canvas.classList.remove("dragging");
    const wasClick = drag && !drag.moved;
    drag = null;
    if (!wasClick) return;
    const rect = canvas.getBoundingClientRect();
    const call = callAt(event.clientX - rect.left, event.clientY - rect.top);
    if (call) select(call[5]);
  });
  canvas.addEventListener("dblclick", (event) => {
    const rect = canvas.getBoundingClientRect();
    const call = callAt(event.clientX - rect.left, event.clientY - rect.top);
    if (call) fitTo(call[1], call[2]);
  });
  window.addEventListener("keydown", (event) => {
    if (event.target === $("search")) {
      if (event.key === "Enter") { event.preventDefault(); step(event.shiftKey ? "back" : "forward"); }
      return;
    }
    const keys = {
      w: () => zoom(0.8, canvas.clientWidth / 2), "+": () => zoom(0.8, canvas.clientWidth / 2),
      s: () => zoom(1.25, canvas.clientWidth / 2), "-": () => zoom(1.25, canvas.clientWidth / 2),
      a: () => pan(-0.2), ArrowLeft: () => pan(-0.2),
      d: () => pan(0.2), ArrowRight: () => pan(0.2),
      "0": () => show(0, state.span),
      n: () => step("forward"), N: () => step("back"),
      Escape: () => { $("details").hidden = true; state.selected = null; draw(); },
    };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });
  $("zoom-in").addEventListener("click", () => zoom(0.5, canvas.clientWidth / 2));
  $("zoom-out").addEventListener("click", () => zoom(2, canvas.clientWidth / 2));
  $("fit").addEventListener("click", () => show(0, state.span));
  $("next").addEventListener("click", () => step("forward"));
  $("prev").addEventListener("click", () => step("back"));
  $("search-form").addEventListener("submit", (event) => event.preventDefault());
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 150); });
  window.addEventListener("resize", () => { resize(); show(state.since, state.until); });
  scroller.addEventListener("scroll", drawSoon);
  // The box changes height with the page's other parts (the status line, the panels).
  new ResizeObserver(() => {
    const ratio = window.devicePixelRatio || 1;
    if (Math.floor(canvas.height / ratio) !== scroller.clientHeight
        || canvas.clientWidth !== boxWidth) {
      resize();
      draw();
    }
  }).observe(scroller);
}

function row(table, cells, call) {
  const tr = table.tBodies[0].insertRow();
  for (const [text, cls] of cells) {
    const td = tr.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
  }
  if (call && call.start !== null && call.start !== undefined) {
    tr.dataset.call = call.id;
    tr.addEventListener("click", () => { fitTo(call.start, call.duration_ns); select(call.id); });
  }
  return tr;
}

function openTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== "panel-" + name;
}

async function panels() {
  const [tests, exceptions, top] = await Promise.all([ask("tests"), ask("exceptions"), ask("top")]);
  const testTable = document.querySelector("#panel-tests table");
  for (const test of tests.tests) {
    // A failing test zooms to the phase that failed; another to all its phases.
    const timed = test.phases.filter((p) => p.start !== null);
    const failing = timed.find((p) => ["failed", "error"].includes(p.outcome));
    const root = failing || timed.find((p) => p.phase === "call") || timed[0];
    const first = failing || timed[0], last = failing || timed[timed.length - 1];
    const span = root
      ? { id: root.call, start: first.start, duration_ns: last.start + Math.max(last.duration_ns, 0) - first.start }
      : null;
    const tr = row(testTable, [[test.nodeid, test.failed ? "failed" : ""], [test.outcome, test.failed ? "failed" : ""],
      [fmt(test.duration_ns)], [test.phases.map((p) => `${p.phase} ${p.outcome}`).join(", ")]], span);
    tr.dataset.nodeid = test.nodeid;
  }
  const exceptionTable = document.querySelector("#panel-exceptions table");
  for (const kind of exceptions.kinds) {
    row(exceptionTable, [[`${kind.count}×`], [kind.type || "?", "raised"], [kind.shape || ""],
      ["raised in " + (kind.raised_in ? kind.raised_in.name : "?")],
      [kind.caught_in ? "caught in " + kind.caught_in.name : (kind.uncaught ? "uncaught" : "")]],
      kind.raised_in);
  }
  if (!exceptions.kinds.length) row(exceptionTable, [["no exception left a recorded call"]], null);
  showTop(top.functions);
  const hasTests = tests.tests.length > 0;
  document.querySelector('#tabs button[data-tab="tests"]').hidden = !hasTests;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => openTab(button.dataset.tab));
  }
  openTab(hasTests ? "tests" : exceptions.kinds.length ? "exceptions" : "top");
}

async function start() {
  const run = await ask("run");
  state.span = run.span_ns;
  state.lanes = run.lanes;
  state.functions = run.functions;
  $("title").textContent = `run ${run.run}: ${run.argv.join(" ")}`;
  document.title = `scope view: run ${run.run}`;
  resize();
  listen();
  listenAggregates();
  state.since = 0;
  state.until = state.span;
  await Promise.all([load(), panels()]);
  document.body.dataset.ready = "1";
  if (run.live) follow();
}

// A run still being recorded: its span is asked for again every two seconds, and
// a window that showed its end goes on showing it.
function follow() {
  const timer = setInterval(async () => {
    const run = await ask("run");
    const atEnd = state.until >= state.span * 0.99;
    const length = state.until - state.since;
    state.span = run.span_ns;
    state.lanes = run.lanes;
    state.functions = run.functions;
    $("status").dataset.live = run.live ? "recording" : "done";
    if (atEnd) show(Math.max(state.span - length, 0), state.span);
    else show(state.since, state.until);
    if (!run.live) clearInterval(timer);
  }, 2000);
}

start().catch((error) => { $("status").textContent = "could not load: " + error.message; });
