// softscope serve: the pages' small script (no framework, no network beyond this server).
// Data comes from <script id="page-data" type="application/json">; text is always set with textContent.
"use strict";
const DATA = JSON.parse(document.getElementById("page-data").textContent || "{}");
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "—" : (typeof v === "number" ? v.toFixed(d) : String(v));
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// ---- sortable tables (click a header; numbers sort as numbers) and the runs filter ----------------------------
function cellValue(td) {
  const raw = td.dataset.value !== undefined ? td.dataset.value : td.textContent.trim();
  const n = parseFloat(raw);
  return raw !== "" && !Number.isNaN(n) && /^[-+]?[\d.]/.test(raw) ? n : raw.toLowerCase();
}
function makeSortable(table) {
  const head = table.tHead;
  if (!head || !table.tBodies.length) return;
  $$("th", head).forEach((th, i) => {
    th.classList.add("sort");
    th.title = "click to sort";
    th.addEventListener("click", () => {
      const asc = th.dataset.dir !== "asc";
      $$("th", head).forEach(h => delete h.dataset.dir);
      th.dataset.dir = asc ? "asc" : "desc";
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a.cells[i] || a), y = cellValue(b.cells[i] || b);
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(r => body.appendChild(r));
    });
  });
}
$$("table.sortable, section.report table").forEach(makeSortable);
const filter = $("#filter");
if (filter) filter.addEventListener("input", () => {
  const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  $$("#runs tbody tr").forEach(tr => {
    const text = tr.textContent.toLowerCase();
    tr.hidden = !words.every(w => text.includes(w));
  });
});

// ---- charts: small SVG line/point plots with hover values -------------------------------------------------------
function chart(el, series, opts = {}) {
  if (!el) return;
  const W = 420, H = 220, L = 44, R = 10, T = 10, B = 30;
  const pts = series.flatMap(s => s.points).filter(p => p[1] !== null);
  if (!pts.length) { el.textContent = "no data"; return; }
  const xerr = series.some(s => s.xerr), bounds = p => [p[2] ?? (xerr ? p[0] : p[1]), p[3] ?? (xerr ? p[0] : p[1])];
  const xs = pts.flatMap(p => xerr ? [p[0], ...bounds(p)] : [p[0]]);
  const ys = pts.flatMap(p => xerr ? [p[1]] : [p[1], ...bounds(p)]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = opts.y || [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" }, el);
  svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, s);
  svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, s);
  for (const [v, x, y, anchor] of [[x0, X(x0), H - B + 16, "start"], [x1, X(x1), H - B + 16, "end"]])
    svg("text", { x, y, "text-anchor": anchor, class: "tick" }, s).textContent = fmt(v, Number.isInteger(v) ? 0 : 2);
  for (const v of [y0, y1])
    svg("text", { x: L - 4, y: Y(v) + 4, "text-anchor": "end", class: "tick" }, s).textContent = fmt(v, 2);
  svg("text", { x: (L + W) / 2, y: H - 2, "text-anchor": "middle", class: "label" }, s).textContent = opts.xlabel || "";
  const tip = svg("text", { x: W - R, y: T + 10, "text-anchor": "end", class: "tip" }, s);
  series.forEach((ser, k) => {
    const p = ser.points.filter(q => q[1] !== null);
    if (ser.line !== false && p.length > 1)
      svg("polyline", { points: p.map(q => `${X(q[0])},${Y(q[1])}`).join(" "), class: `line s${k}` }, s);
    if (ser.dots) p.forEach(q => {
      if (q[2] !== undefined && q[2] !== null)
        svg("line", ser.xerr ? { x1: X(q[2]), x2: X(q[3]), y1: Y(q[1]), y2: Y(q[1]), class: `err s${k}` }
                             : { x1: X(q[0]), x2: X(q[0]), y1: Y(q[2]), y2: Y(q[3]), class: `err s${k}` }, s);
      const c = svg("circle", { cx: X(q[0]), cy: Y(q[1]), r: 4, class: `dot s${k}` }, s);
      c.addEventListener("mouseenter", () => { tip.textContent = ser.label ? ser.label(q) : `${fmt(q[0])}, ${fmt(q[1])}`; });
    });
  });
}
if (DATA.training) {
  const t = DATA.training;
  chart($("#loss-chart"), [{ points: t.loss }], { xlabel: "step" });
  chart($("#acc-chart"), [{ points: t.accuracy, dots: true, label: q => `step ${q[0]}: accuracy ${fmt(q[1])}` }],
        { xlabel: "step", y: [0, 1] });
}
if (DATA.describe && DATA.describe.scatter && $("#acc-score")) {
  const sc = DATA.describe.scatter;  // accuracy with its 95% interval (horizontal bar) vs the primary score
  chart($("#acc-score"), [{ line: false, dots: true, xerr: true, points: sc.points.map(p => [p.x, p.y, p.lo, p.hi, p]),
    label: q => `step ${q[4].step}: accuracy ${fmt(q[0])} [${fmt(q[2])}, ${fmt(q[3])}], ${sc.score} ${fmt(q[1])}` }],
    { xlabel: "checkpoint accuracy" });
}

// ---- InSPEcT heatmap: choose score and checkpoint(s); hover shows descriptions, click pins --------------------------
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  t = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
}
function describeCell(box, cell, grid) {
  box.replaceChildren();
  const h = document.createElement("div");
  h.className = "cell-head";
  h.textContent = `source layer ${cell[0]} → target layer ${cell[1]} · ${grid.score} ${fmt(cell[2])} · step ${grid.step}`;
  box.appendChild(h);
  for (const t of cell[3]) {
    const p = document.createElement("p");
    p.className = "cell-text";
    p.textContent = (t.seed !== null && t.seed !== undefined ? `[target prompt ${t.seed}] ` : "") + `${fmt(t.score, 2)}: ${t.text}`;
    box.appendChild(p);
  }
}
async function loadGrid(panel) {
  const ck = $("select.ck", panel).value, score = $("#score").value, heat = $(".heat", panel), box = $(".desc", panel);
  const q = new URLSearchParams({ run: DATA.run, checkpoint: ck, score });
  const ticket = panel.ticket = (panel.ticket || 0) + 1;  // only the latest request of a panel may draw
  const r = await fetch(`/api/grid?${q}`);
  const grid = await r.json();
  if (ticket !== panel.ticket) return;
  heat.replaceChildren();
  if (!r.ok) { heat.textContent = grid.error || `error ${r.status}`; return; }
  panel.dataset.loaded = `${ck}|${score}`;
  const srcs = [...new Set(grid.cells.map(c => c[0]))].sort((a, b) => a - b);
  const tgts = [...new Set(grid.cells.map(c => c[1]))].sort((a, b) => a - b);
  const at = new Map(grid.cells.map(c => [`${c[0]}:${c[1]}`, c]));
  const table = document.createElement("table");
  table.className = "heatmap";
  const hr = table.createTHead().insertRow();
  hr.appendChild(Object.assign(document.createElement("th"), { textContent: "ℓ \\ ℓ*" }));
  tgts.forEach(t => hr.appendChild(Object.assign(document.createElement("th"), { textContent: t })));
  const body = table.createTBody();
  let pinned = null;
  for (const s of srcs.slice().reverse()) {
    const tr = body.insertRow();
    tr.appendChild(Object.assign(document.createElement("th"), { textContent: s }));
    for (const t of tgts) {
      const td = tr.insertCell(), c = at.get(`${s}:${t}`);
      if (!c) { td.className = "empty"; continue; }
      const f = grid.hi > grid.lo ? (c[2] - grid.lo) / (grid.hi - grid.lo) : 0.5;
      td.className = "cell";
      td.dataset.src = s; td.dataset.tgt = t;
      td.style.background = c[2] === null ? "#ddd" : viridis(f);
      td.style.color = f < 0.55 ? "#fff" : "#000";
      td.textContent = fmt(c[2], 2);
      td.addEventListener("mouseenter", () => { if (!pinned) describeCell(box, c, grid); });
      td.addEventListener("click", () => {
        if (pinned) pinned.classList.remove("pinned");
        pinned = pinned === td ? null : td;
        if (pinned) { td.classList.add("pinned"); describeCell(box, c, grid); box.classList.add("pinned"); }
        else box.classList.remove("pinned");
      });
    }
  }
  heat.appendChild(table);
  const cap = document.createElement("div");
  cap.className = "note";
  cap.textContent = `step ${grid.step} · accuracy ${fmt(grid.accuracy)} · ${score} from ${fmt(grid.lo)} to ${fmt(grid.hi)} (mean over target prompts)`;
  heat.appendChild(cap);
}
if (DATA.describe) {
  const panels = $$(".panel");
  const cks = DATA.describe.checkpoints;
  $("select.ck", panels[0]).value = cks[cks.length - 1].name;
  $("select.ck", panels[1]).value = cks[0].name;
  panels[1].hidden = true;
  const refresh = () => panels.filter(p => !p.hidden).forEach(loadGrid);
  $("#score").addEventListener("change", refresh);
  panels.forEach(p => $("select.ck", p).addEventListener("change", () => loadGrid(p)));
  $("#compare").addEventListener("change", e => { panels[1].hidden = !e.target.checked; refresh(); });
  refresh();
}

// ---- live describe: POST the request, read the server-sent events as they stream -----------------------------------
const form = $("#live-form");
if (form) {
  const status = $("#status"), out = $("#live-out tbody"), stopBtn = $("#stop-btn");
  let controller = null;
  $("#pool").addEventListener("change", e => {
    const t = $("#target");
    t.disabled = !!e.target.value;
    if (e.target.value) t.dataset.pool = e.target.value; else delete t.dataset.pool;
  });
  stopBtn.addEventListener("click", () => { if (controller) controller.abort(); });
  $("#upload").addEventListener("change", async e => {
    const file = e.target.files[0];
    if (!file) return;
    status.textContent = `uploading ${file.name}…`;
    const r = await fetch(`/api/prompt?${new URLSearchParams({ name: file.name })}`, { method: "POST", body: file,
                                                                                      headers: { "content-type": "application/octet-stream" } });
    const d = await r.json().catch(() => ({}));
    if (!r.ok) { status.textContent = `upload refused (${r.status}): ${d.error || r.statusText}`; return; }
    const opt = Object.assign(document.createElement("option"), { value: d.ref, textContent: d.label });
    $("#prompt").appendChild(opt);
    $("#prompt").value = d.ref;
    status.textContent = `${d.label}: ${d.n_tokens} virtual tokens of width ${d.width}` + (d.model ? ` (${d.model})` : "");
  });
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    if (controller) controller.abort();
    controller = new AbortController();
    const target = $("#target").dataset.pool || $("#target").value;
    const body = { prompt: $("#prompt").value, target_prompt: target, layers: $("#layers").value,
                   max_new_tokens: parseInt($("#tokens").value, 10), stop: $("#stop").value };
    if ($("#target").dataset.pool) body.seed = parseInt($("#seed").value || "0", 10);
    out.replaceChildren();
    status.textContent = "sending…";
    stopBtn.disabled = false;
    const cells = [];
    let command = "";
    $("#command").textContent = "";
    try {
      const r = await fetch("/api/describe", { method: "POST", body: JSON.stringify(body), signal: controller.signal,
                                               headers: { "content-type": "application/json" } });
      if (!r.ok) { const e = await r.json().catch(() => ({})); status.textContent = `refused (${r.status}): ${e.error || r.statusText}`; return; }
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const name = (block.match(/^event: (.*)$/m) || [])[1], data = (block.match(/^data: (.*)$/m) || [])[1];
          if (!name || data === undefined) continue;
          const d = JSON.parse(data);
          if (name === "meta") {
            command = d.command;
            status.textContent = `queued (${d.queued} waiting) · ${d.model} · target prompt: ${d.target_prompt}`;
            d.pairs.forEach(([s, t], k) => {
              const tr = out.insertRow();
              tr.dataset.row = k;
              tr.insertCell().textContent = `${s}→${t}`;
              const text = tr.insertCell(); text.className = "stream";
              tr.insertCell().className = "cut";
              cells.push(text);
            });
          } else if (name === "tokens") {
            status.textContent = `generating… token ${d.step + 1}`;
            for (const [k, text] of Object.entries(d.texts)) cells[k].textContent = text;
          } else if (name === "done") {
            d.rows.forEach((row, k) => { cells[k].textContent = row.text; out.rows[k].cells[2].textContent = row.cut; });
            status.textContent = `done in ${fmt(d.seconds, 2)} s (engine batch of ${d.batch_requests} request(s), ${d.batch_rows} rows)`;
            $("#command").textContent = command;
            status.dataset.done = "1";
          } else if (name === "error") {
            status.textContent = `error: ${d.error}`;
          }
        }
      }
    } catch (e) {
      if (e.name === "AbortError") status.textContent = "stopped (the server dropped this request)";
      else status.textContent = `error: ${e}`;
    } finally {
      stopBtn.disabled = true;
      controller = null;
    }
  });
}
