"""OpenTelemetry: the trace context of enqueue is stored with the job, and the worker's span
for each attempt continues it (checked with the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import pgqueue
from pgqueue.migrate import sqlalchemy_url
from pgqueue.store.copyin import COPY_MIN_JOBS
from tests import jobs
from tests.waiting import wait_for


class _Switchable(SimpleSpanProcessor):
    """Exports while this module runs; the global provider outlives it."""

    on = True

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            super().on_end(span)


@pytest.fixture(scope="module")
def exporter():
    exporter = InMemorySpanExporter()
    processor = _Switchable(exporter)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # Set once per process (OpenTelemetry allows no more): workers started from now on
        # trace, in this module and after it.
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(processor)
    yield exporter
    processor.on = False
    exporter.clear()


@pytest.fixture
def spans(exporter):
    exporter.clear()
    return exporter


tracer = trace.get_tracer("tests")


@jobs.app.task(name="tracing.boom", max_attempts=2, retry=jobs.fast)
def boom() -> None:
    raise ValueError("no stock left")


@jobs.app.task(name="tracing.fan_out")
def fan_out() -> None:
    ctx = pgqueue.context()
    ctx.enqueue("add", [1, 2])  # a follow-up: inserted with this job's success
    jobs.app.enqueue("add", [3, 4])  # inserted at once


def attempt_spans(exporter, job_id, count=1):
    def found():
        done = [
            s for s in exporter.get_finished_spans() if s.attributes.get("pgqueue.job.id") == job_id
        ]
        return done if len(done) >= count else None

    return sorted(wait_for(found, timeout=15), key=lambda s: s.attributes["pgqueue.attempt"])


def test_the_attempt_span_continues_the_trace_of_enqueue(app, worker, spans, db):
    with tracer.start_as_current_span("checkout") as checkout:
        job_id = jobs.add.enqueue(2, 3)
    parent = checkout.get_span_context()
    stored = db.execute("SELECT trace_context FROM pgqueue.jobs WHERE id = %s", (job_id,))
    assert f"{parent.trace_id:032x}" in stored.fetchone()[0]["traceparent"]
    with worker():
        assert app.wait(job_id, timeout=10) == 5
        (span,) = attempt_spans(spans, job_id)
    assert span.name == "process add" and span.kind == SpanKind.CONSUMER
    assert span.context.trace_id == parent.trace_id
    assert span.parent is not None and span.parent.span_id == parent.span_id
    for key, value in {
        "pgqueue.task": "add",
        "pgqueue.queue": "default",
        "pgqueue.job.id": job_id,
        "pgqueue.attempt": 1,
        "pgqueue.outcome": "succeeded",
        "messaging.system": "pgqueue",
    }.items():
        assert span.attributes[key] == value, key
    assert span.status.status_code == StatusCode.UNSET


def test_every_enqueue_path_stores_the_trace_context(app, db, dsn):
    engine = create_engine(sqlalchemy_url(dsn))
    with tracer.start_as_current_span("producer") as producer:
        ids = [jobs.add.enqueue(1, 1), app.enqueue("add", [1, 2])]
        ids += app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(3)])
        ids += app.enqueue_many([{"task": "add", "args": [1, 1], "unique_key": "traced"}])
        ids += app.enqueue_many([{"task": "add", "args": [i, 0]} for i in range(COPY_MIN_JOBS)])
        with db.transaction():
            ids.append(jobs.add.options(conn=db).enqueue(2, 2))
        with Session(engine) as session:
            ids.append(jobs.add.options(conn=session).enqueue(3, 3))
            session.commit()

        async def produce() -> list[int]:
            try:
                return [
                    await jobs.add.enqueue_async(4, 4),
                    await app.enqueue_async("add", [5, 5]),
                    *(await app.enqueue_many_async([{"task": "add", "args": [6, 6]}])),
                    *(await app.enqueue_many_async([{"task": "add"}] * COPY_MIN_JOBS)),
                ]
            finally:
                await app.aclose()

        ids += asyncio.run(produce())
    engine.dispose()
    untraced = app.enqueue("add", [0, 0])
    trace_id = f"{producer.get_span_context().trace_id:032x}"
    rows = dict(
        db.execute(
            "SELECT id, trace_context ->> 'traceparent' FROM pgqueue.jobs WHERE id = ANY(%s)",
            ([*ids, untraced],),
        ).fetchall()
    )
    assert len(ids) == 11 + 2 * COPY_MIN_JOBS  # the large batches go in by COPY
    assert all(rows[i] is not None and trace_id in rows[i] for i in ids), rows
    assert rows[untraced] is None


def test_a_failed_attempt_records_its_error_then_the_job_dies(app, worker, spans):
    with tracer.start_as_current_span("order"):
        job_id = boom.enqueue()
    with worker():
        with pytest.raises(pgqueue.JobFailed):
            app.wait(job_id, timeout=10)
        first, second = attempt_spans(spans, job_id, count=2)
    assert first.context.trace_id == second.context.trace_id
    assert [first.attributes["pgqueue.outcome"], second.attributes["pgqueue.outcome"]] == [
        "retry",
        "dead",
    ]
    for span in (first, second):
        assert span.status.status_code == StatusCode.ERROR
        assert "no stock left" in span.status.description
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "no stock left"
        assert "raise ValueError" in event.attributes["exception.stacktrace"]


def test_fan_out_children_are_children_of_the_parent_attempt_and_link_to_it(app, worker, spans, db):
    with worker(concurrency=2):
        parent_id = fan_out.enqueue()  # no span current: the parent attempt starts a trace
        app.wait(parent_id, timeout=10)
        (parent,) = attempt_spans(spans, parent_id)
        children = [
            r[0]
            for r in db.execute(
                "SELECT id FROM pgqueue.jobs WHERE task = 'add' ORDER BY id"
            ).fetchall()
        ]
        assert len(children) == 2
        child_spans = [attempt_spans(spans, c)[0] for c in children]
    assert parent.parent is None
    for child in child_spans:
        assert child.context.trace_id == parent.context.trace_id
        assert child.parent.span_id == parent.context.span_id
        (link,) = child.links
        assert link.context.span_id == parent.context.span_id
        assert link.attributes["pgqueue.enqueued_by"] == parent_id
        assert child.attributes["pgqueue.enqueued_by"] == parent_id


NO_OTEL = textwrap.dedent(
    """
    import asyncio, sys, threading
    if sys.argv[1] == "blocked":
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
    else:
        import opentelemetry.trace  # loaded, but no tracer provider set
    import pgqueue

    app = pgqueue.App(sys.argv[2])

    @app.task(name="plain")
    def plain(x):
        pgqueue.context().progress(0.5)
        return x * 2

    worker = pgqueue.Worker(app, pgqueue.WorkerSettings(poll_interval=1.0), sys.argv[2])
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
    thread.start()
    assert worker.wait_started(20)
    job_id = plain.enqueue(21)
    print(app.wait(job_id, timeout=20), worker.runner.tracing, app.get_job(job_id).trace_context)
    worker.stop()
    thread.join(30)
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]))
    """
)


@pytest.mark.parametrize("otel", ["blocked", "no-provider"])
def test_without_opentelemetry_or_a_provider_jobs_run_untraced(dsn, otel):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", NO_OTEL, otel, dsn],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result, loaded = done.stdout.splitlines()
    assert result == "42 None None"
    if otel == "blocked":
        assert loaded == "[]"
