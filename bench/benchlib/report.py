"""Tables with ratios against pgqueue, and the JSON record of a run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from benchlib.backlog import BacklogResult
from benchlib.scenarios import Result

Metric = tuple[str, str, Callable[[Result], float | None], bool]

METRICS: tuple[Metric, ...] = (
    ("Bulk enqueue", "jobs/s", lambda r: r.enqueue_jobs_per_s, True),
    ("Processing, one worker", "jobs/s", lambda r: r.process_jobs_per_s, True),
    ("Idle latency p50", "ms", lambda r: r.latency_p50_ms, False),
    ("Idle latency p99", "ms", lambda r: r.latency_p99_ms, False),
)


def ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """pgqueue/peer for throughput, peer/pgqueue for latency: above 1 means pgqueue wins."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


# A system's results over rounds, and per peer and metric the ratio of each round.
RoundRatios = dict[str, dict[str, list[float | None]]]


def median_result(rounds: list[Result]) -> Result:
    """One system's rounds as one result: the median of each figure over the rounds that
    have it, every round's errors."""
    merged = replace(rounds[0], errors=[e for r in rounds for e in r.errors])
    for f in fields(Result):
        values = [getattr(r, f.name) for r in rounds]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and f.name not in ("name", "label", "settings"):
            setattr(merged, f.name, type(numbers[0])(statistics.median(numbers)))
    return merged


def round_ratios(rounds: list[list[Result]]) -> RoundRatios:
    """Each round's ratio against pgqueue's run of the same round: the two ran minutes apart
    at most, so the machine's swings (20 to 50% from one minute to the next) touch both."""
    found: RoundRatios = {}
    for results in rounds:
        ours = next((r for r in results if r.name == "pgqueue"), None)
        if ours is None:
            return {}
        for r in results:
            if r is ours:
                continue
            per = found.setdefault(r.name, {title: [] for title, *_ in METRICS})
            for title, _, get, higher in METRICS:
                per[title].append(ratio(get(ours), get(r), higher))
    return found


def _median_ratio(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def render(results: list[Result], by_round: RoundRatios | None = None) -> str:
    """The tables; with `by_round` (several rounds), `results` are the medians and each ratio
    is the median of the rounds' ratios, listed beside it."""
    ours = next((r for r in results if r.name == "pgqueue"), None)
    blocks = [_table(metric, results, ours, by_round) for metric in METRICS]
    blocks.append(_extras(results))
    return "\n\n".join(blocks)


def _table(
    metric: Metric, results: list[Result], ours: Result | None, by_round: RoundRatios | None
) -> str:
    title, unit, get, higher = metric
    note = "pgqueue/peer" if higher else "peer/pgqueue"
    if by_round:
        note += ", the median of the rounds' ratios"
    lines = [f"{title} ({unit}; ratio = {note}, >1 means pgqueue is better)"]
    lines.append(f"  {'system':<22}{unit:>14}{'ratio':>10}")
    for r in results:
        value = get(r)
        rounds = (by_round or {}).get(r.name, {}).get(title)
        if rounds:
            rel = _median_ratio(rounds)
        else:
            rel = None if ours is None or r is ours else ratio(get(ours), value, higher)
        shown = "-" if r is ours else _fmt(rel, 2)
        line = f"  {r.label:<22}{_fmt(value):>14}{shown:>10}"
        if rounds:
            line += "   rounds: " + ", ".join(_fmt(v, 2) for v in rounds)
        lines.append(line)
    return "\n".join(lines)


def _extras(results: list[Result]) -> str:
    lines = ["Details"]
    for r in results:
        lines.append(
            f"  {r.label}: enqueue {_fmt(r.enqueue_seconds, 2)} s, processing "
            f"{_fmt(r.process_seconds, 2)} s (first job done after "
            f"{_fmt(r.first_job_done_s, 2)} s, peak {r.peak_in_flight} jobs in flight), "
            f"latency max {_fmt(r.latency_max_ms)} ms over {r.latency_samples} jobs"
        )
        lines.append(f"    settings: {r.settings}")
        lines.extend(f"    ERROR: {e}" for e in r.errors)
    return "\n".join(lines)


def to_json(
    results: list[Result], meta: dict[str, Any], rounds: list[list[Result]] | None = None
) -> dict[str, Any]:
    """The run's record; with several `rounds`, `results` are their medians, the ratios the
    medians of the rounds' ratios, and every round is kept."""
    ours = next((r for r in results if r.name == "pgqueue"), None)
    by_round = round_ratios(rounds) if rounds and len(rounds) > 1 else {}
    ratios: dict[str, dict[str, float | None]] = {}
    for r in results:
        if ours is None or r is ours:
            continue
        ratios[r.name] = {
            title: _median_ratio(by_round[r.name][title])
            if r.name in by_round
            else ratio(get(ours), get(r), higher)
            for title, _, get, higher in METRICS
        }
    payload: dict[str, Any] = {
        "meta": meta,
        "results": [asdict(r) for r in results],
        "ratios_vs_pgqueue": ratios,
    }
    if by_round:
        payload["ratios_by_round"] = by_round
        payload["rounds"] = [[asdict(r) for r in one] for one in rounds or []]
    return payload


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def render_backlogs(
    results: list[BacklogResult], limit: float, settings: dict[str, str] | None = None
) -> str:
    """Markdown: jobs/s per backlog size and system, then how each drain went."""
    systems = list(dict.fromkeys((r.name, r.label) for r in results))
    sizes = sorted({r.jobs for r in results})
    cell = {(r.name, r.jobs): r for r in results}
    peers = [(name, label) for name, label in systems if name != "pgqueue"]
    has_ours = any(name == "pgqueue" for name, _ in systems)
    head = ["backlog drained by one worker"] + [label for _, label in systems]
    if has_ours:
        head += [f"pgqueue / {label}" for _, label in peers]
    lines = [_row(head), _row(["---"] + ["---:"] * (len(head) - 1))]
    for n in sizes:
        row = [f"{n:,} jobs"] + [_backlog_cell(cell.get((name, n))) for name, _ in systems]
        if has_ours:
            ours = cell.get(("pgqueue", n))
            for name, _ in peers:
                theirs = cell.get((name, n))
                rel = ratio(
                    ours.jobs_per_s if ours else None,
                    theirs.jobs_per_s if theirs else None,
                    True,
                )
                row.append("-" if rel is None else f"{rel:,.1f}x")
        lines.append(_row(row))
    lines.append("")
    lines.append(
        f"jobs/s = jobs / (worker start → last outcome recorded); a drain still running after "
        f"{limit:.0f} s is cut: `~` marks jobs recorded finished by then / {limit:.0f} s."
    )
    if settings:
        shown = ", ".join(f"{k} = {v}" for k, v in settings.items())
        lines.append(f"Server: {shown}.")
    lines.append("")
    lines.append(
        _row(
            [
                "system",
                "backlog",
                "fill (SQL) jobs/s",
                "VACUUM s",
                "first job s",
                "last handler s",
                "last outcome s",
                "pending checks (max ms)",
            ]
        )
    )
    lines.append(_row(["---", "---:"] + ["---:"] * 6))
    for r in results:
        lines.append(
            _row(
                [
                    r.label,
                    f"{r.jobs:,}",
                    _fmt(r.fill_jobs_per_s, 0),
                    _fmt(r.vacuum_seconds, 1),
                    _fmt(r.first_done_s, 2),
                    _fmt(r.handlers_done_s, 2),
                    _fmt(r.drain_seconds if r.complete else None, 2),
                    f"{r.pending_checks} ({_fmt(r.pending_check_ms_max, 2)})",
                ]
            )
        )
    errors = [f"- {r.label}, {r.jobs:,} jobs: {e}" for r in results for e in r.errors]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _backlog_cell(r: BacklogResult | None) -> str:
    if r is None:
        return "-"
    if r.errors or r.jobs_per_s is None:
        return "error"
    if r.complete:
        return f"{r.jobs_per_s:,.0f}"
    return f"~{r.jobs_per_s:,.0f} ({r.done:,} done)"


def backlog_json(results: list[BacklogResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "backlogs": [asdict(r) for r in results]}
