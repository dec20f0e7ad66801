"""The HTML, CSS and script of ``scope view``'s page (``{{title}}`` and ``{{data}}`` filled in).

Plain DOM, no library.  The page's policy allows its own inline script and
style and nothing else, so opening it fetches nothing.  Each section says on
its element how much it drew (``data-drawn``), and a script error is shown in
``#errors``, so a headless browser can check the page (``tests/test_view.py``).
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>{{title}}</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
  h1 { font-size: 18px; margin: 1em 0 0.2em; }
  h2 { font-size: 15px; margin: 1.5em 0 0.4em; border-bottom: 1px solid #ddd; }
  .note { color: #777; }
  #errors:not(:empty) { background: #fee; color: #a00; padding: 0.5em; white-space: pre-wrap; }
  .thread { margin-bottom: 1em; }
  .lane { position: relative; background: #fafafa; border: 1px solid #eee; overflow: hidden; }
  .bar { position: absolute; height: 16px; box-sizing: border-box; overflow: hidden;
         white-space: nowrap; font-size: 11px; padding: 0 2px; color: #111;
         background: #9cc3e6; border-right: 1px solid #fff; cursor: pointer; }
  .bar.raised { background: #f0a0a0; }
  .bar.unfinished { background: #f3d58a; }
  .bar.selected { outline: 2px solid #333; z-index: 1; }
  #detail { min-height: 1.4em; font-family: ui-monospace, monospace; }
  details { margin-left: 1.2em; }
  summary { cursor: pointer; font-family: ui-monospace, monospace; }
  .ns { color: #07a; } .raised-text { color: #c00; } .id { color: #999; }
  .similar { color: #777; }
  table { border-collapse: collapse; }
  td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
  td:first-child, th:first-child { text-align: left; font-family: ui-monospace, monospace; }
  .exception { margin-bottom: 0.8em; font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="errors"></div>
<h2>Timeline</h2>
<div id="timeline"></div>
<div id="detail" class="note">Click a call to see it.</div>
<h2>Call tree</h2>
<div id="tree"></div>
<h2>Exceptions</h2>
<div id="exceptions"></div>
<h2>Most self time</h2>
<div id="top"></div>
<script id="scope-data" type="application/json">{{data}}</script>
<script>
"use strict";
window.onerror = function (message, source, line) {
  document.getElementById("errors").textContent += message + " (line " + line + ")\\n";
};
const data = JSON.parse(document.getElementById("scope-data").textContent);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function duration(ns) {
  if (ns < 0) return "-";
  for (const [unit, scale] of [["s", 1e9], ["ms", 1e6], ["\\u00b5s", 1e3]]) {
    if (ns >= scale) {
      const value = ns / scale;
      return (value < 100 ? value.toPrecision(3) : value.toFixed(0)) + " " + unit;
    }
  }
  return ns.toFixed(0) + " ns";
}

function drawTitle() {
  document.getElementById("title").textContent =
    "Run " + data.run + ": " + data.argv.join(" ");
  document.title = "scope: run " + data.run;
}

function drawTimeline() {
  const box = document.getElementById("timeline");
  const detail = document.getElementById("detail");
  let bars = 0;
  let selected = null;
  for (const thread of data.threads) {
    const depth = thread.calls.reduce((most, call) => Math.max(most, call[2]), 0) + 1;
    const lane = el("div", {class: "lane"});
    lane.style.height = (depth * 17) + "px";
    for (const [start, length, level, name, id, outcome] of thread.calls) {
      const bar = el("div", {class: "bar " + outcome, title: name + "  " + duration(length)});
      bar.style.left = (100 * start / data.span_ns) + "%";
      bar.style.width = Math.max(100 * length / data.span_ns, 0.05) + "%";
      bar.style.top = (level * 17) + "px";
      bar.textContent = name;
      bar.addEventListener("click", () => {
        if (selected) selected.classList.remove("selected");
        selected = bar;
        bar.classList.add("selected");
        detail.textContent = name + "  " + duration(length) + "  " + outcome + "  #" + id;
      });
      lane.append(bar);
      bars += 1;
    }
    box.append(el("div", {class: "thread"},
      el("div", {}, thread.name + " (" + thread.calls.length + " calls)"), lane));
  }
  if (data.drawn < data.calls) {
    box.append(el("div", {class: "note"},
      "The first " + data.drawn + " of " + data.calls + " calls (scope view --max-calls)."));
  }
  box.dataset.drawn = bars;
}

function callLine(node) {
  const line = el("span", {}, node.name + "  ", el("span", {class: "ns"}, duration(node.ns)));
  if (node.similar) {
    line.append(el("span", {class: "similar"}, "  \\u00d7 " + (node.similar + 1) +
      " similar calls, " + duration(node.ns + node.similar_ns) + " in all"));
  }
  if (node.outcome !== "returned") {
    line.append(el("span", {class: "raised-text"}, "  " + node.outcome));
  }
  line.append(el("span", {class: "id"}, "  #" + node.id));
  return line;
}

function drawTree() {
  const box = document.getElementById("tree");
  let drawn = 0;
  const pending = data.tree.roots.map((node) => [box, node]);
  pending.reverse();
  while (pending.length) {
    const [parent, node] = pending.pop();
    drawn += 1;
    if (!node.children.length) {
      parent.append(el("div", {class: "leaf"}, el("summary", {}, callLine(node))));
      continue;
    }
    const details = el("details", {open: ""}, el("summary", {}, callLine(node)));
    parent.append(details);
    for (let i = node.children.length - 1; i >= 0; i--) pending.push([details, node.children[i]]);
  }
  if (data.tree.shown < data.tree.total) {
    box.append(el("div", {class: "note"}, "The first " + data.tree.shown + " of " +
      data.tree.total + " calls (scope tree shows any subtree)."));
  }
  box.dataset.drawn = drawn;
}

function drawExceptions() {
  const box = document.getElementById("exceptions");
  if (!data.exceptions.length) box.append(el("div", {class: "note"}, "None left a recorded call."));
  for (const exc of data.exceptions) {
    const item = el("div", {class: "exception"}, el("div", {class: "raised-text"}, exc.summary));
    exc.left.forEach(([id, name], i) => {
      item.append(el("div", {}, (i ? "  left      " : "  raised in ") + name + "  #" + id));
    });
    if (exc.caught_in) {
      item.append(el("div", {}, "  caught in " + exc.caught_in[1] + "  #" + exc.caught_in[0]));
    } else {
      const end = exc.uncaught ? "  ended the program" : "  left every recorded call";
      item.append(el("div", {}, end));
    }
    box.append(item);
  }
  box.dataset.drawn = data.exceptions.length;
}

function drawTop() {
  const box = document.getElementById("top");
  const table = el("table", {}, el("tr", {}, el("th", {}, "function"), el("th", {}, "calls"),
    el("th", {}, "self"), el("th", {}, "total")));
  for (const f of data.top) {
    table.append(el("tr", {}, el("td", {}, f.module + "." + f.qualname),
      el("td", {}, f.calls.toLocaleString("en")), el("td", {}, duration(f.self_ns)),
      el("td", {}, duration(f.total_ns))));
  }
  box.append(table);
  box.dataset.drawn = data.top.length;
}

drawTitle();
drawTimeline();
drawTree();
drawExceptions();
drawTop();
document.body.dataset.ready = "yes";
</script>
</body>
</html>
"""
