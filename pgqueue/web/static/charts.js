// Charts drawn by uPlot (served from the package): time on x, units on y, a legend that
// shows the values under the cursor.
"use strict";

const PALETTE = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
                 "#4b5563", "#64748b"];
const DEAD = "#dc2626";

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function axis(label, values) {
  const fg = css("--muted"), grid = css("--line");
  return { label, stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
           values, size: 60 };
}

const perMinute = (u, ticks) => ticks.map(v => v === null ? "" : +v.toFixed(2) + "");
const seconds = (u, ticks) => ticks.map(v => v === null ? "" : (v < 1 ? Math.round(v * 1000) + " ms" : +v.toFixed(2) + " s"));

// A chart in `host`, replaced when the data's shape changes, updated in place otherwise.
export class Chart {
  constructor(host, title) { this.host = host; this.title = title; this.plot = null; this.shape = ""; }

  draw(xs, lines, yLabel, format) {
    const shape = lines.map(l => l.label).join("|") + yLabel + css("--fg");
    const data = [xs, ...lines.map(l => l.values)];
    const width = Math.max(280, this.host.clientWidth - 4);
    if (this.plot && this.shape === shape) {
      this.plot.setData(data);
      if (Math.abs(this.plot.width - width) > 4) { this.plot.setSize({ width, height: 200 }); }
      return;
    }
    if (this.plot) { this.plot.destroy(); }
    this.shape = shape;
    const fmt = format === "seconds"
      ? (u, v) => v === null || v === undefined ? "–" : (v < 1 ? Math.round(v * 1000) + " ms" : v.toFixed(2) + " s")
      : (u, v) => v === null || v === undefined ? "–" : (+v.toFixed(2)).toLocaleString("en-US");
    this.plot = new uPlot({
      width, height: 200,
      title: undefined,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, format === "seconds" ? 0.01 : 1) * 1.1] } },
      axes: [axis("time", undefined), axis(yLabel, format === "seconds" ? seconds : perMinute)],
      series: [
        { label: "time", value: (u, v) => v === null ? "–" : new Date(v * 1000).toLocaleString() },
        ...lines.map((l, i) => ({
          label: l.label, value: fmt, width: 2, spanGaps: format === "seconds",
          stroke: l.color || PALETTE[i % PALETTE.length], dash: l.dash,
          points: { show: xs.length < 40 },
        })),
      ],
      legend: { live: true },
    }, data, this.host);
    this.host.setAttribute("role", "group");
    this.host.setAttribute("aria-label", this.title);
  }
}

// The throughput and latency charts of an /api/overview `series`.
export function drawSeries(series, throughputChart, latencyChart) {
  if (!series) { return; }
  const perMin = 60 / series.step;
  const keys = series.keys;
  const lines = keys.map(k => ({ label: k === "all" ? "succeeded" : k,
    values: series.succeeded[k].map(v => v * perMin) }));
  const deadTotal = series.buckets.map((_, i) => keys.reduce((s, k) => s + series.dead[k][i], 0) * perMin);
  lines.push({ label: "dead" + (keys.length > 1 || keys[0] !== "all" ? " (all)" : ""), values: deadTotal, color: DEAD, dash: [6, 4] });
  if (!keys.length) { lines[0].label = "dead"; }
  throughputChart.draw(series.buckets, lines, "jobs / min", "count");
  let lat;
  if (keys.length === 1 && keys[0] === "all") {
    lat = [
      { label: "latency p50", values: series.latency_p50.all },
      { label: "latency p95", values: series.latency_p95.all, dash: [6, 4] },
      { label: "run time p50", values: series.duration_p50.all, color: PALETTE[2] },
      { label: "run time p95", values: series.duration_p95.all, color: PALETTE[2], dash: [6, 4] },
    ];
  } else {
    lat = keys.map(k => ({ label: k + " p95", values: series.latency_p95[k] }));
    if (!lat.length) { lat = [{ label: "latency p95", values: series.buckets.map(() => null) }]; }
  }
  latencyChart.draw(series.buckets, lat, "seconds", "seconds");
}
