"""Histograms of the statistics rollups, and the percentiles estimated from them.

The triggers of pgqueue.jobs (migration 0014) count each finished job's enqueue-to-start
latency and run time in buckets given by their upper bound (`le`, as Prometheus has it),
with the sum of the values in each bucket. A percentile is estimated from them: the values
in a bucket are taken as spread evenly around their mean, as wide as the bucket allows. A
bucket holding one value (or values all at its mean's distance from an edge) gives it back
exactly; otherwise the estimate is off by less than the bucket's width. Internal.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

# Upper bounds in seconds, as in migrations/versions/0014_stats_rollups.py (BOUNDS); they
# include every bucket of /metrics' histograms.
BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400, math.inf,
)  # fmt: skip


def bucket_of(seconds: float) -> float:
    """The bucket a value falls in: the first bound at or above it."""
    return BUCKETS[bisect_left(BUCKETS, seconds)]


_LOWER = {le: BUCKETS[i - 1] if i else 0.0 for i, le in enumerate(BUCKETS)}


def quantile(
    le: Sequence[float], n: Sequence[int], total: Sequence[float], q: float
) -> float | None:
    """The q-quantile (0..1) of the values counted in buckets (bounds `le` in increasing
    order, counts `n`, sums `total`), as PostgreSQL's percentile_cont would give it from the
    values themselves, estimated; None without values."""
    count = sum(c for c in n if c > 0)
    if count == 0:
        return None
    position = q * (count - 1)
    rank = math.floor(position)
    low = _value(le, n, total, rank)
    if rank + 1 >= count or position == rank:
        return low
    return low + (position - rank) * (_value(le, n, total, rank + 1) - low)


def _value(le: Sequence[float], n: Sequence[int], total: Sequence[float], rank: int) -> float:
    """The estimated rank-th smallest value (0-based): a bucket's values are taken as spread
    evenly around their mean, as wide as the bucket allows."""
    seen = 0
    for bound, c, sum_ in zip(le, n, total, strict=True):
        if c <= 0:
            continue
        if rank < seen + c:
            lower = _LOWER.get(bound, 0.0)
            mean = min(max(sum_ / c, lower), bound)
            half = min(mean - lower, bound - mean)
            return mean - half + 2 * half * (rank - seen + 0.5) / c
        seen += c
    raise AssertionError("rank beyond the histogram")


def merged(
    le: Sequence[float] | None,
    n: Sequence[int] | None,
    total: Sequence[float] | None,
    values: Iterable[float] | None,
) -> tuple[list[float], list[int], list[float]]:
    """Bucket arrays with single values added to their buckets, in increasing order."""
    counts: dict[float, int] = {}
    sums: dict[float, float] = {}
    for b, c, t in zip(le or (), n or (), total or (), strict=True):
        counts[float(b)] = int(c)
        sums[float(b)] = float(t)
    for value in values or ():
        bound = bucket_of(value)
        counts[bound] = counts.get(bound, 0) + 1
        sums[bound] = sums.get(bound, 0.0) + value
    bounds = sorted(counts)
    return bounds, [counts[b] for b in bounds], [sums[b] for b in bounds]


def queue_row(row: dict[str, Any]) -> dict[str, Any]:
    """A queue_stats row as `pgqueue stats` shows it: the latency histogram (finished jobs'
    buckets and running jobs' values) becomes the p50 and p95 estimates."""
    le, n, total = merged(
        row.pop("latency_le"),
        row.pop("latency_n"),
        row.pop("latency_total"),
        row.pop("latency_running"),
    )
    row["latency_p50"] = quantile(le, n, total, 0.5)
    row["latency_p95"] = quantile(le, n, total, 0.95)
    return row


def throughput_row(row: dict[str, Any]) -> dict[str, Any]:
    """A throughput row: the minute's latency histogram (folded, plus the changes not folded
    in yet) becomes its p50 estimate."""
    le, n, total = row.pop("latency_le"), row.pop("latency_n"), row.pop("latency_total")
    more = row.pop("pending_le"), row.pop("pending_n"), row.pop("pending_total")
    if more[0]:
        le, n, total = merged(le, n, total, ())
        for bound, count, sum_ in zip(*more, strict=True):
            i = bisect_left(le, bound)
            if i < len(le) and le[i] == bound:
                n[i] += count
                total[i] += sum_
            else:
                le.insert(i, bound)
                n.insert(i, count)
                total.insert(i, sum_)
    row["latency_p50"] = None if not le else quantile(le, n, total, 0.5)
    return row
