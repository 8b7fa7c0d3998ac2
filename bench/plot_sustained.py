"""Draw the sustained run's chart: claim time, sizes and throughput over time.

Usage: python plot_sustained.py RESULTS.json OUT.png   (needs matplotlib: bench/requirements.txt)
sustained.py calls it from bench/.venvs/chart at the end of a run.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter

MB = 1024 * 1024


def main(source: Path, target: Path) -> None:
    payload = json.loads(source.read_text())
    samples = payload["samples"]
    meta = payload["meta"]
    t = [s["t"] / 60 for s in samples]
    mid = [(a["t"] + b["t"]) / 120 for a, b in itertools.pairwise(samples)]

    def delta(key: str) -> list[float]:
        return [b[key] - a[key] for a, b in itertools.pairwise(samples)]

    calls, ms = delta("claim_calls"), delta("claim_ms")
    claim = [m / c if c else float("nan") for m, c in zip(ms, calls, strict=True)]
    seconds = delta("t")
    done = [d / s for d, s in zip(delta("processed"), seconds, strict=True)]
    wal = [
        w / d if d else float("nan")
        for w, d in zip(delta("wal_lsn"), delta("processed"), strict=True)
    ]
    vacuums = [
        b["t"] / 60 for a, b in itertools.pairwise(samples) if b["autovacuums"] > a["autovacuums"]
    ]

    fig, axes = plt.subplots(5, 1, figsize=(10, 13), dpi=110, sharex=True)
    ax = axes[0]
    ax.plot(mid, claim, color="#1f77b4")
    ax.set_ylabel("claim mean (ms)\nper 10 s interval")
    ax.set_yscale("log")
    ax.set_yticks([0.5, 1, 2, 5, 10, 20, 50, 100])
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax = axes[1]
    ax.plot(t, [s["hot_bytes"] / MB for s in samples], label="claim index (file)")
    ax.plot(t, [s["hot_used_bytes"] / MB for s in samples], label="claim index (pages in use)")
    ax.set_ylabel("MB")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    ax.plot(t, [s["heap_bytes"] / MB for s in samples], label="heap")
    ax.plot(t, [s["indexes_bytes"] / MB for s in samples], label="all indexes")
    ax.plot(t, [s["dead_tup"] / 10_000 for s in samples], ":", label="n_dead_tup / 10,000")
    ax.set_ylabel("MB")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[3]
    ax.plot(mid, done, label="jobs/s processed", color="#2ca02c")
    ax.set_ylabel("jobs/s")
    twin = ax.twinx()
    twin.plot(t, [s["load_1m"] for s in samples], color="grey", alpha=0.7, label="load average")
    twin.set_ylabel("load average (1 min)")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    ax = axes[4]
    ax.plot(mid, wal, color="#d62728")
    ax.set_ylabel("WAL bytes per job\nprocessed")
    ax.set_xlabel("minutes (dotted lines: an autovacuum of pgqueue.jobs ended)")
    for ax in axes:
        for x in vacuums:
            ax.axvline(x, color="grey", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_title(
        f"pgqueue sustained load: {meta['workers']} worker(s) x {meta['concurrency']}, backlog "
        f"{meta['backlog']:,}, retention {meta['retention']}, autovacuum "
        f"{meta['settings'].get('autovacuum')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
