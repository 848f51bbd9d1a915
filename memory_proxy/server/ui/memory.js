// The dashboard's memory page: one client id's Supermemory memories (list, search, forget one)
// and its memory signals from the usage record, from /ui/api/memory/ (docs/memory.md).
"use strict";

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const PAGE = 50;
const page = { id: null, next: 1, mode: "list", query: "", range: "7d", forgetting: null };

function when(value) {  // an ISO date or ms since the epoch, in local time
  if (value === null || value === undefined) return "-";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${day(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function show(id, text) {
  const node = document.getElementById(id);
  node.textContent = text || "";
  node.hidden = !text;
}

// A failed call: Supermemory's failures (and ours) as one readable line, never a stack.
function failed(error) {
  if (error.status === 401) return;
  const node = document.getElementById("memory-error");
  node.dataset.kind = error.code || "error";
  show("memory-error", error.message || String(error));
}

function validId(id) {
  return ID_RE.test(id) && id.replace(/\./g, "") !== "";
}

async function loadKnown() {
  const select = document.getElementById("known");
  const answer = await api("memory/ids");
  for (const entry of answer.ids) {
    const label = entry.id + (entry.requests ? ` (${int(entry.requests)} request${entry.requests === 1 ? "" : "s"})`
      : entry.sources.includes("config") ? " (config)" : "");
    select.append(el("option", { value: entry.id }, label));
  }
  pickInList(page.id);
}

function pickInList(id) {  // the list shows the open id when it has it
  const select = document.getElementById("known");
  select.value = [...select.options].some((o) => o.value === id) ? id : "";
}

function openId(id) {
  if (!validId(id)) {
    show("pick-error", "an id is 1-128 letters, digits and . _ : - (not only dots)");
    return;
  }
  show("pick-error", "");
  show("memory-error", "");
  show("notice", "");
  page.id = id;
  pickInList(id);
  history.replaceState(null, "", "?id=" + encodeURIComponent(id));
  for (const node of document.querySelectorAll(".id-name")) node.textContent = id;
  document.getElementById("nothing-chosen").hidden = true;
  document.getElementById("chosen").hidden = false;
  document.getElementById("query").value = "";
  listMemories(true).catch(failed);
  loadSignals().catch(failed);
}

function memoryRow(item, score) {
  const tr = el("tr", { "data-memory-id": item.id });
  tr.append(el("td", { class: "when" }, when(item.created_at || item.updated_at)));
  tr.append(el("td", { class: "score" }, score === undefined ? "" : score.toFixed(2)));
  const text = el("td", { class: "memory", title: item.memory || "" }, item.summary);
  tr.append(text);
  const cell = el("td");
  const button = el("button", { type: "button", class: "forget", "data-memory-id": item.id,
                                "aria-label": `Forget: ${item.summary}` }, "Forget…");
  button.addEventListener("click", () => askToForget(item));
  cell.append(button);
  tr.append(cell);
  return tr;
}

function setMode(mode) {
  page.mode = mode;
  document.getElementById("memories").dataset.mode = mode;
  document.getElementById("when-head").textContent = `${mode === "search" ? "updated" : "created"} (${zone()})`;
  document.getElementById("show-all").hidden = mode !== "search";
}

async function listMemories(fresh) {
  const body = document.querySelector("#memories tbody");
  if (fresh) { page.next = 1; body.replaceChildren(); }
  setMode("list");
  const id = page.id;
  const answer = await api("memory/list", { id, limit: PAGE, page: page.next });
  if (id !== page.id || page.mode !== "list") return;  // another id or a search came first
  for (const item of answer.memories) body.append(memoryRow(item));
  document.getElementById("memory-count").textContent =
    `${int(answer.total)} memor${answer.total === 1 ? "y" : "ies"}, newest first`;
  show("memories-empty", answer.total ? "" : "No memories for this id yet.");
  document.getElementById("more").hidden = answer.page >= answer.total_pages;
  page.next = answer.page + 1;
  document.body.dataset.loaded = "memories";
}

async function search(event) {
  event.preventDefault();
  const query = document.getElementById("query").value.trim();
  if (!query) { listMemories(true).catch(failed); return; }
  show("memory-error", "");
  page.query = query;
  setMode("search");
  const answer = await api("memory/search", { id: page.id, q: query, limit: 20 });
  if (page.mode !== "search" || page.query !== query) return;
  const body = document.querySelector("#memories tbody");
  body.replaceChildren(...answer.results.map((r) => memoryRow(r, r.similarity)));
  document.getElementById("memory-count").textContent = `${answer.results.length} result(s) for “${query}”`;
  show("memories-empty", answer.results.length ? "" : "Nothing in this memory matches.");
  document.getElementById("more").hidden = true;
  document.body.dataset.loaded = "search";
}

function askToForget(item) {
  page.forgetting = item;
  document.getElementById("confirm-text").textContent = item.summary;
  const dialog = document.getElementById("confirm");
  dialog.returnValue = "";
  dialog.showModal();
}

async function confirmed() {
  const dialog = document.getElementById("confirm");
  const item = page.forgetting;
  page.forgetting = null;
  if (dialog.returnValue !== "forget" || !item) return;
  show("memory-error", "");
  try {
    await api("memory/forget", {}, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: page.id, memory_id: item.id }) });
  } catch (error) {  // say which action failed: the message alone reads like the list failed
    error.message = `Not forgotten: “${item.summary}”: ${error.message}`;
    throw error;
  }
  const row = document.querySelector(`#memories tr[data-memory-id="${CSS.escape(item.id)}"]`);
  if (row) row.remove();
  show("notice", `Forgotten: “${item.summary}”`);
  document.body.dataset.forgotten = item.id;
  if (page.mode === "list") await listMemories(true);
}

function card(label, value, name) {
  const node = el("div", { class: "card", "data-signal": name });
  node.append(el("h3", {}, label), el("p", { class: "figure" }, value));
  return node;
}

async function loadSignals() {
  const id = page.id;
  const cards = document.getElementById("signals");
  const rows = document.querySelector("#signal-rows tbody");
  let data;
  try {
    data = await api("memory/signals", { id, range: page.range });
  } catch (error) {
    if (error.status !== 503) throw error;
    data = null;
  }
  if (id !== page.id) return;
  cards.replaceChildren();
  rows.replaceChildren();
  if (!data || !data.enabled) {
    show("signals-note", data ? "Usage recording is off (memory_proxy.usage.enabled: false)."
      : "No usage recorded yet.");
    return;
  }
  show("signals-note", data.requests ? "" : "No requests from this id in this period.");
  cards.append(card("requests", int(data.requests), "requests"),
    card("Supermemory-backed", int(data.supermemory_requests), "supermemory_requests"),
    card("context modified", int(data.context_modified), "context_modified"),
    card("chunks retrieved", int(data.chunks_retrieved), "chunks_retrieved"),
    card("Supermemory errors", int(data.memory_errors), "memory_errors"),
    card("Cloudflare retries", int(data.cloudflare_retries), "cloudflare_retries"));
  if (data.memory_errors) cards.querySelector('[data-signal="memory_errors"]').classList.add("bad");
  if (data.last_error) {
    cards.append(card("last Supermemory error", `${when(data.last_error.ts_ms)}: ` +
      data.last_error.message, "last_error"));
  }
  for (const r of data.recent) {
    const tr = el("tr", { "data-request-id": r.request_id, class: r.sm_error ? "error" : "" });
    for (const cell of [when(r.ts_ms), r.model_group || "-", String(r.status ?? "-"),
      r.sm_context_modified === null ? "-" : r.sm_context_modified ? "yes" : "no", int(r.sm_chunks_retrieved),
      r.cf_retries ? "yes" : "", r.sm_error || ""]) tr.append(el("td", {}, cell));
    rows.append(tr);
  }
  document.body.dataset.signals = id;
}

document.addEventListener("DOMContentLoaded", () => {
  setMode("list");
  document.getElementById("signal-time").textContent = `time (${zone()})`;
  setupLogin(() => { loadKnown().catch(failed); if (page.id) openId(page.id); });
  document.getElementById("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = document.getElementById("typed").value.trim();
    openId(typed || document.getElementById("known").value);
  });
  document.getElementById("known").addEventListener("change", (event) => {
    document.getElementById("typed").value = "";
    if (event.target.value) openId(event.target.value);
  });
  document.getElementById("search").addEventListener("submit", (event) => search(event).catch(failed));
  document.getElementById("show-all").addEventListener("click", () => {
    document.getElementById("query").value = "";
    listMemories(true).catch(failed);
  });
  document.getElementById("more").addEventListener("click", () => listMemories(false).catch(failed));
  document.getElementById("range").addEventListener("change", (event) => {
    page.range = event.target.value;
    loadSignals().catch(failed);
  });
  document.getElementById("confirm").addEventListener("close", () => confirmed().catch(failed));
  const wanted = new URLSearchParams(location.search).get("id");
  if (wanted) page.id = wanted;
  loadKnown().then(() => document.body.dataset.ids = "loaded").catch(failed);
  if (wanted) openId(wanted);
});
