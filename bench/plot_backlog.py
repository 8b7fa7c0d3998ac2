"""Draw the backlog chart: drain throughput vs backlog size per system, log-scaled axes.

Usage: python plot_backlog.py RESULTS.json OUT.png   (needs matplotlib: bench/requirements.txt)
run.py calls it from bench/.venvs/chart after a run with --backlogs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Where each system's labels go, so that close points keep readable labels.
LABEL_OFFSETS = ((6, 6), (6, 6), (6, -24))
COLORS = {"pgqueue": "#1f77b4", "procrastinate": "#ff7f0e", "pgqueuer": "#2ca02c"}


def main(source: Path, target: Path) -> None:
    payload = json.loads(source.read_text())
    runs = [r for r in payload["backlogs"] if r.get("jobs_per_s")]
    meta = payload.get("meta", {})
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for index, name in enumerate(dict.fromkeys(r["name"] for r in runs)):
        mine = sorted((r for r in runs if r["name"] == name), key=lambda r: r["jobs"])
        color = COLORS.get(name)
        xs = [r["jobs"] for r in mine]
        ys = [r["jobs_per_s"] for r in mine]
        ax.plot(xs, ys, "-", color=color, label=mine[0]["label"])
        for r in mine:
            # Filled: the whole backlog drained; hollow: cut at the limit.
            face = color if r["complete"] else "white"
            ax.plot(r["jobs"], r["jobs_per_s"], "o", color=color, mfc=face, ms=8)
            text = f"{r['jobs_per_s']:,.0f}"
            if not r["complete"]:
                text += f"\n{r['done']:,} done\nin {r['drain_seconds']:.0f} s"
            ax.annotate(
                text,
                (r["jobs"], r["jobs_per_s"]),
                textcoords="offset points",
                xytext=LABEL_OFFSETS[index % len(LABEL_OFFSETS)],
                fontsize=7,
                color=color,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({r["jobs"] for r in runs})
    if sizes:
        ax.set_xticks(sizes, [_short(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlim(sizes[0] / 1.6, sizes[-1] * 2.2)
    ax.set_xlabel("backlog (jobs inserted before the worker starts)")
    ax.set_ylabel("jobs/s, one worker process")
    config = meta.get("config", {})
    ax.set_title(
        f"Draining a backlog of no-op jobs (concurrency {config.get('concurrency', '?')}, "
        f"PostgreSQL {str(meta.get('postgresql', '?')).split()[0]})",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        title="hollow: cut at the time limit", fontsize=8, title_fontsize=8, loc="center left"
    )
    fig.tight_layout()
    fig.savefig(target)


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
