// The dashboard's plumbing: the token, API calls (relative addresses, so any path prefix
// works), DOM helpers, number and time formats, and the one poller.
"use strict";

// The token comes in a #token= address: kept, and taken out of the address bar, the history
// and screenshots. Pasted into a tab already open, it reloads the page, whose buttons and
// calls were made without it.
function takeToken() {
  const params = new URLSearchParams(location.hash.startsWith("#token=") ? location.hash.slice(1) : "");
  if (!params.get("token")) { return false; }
  localStorage.setItem("pgqueue-token", params.get("token"));
  history.replaceState(null, "", location.pathname + location.search + "#/");
  return true;
}
takeToken();
window.addEventListener("hashchange", event => {
  if (takeToken()) { event.stopImmediatePropagation(); location.reload(); }
});
export const token = localStorage.getItem("pgqueue-token");
export const readOnly = !token;
export const READ_ONLY_HINT = "read-only: start `pgqueue serve --token` and open its #token= address";

export async function call(path, { method = "GET", body } = {}) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  if (body !== undefined) { headers["Content-Type"] = "application/json"; }
  const res = await fetch("api/" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    let detail = data.detail;
    if (Array.isArray(detail)) { detail = detail.map(d => d.msg).join("; "); }
    if (res.status === 401) { detail = "a token is needed: open the #token= address `pgqueue serve` printed"; }
    throw Object.assign(new Error(detail || res.statusText), { status: res.status });
  }
  return data;
}

// el("td", {class: "num"}, "text", child...) -> element; attributes set as properties
// only for the few that need it (the rest as attributes).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) { continue; }
    if (k === "onclick" || k === "onchange" || k === "oninput" || k === "onsubmit") {
      node.addEventListener(k.slice(2), v);
    } else if (k === "dataset") {
      Object.assign(node.dataset, v);
    } else if (k === "value" || k === "checked") {
      node[k] = v;
    } else {
      node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) { continue; }
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function td(text, cls) { return el("td", { class: cls }, text ?? ""); }

export function link(href, text) { return el("a", { href }, text); }

export function jobLink(id) { return link(`#/jobs/${id}`, String(id)); }

export function fmtNum(n) {
  if (n === null || n === undefined) { return "–"; }
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 });
}

export function fmtSecs(s) {
  if (s === null || s === undefined || Number.isNaN(s)) { return "–"; }
  s = Number(s);
  if (s < 1) { return Math.round(s * 1000) + " ms"; }
  if (s < 60) { return s.toFixed(1) + " s"; }
  if (s < 3600) { return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"; }
  if (s < 86400) { return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min"; }
  return Math.floor(s / 86400) + " d " + Math.round((s % 86400) / 3600) + " h";
}

export function fmtPct(x) {
  return x === null || x === undefined ? "–" : (100 * x).toFixed(x > 0 && x < 0.01 ? 2 : 1) + " %";
}

export function fmtTime(iso) {
  if (!iso) { return "–"; }
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

export function timeEl(iso) {
  return iso ? el("time", { datetime: iso, title: iso }, fmtTime(iso)) : "–";
}

export function progressEl(progress, message) {
  if (progress === null || progress === undefined) { return ""; }
  const pct = Math.round(100 * Math.max(0, Math.min(1, progress)));
  return el("span", { class: "progress" },
    el("progress", { max: "1", value: String(progress), "aria-label": `progress ${pct} %` }),
    el("span", { class: "progress-text" }, `${pct} %` + (message ? ` ${message}` : "")));
}

export function notice(text) { document.getElementById("notice").textContent = text || ""; }

// The state line, rewritten only when it changes (a screen reader reads it then); `time`
// beside it, outside the announced region.
export function status(text, time = "") {
  const node = document.getElementById("status");
  if (node.textContent !== text) { node.textContent = text; }
  document.getElementById("status-time").textContent = time;
}

// One confirmation dialog for every destructive action; resolves true on "Confirm".
export function confirmAction(text, verb) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = verb;
  return new Promise(resolve => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}

// The poller: one request per view at a time, never more often than once a second, slower
// on errors, and paused while the tab is hidden.
export class Poller {
  constructor() {
    this.timer = null; this.job = null; this.failures = 0; this.generation = 0; this.busy = false;
    this.lastOk = null;
    this.onSuccess = () => {}; // after a poll of the current view that goes on polling
  }

  // job(): one request and its rendering; returns the seconds until the next poll (or null).
  start(job) {
    this.job = job; this.failures = 0; this.generation += 1; this.busy = false;
    this.run(this.generation);
  }

  async run(generation) {
    clearTimeout(this.timer);
    if (!this.job || generation !== this.generation) { return; }
    if (document.hidden || this.busy) { return; } // visibilitychange resumes it
    let next, failure = null;
    this.busy = true;
    try {
      next = await this.job();
    } catch (e) {
      failure = e;
    } finally {
      this.busy = false;
    }
    // A poll of a view no longer shown (the address changed while it was in flight) says
    // nothing: its word would land on the view shown now.
    if (generation !== this.generation) { return; }
    if (failure === null) {
      this.failures = 0;
      this.lastOk = new Date();
      document.body.classList.remove("stale");
      if (next === null || next === undefined) { return; } // a view read once says so itself
      this.onSuccess();
    } else {
      this.failures += 1;
      // The figures on the page are the last ones read: dimmed, and the line says since when.
      document.body.classList.add("stale");
      status("error: " + failure.message, this.lastOk ? "figures as of " + this.lastOk.toLocaleTimeString() : "");
      next = Math.min(30, 2 ** this.failures);
    }
    this.timer = setTimeout(() => this.run(generation), Math.max(1, next) * 1000);
  }

  now() { this.run(this.generation); }
}

export const poller = new Poller();
document.addEventListener("visibilitychange", () => { if (!document.hidden) { poller.now(); } });
