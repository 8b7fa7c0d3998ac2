"""Runs one attempt to its outcome and hands the outcome to the completer: the attempt's
marks decide what an interrupted attempt comes to. Logs one line per outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgqueue import tracing
from pgqueue.context import JobContext
from pgqueue.job import Cancelled, Failed, Job, Outcome, Released, Snoozed, Succeeded
from pgqueue.progress import ProgressWriter
from pgqueue.store.params import CLAIM_RETURNS_TRACE
from pgqueue.worker.attempts import Attempt, Mark
from pgqueue.worker.completer import Completer, outcome_row
from pgqueue.worker.execute import Runner as Executor
from pgqueue.worker.execute import error_record
from pgqueue.worker.transactions import HandlerConnections, commit_with_outcome, discard

job_log = logging.getLogger("pgqueue.job")
log = logging.getLogger("pgqueue.worker")

_OUTCOME_LEVELS: dict[type, tuple[int, str]] = {
    Succeeded: (logging.INFO, "succeeded"),
    Failed: (logging.WARNING, "failed"),
    Snoozed: (logging.INFO, "snoozed"),
    Released: (logging.INFO, "released (shutdown)"),
    Cancelled: (logging.INFO, "cancelled"),
}


class Runner:
    """Turns claimed jobs into attempts and runs them."""

    def __init__(
        self,
        app: Any,
        threads: ThreadPoolExecutor,
        completer: Completer,
        connections: HandlerConnections | None = None,
        hold: float = 0.0,
    ) -> None:
        self.app = app
        # How long a job released while its handler still runs here stays unclaimable (see
        # Released and stopping.RELEASE_HOLD).
        self.hold = hold
        self.connections = connections  # for ctx.transaction()
        self.executor = Executor(threads)
        self.completer = completer
        self.processed = 0
        # Progress reports share the completer's connection: a write of a job's last report
        # then always reaches the database before the job's outcome.
        self.progress = ProgressWriter(completer.store, completer.worker_id)
        # None unless OpenTelemetry is loaded with a tracer provider: then no per-job cost.
        self.tracing = tracing.for_worker(
            None if CLAIM_RETURNS_TRACE else completer.store.job_trace_context
        )

    def make(self, job: Job) -> Attempt:
        ctx = JobContext(
            job=job,
            attempt=job.attempts,
            logger=job_log,
            _app=self.app,
            _progress=self.progress,
            _connections=self.connections,
        )
        task = self.app.tasks.get(job.task)
        return Attempt(job=job, ctx=ctx, is_async=task is not None and task.is_async, handler=task)

    async def execute(self, attempt: Attempt) -> None:
        job, ctx = attempt.job, attempt.ctx
        started = time.monotonic()
        if self.tracing is None:
            outcome = await self._attempt(attempt)
        else:
            outcome = await self.tracing.traced(job, lambda: self._attempt(attempt))
        ctx._progress = None  # reports from a thread that outlives its attempt go nowhere
        ctx._ended = True  # and it can open no transaction (see transactions.discard)
        if ctx._reported:
            await self._last_progress(attempt, outcome)
        recorded = False
        if ctx._tx is not None:
            recorded, outcome = await self._commit(attempt, outcome, started)
        if recorded:
            pass  # written with the handler's own transaction (or refused there)
        elif outcome is None:
            log.warning(
                "job %d attempt %d abandoned: it was rescued from this worker", job.id, job.attempts
            )
        else:
            self.completer.put(outcome_row(job, outcome, ctx._followups))
            self._log_outcome(job, outcome, time.monotonic() - started)
        self.processed += 1
        if self.executor.stuck:
            # A sync attempt that timed out keeps its slot until its thread returns.
            await self.executor.wait_thread(attempt.key)

    async def _attempt(self, attempt: Attempt) -> Outcome | None:
        """Run the handler unless the attempt was marked first; what it comes to."""
        job, ctx, task = attempt.job, attempt.ctx, attempt.handler
        timeout = job.timeout if job.timeout is not None else (task.timeout if task else None)
        outcome: Outcome | None = None
        if attempt.mark is None:
            try:
                outcome = await self.executor.run(job, ctx, timeout, task)
            except asyncio.CancelledError:
                pass  # interrupted by a mark (or by the loop shutting down)
            except Exception as exc:
                # Deciding the outcome failed (a retry policy of the application's, or a
                # fault of pgqueue's): without an outcome the job stayed running for as long
                # as this worker lived. It ends dead, with why.
                log.exception(
                    "job %d attempt %d: no outcome could be decided", job.id, job.attempts
                )
                message = f"OutcomeError: {type(exc).__name__}: {exc}"
                outcome = Failed(error_record(job.attempts, exc, message), None)
        return self._decide(attempt, outcome)

    async def _commit(
        self, attempt: Attempt, outcome: Outcome | None, started: float
    ) -> tuple[bool, Outcome | None]:
        """An attempt that opened ctx.transaction(): a success is written and committed on
        it (True: nothing left to record); anything else rolls it back and is recorded as
        usual. A commit that fails makes the attempt a failure (see transactions.py)."""
        job, ctx = attempt.job, attempt.ctx
        if isinstance(outcome, Succeeded):
            row = outcome_row(job, outcome, ctx._followups)
            if row.state == "succeeded":
                try:
                    applied = await asyncio.shield(
                        commit_with_outcome(ctx, self.completer.worker_id, row)
                    )
                except Exception as exc:
                    log.warning("job %d: its transaction did not commit: %s", job.id, exc)
                    message = f"TransactionFailed: {type(exc).__name__}: {exc}".strip()
                    retry = attempt.handler.retry.next_run_in(job.attempts, job.max_attempts)
                    return False, Failed(error_record(job.attempts, exc, message), retry)
                if applied:
                    self._log_outcome(job, outcome, time.monotonic() - started)
                else:
                    log.warning(
                        "outcome of job %d not recorded and its transaction rolled back: "
                        "no longer running this attempt here (rescued or cancelled)",
                        job.id,
                    )
                await self.completer.recorded([row], applied)
                return True, outcome
        thread = ctx._thread
        await discard(ctx, thread if thread is not None and not thread.done() else None)
        return False, outcome

    async def _last_progress(self, attempt: Attempt, outcome: Outcome | None) -> None:
        """Write the attempt's last progress report before its outcome (see progress.py)."""
        if outcome is None:
            self.progress.forget(attempt.key)
            return
        try:
            await asyncio.shield(self.progress.finish(attempt.key))
        except asyncio.CancelledError:
            pass  # interrupted (shutdown): the outcome must still be recorded

    def _decide(self, attempt: Attempt, outcome: Outcome | None) -> Outcome | None:
        """What the attempt comes to, given its mark; None: nothing is written."""
        match attempt.mark:
            case Mark.ABANDON:
                return None  # the job is someone else's now; the write would be refused
            case Mark.RELEASE:
                if outcome is not None:
                    return outcome
                thread = attempt.ctx._thread
                if thread is not None and not thread.done():
                    # Interrupted, but its thread goes on until it returns or the process
                    # leaves: another worker must not start the job meanwhile.
                    return Released(self.hold)
                return Released()
            case Mark.CANCEL:
                return Cancelled("cancel requested while it ran")
        return outcome if outcome is not None else Released()

    def _log_outcome(self, job: Job, outcome: Outcome, duration: float) -> None:
        """One line per outcome: successes at INFO, retries WARNING, dead ERROR."""
        level, what = _OUTCOME_LEVELS[type(outcome)]
        if not job_log.isEnabledFor(level):
            return  # the hot path when successes are not wanted: no formatting at all
        detail = ""
        match outcome:
            case Failed(error, None):
                level, what, detail = logging.ERROR, "dead", f": {error['error']}"
            case Failed(error, retry_in):
                detail = f", retry in {retry_in:.1f}s: {error['error']}"
            case Snoozed(delay):
                detail = f" for {delay:.1f}s"
            case Released(delay) if delay:
                detail = f", due again in {delay:g}s: its thread still runs here"
        fields = {
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempts,
            "duration_ms": round(duration * 1000, 3),
            "outcome": what,
        }
        job_log.log(
            level,
            "job %d %s queue=%s attempt=%d duration=%.1fms %s%s",
            job.id,
            job.task,
            job.queue,
            job.attempts,
            duration * 1000,
            what,
            detail,
            extra={"job": fields},
        )
