"""Pure parts of the lifecycle, without a database: the insert plan, settings, schedules."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from pgqueue.errors import ConfigurationError
from pgqueue.schedule import Schedule
from pgqueue.settings import WorkerSettings
from pgqueue.store import JobSpec, loads, plans


def spec(task: str, key: str | None = None) -> JobSpec:
    return JobSpec(task, "[]", "{}", "default", 0, 3, unique_key=key)


def test_insert_retry_never_inserts_a_keyless_job_twice():
    """The holder of a taken key finished between the insert and the look-up: only the job
    that found no holder is inserted again."""
    specs = [spec("plain"), spec("keyed", "k")]
    plan = plans.job_insert_many(specs)
    step = next(plan)  # release expired keys
    assert "release_unique_keys" in step[0]
    query, params = plan.send([])
    assert "jobs" in params and '"plain"' in params["jobs"] and '"keyed"' in params["jobs"]
    query, params = plan.send([(1, None), (None, "k")])  # the key was taken
    assert params == {"unique_keys": ["k"]}
    query, params = plan.send([])  # ...and its holder is gone by now
    assert "INSERT" in query and params["task"] == "keyed", "only the keyed job again"
    with pytest.raises(StopIteration) as done:
        plan.send([(2, "k")])
    assert done.value.value == [1, 2]


def test_duplicate_keys_get_the_holders_id():
    plan = plans.job_insert_many([spec("a", "k"), spec("b", "k")])
    next(plan)
    plan.send([])
    plan.send([(7, "k"), (None, "k")])
    with pytest.raises(StopIteration) as done:
        plan.send([("k", 7)])
    assert done.value.value == [7, 7]


@pytest.mark.parametrize(
    "field,value",
    [
        ("heartbeat_interval", math.nan),
        ("lease", math.inf),
        ("poll_interval", math.nan),
        ("shutdown_grace", math.inf),
        ("concurrency", 99_999_999_999),
        ("claim_batch", 10**12),
        ("retain_dead", math.inf),
    ],
)
def test_settings_refuse_numbers_no_worker_can_honour(field, value):
    with pytest.raises(ConfigurationError, match=field):
        WorkerSettings(**{field: value})


def test_a_cron_that_never_fires_is_refused_when_declared():
    with pytest.raises(ConfigurationError, match="never fires"):
        Schedule(name="never", task="t", cron="0 0 31 2 *")
    app = pgqueue.App("postgresql://localhost/unused")
    with pytest.raises(ConfigurationError, match="never fires"):

        @app.periodic(cron="0 0 30 2 *")
        def never() -> None: ...


def test_missed_fire_times_are_caught_up_from_the_last_one_on_record():
    every_minute = Schedule(name="m", task="t", cron="* * * * *")
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    # Everything was down for ten minutes: the latest missed fire is enqueued, once.
    assert every_minute.due_since(now - timedelta(minutes=10), now) == [
        datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ]
    # A loop that ran late catches up within the look-back.
    assert every_minute.due_since(now - timedelta(minutes=2), now)[-1] == datetime(
        2026, 1, 1, 12, 0, tzinfo=UTC
    )


def test_json_from_the_database_keeps_big_integers():
    # Not powers of two: a float would not compare equal to these.
    big, negative = 12345678901234567891, -123456789012345678901
    parsed = loads(f"[{big}, 2]".encode())
    assert parsed == [big, 2] and type(parsed[0]) is int
    assert loads(f'{{"a": {negative}}}') == {"a": negative}
    assert loads(b'["x", 1.5]') == ["x", 1.5]


def test_a_claimed_row_becomes_the_job_it_names():
    import dataclasses
    import uuid

    from pgqueue.store.params import CLAIM_COLUMNS, claimed_job

    row = [f"value-{name}" for name in CLAIM_COLUMNS]
    row[CLAIM_COLUMNS.index("args")] = '[1, "two"]'  # text, parsed by the worker
    row[CLAIM_COLUMNS.index("kwargs")] = None  # no kwargs: NULL
    worker = uuid.uuid4()
    job = claimed_job(row, worker)
    for name, value in zip(CLAIM_COLUMNS, row, strict=True):
        if name not in ("args", "kwargs"):
            assert getattr(job, name) == value, name
    assert job.args == [1, "two"] and job.kwargs == {}
    assert job.state == "running" and job.worker_id == worker and job.errors == []
    assert job.finished_at is None and job.result is None and job.last_error is None
    assert len(dataclasses.fields(job)) >= 19


@pytest.mark.parametrize(
    "options,fragment",
    [
        ({"queue": "q\x00"}, "NUL"),
        ({"queue": "\ud800"}, "lone surrogate"),
        ({"queue": "q" * 201}, "at most 200 bytes"),
        # Names `pgqueue work --queues` cannot select: the job waited for no worker.
        ({"queue": "a,b"}, "no comma"),
        ({"queue": " emails"}, "no space at either end"),
        ({"queue": "emails\n"}, "no space at either end"),
        ({"queue": "e\tmails"}, "no control character"),
        ({"queue": "*"}, "is not `\\*`"),
        ({"unique_key": "k\x00"}, "NUL"),
        ({"delay": 1e300}, "at most"),
        ({"timeout": float("inf")}, "finite"),
        ({"max_attempts": 2**40}, "32 bits"),
        ({"depends_on": [2**64]}, "job ids"),
    ],
)
def test_job_options_postgresql_cannot_store_are_refused_before_the_database(options, fragment):
    app = pgqueue.App("postgresql://localhost/unused")
    with pytest.raises(ConfigurationError, match=fragment):
        app._spec("t", [], {}, options)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["a\x00b"], "NUL"),
        ([{"k": ["\udfff"]}], "lone surrogate"),
        ([{"a\x00": 1}], "NUL"),
    ],
)
def test_arguments_jsonb_refuses_are_a_clear_error(args, fragment):
    from pgqueue.errors import SerializationError

    app = pgqueue.App("postgresql://localhost/unused")
    with pytest.raises(SerializationError, match=fragment):
        app._spec("t", args, {}, {})


def test_valid_text_with_escapes_is_accepted():
    app = pgqueue.App("postgresql://localhost/unused")
    spec = app._spec("t", ["😀", "\\u0000 is text here", "é"], {}, {})
    assert loads(spec.args_json) == ["😀", "\\u0000 is text here", "é"]


def test_a_claim_that_took_nothing_forgets_the_claim_position():
    """A claim for no slot (or one that found nothing) leaves no position behind, and does
    not fail: a worker of the chaos test once died of max() over no jobs."""
    from types import SimpleNamespace

    from pgqueue.worker.claimer import Claimer

    state = SimpleNamespace(_after={"q": (0, None, 1)})
    Claimer._note_end(state, ["q"], [], 0)  # type: ignore[arg-type]
    assert state._after == {}


@pytest.mark.parametrize("task", ["   ", "\t"])
def test_a_blank_task_name_is_refused(task):
    """No worker can declare such a task: its job would wait for none."""
    app = pgqueue.App("postgresql://localhost/unused")
    with pytest.raises(ConfigurationError, match="not blank"):
        app._spec(task, [], {}, {})
