// The memory proxy's dashboard: plain DOM and SVG, data from /ui/api/ (docs/usage.md); helpers in common.js.
"use strict";

const COLORS = ["#3b6fd8", "#d8813b", "#2f9e6b", "#b54bb0", "#c9a227", "#d64541", "#4aa3b5", "#7a6fd8",
                "#8c6d46", "#5d6b7a"];
const LIVE_EVERY_MS = 2000;
const REPORT_EVERY_MS = 10000;
const state = { range: "today", by: "client", colors: new Map(), newest: 0, timer: null };

function color(key) {
  if (!state.colors.has(key)) state.colors.set(key, COLORS[state.colors.size % COLORS.length]);
  return state.colors.get(key);
}

function cost(row) {
  if (row.unpriced_requests && row.unpriced_requests === row.requests) return "n/a";
  return "$" + row.cost_usd.toFixed(4) + (row.unpriced_requests ? "*" : "");
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
      list.append(el("dt", {}, label), el("dd", { "data-field": name, class: bad ? "bad" : "" }, value));
    }
    card.append(title, list);
    cards.append(card);
  }
  for (const node of document.querySelectorAll(".by-name")) node.textContent = summary.by;
}

const pad = (n) => String(n).padStart(2, "0");
const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

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

function renderChart(series) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const periods = [...new Set([...allPeriods(series), ...series.points.map((p) => p.period)])].sort();
  const keys = [...new Set(series.points.map((p) => p.key))];
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const key of keys) {
    const item = el("span");
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color(key);
    swatch.style.width = swatch.style.height = "10px";
    swatch.style.display = "inline-block";
    item.append(swatch, document.createTextNode(key || "-"));
    legend.append(item);
  }
  if (!series.points.length) { svg.append(el("svg:text", { x: 20, y: 130 }, "no requests in this period")); return; }
  const W = 900, H = 260, left = 44, right = 56, top = 12, bottom = 34;
  const totals = new Map(), costs = new Map();
  for (const p of series.points) {
    totals.set(p.period, (totals.get(p.period) || 0) + p.requests);
    costs.set(p.period, (costs.get(p.period) || 0) + p.cost_usd);
  }
  const maxRequests = Math.max(1, ...totals.values());
  const maxCost = Math.max(...costs.values());
  const slot = (W - left - right) / periods.length;
  const y = (n) => top + (H - top - bottom) * (1 - n / maxRequests);
  svg.append(el("svg:line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, stroke: "#d9dee4" }));
  svg.append(el("svg:text", { x: 4, y: top + 10 }, int(maxRequests)), el("svg:text", { x: 4, y: H - bottom }, "0"));
  periods.forEach((period, i) => {
    let base = 0;
    for (const key of keys) {
      const point = series.points.find((p) => p.period === period && p.key === key);
      if (!point || !point.requests) continue;
      const bar = el("svg:rect", { x: left + i * slot + slot * 0.15, width: Math.max(1, slot * 0.7),
        y: y(base + point.requests), height: y(base) - y(base + point.requests), fill: color(key),
        class: "bar", "data-key": key, "data-period": period, "data-requests": point.requests });
      bar.append(el("svg:title", {}, `${period} ${key || "-"}: ${point.requests} requests, ` +
        `${point.errors} errors, ${point.unpriced_requests === point.requests ? "cost n/a" : "$" + point.cost_usd.toFixed(4)}`));
      svg.append(bar);
      base += point.requests;
    }
    if (periods.length <= 31 || i % Math.ceil(periods.length / 31) === 0) {
      const label = series.period === "hourly" ? period.slice(11, 13) + "h" : period.slice(5);
      svg.append(el("svg:text", { x: left + i * slot + slot / 2, y: H - bottom + 14, "text-anchor": "middle" }, label));
    }
  });
  if (maxCost > 0) {
    const cy = (c) => top + (H - top - bottom) * (1 - c / maxCost);
    const path = periods.map((p, i) => `${i ? "L" : "M"}${left + i * slot + slot / 2},${cy(costs.get(p) || 0)}`);
    svg.append(el("svg:path", { d: path.join(" "), fill: "none", stroke: "#1d232a", "stroke-width": 1.5,
      "stroke-dasharray": "4 3", class: "cost-line" }));
    svg.append(el("svg:text", { x: W - right + 4, y: top + 10 }, "$" + maxCost.toFixed(maxCost < 1 ? 4 : 2)));
    svg.append(el("svg:text", { x: W - right + 4, y: top + 24 }, "cost ┄"));
  }
}

function renderLatency(latency) {
  const svg = document.getElementById("latency");
  svg.replaceChildren();
  const rows = latency.rows.filter((r) => r.p50_latency_ms !== null);
  const H = 20 + rows.length * 26;
  svg.setAttribute("viewBox", `0 0 900 ${Math.max(H, 40)}`);
  if (!rows.length) { svg.append(el("svg:text", { x: 20, y: 25 }, "no requests in this period")); return; }
  const max = Math.max(...rows.map((r) => r.p95_latency_ms || r.p50_latency_ms));
  const left = 210, width = 900 - left - 150;
  rows.forEach((r, i) => {
    const y = 10 + i * 26;
    svg.append(el("svg:text", { x: 6, y: y + 13 }, r.key || "-"));
    const p95 = el("svg:rect", { x: left, y, height: 16, width: Math.max(1, width * (r.p95_latency_ms || 0) / max),
      fill: "#c9d6f2", class: "p95", "data-model": r.key });
    p95.append(el("svg:title", {}, `${r.key}: p95 ${int(r.p95_latency_ms)} ms`));
    const p50 = el("svg:rect", { x: left, y: y + 4, height: 8, width: Math.max(1, width * r.p50_latency_ms / max),
      fill: "#3b6fd8", class: "p50", "data-model": r.key });
    p50.append(el("svg:title", {}, `${r.key}: p50 ${int(r.p50_latency_ms)} ms`));
    svg.append(p95, p50, el("svg:text", { x: left + width + 8, y: y + 13 },
      `p50 ${int(r.p50_latency_ms)} · p95 ${int(r.p95_latency_ms)} ms` +
      (r.p50_first_event_ms !== null ? ` · 1st ${int(r.p50_first_event_ms)}` : "")));
  });
}

function memoryCell(row) {
  if (row.sm_error) return "error: " + row.sm_error;
  const parts = [];
  if (row.sm_context_modified) parts.push("context +" + (row.sm_chunks_retrieved ?? 0));
  if (row.cf_retries) parts.push("cf retry");
  return parts.join(", ");
}

function renderLive(rows) {
  const body = document.querySelector("#live tbody");
  const previous = state.newest;
  body.replaceChildren();
  for (const row of rows) {
    const time = new Date(row.ts_ms);
    const tr = el("tr", { "data-request-id": row.request_id, "data-client": row.client_id,
      class: (row.status >= 400 ? "error " : "") + (previous && row.ts_ms > previous ? "fresh" : "") });
    const priced = row.priced === 0 ? "n/a" : row.cost_usd === null ? "-" : "$" + row.cost_usd.toFixed(5);
    const cells = [time.toLocaleTimeString(), row.client_id || "-", row.model_group || "-", row.api_shape || "-",
      String(row.status) + (row.completed === 0 ? " (left)" : ""), row.streamed ? "yes" : "", int(row.latency_ms),
      int(row.first_event_ms), int(row.input_tokens), int(row.output_tokens), int(row.cache_read_tokens),
      int(row.cache_write_tokens), priced, memoryCell(row)];
    for (const cell of cells) tr.append(el("td", {}, cell));
    body.append(tr);
  }
  if (rows.length) state.newest = Math.max(state.newest, ...rows.map((r) => r.ts_ms));
}

async function refreshStatus() {
  const status = await api("status");
  const usage = status.usage;
  const line = document.getElementById("store-status");
  line.textContent = !usage.enabled ? "usage recording is off" :
    `store ${usage.store_ok ? "ok" : "failing: " + (usage.last_error || "not written yet")} · ` +
    `${int(usage.written)} written · ${int(usage.queued)} queued · ${int(usage.dropped)} dropped`;
  line.className = usage.enabled && !usage.store_ok && usage.last_error ? "error" : "muted";
}

async function refreshReports() {
  const params = { range: state.range, by: state.by };
  const [summary, series, latency] = await Promise.all([api("summary", params), api("timeseries", params),
                                                         api("latency", params)]);
  renderCards(summary);
  renderChart(series);
  renderLatency(latency);
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
  setupLogin(refreshAll);
  for (const id of ["range", "by"]) {
    document.getElementById(id).addEventListener("change", (event) => {
      state[id] = event.target.value;
      refreshReports().catch(() => {});
    });
  }
  refreshAll();
  setInterval(() => { if (!document.hidden) refreshLive().catch(() => {}); }, LIVE_EVERY_MS);
  setInterval(() => { if (!document.hidden) refreshReports().catch(() => {}); }, REPORT_EVERY_MS);
});
