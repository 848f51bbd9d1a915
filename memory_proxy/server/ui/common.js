// What the dashboard's pages share (usage.html and memory.html, in the shell page.html): DOM helpers, the JSON API
// under /ui/api/ (docs/usage.md, docs/memory.md) and the front-door key login.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const pad = (n) => String(n).padStart(2, "0");
const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;  // local

// This browser's time zone as UTC±hh:mm, for the heads of columns of local times.
function zone() {
  const minutes = -new Date().getTimezoneOffset();
  const abs = Math.abs(minutes);
  return `UTC${minutes < 0 ? "−" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

const int = (n) => (n === null || n === undefined ? "-" : Math.round(n).toLocaleString("en-US"));

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// GET api/<what>?<params> (or `init` for another method); a failure throws an ApiError with the
// proxy's own message. 401 means "log in to the dashboard", nothing else.
async function api(what, params = {}, init = {}) {
  const query = new URLSearchParams(params).toString();
  const answer = await fetch(`api/${what}${query ? "?" + query : ""}`, { credentials: "same-origin", ...init });
  if (answer.status === 401) { showLogin(); throw new ApiError("login required", 401, "login_required"); }
  if (!answer.ok) {
    let message = `${what}: ${answer.status}`, code = null;
    try {
      const error = (await answer.json()).error || {};
      message = error.message || message;
      code = error.code || error.type || null;
    } catch (ignored) { /* not JSON: keep the status */ }
    throw new ApiError(message, answer.status, code);
  }
  return answer.json();
}

function showLogin() {
  const form = document.getElementById("login");
  if (form.hidden) {  // once: the next 401s of the same page find it open
    form.hidden = false;
    document.getElementById("login-key").focus();
  }
  document.getElementById("main").hidden = true;
}

// "Log out" only where keys are set, i.e. where there is a cookie to forget; it reloads the page,
// which then finds no cookie and asks for a key again.
async function showLogout() {
  const button = document.getElementById("logout");
  button.hidden = !(await api("status")).login_required;
}

function setupLogin(loggedIn) {
  const logout = document.getElementById("logout");
  logout.addEventListener("click", async () => {
    await fetch("api/logout", { method: "POST", credentials: "same-origin" });
    location.reload();
  });
  showLogout().catch(() => {});
  document.getElementById("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("login-key").value;
    const answer = await fetch("api/login", { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json" }, body: JSON.stringify({ key }) });
    if (!answer.ok) { document.getElementById("login-error").textContent = "wrong key"; return; }
    document.getElementById("login-key").value = "";
    document.getElementById("login-error").textContent = "";
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    showLogout().catch(() => {});
    loggedIn();
  });
}
