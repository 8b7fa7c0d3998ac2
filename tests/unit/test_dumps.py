"""Arguments are stored as JSON the same way whichever encoder takes the fast path."""

from __future__ import annotations

import json
import math

import pytest

from pgqueue.store import dumps


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        [1, "two", None, True, False, -7],
        ["é", "日本", "emoji 🎉"],
        [2**70, -(2**70)],  # beyond 64 bits: json's path
        [1.5, {"nested": [1, 2]}],
        {"a": 1},
    ],
)
def test_same_json_value_as_the_standard_library(value):
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize("bad", [[math.nan], [math.inf], [{"x": -math.inf}]])
def test_not_a_number_is_refused(bad):
    with pytest.raises(ValueError):
        dumps(bad)


def test_lone_surrogate_follows_the_standard_library():
    assert dumps(["\ud800"]) == json.dumps(["\ud800"], separators=(",", ":"))
