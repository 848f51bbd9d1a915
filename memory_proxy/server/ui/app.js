// The memory proxy's dashboard: plain DOM and SVG, data from /ui/api/ (docs/usage.md); helpers in common.js.
"use strict";

const COLORS = ["#3b6fd8", "#d8813b", "#2f9e6b", "#b54bb0", "#c9a227", "#d64541", "#4aa3b5", "#7a6fd8",
                "#8c6d46", "#5d6b7a"];
const NA_WIDTH = 20;  // an "n/a" mark's width in the charts' units, about
const LIVE_EVERY_MS = 2000;
const REPORT_EVERY_MS = 10000;
const OTHERS = "\u0000others";  // the series of the keys past the coloured ones (no key has a NUL)
const OTHERS_COLOR = "#9aa1a9";
const state = { range: "today", by: "client", colors: new Map(), top: new Set(), others: [], newest: 0,
                timer: null };

function rankKeys(rows) {
  // The keys with the most requests (``rows`` come most first) get a colour each, kept while they
  // stay among them; past COLORS.length keys the rest share one grey series, "N others", so no two
  // series ever share a colour.
  const keys = rows.map((r) => r.key);
  const top = keys.length <= COLORS.length ? keys : keys.slice(0, COLORS.length - 1);
  state.top = new Set(top);
  state.others = keys.filter((key) => !state.top.has(key));
  for (const key of [...state.colors.keys()]) if (!state.top.has(key)) state.colors.delete(key);
  for (const key of top) {
    const used = new Set(state.colors.values());
    if (!state.colors.has(key)) state.colors.set(key, COLORS.find((c) => !used.has(c)));
  }
}

const color = (key) => state.colors.get(key) || OTHERS_COLOR;
const keyName = (key) => (key === OTHERS ? `${state.others.length} others` : key || "-");
const dataKey = (key) => (key === OTHERS ? "" : key);  // the "others" series has no key of its own

const compact = (n) => new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
// Dollars with thousands separators; four decimals below a dollar, where cents would say $0.00.
const dollars = (n) => "$" + n.toLocaleString("en-US", n && Math.abs(n) < 1
  ? { minimumFractionDigits: 4, maximumFractionDigits: 4 } : { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const money = (n) => (n >= 1000 ? "$" + compact(n) : dollars(n));  // an axis label: short
// A duration in ms, with its unit: seconds from 10 s on.
const duration = (ms) => (ms === null || ms === undefined ? "-" : ms >= 10000 ? (ms / 1000).toFixed(1) + " s"
  : int(ms) + " ms");
const UNKNOWN_COST = "no price for this model: cost unknown, not free";
// A row or point none of whose requests has a known cost: "n/a", never $0.
const costUnknown = (p) => p.requests > 0 && p.unpriced_requests === p.requests;

function cost(row) {
  if (costUnknown(row)) return "n/a";
  return dollars(row.cost_usd) + (row.unpriced_requests ? "*" : "");
}

function renderCards(summary) {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  document.getElementById("cards-empty").hidden = summary.rows.length > 0;
  for (const row of summary.rows) {
    const card = el("div", { class: "card", "data-key": row.key });
    const title = el("h3");
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color(row.key);
    title.append(swatch, el("span", { class: "name" }, row.key || "-"));
    const list = el("dl");
    const items = [["requests", int(row.requests), "requests"], ["errors", int(row.errors), "errors"],
                   ["input tokens", int(row.input_tokens), "input"], ["output tokens", int(row.output_tokens), "output"],
                   ["cache read", int(row.cache_read_tokens), "cache-read"],
                   ["cache write", int(row.cache_write_tokens), "cache-write"],
                   ["cost", cost(row), "cost"], ["memory errors", int(row.memory_errors), "memory-errors"],
                   ["p50 latency ms", int(row.p50_latency_ms), "p50"]];
    for (const [label, value, name] of items) {
      const bad = (name === "errors" || name === "memory-errors") && value !== "0";
      const dd = el("dd", { "data-field": name, class: bad ? "bad" : "" }, value);
      if (name === "cost" && row.unpriced_requests) {  // marked, never shown as free
        dd.className = "unpriced";
        dd.title = `${row.unpriced_requests} of ${row.requests} requests: ${UNKNOWN_COST}`;
      }
      list.append(el("dt", {}, label), dd);
    }
    card.append(title, list);
    cards.append(card);
  }
  for (const node of document.querySelectorAll(".by-name")) node.textContent = summary.by;
}

function allPeriods(series) {
  // Every hour of today, or every day of the range, so that quiet ones show as gaps.
  const labels = [];
  const now = new Date();
  if (series.period === "hourly") {
    for (let h = 0; h <= now.getHours(); h++) labels.push(`${day(now)}T${pad(h)}:00`);
  } else {
    for (let d = new Date(series.since_ms); d <= now; d.setDate(d.getDate() + 1)) labels.push(day(d));
  }
  return labels;
}

function renderLegend(series, keys) {
  // One entry per key, in the colours of both charts and of the cards; a key with requests of a
  // model without a price is marked (n/a: none priced, *: some).
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const key of keys) {
    const points = series.points.filter((p) => p.key === key);
    const requests = points.reduce((n, p) => n + p.requests, 0);
    const unpriced = points.reduce((n, p) => n + p.unpriced_requests, 0);
    const item = el("span", { class: "legend-item", "data-key": dataKey(key) });
    if (key === OTHERS) {
      item.dataset.others = state.others.length;
      item.title = state.others.join(", ");
    }
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color(key);
    item.append(swatch, document.createTextNode(keyName(key)));
    if (unpriced) {
      item.append(el("span", { class: "unpriced", title: `${unpriced} of ${requests} requests: ${UNKNOWN_COST}` },
                     unpriced === requests ? "cost n/a" : "cost *"));
    }
    legend.append(item);
  }
}

function chartFrame(svg, series, periods, max, label, band) {
  // Axes of one over-time chart: the baseline, the top value, the hours or days below, and
  // under them ``band`` rows for the cost chart's n/a marks (both charts get them: same height).
  // Returns the x of a period's slot centre, the slot's width, the y of a value and of a band row.
  svg.replaceChildren();
  const W = 600, left = 58, right = 12, top = 14, axis = 210;
  svg.setAttribute("viewBox", `0 0 ${W} ${240 + 12 * band}`);
  const slot = (W - left - right) / periods.length;
  const x = (i) => left + i * slot + slot / 2;
  const y = (v) => top + (axis - top) * (1 - v / max);
  svg.append(el("svg:line", { x1: left, x2: W - right, y1: axis, y2: axis, stroke: "#d9dee4" }),
             el("svg:line", { x1: left, x2: W - right, y1: top, y2: top, stroke: "#eef0f3" }),
             el("svg:text", { x: left - 4, y: top + 4, "text-anchor": "end" }, label(max)),
             el("svg:text", { x: left - 4, y: axis + 4, "text-anchor": "end" }, label(0)));
  const every = Math.ceil(periods.length / 16);
  periods.forEach((period, i) => {
    if (i % every) return;
    const text = series.period === "hourly" ? period.slice(11, 13) + "h" : period.slice(5);
    svg.append(el("svg:text", { x: x(i), y: axis + 14, "text-anchor": "middle" }, text));
  });
  return { x, y, slot, row: (k) => axis + 28 + 12 * k };
}

function renderRequestsChart(series, periods, keys, at, band) {
  // Requests per period, one stacked bar segment per key (a group per key: its series).
  const svg = document.getElementById("requests-chart");
  const totals = periods.map((period) => keys.reduce((n, key) => n + (at(period, key)?.requests || 0), 0));
  const f = chartFrame(svg, series, periods, Math.max(1, ...totals), int, band);
  const base = periods.map(() => 0);
  for (const key of keys) {
    const group = el("svg:g", { class: "series", "data-key": dataKey(key), fill: color(key) });
    if (key === OTHERS) group.dataset.others = state.others.length;
    periods.forEach((period, i) => {
      const point = at(period, key);
      if (!point || !point.requests) return;
      const bar = el("svg:rect", { x: f.x(i) - f.slot * 0.35, width: Math.max(1, f.slot * 0.7),
        y: f.y(base[i] + point.requests), height: f.y(base[i]) - f.y(base[i] + point.requests),
        class: "bar", "data-key": dataKey(key), "data-period": period, "data-requests": point.requests });
      bar.append(el("svg:title", {}, `${period} ${keyName(key)}: ${point.requests} requests, ${point.errors} errors`));
      group.append(bar);
      base[i] += point.requests;
    });
    svg.append(group);
  }
}

function renderCostChart(series, periods, keys, at, band) {
  // Cost per period, one line per key. A period whose requests all used models without a
  // price has no known cost: the line breaks there and an "n/a" mark in the key's colour stands
  // under the period (never a zero); a point with some of them is hollow.
  const svg = document.getElementById("cost-chart");
  const max = Math.max(0, ...series.points.map((p) => p.cost_usd));
  const f = chartFrame(svg, series, periods, max || 1, (v) => (max ? money(v) : v ? "" : "$0"), band);
  const marked = new Map();  // period -> n/a marks under it so far
  for (const key of keys) {
    const group = el("svg:g", { class: "series", "data-key": dataKey(key) });
    if (key === OTHERS) group.dataset.others = state.others.length;
    // A key none of whose requests had a price gets its n/a marks only, no line along zero.
    const priced = series.points.some((p) => p.key === key && p.requests > p.unpriced_requests);
    const path = [];
    let pen = "M";
    periods.forEach((period, i) => {
      const point = at(period, key) || { requests: 0, unpriced_requests: 0, cost_usd: 0 };
      if (costUnknown(point)) {
        pen = "M";
        const k = marked.get(period) || 0;
        marked.set(period, k + 1);
        // "n/a" where a slot has room for it; a short bar in the key's colour where it has not
        // (30 or 90 days), so that neighbouring marks never run into each other.
        const attrs = { class: "unpriced-mark", "data-key": dataKey(key), "data-period": period };
        const mark = f.slot >= NA_WIDTH
          ? el("svg:text", { ...attrs, x: f.x(i), y: f.row(k), "text-anchor": "middle" }, "n/a")
          : el("svg:rect", { ...attrs, x: f.x(i) - f.slot * 0.35, y: f.row(k) - 8, width: Math.max(1, f.slot * 0.7),
                             height: 8 });
        mark.style.fill = color(key);
        mark.append(el("svg:title", {}, `${f.slot >= NA_WIDTH ? "" : "n/a "}${period} ${keyName(key)}: ` +
                                        `${point.requests} requests, ${UNKNOWN_COST}`));
        group.append(mark);
        return;
      }
      if (!priced) return;
      path.push(`${pen}${f.x(i).toFixed(1)},${f.y(point.cost_usd).toFixed(1)}`);
      pen = "L";
      if (!point.requests) return;
      const partial = point.unpriced_requests > 0;
      const dot = el("svg:circle", { cx: f.x(i), cy: f.y(point.cost_usd), r: 3.5, stroke: color(key),
        fill: partial ? "#fff" : color(key), class: "cost-point", "data-key": dataKey(key),
        "data-period": period, "data-cost": point.cost_usd });
      dot.append(el("svg:title", {}, `${period} ${keyName(key)}: ${dollars(point.cost_usd)}` +
        (partial ? ` + ${point.unpriced_requests} requests with no price (unknown)` : "")));
      group.append(dot);
    });
    if (path.length) {
      group.prepend(el("svg:path", { d: path.join(" "), fill: "none", stroke: color(key), "stroke-width": 1.8,
                                     class: "cost-line", "data-key": dataKey(key) }));
    }
    svg.append(group);
  }
}

function folded(series) {
  // The points of the keys past the coloured ones summed into one "others" point per period.
  const points = [], others = new Map();
  for (const p of series.points) {
    if (state.top.has(p.key)) { points.push(p); continue; }
    const sum = others.get(p.period) || { period: p.period, key: OTHERS, requests: 0, cost_usd: 0, errors: 0,
                                          unpriced_requests: 0 };
    for (const name of ["requests", "cost_usd", "errors", "unpriced_requests"]) sum[name] += p[name];
    others.set(p.period, sum);
  }
  return { ...series, points: [...points, ...others.values()] };
}

function renderCharts(reported) {
  // Requests and cost over time per key: two charts over the same periods, in the same colours.
  const series = folded(reported);
  const periods = [...new Set([...allPeriods(series), ...series.points.map((p) => p.period)])].sort();
  const present = new Set(series.points.map((p) => p.key));  // the most requests first, "others" last
  const keys = [...state.top, OTHERS].filter((key) => present.has(key));
  const byPeriod = new Map(series.points.map((p) => [p.period + "\n" + p.key, p]));
  const at = (period, key) => byPeriod.get(period + "\n" + key);
  renderLegend(series, keys);
  if (!series.points.length) {
    for (const id of ["requests-chart", "cost-chart"]) {
      document.getElementById(id).replaceChildren(el("svg:text", { x: 20, y: 120 }, "no requests in this period"));
    }
    return;
  }
  const unknown = new Map();  // period -> keys whose requests there all lack a price
  for (const p of series.points) {
    if (costUnknown(p)) unknown.set(p.period, (unknown.get(p.period) || 0) + 1);
  }
  const band = Math.max(0, ...unknown.values());
  renderRequestsChart(series, periods, keys, at, band);
  renderCostChart(series, periods, keys, at, band);
}

function fitText(node, text, suffix, room) {
  // ``text`` and ``suffix`` in the SVG text ``node``, the text cut short with "…" until the whole
  // is at most ``room`` wide (the node must be in the page to be measured); all of it on hover.
  node.textContent = text + suffix;
  for (let keep = text.length - 1; node.getComputedTextLength() > room && keep > 1; keep--) {
    node.textContent = text.slice(0, keep) + "…" + suffix;
  }
  if (node.textContent !== text + suffix) node.append(el("svg:title", {}, text + suffix));
}

function renderLatency(latency) {
  // One row per model: its name and request count, the p95 bar with the p50 one inside, and the
  // figures at the right, each with its unit. Names too long for their column are cut short, and
  // the bars take the room the longest figures leave, so that no text runs under a bar or out.
  const svg = document.getElementById("latency");
  svg.replaceChildren();
  const rows = latency.rows.filter((r) => r.p50_latency_ms !== null);
  const W = 900, H = 20 + rows.length * 26;
  svg.setAttribute("viewBox", `0 0 ${W} ${Math.max(H, 40)}`);
  if (!rows.length) { svg.append(el("svg:text", { x: 20, y: 25 }, "no requests in this period")); return; }
  const max = Math.max(...rows.map((r) => r.p95_latency_ms || r.p50_latency_ms));
  const groups = rows.map((r, i) => {
    const y = 10 + i * 26;
    const group = el("svg:g", { class: "latency-row", "data-model": r.key, "data-requests": r.requests });
    const name = el("svg:text", { x: 6, y: y + 13, class: "name" });
    const figures = el("svg:text", { x: W - 6, y: y + 13, "text-anchor": "end", class: "figures" },
      `p50 ${duration(r.p50_latency_ms)} · p95 ${duration(r.p95_latency_ms)}` +
      (r.p50_first_event_ms !== null ? ` · 1st event ${duration(r.p50_first_event_ms)}` : ""));
    group.append(name, figures);
    svg.append(group);
    fitText(name, r.key || "-", ` (${int(r.requests)} requests)`, 260);
    return [r, y, group, name, figures];
  });
  const left = 6 + 12 + Math.max(...groups.map((g) => g[3].getComputedTextLength()));
  const width = W - 6 - 12 - left - Math.max(...groups.map((g) => g[4].getComputedTextLength()));
  for (const [r, y, group] of groups) {
    const p95 = el("svg:rect", { x: left, y, height: 16, width: Math.max(1, width * (r.p95_latency_ms || 0) / max),
      fill: "#c9d6f2", class: "p95", "data-model": r.key });
    p95.append(el("svg:title", {}, `${r.key}: p95 ${duration(r.p95_latency_ms)}`));
    const p50 = el("svg:rect", { x: left, y: y + 4, height: 8, width: Math.max(1, width * r.p50_latency_ms / max),
      fill: "#3b6fd8", class: "p50", "data-model": r.key });
    p50.append(el("svg:title", {}, `${r.key}: p50 ${duration(r.p50_latency_ms)}`));
    group.append(p95, p50);
  }
}

function memoryCell(row) {
  if (row.sm_error) return "error: " + row.sm_error;
  const parts = [];
  if (row.sm_context_modified) parts.push("context +" + (row.sm_chunks_retrieved ?? 0));
  if (row.cf_retries) parts.push("cf retry");
  return parts.join(", ");
}

// A long id or model name cut in its middle: ids of one installation often share their start
// and differ at the end. Keeps the live table's figures in view.
const middle = (text, most = 30) => (text.length <= most ? text : text.slice(0, 12) + "…" + text.slice(13 - most));

function stamp(ms) {
  // A request's local time (the table's head names the zone), its day too when it is not today's.
  const d = new Date(ms);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return day(d) === day(new Date()) ? time : `${day(d)} ${time}`;
}

function renderLive(rows) {
  const body = document.querySelector("#live tbody");
  const previous = state.newest;
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", { "data-request-id": row.request_id, "data-client": row.client_id,
      class: (row.status >= 400 ? "error " : "") + (previous && row.ts_ms > previous ? "fresh" : "") });
    const priced = row.priced === 0 ? "n/a" : row.cost_usd === null ? "-" : "$" + row.cost_usd.toFixed(5);
    const cells = [stamp(row.ts_ms), middle(row.client_id || "-"), middle(row.model_group || "-"), row.api_shape || "-",
      String(row.status) + (row.completed === 0 ? " (left)" : ""), row.streamed ? "yes" : "", int(row.latency_ms),
      int(row.first_event_ms), int(row.input_tokens), int(row.output_tokens), int(row.cache_read_tokens),
      int(row.cache_write_tokens), priced, memoryCell(row)];
    for (const cell of cells) tr.append(el("td", {}, cell));
    for (const [i, whole] of [[1, row.client_id], [2, row.model_group]]) {  // whole on hover
      tr.cells[i].className = "long";
      tr.cells[i].title = whole || "";
    }
    if (row.priced === 0) {
      tr.cells[12].className = "unpriced";
      tr.cells[12].title = UNKNOWN_COST;
    }
    body.append(tr);
  }
  if (rows.length) {
    state.newest = Math.max(state.newest, ...rows.map((r) => r.ts_ms));
  } else {  // a table head alone would look like a page still loading
    const tr = el("tr", { id: "live-empty" });
    tr.append(el("td", { colspan: "14", class: "muted" }, "No requests recorded yet."));
    body.append(tr);
  }
}

async function refreshStatus() {
  const status = await api("status");
  const usage = status.usage;
  const line = document.getElementById("store-status");
  line.textContent = !usage.enabled ? "usage recording is off" :
    // no error yet and not ok: the writer has not opened the store yet (its first pass, just after a start)
    `store ${usage.store_ok ? "ok" : usage.last_error ? "failing: " + usage.last_error : "opening"} · ` +
    `record parts: ${int(usage.written)} written · ${int(usage.queued)} queued · ${int(usage.dropped)} dropped`;
  line.className = usage.enabled && !usage.store_ok && usage.last_error ? "error" : "muted";
}

async function refreshReports() {
  const params = { range: state.range, by: state.by };
  const [summary, series, latency] = await Promise.all([api("summary", params), api("timeseries", params),
                                                         api("latency", params)]);
  rankKeys(summary.rows);
  renderCharts(series);
  renderLatency(latency);
  renderCards(summary);
  document.body.dataset.loaded = "reports";
}

async function refreshLive() {
  renderLive((await api("requests", { limit: 50 })).rows);
  await refreshStatus();
  document.body.dataset.live = String(Date.now());
}

function refreshAll() {
  refreshReports().catch(() => {});
  refreshLive().catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("live-time").textContent = `time (${zone()})`;
  setupLogin(refreshAll);
  for (const id of ["range", "by"]) {
    document.getElementById(id).addEventListener("change", (event) => {
      state[id] = event.target.value;
      if (id === "by") state.colors.clear();  // colours follow the keys of the grouping shown
      refreshReports().catch(() => {});
    });
  }
  refreshAll();
  setInterval(() => { if (!document.hidden) refreshLive().catch(() => {}); }, LIVE_EVERY_MS);
  setInterval(() => { if (!document.hidden) refreshReports().catch(() => {}); }, REPORT_EVERY_MS);
});
