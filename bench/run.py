"""Benchmark pgqueue against Procrastinate and PgQueuer on one PostgreSQL server.

Usage: .venv/bin/python bench/run.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
See bench/README.md for what is measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from pathlib import Path

from benchlib import chart, db, report
from benchlib.backlog import BacklogConfig, BacklogResult, run_backlogs
from benchlib.scenarios import Config, Result, run_system
from benchlib.systems import ALL, System

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dsn",
        default=os.environ.get("PGQUEUE_BENCH_DSN", DEFAULT_DSN),
        help="server DSN with rights to create databases (env PGQUEUE_BENCH_DSN)",
    )
    p.add_argument(
        "--systems",
        default=",".join(s.name for s in ALL),
        help="comma-separated subset of: pgqueue,procrastinate,pgqueuer",
    )
    p.add_argument("--jobs", type=int, default=20_000, help="jobs for enqueue and processing")
    p.add_argument("--chunk", type=int, default=1_000, help="jobs per bulk-enqueue call")
    p.add_argument("--concurrency", type=int, default=50, help="worker concurrency, all systems")
    p.add_argument("--latency-jobs", type=int, default=200, help="single jobs for latency")
    p.add_argument("--latency-interval", type=float, default=0.02, help="seconds between them")
    p.add_argument("--warmup-jobs", type=int, default=5, help="single no-op jobs sent first")
    p.add_argument("--timeout", type=float, default=200.0, help="seconds per scenario")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the standard scenarios this many times, the systems in alternating order; "
        "figures are medians, ratios the median of each round's ratio",
    )
    p.add_argument("--keep-dbs", action="store_true", help="leave the bench_* databases")
    p.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "latest.json")
    p.add_argument(
        "--backlogs",
        type=_sizes,
        default=(),
        help="backlog sizes to drain, e.g. 20000,200000,1000000 (none by default)",
    )
    p.add_argument(
        "--backlog-limit", type=float, default=300.0, help="seconds per backlog drain, then cut"
    )
    p.add_argument(
        "--fill-chunk", type=int, default=100_000, help="rows per backlog INSERT statement"
    )
    p.add_argument(
        "--only-backlogs",
        action="store_true",
        help="skip the standard scenarios (enqueue, processing, latency)",
    )
    p.add_argument(
        "--backlog-output",
        type=Path,
        default=BENCH_DIR / "results" / "backlog.json",
        help="backlog results; the .md table and .png chart are written beside it",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG (needs matplotlib)")
    return p.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("backlog sizes must be positive")
    return sizes


def make_config(args: argparse.Namespace) -> Config:
    return Config(
        server_dsn=args.dsn,
        jobs=args.jobs,
        chunk=args.chunk,
        concurrency=args.concurrency,
        latency_jobs=args.latency_jobs,
        latency_interval=args.latency_interval,
        warmup_jobs=args.warmup_jobs,
        timeout=args.timeout,
        keep_dbs=args.keep_dbs,
        bench_dir=BENCH_DIR,
    )


def selected(names: str) -> list[str]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = set(wanted) - {s.name for s in ALL}
    if unknown:
        raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}")
    return wanted


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with Worker(...)` blocks, so workers stop


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    cfg = make_config(args)
    wanted = selected(args.systems)
    version = db.server_version(cfg.server_dsn)
    print(f"PostgreSQL {version}; {cfg.jobs} jobs, concurrency {cfg.concurrency}", flush=True)
    systems = [s for s in ALL if s.name in wanted]
    failed = False
    if not args.only_backlogs:
        failed |= standard(systems, cfg, args, version)
    if args.backlogs:
        failed |= backlogs(systems, cfg, args, version)
    return 1 if failed else 0


def standard(systems: list[System], cfg: Config, args: argparse.Namespace, version: str) -> bool:
    """Bulk enqueue, processing and idle latency; True if anything failed."""
    started = time.monotonic()
    rounds: list[list[Result]] = []
    for n in range(max(1, args.rounds)):
        # Alternating order: no system always runs first, on the machine of that moment.
        order = systems if n % 2 == 0 else systems[::-1]
        done: dict[str, Result] = {}
        for system in order:
            print(f"{system.label}" + (f", round {n + 1}:" if args.rounds > 1 else ":"), flush=True)
            done[system.name] = run_system(system, cfg)
        rounds.append([done[s.name] for s in systems])
    if len(rounds) == 1:
        results, by_round = rounds[0], None
    else:
        results = [report.median_result([one[i] for one in rounds]) for i in range(len(systems))]
        by_round = report.round_ratios(rounds)
    print()
    print(report.render(results, by_round))
    meta = _meta(args, version, started)
    report.write_json(args.output, report.to_json(results, meta, rounds))
    print(f"\nwrote {args.output}")
    return any(r.errors for r in results)


def backlogs(systems: list[System], cfg: Config, args: argparse.Namespace, version: str) -> bool:
    """Backlog drains at each size; the JSON, a markdown table and the chart. True on failure."""
    started = time.monotonic()
    settings = db.server_settings(cfg.server_dsn)
    if settings["autovacuum"] != "on":
        # Dead rows then pile up through a drain for every system: say so beside the figures.
        print(f"note: this server has autovacuum = {settings['autovacuum']}", flush=True)
    bcfg = BacklogConfig(sizes=args.backlogs, limit=args.backlog_limit, fill_chunk=args.fill_chunk)
    results: list[BacklogResult] = run_backlogs(systems, cfg, bcfg)
    table = report.render_backlogs(results, bcfg.limit, settings)
    print()
    print(table)
    out: Path = args.backlog_output
    meta = {**_meta(args, version, started), "server_settings": settings}
    report.write_json(out, report.backlog_json(results, meta))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md').name}")
    if not args.no_chart:
        try:
            chart.draw(BENCH_DIR, out, out.with_suffix(".png"))
            print(f"wrote {out.with_suffix('.png')}")
        except Exception as exc:  # the figures are written already; say why there is no PNG
            print(f"no chart: {exc}", file=sys.stderr)
            return True
    return any(r.errors for r in results)


def _meta(args: argparse.Namespace, version: str, started: float) -> dict[str, object]:
    skip = ("dsn", "output", "backlog_output")
    return {
        "postgresql": version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "started_at": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - (time.monotonic() - started))
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
        "config": {k: v for k, v in vars(args).items() if k not in skip},
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
