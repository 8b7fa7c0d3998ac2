"""The bench's charts, drawn by plot_*.py scripts in a venv of its own (bench/requirements.txt)."""

from __future__ import annotations

import os
from pathlib import Path

from benchlib.proc import run_command
from benchlib.venvs import ensure_venv


def requirements(bench_dir: Path) -> tuple[str, ...]:
    lines = (bench_dir / "requirements.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def draw(bench_dir: Path, results_json: Path, png: Path, script: str = "plot_backlog.py") -> None:
    """Write `png` from `results_json` with `script`; the venv is built on first use, then
    reused."""
    bin_dir = ensure_venv(bench_dir / ".venvs" / "chart", requirements(bench_dir))
    argv = [
        str(bin_dir / "python"),
        str(bench_dir / script),
        str(results_json.resolve()),
    ]
    run_command([*argv, str(png.resolve())], dict(os.environ), bench_dir, timeout=120)
