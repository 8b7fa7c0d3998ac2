"""Batch (pgqueue/store/params.py): the JobSpecs it gives back are those it was given."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pgqueue.store import Batch, JobSpec
from pgqueue.store.params import spec_parts

FULL = JobSpec(
    task="t",
    args_json="[1]",
    kwargs_json='{"a":1}',
    queue="q",
    priority=3,
    max_attempts=4,
    delay=1.5,
    run_at=datetime(2030, 1, 1, tzinfo=UTC),
    unique_key="u",
    timeout=2.0,
    depends_on=(7,),
    unique_for=9.0,
    trace_context={"traceparent": "x"},
    concurrency_key="c",
)


def test_every_field_comes_back():
    batch = Batch()
    batch.add(FULL)
    batch.add(FULL, "[2]", "{}")
    assert len(batch) == 2
    assert batch[0] is FULL
    assert batch[1] == replace(FULL, args_json="[2]", kwargs_json="{}")
    assert list(batch) == [batch[0], batch[1]] == batch[0:2]
    assert batch[-1] == batch[1]


def test_parts_of_a_batch_and_of_a_list():
    batch = Batch()
    batch.add(FULL, "[2]", "{}")
    assert spec_parts(batch) == ([FULL], ["[2]"], ["{}"])
    assert spec_parts([FULL]) == ([FULL], ["[1]"], ['{"a":1}'])
