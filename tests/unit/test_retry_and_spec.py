"""Pure parts: backoff and the validation of a job before it is inserted."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

import pgqueue
from pgqueue.app import build_spec
from pgqueue.retry import RetryPolicy


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(base=1, factor=2, max_delay=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.next_run_in(3, 3) is None
    assert policy.next_run_in(2, 3) == 2


def test_jitter_stays_within_bounds():
    policy = RetryPolicy(base=10, jitter=0.2)
    delays = {policy.delay(1) for _ in range(200)}
    assert all(8 <= d <= 12 for d in delays) and len(delays) > 1


def test_bad_policies_are_refused():
    for kwargs in ({"base": -1}, {"factor": 0.5}, {"jitter": 2}):
        with pytest.raises(pgqueue.ConfigurationError):
            RetryPolicy(**kwargs)


def spec(**overrides):
    opts = {"queue": "default", "priority": 0, "max_attempts": 3}
    opts.update(overrides)
    args = opts.pop("args", [1])
    return build_spec("t", args, opts.pop("kwargs", {}), **opts)


def test_spec_serialises_arguments():
    s = spec(args=[1, "a", None, {"b": [True]}], kwargs={"k": 1.5}, delay=timedelta(seconds=2))
    assert json.loads(s.args_json) == [1, "a", None, {"b": [True]}]
    assert json.loads(s.kwargs_json) == {"k": 1.5}
    assert s.delay == 2.0


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"args": [object()]}, pgqueue.SerializationError),
        ({"args": [float("nan")]}, pgqueue.SerializationError),
        ({"args": "abc"}, pgqueue.SerializationError),
        ({"kwargs": {1: "x"}}, pgqueue.SerializationError),
        ({"queue": ""}, pgqueue.ConfigurationError),
        ({"priority": "high"}, pgqueue.ConfigurationError),
        ({"priority": 2**40}, pgqueue.ConfigurationError),
        ({"max_attempts": 0}, pgqueue.ConfigurationError),
        ({"delay": -1}, pgqueue.ConfigurationError),
        ({"run_at": datetime(2030, 1, 1)}, pgqueue.ConfigurationError),
        ({"delay": 1, "run_at": datetime.now().astimezone()}, pgqueue.ConfigurationError),
        ({"timeout": 0}, pgqueue.ConfigurationError),
    ],
)
def test_bad_jobs_are_refused_with_a_clear_error(overrides, error):
    with pytest.raises(error):
        spec(**overrides)


def test_serialization_error_is_a_type_error():
    assert issubclass(pgqueue.SerializationError, TypeError)
