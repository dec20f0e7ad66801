// scope view: what sums the calls up: the flame graph, top functions of the window,
// and a call's children a page at a time.  Uses view.js's state, ask, fmt, $, select
// and fitTo (loaded after this file; only called once the page runs).
"use strict";

const FLAME_ROW = 16;
const CHILDREN_PAGE = 50;

const flame = {
  by: "total",        // or "self": sized by self time, rooted where it was spent
  scope: "window",    // or "run": the visible window, or the whole run
  within: null,       // a call's id: the graph of its calls only
  nodes: [], kids: [],
  focus: -1,          // the node shown full width (-1: every root)
  drawn: [],          // [x0, y, x1, node index] for clicks and hovering
  notes: "",          // what the answer left out or merged
  window: [0, 0],     // the window the graph is of (ns since the run began)
  request: 0,
};
const topOf = { scope: "run", request: 0 };

function flameName(fn) {
  if (fn === -1) return "other (merged)";
  if (fn === -2) return "calls deeper";
  return state.functions[fn] || `function ${fn}`;
}

function panelShown(name) {
  const panel = $("panel-" + name);
  return panel !== null && !panel.hidden;
}

async function loadFlame() {
  const request = ++flame.request;
  let route = `flame?by=${flame.by}`;
  if (flame.within !== null) route += `&within=${encodeURIComponent(flame.within)}`;
  else if (flame.scope === "window") route += `&since=${Math.floor(state.since)}&until=${Math.ceil(state.until)}`;
  $("flame-info").textContent = "counting…";
  const answer = await ask(route);
  if (request !== flame.request) return;
  flame.nodes = answer.nodes;
  flame.window = [answer.since, answer.until];
  flame.kids = answer.nodes.map(() => []);
  answer.nodes.forEach((node, i) => { if (node[0] !== null) flame.kids[node[0]].push(i); });
  for (const list of flame.kids) list.sort((a, b) => flame.nodes[b][2] - flame.nodes[a][2]);
  flame.focus = -1;
  const notes = [];
  if (answer.merged) notes.push(`${answer.merged.toLocaleString("en")} small nodes merged into "other"`);
  if (answer.cut) notes.push("stacks cut deep down");
  if (answer.summed_left_out) notes.push("calls summed past their function's budget left out");
  flame.notes = notes.join(" · ");
  drawFlame();
  document.body.dataset.flame = String(request);
}

function drawFlame() {
  const canvas = $("flame");
  const context = canvas.getContext("2d");
  const roots = flame.focus >= 0 ? [flame.focus]
    : flame.nodes.map((node, i) => (node[0] === null ? i : -1)).filter((i) => i >= 0);
  roots.sort((a, b) => flame.nodes[b][2] - flame.nodes[a][2]);
  const width = canvas.clientWidth;
  const total = roots.reduce((sum, i) => sum + flame.nodes[i][2], 0) || 1;
  const rows = [];
  // Each node within its parent's room: calls summed past their budget hang under
  // their nearest stored caller, and may add up to more than it.
  const place = (i, x0, depth, room) => {
    const w = Math.min((flame.nodes[i][2] / total) * width, room);
    if (w < 0.5) return w;
    rows.push([x0, depth, w, i]);
    let x = x0;
    for (const kid of flame.kids[i]) x += place(kid, x, depth + 1, x0 + w - x);
    return w;
  };
  let x = 0;
  for (const i of roots) x += place(i, x, 0, width - x);
  const depth = rows.reduce((most, r) => Math.max(most, r[1] + 1), 1);
  const ratio = window.devicePixelRatio || 1;
  canvas.style.height = depth * FLAME_ROW + "px";
  canvas.width = Math.floor(width * ratio);
  canvas.height = Math.floor(depth * FLAME_ROW * ratio);
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.font = "11px system-ui, sans-serif";
  flame.drawn = [];
  for (const [x0, d, w, i] of rows) {
    const fn = flame.nodes[i][1];
    context.fillStyle = fn < 0 ? "#d5d5d5" : colour(fn, false);
    context.fillRect(x0, d * FLAME_ROW, Math.max(w - 1, 1), FLAME_ROW - 1);
    if (w > 24) {
      context.fillStyle = "#111";
      const text = flameName(fn), room = Math.floor((w - 6) / 6.5);
      context.fillText(text.length > room ? "…" + text.slice(text.length - room + 1) : text, x0 + 3, d * FLAME_ROW + 12);
    }
    flame.drawn.push([x0, d * FLAME_ROW, x0 + w, i]);
  }
  const what = flame.within !== null ? "the calls under the selected call"
    : flame.scope === "window" ? "the visible window" : "the whole run";
  $("flame-back").hidden = flame.focus < 0;
  $("flame-info").textContent = `${fmt(total)} ${flame.by === "self" ? "of self time" : ""} in ${what}` +
    (flame.notes ? ` · ${flame.notes}` : "") + " · click a node to zoom in";
}

function flameNodeAt(event) {
  const rect = $("flame").getBoundingClientRect();
  const px = event.clientX - rect.left, py = event.clientY - rect.top;
  const hit = flame.drawn.find(([x0, y, x1]) => px >= x0 && px < x1 && py >= y && py < y + FLAME_ROW);
  return hit ? hit[3] : -1;
}

function describe(i) {
  const [, fn, total, self, calls] = flame.nodes[i];
  const count = calls === null ? "" : `, ${calls.toLocaleString("en")} calls`;
  return `${flameName(fn)}: total ${fmt(total)}, self ${fmt(self)}${count}`;
}

function showTop(functions) {
  const table = document.querySelector("#panel-top table");
  table.tBodies[0].textContent = "";
  for (const f of functions) {
    row(table, [[`${f.module}.${f.qualname}`], [f.file ? `${f.file}:${f.line}` : "-"],
      [f.calls.toLocaleString("en")], [fmt(f.active_ns)], [fmt(f.self_ns)]], null);
  }
  if (!functions.length) row(table, [["no call in the window"]], null);
}

async function loadTop() {
  const request = ++topOf.request;
  const range = topOf.scope === "window" ? `?since=${Math.floor(state.since)}&until=${Math.ceil(state.until)}` : "";
  const answer = await ask("top" + range);
  if (request !== topOf.request) return;
  showTop(answer.functions);
  document.body.dataset.top = String(request);
}

function toggle(key, value) {  // key: a dataset name, as flameBy for data-flame-by
  const attribute = "data-" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
  for (const button of document.querySelectorAll(`[${attribute}]`)) {
    button.classList.toggle("active", button.dataset[key] === value);
  }
}

// Called by view.js whenever a new window is drawn: what sums the window up follows it.
let windowTimer = 0;
function windowChanged() {
  clearTimeout(windowTimer);
  windowTimer = setTimeout(() => {
    if (flame.scope === "window" && flame.within === null && panelShown("flame")) loadFlame();
    if (topOf.scope === "window" && panelShown("top")) loadTop();
  }, 150);
}

async function showChildren(id, offset) {
  const answer = await ask(`children?id=${encodeURIComponent(id)}&offset=${offset}&limit=${CHILDREN_PAGE}`);
  if (state.selected !== id) return;
  const table = $("details-children").tBodies[0];
  table.textContent = "";
  for (const [child, fn, start, duration, outcome] of answer.children) {
    const tr = table.insertRow();
    tr.dataset.call = child;
    tr.insertCell().textContent = state.functions[fn] || `function ${fn}`;
    tr.insertCell().textContent = fmt(duration);
    const cell = tr.insertCell();
    cell.textContent = outcome;
    if (outcome === "raised") cell.className = "raised";
    tr.addEventListener("click", () => { fitTo(start, duration); select(child); });
  }
  const last = Math.min(offset + answer.children.length, answer.count);
  $("children-count").textContent = answer.count
    ? `${(offset + 1).toLocaleString("en")}-${last.toLocaleString("en")} of ${answer.count.toLocaleString("en")}`
    : "none";
  $("children-prev").hidden = offset <= 0;
  $("children-next").hidden = last >= answer.count;
  $("children-prev").onclick = () => showChildren(id, Math.max(offset - CHILDREN_PAGE, 0));
  $("children-next").onclick = () => showChildren(id, offset + CHILDREN_PAGE);
  $("details-subtree").onclick = () => { flame.within = id; openTab("flame"); loadFlame(); };
  document.body.dataset.children = `${id}:${offset}`;
}

function listenAggregates() {
  const canvas = $("flame");
  canvas.addEventListener("click", (event) => {
    const i = flameNodeAt(event);
    if (i >= 0) { flame.focus = i; drawFlame(); }
  });
  canvas.addEventListener("mousemove", (event) => {
    const i = flameNodeAt(event);
    canvas.title = i >= 0 ? describe(i) : "";
    if (i >= 0) $("flame-hover").textContent = describe(i);
  });
  $("flame-back").addEventListener("click", () => {
    const up = flame.focus >= 0 ? flame.nodes[flame.focus][0] : null;
    flame.focus = up === null ? -1 : up;
    drawFlame();
  });
  for (const button of document.querySelectorAll("[data-flame-by]")) {
    button.addEventListener("click", () => { flame.by = button.dataset.flameBy; toggle("flameBy", flame.by); loadFlame(); });
  }
  for (const button of document.querySelectorAll("[data-flame-scope]")) {
    button.addEventListener("click", () => {
      flame.scope = button.dataset.flameScope;
      flame.within = null;
      toggle("flameScope", flame.scope);
      loadFlame();
    });
  }
  for (const button of document.querySelectorAll("[data-top-scope]")) {
    button.addEventListener("click", () => { topOf.scope = button.dataset.topScope; toggle("topScope", topOf.scope); loadTop(); });
  }
  document.querySelector('#tabs button[data-tab="flame"]').addEventListener("click", () => loadFlame());
  toggle("flameBy", flame.by);
  toggle("flameScope", flame.scope);
  toggle("topScope", topOf.scope);
}
