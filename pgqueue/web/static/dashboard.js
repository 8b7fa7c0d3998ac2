"use strict";
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) {
  localStorage.setItem("pgqueue-token", params.get("token"));
  // Keep the token out of the address bar, the history and screenshots.
  history.replaceState(null, "", location.pathname + location.search);
}
const token = localStorage.getItem("pgqueue-token");

async function call(path, method = "GET") {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const res = await fetch(path, { method, headers });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) { throw new Error(body.detail || res.statusText); }
  return body;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) { td.className = cls; }
  return td;
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.addEventListener("click", onClick);
  return b;
}

async function act(path, what) {
  try { const r = await call(path, "POST"); notice(r.detail || what); }
  catch (e) { notice(what + " failed: " + e.message); }
  refresh();
}

function notice(text) { document.getElementById("notice").textContent = text; }

function fixed(x) { return x === null || x === undefined ? "" : Number(x).toFixed(3); }

function renderQueues(stats, settings) {
  const paused = new Set(settings.filter(q => q.paused).map(q => q.name));
  const tbody = document.querySelector("#queues tbody");
  tbody.replaceChildren();
  for (const q of stats) {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.queue;
    tr.append(cell(q.queue + (paused.has(q.queue) ? " (paused)" : ""), "name"));
    for (const k of ["queued", "scheduled", "running", "succeeded", "dead", "cancelled"]) {
      tr.append(cell(q[k], "num " + k));
    }
    tr.append(cell(q.throughput, "num"), cell(fixed(q.oldest_waiting_age), "num"),
              cell(fixed(q.latency_p50) + " / " + fixed(q.latency_p95), "num"));
    const td = document.createElement("td");
    td.append(paused.has(q.queue)
      ? button("resume", "resume", () => act(`/api/queues/${encodeURIComponent(q.queue)}/resume`, "resume"))
      : button("pause", "pause", () => act(`/api/queues/${encodeURIComponent(q.queue)}/pause`, "pause")));
    tr.append(td);
    tbody.append(tr);
  }
}

function renderChart(points) {
  const svg = document.querySelector("#chart svg");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(1, ...points.map(p => p.succeeded + p.dead));
  const maxLat = Math.max(0.001, ...points.map(p => p.latency_p50 || 0));
  const w = 600 / Math.max(points.length, 1);
  let path = "";
  points.forEach((p, i) => {
    const hs = 130 * p.succeeded / max, hd = 130 * p.dead / max;
    for (const [h, y, color] of [[hs, 135 - hs, "#15803d"], [hd, 135 - hs - hd, "#b91c1c"]]) {
      if (h <= 0) { continue; }
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", i * w + 1); r.setAttribute("width", Math.max(w - 2, 1));
      r.setAttribute("y", y); r.setAttribute("height", h); r.setAttribute("fill", color);
      svg.append(r);
    }
    if (p.latency_p50 !== null) {
      path += (path ? "L" : "M") + (i * w + w / 2) + "," + (135 - 130 * p.latency_p50 / maxLat);
    }
  });
  if (path) {
    const line = document.createElementNS(ns, "path");
    line.setAttribute("d", path); line.setAttribute("stroke", "#1d4ed8");
    line.setAttribute("fill", "none"); line.setAttribute("stroke-width", "1.5");
    svg.append(line);
  }
}

function renderWorkers(workers) {
  const tbody = document.querySelector("#workers tbody");
  tbody.replaceChildren();
  for (const w of workers) {
    const tr = document.createElement("tr");
    tr.append(cell(String(w.id).slice(0, 8)), cell(w.host), cell(w.pid, "num"),
              cell(w.queues.join(",")), cell(w.concurrency, "num"), cell(w.running, "num"),
              cell(Number(w.heartbeat_age).toFixed(1), "num"), cell(w.alive ? "yes" : "NO"));
    tbody.append(tr);
  }
  if (!workers.length) {
    const tr = document.createElement("tr"); tr.append(cell("no workers", "muted"));
    tbody.append(tr);
  }
}

function renderFailures(jobs) {
  const tbody = document.querySelector("#failures tbody");
  tbody.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    const idCell = document.createElement("td");
    const link = document.createElement("a");
    link.textContent = j.id; link.addEventListener("click", () => showJob(j.id));
    idCell.append(link);
    const td = document.createElement("td");
    td.append(button("retry", "retry", () => act(`/api/jobs/${j.id}/retry`, "retry")));
    tr.append(idCell, cell(j.queue), cell(j.task), cell(j.attempts, "num"),
              cell(j.finished_at), cell(j.last_error, "err"), td);
    tbody.append(tr);
  }
}

async function showJob(id) {
  const job = await call(`/api/jobs/${id}`);
  document.getElementById("job").hidden = false;
  document.getElementById("job-id").textContent = id;
  const body = document.getElementById("job-body");
  body.replaceChildren();
  const table = document.createElement("table");
  for (const k of ["task", "queue", "state", "attempts", "max_attempts", "priority", "run_at",
                   "created_at", "started_at", "finished_at", "worker_id", "last_error"]) {
    const tr = document.createElement("tr");
    tr.append(cell(k, "muted"), cell(job[k]));
    table.append(tr);
  }
  const args = document.createElement("pre");
  args.textContent = "args " + JSON.stringify(job.args) + "\nkwargs " + JSON.stringify(job.kwargs)
    + "\nresult " + JSON.stringify(job.result);
  const errors = document.createElement("pre");
  errors.textContent = job.errors.map(e => `attempt ${e.attempt} at ${e.at}: ${e.error}\n${e.traceback || ""}`).join("\n") || "no errors";
  body.append(table, args, errors,
    button("retry", "retry", () => act(`/api/jobs/${id}/retry`, "retry").then(() => showJob(id))),
    button("cancel", "cancel", () => act(`/api/jobs/${id}/cancel`, "cancel").then(() => showJob(id))));
}

document.getElementById("job-close").addEventListener("click", () => {
  document.getElementById("job").hidden = true;
});

async function refresh() {
  try {
    const [stats, settings, points, workers, dead] = await Promise.all([
      call("/api/stats"), call("/api/queues"), call("/api/throughput?minutes=60"),
      call("/api/workers"), call("/api/jobs?state=dead&limit=20"),
    ]);
    renderQueues(stats, settings); renderChart(points); renderWorkers(workers);
    renderFailures(dead);
    document.getElementById("status").textContent =
      "live, updated " + new Date().toLocaleTimeString() + (token ? "" : " (read-only: no token)");
  } catch (e) {
    document.getElementById("status").textContent = "error: " + e.message;
  }
}
refresh();
setInterval(refresh, 1000);
