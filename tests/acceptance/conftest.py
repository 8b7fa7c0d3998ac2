"""Helpers to run `pgqueue` as a real subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pgqueue_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgqueue.cli", *args]


class WorkerProcess:
    """`pgqueue work tests.jobs:app ...` in a subprocess, with its output kept."""

    def __init__(self, dsn: str, *args: str, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PGQUEUE_DSN": dsn, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            pgqueue_cmd("work", "tests.jobs:app", *args),
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout: float = 30) -> None:
        self.wait_output("started", timeout)

    def wait_output(self, text: str, timeout: float = 30) -> None:
        """Wait until the worker has logged `text` (a signal is only handled once it says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited before logging {text!r}:\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"worker did not log {text!r}:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Where is it stuck? The worker writes its tasks' and threads' stacks on SIGUSR1.
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError(
                f"worker still running {timeout}s later; its output:\n{self.output()}"
            ) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def spawn_worker(dsn, tmp_path):
    started: list[WorkerProcess] = []

    def spawn(*args: str) -> WorkerProcess:
        proc = WorkerProcess(dsn, *args, log=tmp_path / f"worker{len(started)}.log")
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        pgqueue_cmd(*args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
