"""OpenTelemetry tracing, with the `pgqueue[otel]` extra: the trace context current at
enqueue is stored with the job (`trace_context`), and the worker runs each attempt in a
span that continues it.

Nothing here imports OpenTelemetry. Enqueue looks for an `opentelemetry.trace` module that
is already loaded (an application that traces has loaded it; one that does not pays one
dict lookup per insert statement). A worker traces only when OpenTelemetry is loaded and a
tracer provider is set when it starts; otherwise it keeps no tracer at all.

The attempt span: name `process <task>`, kind CONSUMER, parent the stored context (a new
trace when there is none), attributes `pgqueue.task`, `pgqueue.queue`, `pgqueue.job.id`,
`pgqueue.attempt`, `pgqueue.outcome` (succeeded, retry, dead, snoozed, released,
cancelled, abandoned) and the messaging.* ones; a failed attempt has status ERROR and an
`exception` event. A job enqueued from inside another job's attempt (fan-out) is that
span's child, and its span also links to it, with `pgqueue.enqueued_by` the parent job's id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pgqueue.job import Cancelled, Failed, Job, Outcome, Released, Snoozed, Succeeded

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("pgqueue.worker")
TRACE_MODULE = "opentelemetry.trace"
ENQUEUED_BY = "pgqueue-enqueued-by"  # carrier key: the job whose attempt enqueued this one
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*): ")

Lookup = Callable[[int], Awaitable[Any]]


def capture() -> dict[str, str] | None:
    """The trace context of the current span, as the propagator writes it (traceparent,
    tracestate), to store with a job enqueued now; None when no span is current."""
    trace = sys.modules.get(TRACE_MODULE)
    if trace is None:
        return None  # OpenTelemetry is not loaded: no span can be current
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    from opentelemetry import propagate

    from pgqueue.context import _current

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    running = _current.get(None)
    if running is not None:
        carrier[ENQUEUED_BY] = str(running.job.id)
    return carrier or None


def for_worker(lookup: Lookup | None) -> WorkerTracing | None:
    """The worker's tracing, or None (no per-job cost at all) when OpenTelemetry is not
    loaded or no tracer provider is set. `lookup` reads a job's stored context when the
    claim does not return it."""
    trace = sys.modules.get(TRACE_MODULE)
    if trace is None or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    return WorkerTracing(lookup)


def outcome_name(outcome: Outcome | None) -> str:
    match outcome:
        case Succeeded():
            return "succeeded"
        case Failed(_, None):
            return "dead"
        case Failed():
            return "retry"
        case Snoozed():
            return "snoozed"
        case Released():
            return "released"
        case Cancelled():
            return "cancelled"
    return "abandoned"  # rescued from this worker: no outcome written


class WorkerTracing:
    """Runs attempts inside spans that continue their jobs' stored trace contexts."""

    def __init__(self, lookup: Lookup | None) -> None:
        from opentelemetry import trace

        self.lookup = lookup
        self.tracer = trace.get_tracer("pgqueue")

    async def traced(
        self, job: Job, attempt: Callable[[], Awaitable[Outcome | None]]
    ) -> Outcome | None:
        """Run the attempt inside its span; the handler sees the span as current."""
        from opentelemetry import propagate, trace
        from opentelemetry.context import Context

        carrier = await self._carrier(job)
        parent = propagate.extract(carrier or {}, context=Context())
        links = []
        enqueued_by = (carrier or {}).get(ENQUEUED_BY)
        if enqueued_by is not None:
            creator = trace.get_current_span(parent).get_span_context()
            links.append(trace.Link(creator, {"pgqueue.enqueued_by": _int(enqueued_by)}))
        attributes: dict[str, Any] = {
            "messaging.system": "pgqueue",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "pgqueue.task": job.task,
            "pgqueue.queue": job.queue,
            "pgqueue.job.id": job.id,
            "pgqueue.attempt": job.attempts,
        }
        if enqueued_by is not None:
            attributes["pgqueue.enqueued_by"] = _int(enqueued_by)
        with self.tracer.start_as_current_span(
            f"process {job.task}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ) as span:
            outcome = await attempt()
            _annotate(span, outcome)
        return outcome

    async def _carrier(self, job: Job) -> dict[str, str] | None:
        carrier: Any = job.trace_context
        if carrier is None and self.lookup is not None:
            try:
                carrier = await self.lookup(job.id)
            except asyncio.CancelledError:
                carrier = None  # interrupted before it started: the attempt decides what now
            except Exception as exc:
                log.warning("job %d: trace context not read, new trace: %s", job.id, exc)
                carrier = None
        return carrier if isinstance(carrier, dict) else None


def _annotate(span: Span, outcome: Outcome | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("pgqueue.outcome", outcome_name(outcome))
    if isinstance(outcome, Failed):
        error = str(outcome.error.get("error", ""))
        kind = _ERROR_TYPE.match(error)
        event = {
            "exception.type": kind.group(1) if kind else "Error",
            "exception.message": error[kind.end() :] if kind else error,
        }
        if "traceback" in outcome.error:
            event["exception.stacktrace"] = str(outcome.error["traceback"])
        span.add_event("exception", event)
        span.set_status(Status(StatusCode.ERROR, error))


def _int(text: str) -> int | str:
    return int(text) if text.isdigit() else text
