// Outpost's live dashboard. Samples arrive over server-sent events from /dashboard/stream
// (polling /dashboard/samples where EventSource is missing); the tables poll the components'
// JSON endpoints. Everything is drawn with plain SVG and text nodes: no library, no innerHTML.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341"];
const TABLE_POLL_MS = 2000;

const state = { intervalMS: 1000, windowMS: 600000, seq: 0, samples: [] };

// ---- number formatting ------------------------------------------------------------------
function fmtNum(v) {
  if (v == null || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
function fmtBytes(v) {
  if (v == null || !isFinite(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}
function fmtPct(v) { return v == null || !isFinite(v) ? "–" : (v * 100).toFixed(1) + "%"; }

// ---- series -----------------------------------------------------------------------------
const val = (name) => (s) => (name in s.v ? s.v[name] : null);
function sum(...names) {
  return (s) => {
    let t = 0, any = false;
    for (const n of names) if (n in s.v) { t += s.v[n]; any = true; }
    return any ? t : null;
  };
}
function ratio(numNames, denNames) {
  const num = sum(...numNames), den = sum(...denNames);
  return (s) => { const d = den(s); return d ? num(s) / d : null; };
}
// byPrefix lists one series per column named prefix + something, in order of first appearance.
function byPrefix(prefix) {
  return () => {
    const seen = [];
    for (const s of state.samples) for (const k in s.v) if (k.startsWith(prefix) && !seen.includes(k)) seen.push(k);
    return seen.map((k) => ({ label: k.slice(prefix.length) || "(none)", get: val(k) }));
  };
}

const HIT = ["cache.memory", "cache.disk"], ALL = ["cache.memory", "cache.disk", "cache.miss"];
const CHARTS = [
  { id: "chart-requests", fmt: fmtNum, unit: "/s", series: () => [
    { label: "all requests", get: val("proxy.requests") },
    { label: "memory hits", get: val("cache.memory") },
    { label: "disk hits", get: val("cache.disk") },
    { label: "misses", get: val("cache.miss") },
  ], empty: "no proxy or cache metrics (not running?)" },
  { id: "chart-hits", fmt: fmtPct, max: 1, series: () => [
    { label: "hit ratio", get: ratio(HIT, ALL) },
    { label: "memory tier", get: ratio(["cache.memory"], ALL) },
    { label: "disk tier", get: ratio(["cache.disk"], ALL) },
  ], empty: "no cache traffic yet" },
  { id: "chart-bytes", fmt: fmtBytes, unit: "/s", series: byPrefix("bytes."), empty: "no proxy metrics (not running?)" },
  { id: "chart-edges", fmt: fmtNum, unit: "/s", series: byPrefix("dns.edge."), empty: "no edge answers (DNS not running, or no dynamic names asked)" },
  { id: "chart-steps", fmt: fmtNum, unit: "/s", series: byPrefix("dns.step."), empty: "no steering decisions (DNS not running?)" },
  { id: "chart-mail", fmt: fmtNum, series: () => [
    { label: "queued messages", get: val("mail.queue") },
    { label: "accepted/s", get: val("mail.accepted") },
  ], empty: "no mail metrics (mail not running?)" },
];

// ---- SVG charts ---------------------------------------------------------------------------
function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  return e;
}

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart(def) {
  const fig = document.getElementById(def.id);
  const svg = fig.querySelector("svg");
  const legend = fig.querySelector(".legend");
  const w = svg.clientWidth || 600, h = svg.clientHeight || 170;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  legend.replaceChildren();
  const series = def.series();
  const samples = state.samples;
  const left = 66, right = 6, top = 8, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  // The time axis spans the history held, at least a minute, at most the window.
  const t1 = samples.length ? samples[samples.length - 1].t : Date.now();
  const span = Math.min(state.windowMS, Math.max(60000, samples.length ? t1 - samples[0].t : 0));
  const t0 = t1 - span;
  let ymax = 0, points = 0;
  const values = series.map((s) => samples.map((x) => s.get(x)));
  for (const vs of values) for (const v of vs) if (v != null && v > ymax) ymax = v;
  ymax = def.max || niceMax(ymax);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => top + ph - (v / ymax) * ph;
  for (const f of [0, 0.5, 1]) {
    svg.append(el("line", { class: "grid", x1: left, x2: w - right, y1: y(f * ymax), y2: y(f * ymax) }));
    svg.append(el("text", { x: left - 4, y: y(f * ymax) + 4, "text-anchor": "end" }, def.fmt(f * ymax)));
  }
  const mins = span / 60000;
  svg.append(el("text", { x: left, y: h - 4 }, `−${mins >= 1 ? mins.toFixed(mins < 10 && !Number.isInteger(mins) ? 1 : 0) + " min" : (span / 1000).toFixed(0) + " s"}`));
  svg.append(el("text", { x: w - right, y: h - 4, "text-anchor": "end" }, "now"));
  const gap = 2.5 * state.intervalMS;
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    let d = "", prevT = null, last = null;
    samples.forEach((smp, j) => {
      const v = values[i][j];
      if (v == null) { prevT = null; return; }
      d += (prevT == null || smp.t - prevT > gap ? "M" : "L") + x(smp.t).toFixed(1) + " " + y(Math.min(v, ymax)).toFixed(1) + " ";
      prevT = smp.t; last = v; points++;
    });
    if (d) svg.append(el("path", { class: "series", d: d, stroke: color }));
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch sw-" + (i % PALETTE.length);
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = def.fmt(last) + (def.unit && last != null ? def.unit : "");
    item.append(sw, document.createTextNode(s.label), num);
    legend.append(item);
  });
  if (points === 0) svg.append(el("text", { class: "empty", x: w / 2, y: h / 2, "text-anchor": "middle" }, samples.length ? def.empty : "waiting for samples…"));
  fig.dataset.points = String(points);
  fig.dataset.series = String(series.length);
}

// ---- tiles --------------------------------------------------------------------------------
function latest(get) {
  for (let i = state.samples.length - 1; i >= 0; i--) { const v = get(state.samples[i]); if (v != null) return v; }
  return null;
}
// overLast sums get over the samples of the last ms milliseconds.
function overLast(ms, get) {
  const s = state.samples;
  if (!s.length) return null;
  const from = s[s.length - 1].t - ms;
  let t = 0, any = false;
  for (let i = s.length - 1; i >= 0 && s[i].t > from; i--) { const v = get(s[i]); if (v != null) { t += v; any = true; } }
  return any ? t : null;
}
function setText(id, text) { document.getElementById(id).textContent = text; }

function drawTiles() {
  const rps = latest(val("proxy.requests"));
  setText("tile-rps", fmtNum(rps));
  const hits = overLast(60000, sum(...HIT)), all = overLast(60000, sum(...ALL));
  setText("tile-hit", all ? fmtPct(hits / all) : "–");
  const fromCache = overLast(60000, val("bytes.cache")), fromOrigin = overLast(60000, val("bytes.origin"));
  const tot = (fromCache || 0) + (fromOrigin || 0);
  setText("tile-bytes", tot ? `${fmtPct(fromCache / tot)} / ${fmtPct(fromOrigin / tot)}` : "–");
  setText("tile-conns", fmtNum(latest(val("proxy.connections"))));
  setText("tile-dns", fmtNum(latest(val("dns.queries"))));
  setText("tile-mail", fmtNum(latest(val("mail.queue"))));
  document.body.dataset.samples = String(state.samples.length);
  document.body.dataset.rps = rps == null ? "" : String(rps);
  document.body.dataset.hitRatio = all ? String(hits / all) : "";
}

function render() {
  for (const c of CHARTS) drawChart(c);
  drawTiles();
  setText("window", `${state.samples.length} samples, every ${state.intervalMS / 1000} s, last ${Math.round(state.windowMS / 60000)} min`);
}

// ---- the sample stream --------------------------------------------------------------------
function setState(s, text) {
  const e = document.getElementById("state");
  e.className = "state " + s;
  e.textContent = text;
  document.body.dataset.state = s;
}

function takeHistory(h) {
  state.intervalMS = h.interval_ms || 1000;
  state.windowMS = h.window_ms || 600000;
  state.samples = h.samples || [];
  state.seq = h.seq || 0;
  render();
}

function takeSample(s) {
  state.samples.push(s);
  state.seq = s.seq;
  const keep = Math.ceil(state.windowMS / state.intervalMS) + 1;
  if (state.samples.length > keep) state.samples.splice(0, state.samples.length - keep);
  render();
}

function connect() {
  if (typeof EventSource === "undefined") return poll();
  const es = new EventSource("/dashboard/stream");
  es.addEventListener("history", (e) => { takeHistory(JSON.parse(e.data)); setState("live", "live"); });
  es.addEventListener("sample", (e) => { takeSample(JSON.parse(e.data)); setState("live", "live"); });
  es.onerror = () => setState("down", "disconnected, retrying…");
}

async function poll() {
  try {
    const r = await fetch("/dashboard/samples?since=" + state.seq, { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    const h = await r.json();
    if (state.seq === 0) takeHistory(h); else for (const s of h.samples) takeSample(s);
    setState("live", "live (polling)");
  } catch (e) {
    setState("down", "disconnected, retrying…");
  }
  setTimeout(poll, state.intervalMS);
}

// ---- tables from the components' endpoints ------------------------------------------------
async function getJSON(url) {
  try {
    const r = await fetch(url, { cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch (e) {
    return null;
  }
}

function fillTable(id, rows, note) {
  const table = document.getElementById(id);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const cells of rows || []) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      const cell = typeof c === "object" ? c : { text: c };
      td.textContent = cell.text;
      if (cell.cls) td.className = cell.cls;
      if (cell.title) td.title = cell.title;
      tr.append(td);
    }
    body.append(tr);
  }
  table.dataset.rows = String((rows || []).length);
  table.parentElement.querySelector(".note").textContent = note || "";
}

function routeRows(routes) {
  if (routes == null) return [null, "proxy not running"];
  const rows = [];
  for (const r of routes) for (const o of r.origins) {
    rows.push([{ text: r.name, title: r.name }, { text: o.url, title: o.url },
      o.up ? { text: "up", cls: "up" }
        : o.health && o.health.state === "down" ? { text: "down (health check)", title: o.health.last_error || "", cls: "down" }
        : { text: "down until " + new Date(o.down_until).toLocaleTimeString(), cls: "down" },
      { text: String(o.active), cls: "num" }]);
  }
  return [rows, routes.length ? "" : "no reverse routes configured: forward proxying only (no origin health to show)"];
}

function edgeRows(edges) {
  if (edges == null) return [null, "DNS not running"];
  return [edges.map((e) => {
    const st = e.up ? { text: "up", cls: "up" } : { text: "down", cls: "down" };
    if (e.force && e.force !== "auto") { st.text += " (forced " + e.force + ")"; st.cls = "forced"; }
    if (e.last_error) st.title = e.last_error;
    return [e.name, { text: (e.addrs || []).join(" "), title: (e.addrs || []).join(" ") }, st, { text: e.check || "–", title: e.last_error || "" }];
  }), edges.length ? "" : "no edges configured"];
}

function topRows(list, fmt) {
  if (!list) return [null, "proxy not running"];
  const rows = list.top.map((e) => [{ text: e.key, title: e.key + (e.error ? ` (overestimated by at most ${e.error})` : "") },
    { text: fmt(e.weight), cls: "num" }, { text: list.total ? fmtPct(e.weight / list.total) : "–", cls: "num" }]);
  return [rows, rows.length ? "" : "no requests yet"];
}

// parentRows adds the [proxy.parents] servers, from the latest sample of their health gauge.
function parentRows(rows) {
  const last = state.samples.length ? state.samples[state.samples.length - 1].v : {};
  for (const k of Object.keys(last).sort()) {
    if (!k.startsWith("proxy.parent_up.")) continue;
    const up = last[k] > 0;
    rows.push(["parent", k.slice("proxy.parent_up.".length), up ? { text: "up", cls: "up" } : { text: "down", cls: "down" }, { text: "–", cls: "num" }]);
  }
  return rows;
}

async function pollTables() {
  const [routes, edges, top] = await Promise.all([getJSON("/proxy/routes"), getJSON("/dns/edges"), getJSON("/proxy/top")]);
  const [rrows, rnote] = routeRows(routes);
  fillTable("routes", rrows && parentRows(rrows), rrows && rrows.length ? "" : rnote);
  fillTable("edges", ...edgeRows(edges));
  fillTable("top-requests", ...topRows(top && top.requests, fmtNum));
  fillTable("top-bytes", ...topRows(top && top.bytes, fmtBytes));
  setTimeout(pollTables, TABLE_POLL_MS);
}

render();
connect();
pollTables();
window.addEventListener("resize", render);
