"""The three scenarios, run identically against one system."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import db
from benchlib.proc import Worker, run_command, run_json
from benchlib.systems import System, Target, own_bin_dir
from benchlib.venvs import ensure_venv


@dataclass(frozen=True)
class Config:
    server_dsn: str
    jobs: int
    chunk: int
    concurrency: int
    latency_jobs: int
    latency_interval: float
    warmup_jobs: int
    timeout: float
    keep_dbs: bool
    bench_dir: Path

    @property
    def apps_dir(self) -> Path:
        return self.bench_dir / "apps"

    @property
    def results_dir(self) -> Path:
        return self.bench_dir / "results"


@dataclass
class Result:
    name: str
    label: str
    settings: str
    enqueue_seconds: float | None = None
    enqueue_jobs_per_s: float | None = None
    process_seconds: float | None = None
    process_jobs_per_s: float | None = None
    first_job_done_s: float | None = None
    peak_in_flight: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    latency_samples: int = 0
    errors: list[str] = field(default_factory=list)


def run_system(system: System, cfg: Config) -> Result:
    result = Result(system.name, system.label, system.settings(cfg.concurrency))
    try:
        target, env = prepare(system, cfg)
        _bulk_enqueue(system, target, env, cfg, result)
        _process_and_latency(system, target, env, cfg, result)
    except Exception as exc:  # one broken system must not stop the others
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if not cfg.keep_dbs:
            _drop_quietly(cfg.server_dsn, system.database, result)
    return result


def prepare(system: System, cfg: Config) -> tuple[Target, dict[str, str]]:
    """Interpreter (own venv for peers), fresh database, schema installed by the system's tool."""
    if system.requirements is None:
        bin_dir = own_bin_dir()
        _check_importable(bin_dir, system.name, cfg)
    else:
        bin_dir = ensure_venv(cfg.bench_dir / ".venvs" / system.name, system.requirements)
    dsn = db.recreate_database(cfg.server_dsn, system.database)
    target = Target(bin_dir=bin_dir, dsn=dsn, concurrency=cfg.concurrency)
    env = _environment(system, target, cfg)
    for argv in system.schema(target):
        run_command(argv, env, cfg.apps_dir, timeout=180)
    return target, env


def _check_importable(bin_dir: Path, name: str, cfg: Config) -> None:
    """Check that the package imports, and byte-compile it as `pip install` does for the
    peers: run from a checkout where PYTHONDONTWRITEBYTECODE is set, it would otherwise be
    compiled from source at every start (60-80 ms of a worker's start on this bench)."""
    if not (bin_dir / name).exists():
        raise RuntimeError(f"no `{name}` command in {bin_dir} (package not installed?)")
    compile_package = (
        f"import compileall, os, {name}; "
        f"compileall.compile_dir(os.path.dirname({name}.__file__), quiet=1)"
    )
    run_command([str(bin_dir / "python"), "-c", compile_package], dict(os.environ),
                cfg.apps_dir, timeout=120)  # fmt: skip


def _environment(system: System, target: Target, cfg: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{target.bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(cfg.apps_dir),
        BENCH_DSN=target.dsn,
        PGQUEUE_DSN=target.dsn,
        BENCH_POOL_SIZE=str(cfg.concurrency + 1),
        BENCH_LATENCY_FILE=str(_latency_file(system, cfg)),
    )
    return env


def _latency_file(system: System, cfg: Config) -> Path:
    return cfg.results_dir / f"{system.name}-latency.txt"


def _client(target: Target, cfg: Config, system: System, *args: object) -> list[str]:
    return [target.tool("python"), str(cfg.apps_dir / "client.py"), system.module, *map(str, args)]


def _bulk_enqueue(
    system: System, target: Target, env: dict[str, str], cfg: Config, result: Result
) -> None:
    print(f"  [{system.name}] bulk enqueue of {cfg.jobs} jobs", flush=True)
    argv = _client(target, cfg, system, "bulk", cfg.jobs, cfg.chunk)
    seconds = float(run_json(argv, env, cfg.apps_dir, cfg.timeout)["seconds"])
    rows = db.count(target.dsn, system.rows_sql)
    if rows != cfg.jobs:
        raise RuntimeError(f"bulk enqueue left {rows} job rows, expected {cfg.jobs}")
    result.enqueue_seconds = seconds
    result.enqueue_jobs_per_s = cfg.jobs / seconds


def _process_and_latency(
    system: System, target: Target, env: dict[str, str], cfg: Config, result: Result
) -> None:
    log = cfg.results_dir / "logs" / f"{system.name}-worker.log"
    print(f"  [{system.name}] processing with one worker", flush=True)
    with Worker(system.worker(target), env, cfg.apps_dir, log) as worker:
        try:
            _process(system, target, cfg, worker, result)
            time.sleep(1.0)  # let the warm worker go idle
            print(f"  [{system.name}] idle latency, {cfg.latency_jobs} single jobs", flush=True)
            _latency(system, target, env, cfg, worker, result)
        except db.ScenarioError as exc:
            raise RuntimeError(f"{exc}; worker log tail:\n{worker.log_tail()}") from exc


def _process(system: System, target: Target, cfg: Config, worker: Worker, result: Result) -> None:
    progress = db.wait_for_count(target.dsn, system.probe, cfg.jobs, cfg.timeout, worker.alive)
    assert progress.finished_at is not None and progress.first_done_at is not None
    result.process_seconds = progress.finished_at - worker.started_at
    result.process_jobs_per_s = cfg.jobs / result.process_seconds
    result.first_job_done_s = progress.first_done_at - worker.started_at
    result.peak_in_flight = progress.peak_in_flight


def _latency(
    system: System,
    target: Target,
    env: dict[str, str],
    cfg: Config,
    worker: Worker,
    result: Result,
) -> None:
    path = _latency_file(system, cfg)
    path.write_text("")
    argv = _client(
        target, cfg, system, "singles", cfg.latency_jobs, cfg.latency_interval, cfg.warmup_jobs
    )
    budget = cfg.latency_jobs * cfg.latency_interval * 4 + 60
    run_command(argv, env, cfg.apps_dir, timeout=budget)
    samples = _wait_for_samples(path, cfg.latency_jobs, cfg.timeout, worker)
    result.latency_samples = len(samples)
    result.latency_p50_ms = percentile(samples, 50)
    result.latency_p99_ms = percentile(samples, 99)
    result.latency_max_ms = max(samples)


def _wait_for_samples(path: Path, expected: int, timeout: float, worker: Worker) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        samples = [float(line) for line in path.read_text().split()]
        if len(samples) >= expected:
            return samples
        if not worker.alive():
            raise db.ScenarioError(f"worker exited with {len(samples)}/{expected} latency jobs")
        if time.monotonic() > deadline:
            raise db.ScenarioError(f"only {len(samples)}/{expected} latency jobs ran in time")
        time.sleep(0.05)


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _drop_quietly(server_dsn: str, name: str, result: Result) -> None:
    try:
        db.drop_database(server_dsn, name)
    except Exception as exc:  # a failed cleanup must not hide the figures
        result.errors.append(f"could not drop database {name}: {exc}")
