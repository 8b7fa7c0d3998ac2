"""`pgqueue work` in one process: a Worker run on its own event loop until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import faulthandler
import io
import logging
import os
import sys
import threading
import traceback
from collections.abc import Coroutine
from typing import Any

from pgqueue.app import App
from pgqueue.settings import WorkerSettings
from pgqueue.worker.events import cancel_and_wait
from pgqueue.worker.lifecycle import Worker

log = logging.getLogger("pgqueue.worker")


def run_worker(app: App, settings: WorkerSettings, dsn: str | None = None) -> Worker:
    """Run a worker in this thread until SIGTERM/SIGINT (the CLI's `pgqueue work`)."""
    import signal

    worker = Worker(app, settings, dsn)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first: float | None = None  # when the first stop signal came

        def on_signal(signum: int) -> None:
            nonlocal first
            if first is None:
                first = loop.time()
                log.info(
                    "received %s: shutting down gracefully (again to exit at once)",
                    signal.Signals(signum).name,
                )
                worker.stop()
            elif loop.time() - first < SAME_STOP:
                # The same request once more: a terminal's Ctrl-C reaches every process of
                # its group and `--processes` passes it on too (as systemd signals every
                # process of the unit), so a child gets it twice at once.
                pass
            else:
                log.warning("received %s again: exiting now", signal.Signals(signum).name)
                logging.shutdown()
                os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        # SIGUSR1: where every task and thread is, for a worker that seems stuck.
        loop.add_signal_handler(signal.SIGUSR1, dump_stacks)
        # And if the event loop itself is stuck, SIGUSR2 gives the threads' stacks anyway.
        faulthandler.register(signal.SIGUSR2, all_threads=True)
        await worker.run()

    worker.abandoned_tasks = _run_to_the_end(main())
    return worker


SAME_STOP = 1.0  # seconds within which a second stop signal is the first one again


def dump_stacks() -> None:
    """Write every asyncio task's and every thread's stack to stderr."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(file=out)
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)}\n")
        out.write("".join(traceback.format_stack(frame)))
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


LEFTOVER_WAIT = 1.0  # seconds tasks still there after the worker stopped get to end


def _run_to_the_end(main: Coroutine[Any, Any, None]) -> int:
    """asyncio.run, except that tasks left once `main` returns get LEFTOVER_WAIT seconds to
    end once cancelled, not forever: a handler that swallows its cancellation would hold
    the process after SIGTERM. Returns how many were left behind (the caller exits without
    joining them)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        stubborn = len(
            loop.run_until_complete(cancel_and_wait(left, patience=LEFTOVER_WAIT, rounds=1))
        )
        if stubborn:
            log.warning("%d task(s) ignored their cancellation: exiting without them", stubborn)
        else:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        return stubborn
    finally:
        asyncio.set_event_loop(None)
        loop.close()
