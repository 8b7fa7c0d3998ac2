// The dashboard: a view per address (#/, #/jobs, #/jobs/ID, #/queues[/NAME], #/tasks[/NAME],
// #/workers), each drawn from one API call per poll.
import {
  call, el, td, link, jobLink, fmtNum, fmtSecs, fmtPct, timeEl, progressEl, notice, status,
  confirmAction, poller, readOnly, READ_ONLY_HINT,
} from "./core.js";
import { Chart, drawSeries } from "./charts.js";

const view = document.getElementById("view");
const windowSelect = document.getElementById("window");
windowSelect.value = localStorage.getItem("pgqueue-window") || "3600";
windowSelect.addEventListener("change", () => {
  localStorage.setItem("pgqueue-window", windowSelect.value);
  route();
});
const windowLabel = () => windowSelect.options[windowSelect.selectedIndex].textContent;
// Long windows change slowly: poll them less often (1 s for an hour, 30 s for a week).
const overviewInterval = () => Math.min(30, Math.max(1, Number(windowSelect.value) / 3600));

// Said by the poller after each poll of the view shown (a poll of the one before, still in
// flight when the address changed, says nothing).
poller.onSuccess = () => live();

function live() {
  status("live" + (readOnly ? " (read-only: no token)" : ""), "updated " + new Date().toLocaleTimeString());
}

// A block of text that scrolls past its height: focusable, so a keyboard can scroll it.
function scrollPre(text, label) {
  return el("pre", { tabindex: "0", "aria-label": label }, text);
}

// An error in a list: a few lines of it (the whole text on hover, and on the job's page).
function errTd(text, cls = "") {
  return el("td", { class: ("err " + cls).trim() }, text ? el("span", { class: "clamp", title: text }, text) : "");
}

// Rows keyed by `key`: a row is rebuilt only when its data changed, so focus and selection
// in unchanged rows survive the next poll. A changed row that holds the keyboard focus hands
// it to the same control of its new self; one that holds a text selection waits until the
// selection is gone (its figures would move under the mouse).
const FOCUSABLE = "a, button, input, select, [tabindex]";

function fillRows(tbody, items, key, render, empty) {
  const old = new Map([...tbody.children].filter(tr => tr.dataset.key).map(tr => [tr.dataset.key, tr]));
  const selection = window.getSelection();
  const selecting = selection && !selection.isCollapsed ? selection.anchorNode : null;
  const active = document.activeElement;
  let refocus = null;
  const rows = items.map(item => {
    const k = String(key(item)), sig = JSON.stringify(item);
    const prev = old.get(k);
    if (prev && (prev.dataset.sig === sig || (selecting && prev.contains(selecting)))) { return prev; }
    const tr = render(item);
    tr.dataset.key = k; tr.dataset.sig = sig;
    if (prev && active && prev.contains(active)) {
      refocus = [tr, [...prev.querySelectorAll(FOCUSABLE)].indexOf(active)];
    }
    return tr;
  });
  if (!rows.length && empty) { rows.push(el("tr", {}, el("td", { class: "muted", colspan: "20" }, empty))); }
  // Rows kept stay where they are in the document (detaching one drops its focus and the
  // selection in it): the others go, then each row is put in its place, moving only those
  // whose order changed.
  const keep = new Set(rows);
  for (const tr of [...tbody.children]) { if (!keep.has(tr)) { tr.remove(); } }
  let cursor = tbody.firstChild;
  for (const tr of rows) {
    if (tr === cursor) { cursor = cursor.nextSibling; } else { tbody.insertBefore(tr, cursor); }
  }
  if (refocus) { refocus[0].querySelectorAll(FOCUSABLE)[refocus[1]]?.focus({ preventScroll: true }); }
}

function table(caption, headers, id) {
  const tbody = el("tbody");
  const t = el("table", { id },
    caption ? el("caption", { class: "sr-only" }, caption) : null,
    el("thead", {}, el("tr", {}, headers.map(h => {
      const [text, cls] = Array.isArray(h) ? h : [h, ""];
      // A column of buttons has a name for screen readers all the same.
      return el("th", { scope: "col", class: cls || null }, text || el("span", { class: "sr-only" }, "actions"));
    }))), tbody);
  // Focusable, so a keyboard can scroll a wide table on a narrow screen.
  // Named apart from the section around it (two landmarks of one name confuse a reader).
  const node = el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": `${caption || "the"} table` }, t);
  return { node, tbody };
}

function actionButton(label, cls, onClick, described) {
  return el("button", {
    class: cls, onclick: onClick, disabled: readOnly,
    title: readOnly ? READ_ONLY_HINT : null, "aria-label": described || null,
  }, label);
}

async function act(path, what, method = "POST", body = undefined) {
  let ok = false;
  try {
    const r = await call(path, { method, body });
    notice(r.detail || what + " done");
    ok = true;
  } catch (e) {
    notice(what + " failed: " + e.message);
  }
  poller.now();
  return ok;
}

// The queue's name goes in the body: in the path, "." and ".." are folded away by the browser.
function queueAct(queue, what) {
  return act(`queues/${what}`, what, "POST", { name: queue });
}

function bulkText(r) {
  if (!r || r.asked === undefined) { return ""; }
  const verb = { retry: "queued again", cancel: "cancelled", delete: "deleted" }[r.action];
  let text = `${r.done.length} of ${r.asked} job${r.asked === 1 ? "" : "s"} ${verb}`;
  if (r.skipped.length) {
    text += "; skipped: " + r.skipped.slice(0, 5).map(s => `${s.id} (${s.reason})`).join(", ")
      + (r.skipped.length > 5 ? ` and ${r.skipped.length - 5} more` : "");
  }
  return text;
}

function section(id, title, ...children) {
  return el("section", { id, "aria-labelledby": id + "-title" },
    el("h2", { id: id + "-title" }, title), ...children);
}

// -- overview ------------------------------------------------------------------------------

function queueRow(q) {
  const name = encodeURIComponent(q.queue);
  const capped = q.capped ? "+" : "";
  return el("tr", { dataset: { queue: q.queue } },
    el("td", { class: "name" }, link(`#/queues/${name}`, q.queue), q.paused ? " " : "",
      q.paused ? el("span", { class: "chip" }, "paused") : ""),
    td(fmtNum(q.queued) + capped, "num queued"), td(fmtNum(q.scheduled) + capped, "num scheduled"),
    td(fmtNum(q.running) + capped, "num running"), td(fmtNum(q.succeeded), "num succeeded"),
    td(fmtNum(q.dead), "num dead"), td(fmtNum(q.cancelled), "num cancelled hide-narrow"),
    td(fmtNum(q.throughput), "num"), td(fmtPct(q.failure_ratio), "num hide-narrow"),
    td(fmtSecs(q.oldest_waiting_age), "num"),
    td(fmtSecs(q.latency_p50) + " / " + fmtSecs(q.latency_p95), "num hide-narrow"),
    el("td", {}, q.paused
      ? actionButton("resume", "resume", () => queueAct(q.queue, "resume"), `resume queue ${q.queue}`)
      : actionButton("pause", "pause", () => queueAct(q.queue, "pause"), `pause queue ${q.queue}`)));
}

const QUEUE_HEADERS = () => ["queue", ["queued", "num"], ["scheduled", "num"], ["running", "num"],
  ["succeeded", "num"], ["dead", "num"], ["cancelled", "num hide-narrow"], ["jobs/s", "num"],
  ["failed", "num hide-narrow"], ["oldest waiting", "num"], ["latency p50 / p95", "num hide-narrow"],
  ["", ""]];

function warningsBox() {
  const list = el("ul");
  const box = el("section", { class: "warnings", id: "warnings", hidden: true, "aria-label": "Warnings" }, list);
  return {
    node: box,
    update(warnings) {
      box.hidden = !warnings.length;
      list.replaceChildren(...warnings.map(w => el("li", { "data-task": w.task },
        w.text, " ", link(`#/tasks/${encodeURIComponent(w.task)}`, "see the task"))));
    },
  };
}

function runningRow(j) {
  return el("tr", {}, el("td", {}, jobLink(j.id)), td(j.task), td(j.queue, "hide-narrow"),
    td(fmtSecs(j.running_for), "num"), td(`${j.attempts} of ${j.max_attempts}`, "num hide-narrow"),
    el("td", {}, progressEl(j.progress, j.progress_message) || (j.cancel_requested ? "cancel requested" : "")));
}

function failureRow(j) {
  return el("tr", { dataset: { job: j.id } }, el("td", {}, jobLink(j.id)), td(j.queue, "hide-narrow"),
    td(j.task), td(`${j.attempts} of ${j.max_attempts}`, "num hide-narrow"), el("td", {}, timeEl(j.finished_at)),
    errTd(j.last_error),
    el("td", {}, actionButton("retry", "retry", () => act(`jobs/${j.id}/retry`, "retry"), `retry job ${j.id}`)));
}

function workerRow(w) {
  return el("tr", { dataset: { worker: w.id } },
    td(w.id.slice(0, 8)), td(w.host), td(w.pid, "num"), td((w.queues || []).join(", ")),
    td(w.tasks ? w.tasks.length + " tasks" : "all", "hide-narrow"),
    td(w.concurrency, "num"), td(w.running, "num running"),
    td(fmtSecs(w.heartbeat_age) + " ago", "num"), td(w.version || "", "hide-narrow"),
    el("td", { class: w.alive ? "ok" : "bad" }, w.alive ? "alive" : "stopped heartbeating"));
}

const WORKER_HEADERS = ["id", "host", ["pid", "num"], "queues", ["tasks", "hide-narrow"],
  ["concurrency", "num"], ["running", "num"], ["last heartbeat", "num"], ["version", "hide-narrow"],
  "status"];

function chartsSection(what) {
  const th = el("div", { class: "chart", id: "throughput-chart" });
  const lat = el("div", { class: "chart", id: "latency-chart" });
  const title1 = el("h2", { id: "tp-title" }, "Throughput ", el("span", { class: "muted" }, `(${what}, jobs finished per minute)`));
  const title2 = el("h2", { id: "lat-title" }, "Latency ", el("span", { class: "muted" }, "(enqueue or due time to start, seconds)"));
  const node = el("div", { class: "grid2" },
    el("section", { "aria-labelledby": "tp-title" }, title1, th),
    el("section", { "aria-labelledby": "lat-title" }, title2, lat));
  const charts = [new Chart(th, "Throughput chart, jobs per minute"), new Chart(lat, "Latency chart, seconds")];
  return { node, draw: series => drawSeries(series, ...charts) };
}

function overviewView() {
  const warn = warningsBox();
  const queues = table("Queues", QUEUE_HEADERS(), null);
  const charts = chartsSection("by queue");
  const running = table("Running jobs", ["job", "task", ["queue", "hide-narrow"], ["running for", "num"], ["attempt", "num hide-narrow"], "progress"]);
  const workers = table("Workers", WORKER_HEADERS);
  const failures = table("Recent failures", ["job", ["queue", "hide-narrow"], "task", ["attempts", "num hide-narrow"], "finished", "error", ""]);
  const qTitle = el("span", { class: "muted" });
  const fTitle = el("span", { class: "muted" });
  view.replaceChildren(warn.node,
    el("section", { id: "queues", "aria-labelledby": "queues-title" },
      el("h2", { id: "queues-title" }, "Queues ", qTitle), queues.node),
    charts.node,
    section("running", "Running now", running.node),
    section("workers", "Workers", workers.node),
    el("section", { id: "failures", "aria-labelledby": "failures-title" },
      el("h2", { id: "failures-title" }, "Recent failures ", fTitle), failures.node));
  return async () => {
    const o = await call(`overview?window=${windowSelect.value}&series=queue`);
    qTitle.textContent = `(succeeded, dead, cancelled, rates: last ${windowLabel()})`;
    fTitle.textContent = `(dead jobs, last ${windowLabel()})`;
    warn.update(o.warnings);
    fillRows(queues.tbody, o.queues, q => q.queue, queueRow, "no jobs yet");
    charts.draw(o.series);
    fillRows(running.tbody, o.running, j => j.id, runningRow, "nothing running");
    fillRows(workers.tbody, o.workers, w => w.id, workerRow, "no workers");
    fillRows(failures.tbody, o.failures, j => j.id, failureRow, "no failures");
    return overviewInterval();
  };
}

// -- queues, tasks, workers ------------------------------------------------------------------

function limitsText(q) {
  const parts = [];
  if (q.concurrency_limit !== null && q.concurrency_limit !== undefined) { parts.push(`at most ${q.concurrency_limit} running`); }
  if (q.rate_limit !== null && q.rate_limit !== undefined) { parts.push(`${q.rate_limit} starts per ${fmtSecs(q.rate_period)}`); }
  if (q.per_key_limit !== null && q.per_key_limit !== undefined) { parts.push(`at most ${q.per_key_limit} running per key, keys take turns`); }
  return parts.join(", ") || "none";
}

function queuesView() {
  const warn = warningsBox();
  const queues = table("Queues", [...QUEUE_HEADERS().slice(0, -1), "limits", ["workers", "num"], ""]);
  const charts = chartsSection("by queue");
  view.replaceChildren(warn.node, section("queues", "Queues", queues.node), charts.node);
  return async () => {
    const o = await call(`overview?window=${windowSelect.value}&series=queue`);
    warn.update(o.warnings);
    fillRows(queues.tbody, o.queues, q => q.queue, q => {
      const tr = queueRow(q);
      const last = tr.lastElementChild;
      tr.insertBefore(td(limitsText(q)), last);
      tr.insertBefore(td(q.workers.length, "num"), last);
      return tr;
    }, "no queues yet");
    charts.draw(o.series);
    return overviewInterval();
  };
}

function figures(item, extra) {
  const rows = [
    ...extra,
    [`succeeded (${windowLabel()})`, fmtNum(item.succeeded)], [`dead (${windowLabel()})`, fmtNum(item.dead)],
    [`cancelled (${windowLabel()})`, fmtNum(item.cancelled)], ["jobs/s", fmtNum(item.throughput)],
    ["failure ratio", fmtPct(item.failure_ratio)],
    ["run time p50 / p95", fmtSecs(item.duration_p50) + " / " + fmtSecs(item.duration_p95)],
    ["latency p50 / p95", fmtSecs(item.latency_p50) + " / " + fmtSecs(item.latency_p95)],
    ["last error", item.last_error || "–"],
  ];
  return el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function oneView(kind, name) {
  const warn = warningsBox();
  const facts = el("div");
  const charts = chartsSection(kind === "queue" ? `queue ${name}` : `task ${name}`);
  const workers = table("Workers serving it", WORKER_HEADERS);
  const actions = el("div", { class: "toolbar" });
  const jobsHref = `#/jobs?${kind}=${encodeURIComponent(name)}`;
  view.replaceChildren(warn.node,
    section("facts", `${kind === "queue" ? "Queue" : "Task"} ${name}`, actions, facts,
      el("p", {}, link(jobsHref, `Jobs of this ${kind}`), " · ", link(jobsHref + "&state=dead", "its dead jobs"))),
    charts.node, section("workers", "Workers serving it", workers.node));
  return async () => {
    const o = await call(`overview?window=${windowSelect.value}&series=all&${kind}=${encodeURIComponent(name)}`);
    warn.update(o.warnings.filter(w => kind === "task" ? w.task === name : true));
    const list = kind === "queue" ? o.queues : o.tasks;
    const item = list.find(x => x[kind] === name);
    if (!item) {
      facts.replaceChildren(el("p", { class: "muted" }, `no ${kind} named ${name} has jobs or settings`));
    } else if (kind === "queue") {
      actions.replaceChildren(item.paused
        ? actionButton("resume", "resume", () => queueAct(name, "resume"))
        : actionButton("pause", "pause", () => queueAct(name, "pause")));
      facts.replaceChildren(figures(item, [
        ["state", item.paused ? "paused" : "active"], ["queued (due)", fmtNum(item.queued)],
        ["scheduled", fmtNum(item.scheduled)], ["running", fmtNum(item.running)],
        ["oldest waiting", fmtSecs(item.oldest_waiting_age)], ["limits", limitsText(item)],
      ]));
    } else {
      facts.replaceChildren(figures(item, [
        ["declared defaults", item.declared
          ? `queue ${item.queue}, priority ${item.priority}, ${item.max_attempts} attempts` + (item.timeout ? `, timeout ${fmtSecs(item.timeout)}` : "")
          : "not declared by any worker"],
        ["due", fmtNum(item.due)], ["running", fmtNum(item.running)],
        ["live workers serving it", fmtNum(item.workers.length)],
      ]));
    }
    charts.draw(o.series);
    const ids = new Set(item ? item.workers : []);
    fillRows(workers.tbody, o.workers.filter(w => ids.has(w.id)), w => w.id, workerRow, "no live worker serves it");
    return overviewInterval();
  };
}

function taskRow(t) {
  return el("tr", { dataset: { task: t.task } },
    el("td", {}, link(`#/tasks/${encodeURIComponent(t.task)}`, t.task),
      t.without_worker ? el("span", { class: "chip bad" }, " no worker serves it") : ""),
    td(t.queue ?? "–", "hide-narrow"), td(fmtNum(t.due), "num"), td(fmtNum(t.running), "num"),
    td(fmtNum(t.succeeded), "num"), td(fmtNum(t.dead), "num"), td(fmtPct(t.failure_ratio), "num"),
    td(fmtSecs(t.duration_p50) + " / " + fmtSecs(t.duration_p95), "num hide-narrow"),
    td(fmtSecs(t.latency_p50) + " / " + fmtSecs(t.latency_p95), "num hide-narrow"),
    td(t.workers.length, "num"), errTd(t.last_error, "hide-narrow"));
}

function tasksView() {
  const warn = warningsBox();
  const tasks = table("Tasks", ["task", ["queue", "hide-narrow"], ["due", "num"], ["running", "num"],
    ["succeeded", "num"], ["dead", "num"], ["failed", "num"], ["run time p50 / p95", "num hide-narrow"],
    ["latency p50 / p95", "num hide-narrow"], ["workers", "num"], ["last error", "hide-narrow"]], "tasks-table");
  const charts = chartsSection("by task");
  const title = el("span", { class: "muted" });
  view.replaceChildren(warn.node,
    el("section", { id: "tasks", "aria-labelledby": "tasks-title" },
      el("h2", { id: "tasks-title" }, "Tasks ", title), tasks.node), charts.node);
  return async () => {
    const o = await call(`overview?window=${windowSelect.value}&series=task`);
    title.textContent = `(outcomes and rates: last ${windowLabel()})`;
    warn.update(o.warnings);
    fillRows(tasks.tbody, o.tasks, t => t.task, taskRow, "no tasks yet");
    charts.draw(o.series);
    return overviewInterval();
  };
}

function workersView() {
  const workers = table("Workers", [...WORKER_HEADERS, ["started", "hide-narrow"]], "workers-table");
  const summary = el("p", { class: "muted" });
  view.replaceChildren(section("workers", "Workers", summary, workers.node));
  return async () => {
    const o = await call(`overview?window=${windowSelect.value}&series=none`);
    fillRows(workers.tbody, o.workers, w => w.id, w => {
      const tr = workerRow(w);
      tr.append(el("td", { class: "hide-narrow" }, timeEl(w.started_at)));
      return tr;
    }, "no workers");
    const alive = o.workers.filter(w => w.alive);
    const running = o.queues.reduce((s, q) => s + q.running, 0);
    summary.textContent = `${alive.length} alive of ${o.workers.length}; ${alive.reduce((s, w) => s + w.concurrency, 0)} slots; ${running} jobs running`;
    return Math.max(1, overviewInterval());
  };
}

// -- jobs explorer ---------------------------------------------------------------------------

const STATES = ["queued", "running", "succeeded", "dead", "cancelled"];

function jobsView(query) {
  const filters = new URLSearchParams(query);
  const field = (name, label, input) => el("label", {}, label, input);
  const inputs = {
    state: el("select", { name: "state" }, el("option", { value: "" }, "any"),
      STATES.map(s => el("option", { value: s }, s))),
    queue: el("input", { name: "queue", type: "text", size: "12", autocomplete: "off" }),
    task: el("input", { name: "task", type: "text", size: "16", autocomplete: "off" }),
    q: el("input", { name: "q", type: "search", size: "22", placeholder: "id, unique key, text in args or errors" }),
    since: el("input", { name: "since", type: "datetime-local" }),
    until: el("input", { name: "until", type: "datetime-local" }),
  };
  for (const [k, input] of Object.entries(inputs)) { input.value = filters.get(k) || ""; }
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("state", "State", inputs.state), field("queue", "Queue", inputs.queue),
    field("task", "Task", inputs.task), field("q", "Search", inputs.q),
    field("since", "Created from", inputs.since), field("until", "Created before", inputs.until),
    el("button", { type: "submit" }, "Search"),
    el("button", { type: "button", onclick: () => { location.hash = "#/jobs"; } }, "Reset"));
  form.addEventListener("submit", e => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) { if (input.value) { out.set(k, input.value); } }
    const next = "#/jobs" + (out.toString() ? "?" + out : "");
    if (location.hash === next) { route(); } else { location.hash = next; }
  });
  const selected = new Set();
  const count = el("span", { class: "muted", "aria-live": "polite" }, "0 selected");
  const all = el("input", { type: "checkbox", "aria-label": "select every job on this page" });
  const bulk = (action, verb) => actionButton(`${verb} selected`, action === "delete" ? "danger" : action,
    async () => {
      if (!selected.size) { notice("select jobs first"); return; }
      const n = selected.size;
      const ok = await confirmAction(`${verb} ${n} selected job${n === 1 ? "" : "s"}?`, `${verb} ${n}`);
      if (!ok) { return; }
      const ids = [...selected];
      try { notice(bulkText(await call(`jobs/bulk-${action}`, { method: "POST", body: { ids } }))); }
      catch (e) { notice(`${verb} failed: ${e.message}`); }
      selected.clear(); load(pageStart);
    });
  const jobs = table("Jobs", ["", "job", "state", ["queue", "hide-narrow"], "task", ["attempts", "num"],
    ["created", "hide-narrow"], ["finished", "hide-narrow"], "progress or error"], "jobs-table");
  jobs.node.querySelector("thead th").append(all);
  const pageInfo = el("span", { class: "muted" });
  const newer = el("button", { type: "button" }, "Newer");
  const older = el("button", { type: "button" }, "Older");
  view.replaceChildren(section("explorer", "Jobs", form,
    el("div", { class: "toolbar" }, bulk("retry", "Retry"), bulk("cancel", "Cancel"), bulk("delete", "Delete"), count),
    jobs.node, el("div", { class: "toolbar" }, newer, older, pageInfo)));
  const updateCount = () => { count.textContent = `${selected.size} selected`; };
  all.addEventListener("change", () => {
    for (const box of jobs.tbody.querySelectorAll("input[type=checkbox]")) {
      box.checked = all.checked;
      if (all.checked) { selected.add(Number(box.dataset.id)); } else { selected.delete(Number(box.dataset.id)); }
    }
    updateCount();
  });
  const stack = [];
  let pageStart = null;
  let next = null;
  async function load(before) {
    const p = new URLSearchParams();
    for (const k of ["state", "queue", "task", "q"]) { if (filters.get(k)) { p.set(k, filters.get(k)); } }
    for (const k of ["since", "until"]) { if (filters.get(k)) { p.set(k, new Date(filters.get(k)).toISOString()); } }
    if (before) { p.set("before_id", before); }
    p.set("limit", "50");
    const r = await call("jobs/search?" + p);
    pageStart = before;
    next = r.next_before_id;
    all.checked = false;
    fillRows(jobs.tbody, r.jobs, j => j.id, j => el("tr", { dataset: { job: j.id } },
      el("td", {}, el("input", { type: "checkbox", "aria-label": `select job ${j.id}`, dataset: { id: j.id },
        checked: selected.has(j.id), onchange: e => {
          if (e.target.checked) { selected.add(j.id); } else { selected.delete(j.id); }
          updateCount();
        } })),
      el("td", {}, jobLink(j.id)), el("td", { class: "state-" + j.state }, j.state + (j.cancel_requested ? " (cancel requested)" : "")),
      td(j.queue, "hide-narrow"), td(j.task), td(`${j.attempts} of ${j.max_attempts}`, "num"),
      el("td", { class: "hide-narrow" }, timeEl(j.created_at)), el("td", { class: "hide-narrow" }, timeEl(j.finished_at)),
      j.state === "running" && j.progress !== null && j.progress !== undefined
        ? el("td", {}, progressEl(j.progress, j.progress_message)) : errTd(j.last_error)),
      r.more ? "no match among the newest rows read: try Older" : "no jobs match");
    updateCount();
    newer.disabled = !stack.length;
    older.disabled = !r.more;
    pageInfo.textContent = `${r.jobs.length} shown; ${fmtNum(r.scanned)} rows read` + (r.more ? "; older rows remain" : "; that is all");
    // A page of results does not move under the reader: it says when it was read, and
    // Search reads it again. (Unless another view is shown by now.)
    if (jobs.tbody.isConnected) status("results" + (readOnly ? " (read-only: no token)" : ""),
      "as of " + new Date().toLocaleTimeString() + ": Search to refresh");
    return null;
  }
  older.addEventListener("click", () => { stack.push(pageStart); load(next); });
  newer.addEventListener("click", () => { load(stack.pop() ?? null); });
  return () => load(null);
}

// -- job page --------------------------------------------------------------------------------

function jobView(id) {
  const title = el("h2", { id: "job-title" }, `Job ${id}`);
  const actions = el("div", { class: "toolbar" });
  const progress = el("div");
  const facts = el("div");
  const data = el("div");
  const timeline = el("ol", { class: "timeline" });
  const parents = table("Parents", ["job", "task", "state"]);
  const children = table("Children", ["job", "task", "state"]);
  view.replaceChildren(el("section", { id: "job", "aria-labelledby": "job-title" }, title, actions, progress, facts),
    el("div", { class: "grid2" }, section("job-data", "Arguments and result", data),
      section("job-timeline", "Timeline", timeline)),
    el("div", { class: "grid2" }, section("job-parents", "Depends on", parents.node),
      section("job-children", "Jobs waiting on it", children.node)));
  let lastActions = "";
  // The job's args, kwargs and result (of any size) are asked for again only when its state
  // or attempts changed: a result comes with a final state.
  let dataFor = "";
  return async () => {
    let d, full = !dataFor;
    try {
      d = await call(`jobs/${id}/detail${full ? "" : "?data=false"}`);
      if (!full && `${d.job.state}/${d.job.attempts}` !== dataFor) {
        d = await call(`jobs/${id}/detail`);
        full = true;
      }
    } catch (e) {
      if (e.status !== 404) { throw e; }
      if (!title.isConnected) { return null; } // another view is shown now
      view.replaceChildren(el("section", { id: "job", "aria-labelledby": "job-title" }, title,
        el("p", { class: "muted" }, `No job ${id}: it was deleted (retention, a purge) or never existed.`)));
      status("no such job");
      return null;
    }
    const j = d.job;
    title.replaceChildren(`Job ${j.id}: ${j.task} `, el("span", { class: "chip state-" + j.state }, j.state));
    if (d.actions.join() !== lastActions) {
      lastActions = d.actions.join();
      actions.replaceChildren(...d.actions.map(a => actionButton(a, a === "delete" ? "danger" : a, async () => {
        if (a !== "retry" && !(await confirmAction(`${a[0].toUpperCase() + a.slice(1)} job ${j.id}?`, a))) { return; }
        if (a === "delete") {
          if (await act(`jobs/${j.id}`, "delete", "DELETE")) {
            carried = document.getElementById("notice").textContent;
            location.hash = "#/jobs";
          }
        } else {
          await act(`jobs/${j.id}/${a}`, a);
        }
      }, `${a} job ${j.id}`)));
    }
    progress.replaceChildren(d.progress !== null && d.progress !== undefined
      ? el("p", {}, "Progress ", progressEl(d.progress, d.progress_message)) : "");
    const rows = [["queue", link(`#/queues/${encodeURIComponent(j.queue)}`, j.queue)],
      ["task", link(`#/tasks/${encodeURIComponent(j.task)}`, j.task)], ["state", j.state],
      ["attempts", `${j.attempts} of ${j.max_attempts}`], ["priority", j.priority],
      ["run at", timeEl(j.run_at)], ["enqueued", timeEl(j.created_at)], ["started", timeEl(j.started_at)],
      ["finished", timeEl(j.finished_at)], ["worker", j.worker_id || "–"],
      ["unique key", j.unique_key || "–"], ["timeout", j.timeout ? fmtSecs(j.timeout) : "–"],
      ["cancel requested", d.cancel_requested_at ? timeEl(d.cancel_requested_at) : "no"]];
    facts.replaceChildren(el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    if (full) { dataFor = `${j.state}/${j.attempts}`; }
    const sig = full ? JSON.stringify([j.args, j.kwargs, j.result]) : data.dataset.sig;
    if (data.dataset.sig !== sig) {
      data.dataset.sig = sig;
      data.replaceChildren(el("h3", {}, "args"), scrollPre(JSON.stringify(j.args, null, 2), "args"),
        el("h3", {}, "kwargs"), scrollPre(JSON.stringify(j.kwargs, null, 2), "kwargs"),
        el("h3", {}, "result"), scrollPre(JSON.stringify(j.result, null, 2), "result"));
    }
    const tsig = JSON.stringify(d.timeline);
    if (timeline.dataset.sig !== tsig) {
      timeline.dataset.sig = tsig;
      timeline.replaceChildren(...d.timeline.map(e => el("li", { class: e.kind },
        timeEl(e.at), e.text,
        e.traceback ? el("details", {}, el("summary", {}, "traceback"), scrollPre(e.traceback, "traceback")) : "")));
    }
    const fam = r => el("tr", {}, el("td", {}, jobLink(r.id)), td(r.task), el("td", { class: "state-" + r.state }, r.state));
    fillRows(parents.tbody, d.parents, r => r.id, fam, "none");
    fillRows(children.tbody, d.children, r => r.id, fam, "none");
    return ["succeeded", "dead", "cancelled"].includes(j.state) ? 10 : 1;
  };
}

// -- router ----------------------------------------------------------------------------------

// A notice that outlives the next route (the result of an action that moved to another view).
let carried = "";

// A name from the address: a stray "%" (typed, or pasted half) is taken as it stands.
function decoded(text) {
  try { return decodeURIComponent(text); } catch { return text; }
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  let name = parts[0] || "overview";
  let job;
  notice(carried);
  carried = "";
  if (name === "jobs" && /^[1-9][0-9]{0,18}$/.test(parts[1] || "")) { job = jobView(Number(parts[1])); }
  else if (name === "jobs") {
    if (parts[1]) { notice(`"${decoded(parts[1])}" is not a job id`); }
    job = jobsView(query);
  }
  else if (name === "queues" && parts[1]) { job = oneView("queue", decoded(parts.slice(1).join("/"))); }
  else if (name === "queues") { job = queuesView(); }
  else if (name === "tasks" && parts[1]) { job = oneView("task", decoded(parts.slice(1).join("/"))); }
  else if (name === "tasks") { job = tasksView(); }
  else if (name === "workers") { job = workersView(); }
  else { name = "overview"; job = overviewView(); }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
  }
  document.title = `pgqueue: ${name}`;
  poller.start(job);
}

window.addEventListener("hashchange", () => { route(); view.focus({ preventScroll: true }); });
route();
