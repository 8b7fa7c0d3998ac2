"""How a worker stops: claimed jobs that did not start go straight back; running ones get
the grace period, then go back too (their attempts given back); outcomes are flushed."""

from __future__ import annotations

import logging

from pgqueue.job import Released
from pgqueue.worker.attempts import Attempts
from pgqueue.worker.completer import Completer, outcome_row
from pgqueue.worker.outage import Outage

log = logging.getLogger("pgqueue.worker")
# Seconds a job released while its handler still runs here stays unclaimable: `pgqueue work`
# leaves within a few seconds of writing the release (it waits 2 s for idle threads, then
# exits past any that still run). Whatever the lease: the job is queued, not the rescue's.
RELEASE_HOLD = 10.0
# Seconds the last outcomes get to be written, after the grace: the whole stop stays within
# the grace plus some 15 s (the margin deploy/ gives), the database up or not.
FLUSH = 10.0
FLUSH_WHILE_AWAY = 2.0  # the database known to be away: the rescue will see to those jobs


async def shut_down(
    attempts: Attempts, completer: Completer, grace: float, hold: float, outage: Outage
) -> None:
    """Stop taking jobs, give running ones `grace` seconds, release the rest (due again
    after `hold` seconds for handlers that go on running here), flush the outcomes."""
    attempts.accepting = False
    for job in attempts.take_waiting():
        completer.put(outcome_row(job, Released()))
    if attempts.running():
        log.info("stopping: waiting up to %gs for %d running job(s)", grace, attempts.running())
    if not await attempts.wait_running(grace):
        log.warning("grace period over: releasing %d job(s) back to the queue", attempts.running())
        attempts.release_all()
        if not await attempts.wait_running(5):
            # Handlers that swallowed their cancellation: their jobs go back all the same
            # (the process leaves without their tasks, see daemon.py), due again once it
            # has surely left.
            for attempt in list(attempts):
                log.warning(
                    "job %d ignored its cancellation: released, due again in %gs",
                    attempt.job.id,
                    hold,
                )
                completer.put(outcome_row(attempt.job, Released(hold)))
    if not await completer.flush(timeout=FLUSH_WHILE_AWAY if outage.known else FLUSH):
        log.error(
            "could not record %d outcome(s) before exiting; the rescue will handle those jobs",
            completer.backlog,
        )
