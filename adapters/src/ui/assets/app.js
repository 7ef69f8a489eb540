// dstream's streaming page: polls the JSON API and draws everything by hand (DOM and SVG, no library).
"use strict";

const POLL_MS = 1000;
const PAGE_SIZE = 50;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#e67e22", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#c0392b", "#7f8c8d", "#27ae60"];

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function s(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function showError(msg) {
  const e = document.getElementById("error");
  e.hidden = false;
  e.textContent = msg;
  document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
}
window.addEventListener("error", (ev) => showError("script error: " + ev.message));
window.addEventListener("unhandledrejection", (ev) => showError("script error: " + ev.reason));

function setConn(text) { document.getElementById("conn").textContent = text; }

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function fmtClock(ms) { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; }
function fmtDur(ms) {
  if (ms == null) return "-";
  if (ms < 1000) return Math.round(ms) + " ms";
  const sec = ms / 1000;
  if (sec < 60) return sec.toFixed(sec < 10 ? 2 : 1) + " s";
  const m = Math.floor(sec / 60), h_ = Math.floor(m / 60);
  return h_ > 0 ? `${h_} h ${m % 60} min` : `${m} min ${Math.floor(sec % 60)} s`;
}
const fmtNum = (n) => (n == null ? "-" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 }));

// A timeline: one line per series over batch time, an optional reference line and the average.
function timeline(points, { unit, ref, series }) {
  const W = 560, H = 150, L = 50, R = 10, T = 10, B = 22;
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "timeline" });
  if (points.length === 0) { svg.append(s("text", { x: L, y: H / 2 }, "no batches yet")); return svg; }
  const xs = points.map((p) => p.x);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let ymax = Math.max(1, ...points.map((p) => p.y), ref || 0);
  for (const se of series || []) ymax = Math.max(ymax, ...se.points.map((p) => p.y));
  ymax *= 1.1;
  const X = (x) => L + (x1 === x0 ? (W - L - R) / 2 : ((x - x0) / (x1 - x0)) * (W - L - R));
  const Y = (y) => T + (1 - y / ymax) * (H - T - B);
  svg.append(s("line", { x1: L, y1: Y(0), x2: W - R, y2: Y(0), class: "axis" }));
  svg.append(s("line", { x1: L, y1: T, x2: L, y2: Y(0), class: "axis" }));
  svg.append(s("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmtNum(ymax) ));
  svg.append(s("text", { x: L - 4, y: Y(0), "text-anchor": "end" }, "0"));
  svg.append(s("text", { x: L - 4, y: T + 20, "text-anchor": "end" }, unit));
  svg.append(s("text", { x: L, y: H - 6 }, fmtClock(x0)));
  svg.append(s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtClock(x1)));
  (series || []).forEach((se, i) => {
    svg.append(s("polyline", { class: "part", stroke: COLORS[i % COLORS.length], points: se.points.map((p) => `${X(p.x)},${Y(p.y)}`).join(" ") },
      s("title", {}, se.name)));
  });
  svg.append(s("polyline", { class: "line", points: points.map((p) => `${X(p.x)},${Y(p.y)}`).join(" ") }));
  if (points.length <= 200) {
    for (const p of points) svg.append(s("circle", { class: "dot", cx: X(p.x), cy: Y(p.y), r: 2 }, s("title", {}, `${fmtTime(p.x)}: ${fmtNum(p.y)} ${unit}`)));
  }
  if (ref != null) {
    svg.append(s("line", { x1: L, y1: Y(ref), x2: W - R, y2: Y(ref), class: "ref" }, s("title", {}, "batch interval")));
    svg.append(s("text", { x: W - R - 2, y: Y(ref) - 3, "text-anchor": "end" }, "batch interval"));
  }
  const avg = points.reduce((a, p) => a + p.y, 0) / points.length;
  svg.append(s("line", { x1: L, y1: Y(avg), x2: W - R, y2: Y(avg), class: "avg" }, s("title", {}, "average")));
  return svg;
}

// A histogram of the values, 10 bins.
function histogram(values, unit) {
  const W = 300, H = 150, L = 30, R = 10, T = 10, B = 22, N = 10;
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "histogram" });
  if (values.length === 0) return svg;
  const max = Math.max(...values), min = Math.min(...values);
  const width = max > min ? (max - min) / N : 1;
  const bins = new Array(N).fill(0);
  for (const v of values) bins[Math.min(N - 1, Math.floor((v - min) / width))]++;
  const top = Math.max(...bins);
  const bw = (W - L - R) / N;
  bins.forEach((c, i) => {
    const bh = (c / top) * (H - T - B);
    svg.append(s("rect", { class: "bar", x: L + i * bw + 1, y: H - B - bh, width: bw - 2, height: bh },
      s("title", {}, `${fmtNum(min + i * width)} to ${fmtNum(min + (i + 1) * width)} ${unit}: ${c} batches`)));
  });
  svg.append(s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.append(s("text", { x: L, y: H - 6 }, fmtNum(min)));
  svg.append(s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, `${fmtNum(max)} ${unit}`));
  svg.append(s("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, top));
  return svg;
}

// ---- the streaming page ----

const view = { state: null, batches: [], sort: { key: "batchTime", desc: true }, page: 0, polls: 0 };

const COLUMNS = [
  ["batchTime", "Batch time", (b) => h("a", { href: "/batches/" + b.batchTime }, fmtTime(b.batchTime))],
  ["inputSize", "Records", (b) => fmtNum(b.inputSize)],
  ["malformedRecords", "Malformed", (b) => fmtNum(b.malformedRecords)],
  ["timedOutKeys", "Timed out keys", (b) => fmtNum(b.timedOutKeys)],
  ["schedulingDelay", "Scheduling delay", (b) => fmtDur(b.schedulingDelay)],
  ["processingTime", "Processing time", (b) => fmtDur(b.processingTime)],
  ["totalDelay", "Total delay", (b) => fmtDur(b.totalDelay)],
  ["lag", "Lag", (b) => fmtNum(b.lag)],
  ["status", "Status", (b) => b.status],
  ["error", "Error", (b) => (b.error == null ? "" : h("span", { class: "failed" }, b.error))],
];

function batchTable() {
  const { key, desc } = view.sort;
  const rows = [...view.batches].sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0) * (desc ? -1 : 1));
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  view.page = Math.min(view.page, pages - 1);
  const shown = rows.slice(view.page * PAGE_SIZE, (view.page + 1) * PAGE_SIZE);
  const head = h("tr", {}, COLUMNS.map(([k, title]) => h("th", {
    onclick: () => { view.sort = { key: k, desc: view.sort.key === k ? !view.sort.desc : true }; render(); },
  }, title + (k === key ? (desc ? " ▾" : " ▴") : ""))));
  const body = shown.map((b) => h("tr", { "data-time": b.batchTime }, COLUMNS.map(([k, , f]) => h("td", { "data-col": k }, f(b)))));
  const pager = h("div", { class: "pager" },
    h("button", { onclick: () => { view.page = Math.max(0, view.page - 1); render(); }, ...(view.page === 0 ? { disabled: "" } : {}) }, "previous"),
    `page ${view.page + 1} of ${pages}`,
    h("button", { onclick: () => { view.page += 1; render(); }, ...(view.page >= pages - 1 ? { disabled: "" } : {}) }, "next"));
  return [h("table", { id: "completed" }, h("thead", {}, head), h("tbody", {}, body)), pager];
}

function chartRow(title, avgText, line, hist) {
  return [h("div", { class: "label" }, h("b", {}, title), "avg ", avgText), line, hist];
}

function render() {
  const st = view.state;
  if (!st) return;
  const main = document.getElementById("main");
  const oldest = [...view.batches].reverse();
  const interval = st.batchDuration;
  const rate = (b) => (b.inputSize * 1000) / interval;
  // A job of several topics numbers topic n's partition p as n << 24 | p; the state lists the topics in that order.
  const topics = st.topic.split(",");
  const partName = (p) => (topics.length > 1 ? topics[p >> 24] + "/" + (p & 0xffffff) : String(p));
  const parts = new Map();
  for (const b of oldest) for (const [p, n] of b.partitions) {
    if (!parts.has(p)) parts.set(p, []);
    parts.get(p).push({ x: b.batchTime, y: (n * 1000) / interval });
  }
  const series = [...parts.entries()].sort((a, b) => a[0] - b[0]).map(([p, pts]) => ({ name: "partition " + partName(p), points: pts }));
  const lagParts = new Map();
  for (const b of oldest) for (const [p, n] of b.partitionLags) {
    if (!lagParts.has(p)) lagParts.set(p, []);
    lagParts.get(p).push({ x: b.batchTime, y: n });
  }
  const lagSeries = [...lagParts.entries()].sort((a, b) => a[0] - b[0]).map(([p, pts]) => ({ name: "partition " + partName(p), points: pts }));
  const pts = (f) => oldest.map((b) => ({ x: b.batchTime, y: f(b) }));
  const avg = (v) => (v == null ? "-" : v);
  main.replaceChildren(
    h("h2", {}, "Streaming statistics"),
    h("div", { class: "summary", id: "summary" },
      h("div", {}, "Batch interval", h("b", { id: "batch-interval" }, fmtDur(interval))),
      h("div", {}, "Started", h("b", { id: "start-time" }, fmtTime(st.startTime))),
      h("div", {}, "Uptime", h("b", { id: "uptime" }, fmtDur(st.uptime))),
      h("div", {}, "Completed batches", h("b", { id: "completed-batches" }, fmtNum(st.numTotalCompletedBatches))),
      h("div", {}, "Records", h("b", { id: "records" }, fmtNum(st.numProcessedRecords))),
      h("div", {}, "Malformed", h("b", { id: "malformed" }, fmtNum(st.numMalformedRecords))),
      h("div", {}, "Waiting batches", h("b", { id: "waiting" }, fmtNum(st.numWaitingBatches))),
      h("div", {}, "Lag", h("b", { id: "lag" }, fmtNum(st.lag))),
      h("div", {}, "Topic", h("b", {}, st.topic))),
    h("p", { class: "muted" }, `Charts and table: the last ${fmtNum(view.batches.length)} completed batches (of ${fmtNum(st.retainedBatchesLimit)} kept).`),
    h("div", { class: "charts", id: "charts" },
      chartRow("Input rate", avg(st.avgInputRate == null ? "-" : fmtNum(st.avgInputRate) + " records/s"),
        timeline(pts(rate), { unit: "records/s", series: series.length > 1 ? series : [] }), histogram(oldest.map(rate), "records/s")),
      chartRow("Scheduling delay", fmtDur(st.avgSchedulingDelay), timeline(pts((b) => b.schedulingDelay), { unit: "ms" }), histogram(oldest.map((b) => b.schedulingDelay), "ms")),
      chartRow("Processing time", fmtDur(st.avgProcessingTime), timeline(pts((b) => b.processingTime), { unit: "ms", ref: interval }), histogram(oldest.map((b) => b.processingTime), "ms")),
      chartRow("Total delay", fmtDur(st.avgTotalDelay), timeline(pts((b) => b.totalDelay), { unit: "ms" }), histogram(oldest.map((b) => b.totalDelay), "ms")),
      chartRow("Lag", fmtNum(oldest.length ? oldest.reduce((a, b) => a + b.lag, 0) / oldest.length : null) + " records",
        timeline(pts((b) => b.lag), { unit: "records", series: lagSeries.length > 1 ? lagSeries : [] }), histogram(oldest.map((b) => b.lag), "records"))),
    st.failure == null ? "" : h("div", { class: "error", id: "failure" }, `The run failed at ${fmtTime(st.failure.at)}: ${st.failure.error}`),
    h("h2", {}, `Active batches (${(st.runningBatch ? 1 : 0) + st.numWaitingBatches})`),
    h("p", { class: "muted" }, "The batch being processed and those generated (ranges fixed) waiting for it."),
    st.runningBatch == null && st.waitingBatches.length === 0 ? h("p", { class: "muted", id: "active" }, "none")
      : h("table", { id: "active" },
        h("tr", {}, h("th", {}, "Batch time"), h("th", {}, "Records"), h("th", {}, "Scheduling delay"), h("th", {}, "Processing for"), h("th", {}, "Status")),
        st.runningBatch == null ? [] : h("tr", { "data-time": st.runningBatch.batchTime, "data-status": "processing" },
          h("td", {}, fmtTime(st.runningBatch.batchTime)), h("td", {}, fmtNum(st.runningBatch.inputSize)),
          h("td", {}, fmtDur(st.runningBatch.schedulingDelay)), h("td", {}, fmtDur(st.runningBatch.runningForMs)), h("td", {}, "processing")),
        st.waitingBatches.map((w) => h("tr", { "data-time": w.batchTime, "data-status": "queued" },
          h("td", {}, fmtTime(w.batchTime)), h("td", {}, fmtNum(w.inputSize)), h("td", {}, "-"), h("td", {}, "-"), h("td", {}, "queued")))),
    h("h2", {}, `Completed batches (last ${view.batches.length} of ${fmtNum(st.numTotalCompletedBatches)})`),
    ...batchTable(),
    h("h2", {}, "Partitions"),
    h("table", { id: "partitions" }, h("tr", {}, h("th", {}, "Partition"), h("th", {}, "Records"), h("th", {}, "Next offset"), h("th", {}, "Lag")),
      st.partitions.map((p) => [topics.length > 1 ? p.topic + "/" + p.partition : p.partition]
        .map((name) => h("tr", { "data-partition": name }, h("td", {}, name), h("td", {}, fmtNum(p.records)), h("td", {}, p.nextOffset),
        h("td", { "data-col": "lag" }, p.lag == null ? "-" : fmtNum(p.lag))))[0])),
    h("p", { class: "muted" }, "Lag: records in the partition's log beyond the last completed batch's range when that batch was generated."),
    h("h2", {}, "State"),
    st.state.length === 0 ? h("p", { class: "muted" }, "no stateful operators reported")
      : h("table", { id: "state" }, h("tr", {}, h("th", {}, "Operator"), h("th", {}, "Kind"), h("th", {}, "Keys"), h("th", {}, "Timed out (last batch)"), h("th", {}, "Timed out (total)"), h("th", {}, "Bytes"), h("th", {}, "Bytes as of")),
        st.state.map((o) => h("tr", { "data-operator": o.operator }, h("td", {}, o.operator), h("td", {}, o.kind), h("td", { "data-col": "keys" }, fmtNum(o.keys)),
          h("td", {}, fmtNum(o.timedOutLastBatch)), h("td", { "data-col": "timedOutTotal" }, fmtNum(o.timedOutTotal)),
          h("td", { "data-col": "bytes" }, fmtNum(o.bytes)), h("td", {}, o.bytesAtBatch == null ? "no checkpoint yet" : "checkpoint of " + fmtTime(o.bytesAtBatch))))),
    st.state.length === 0 ? "" : h("p", { class: "muted" }, "Keys after every batch; bytes of the state in its checkpoint encoding, measured when a checkpoint is saved."),
    h("h2", {}, "Checkpoints"),
    checkpointTable(st.checkpoint));
  document.body.dataset.polls = String(view.polls);
  document.body.dataset.completed = String(st.numTotalCompletedBatches);
}

function checkpointTable(c) {
  if (!c || (c.saved === 0 && c.restore == null && c.failures === 0)) return h("p", { class: "muted", id: "checkpoint" }, "no checkpoints written");
  const row = (k, v, id) => h("tr", {}, h("td", {}, k), h("td", id ? { id } : {}, v == null ? "-" : v));
  const w = c.lastWrite, r = c.restore;
  return h("table", { id: "checkpoint" },
    row("Saved after a batch", fmtNum(c.saved), "ck-saved"),
    row("Last saved batch", c.lastBatchTime == null ? null : fmtTime(c.lastBatchTime)),
    row("Time on the batch path", fmtDur(c.lastBatchPathMs)),
    row("Written to disk", fmtNum(c.written), "ck-written"),
    row("Last written batch", w == null ? null : fmtTime(w.batchTime)),
    row("Last write finished", w == null ? null : fmtTime(w.writtenAt)),
    row("Age", w == null ? null : fmtDur(w.ageMs)),
    row("Size", w == null ? null : fmtNum(w.sizeBytes) + " bytes", "ck-size"),
    row("Write took (background)", w == null ? null : fmtDur(w.durationMs)),
    row("File", w == null ? null : w.path),
    row("Failures", fmtNum(c.failures), "ck-failures"),
    row("Last failure", c.lastFailure == null ? null : `${fmtTime(c.lastFailure.at)}: ${c.lastFailure.error}`),
    row("Restored at start", r == null ? "no (fresh start)" : `batch ${fmtTime(r.batchTime)} from ${r.path}, ${r.pendingBatches} pending batch(es), in ${fmtDur(r.durationMs)}`, "ck-restore"));
}

async function pollMain() {
  try {
    const since = view.batches.length ? "?since=" + view.batches[0].batchTime : "";
    const [st, fresh] = await Promise.all([getJson("/api/v1/state"), getJson("/api/v1/batches" + since)]);
    view.state = st;
    view.batches = fresh.concat(view.batches).slice(0, st.retainedBatchesLimit);
    view.polls += 1;
    setConn("updated " + fmtClock(Date.now()));
    render();
  } catch (e) {
    setConn("disconnected: " + e.message);
  }
  setTimeout(pollMain, POLL_MS);
}

// ---- the page of one batch ----

async function batchPage(time) {
  const main = document.getElementById("main");
  let b;
  try {
    b = await getJson("/api/v1/batches/" + time);
  } catch (e) {
    main.replaceChildren(h("h2", {}, "Batch " + time), h("p", { id: "missing" }, "This batch is not kept (" + e.message + ")."));
    return;
  }
  setConn("loaded " + fmtClock(Date.now()));
  const ranges = b.offsetRanges.filter((r) => r.count > 0);
  const hidden = b.offsetRanges.length - ranges.length;
  const row = (k, v, id) => h("tr", {}, h("td", {}, k), h("td", id ? { id } : {}, v));
  main.replaceChildren(
    h("p", {}, h("a", { href: "/" }, "← all batches")),
    h("h2", {}, "Batch " + fmtTime(b.batchTime)),
    h("table", { id: "timings" },
      row("Batch time", `${fmtTime(b.batchTime)} (${b.batchTime})`, "batch-time"),
      row("Status", b.status, "batch-status"),
      b.error == null ? "" : row("Error", b.error, "batch-error"),
      row("Records", fmtNum(b.inputSize), "batch-records"),
      row("Malformed records", fmtNum(b.malformedRecords), "batch-malformed"),
      row("Keys timed out", fmtNum(b.timedOutKeys), "batch-timed-out"),
      row("Scheduling delay", fmtDur(b.schedulingDelay)),
      row("Processing time", fmtDur(b.processingTime)),
      row("Total delay", fmtDur(b.totalDelay)),
      row("Lag when generated", fmtNum(b.lag)),
      row("Completed at", fmtTime(b.completedAt))),
    h("h2", {}, "Offset ranges"),
    h("table", { id: "ranges" },
      h("tr", {}, h("th", {}, "Topic"), h("th", {}, "Partition"), h("th", {}, "From offset"), h("th", {}, "Until offset"), h("th", {}, "Records"), h("th", {}, "Lag when generated")),
      ranges.map((r) => h("tr", { "data-partition": r.partition }, h("td", {}, r.topic), h("td", {}, r.partition), h("td", {}, r.fromOffset), h("td", {}, r.untilOffset), h("td", {}, r.count),
        h("td", {}, r.lag == null ? "-" : r.lag)))),
    h("p", { class: "muted", id: "hidden-ranges" }, hidden > 0 ? `${hidden} empty range(s) hidden` : "no empty ranges"),
    h("h2", {}, "Malformed records"),
    b.malformed.length === 0 ? h("p", { class: "muted" }, "none")
      : h("table", { id: "malformed-records" },
        h("tr", {}, h("th", {}, "Partition"), h("th", {}, "Offset"), h("th", {}, "Reason")),
        b.malformed.map((m) => h("tr", {}, h("td", {}, m.partition), h("td", {}, m.offset), h("td", {}, m.reason)))),
    b.malformedRecords > b.malformedShown ? h("p", { class: "muted" }, `first ${b.malformedShown} of ${b.malformedRecords} shown`) : "",
    h("h2", {}, "Output operations"),
    b.printedBytes === 0 ? h("p", { class: "muted", id: "printed" }, "print wrote nothing")
      : h("div", {}, h("p", { class: "muted" }, `print wrote ${fmtNum(b.printedBytes)} bytes` + (b.printedTruncated ? ", the start of which:" : ":")),
        h("pre", { id: "printed" }, b.printed)));
  document.body.dataset.loaded = "1";
}

const m = location.pathname.match(/^\/batches\/(-?\d+)$/);
if (m) batchPage(m[1]); else pollMain();
