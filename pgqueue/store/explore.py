"""ExploreStore: the dashboard's bounded reads and bulk actions (pgqueue/sql/web.sql), over
the App's synchronous pool. Internal API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from pgqueue.sql import QUERIES
from pgqueue.store import idle
from pgqueue.store.errors import translate_errors
from pgqueue.store.sync import Row, as_dicts

# Counts of queued or running jobs stop here: past a million rows an exact figure costs a
# long index scan every second and tells an operator nothing more.
LIVE_CAP = 1_000_000
# Children in any state are looked for among this many jobs inserted after their parent.
CHILD_HORIZON = 100_000


@dataclass(frozen=True)
class SearchPage:
    """One page of the explorer: the jobs matched, how many rows were read and the lowest
    id read (the next page starts below it)."""

    jobs: list[Row]
    scanned: int
    low: int | None


class ExploreStore:
    """The dashboard's queries, each bounded by a LIMIT, a keyset window or a time window."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with translate_errors(), idle.live(self.pool) as conn, conn.cursor() as cur:
            yield cur

    def _run(self, cur: Any, name: str, params: dict[str, Any]) -> list[Row]:
        cur.execute(QUERIES[name], params)
        return as_dicts(cur.description, cur.fetchall() if cur.description else [])

    def overview(
        self,
        window: float,
        *,
        series: dict[str, Any] | None = None,
        running_limit: int = 20,
    ) -> dict[str, list[Row]]:
        """Everything the dashboard polls for, read in one snapshot (REPEATABLE READ), so a
        count never differs between two panels of one refresh."""
        with self._cursor() as cur:
            self._run(cur, "web_snapshot", {})
            out = {
                "live": self._run(cur, "web_live_counts", {"cap": LIVE_CAP}),
                "breakdown": self._run(cur, "web_breakdown", {"window": window}),
                "settings": self._run(cur, "queue_config", {}),
                "tasks": self._run(cur, "task_list", {}),
                "workers": self._run(cur, "web_workers", {}),
                "running": self._run(cur, "web_running", {"limit": running_limit}),
                "failures": self._run(cur, "web_failures", {"window": window, "limit": 10}),
                "now": self._run(cur, "web_now", {}),
            }
            if series is not None:
                out["series"] = self._run(cur, "web_series", {"window": window, **series})
            return out

    def search(self, *, scan: int, limit: int, **filters: Any) -> SearchPage:
        params = {
            k: filters.get(k)
            for k in ("queue", "state", "task", "since", "until", "q", "before_id")
        }
        with self._cursor() as cur:
            rows = self._run(cur, "web_job_search", {**params, "scan": scan, "limit": limit})
        head = rows[0]
        jobs = [
            {k: v for k, v in r.items() if k not in ("scanned", "low")}
            for r in rows
            if r["id"] is not None
        ]
        return SearchPage(jobs=jobs, scanned=int(head["scanned"]), low=head["low"])

    def job_extra(self, job_id: int) -> Row | None:
        with self._cursor() as cur:
            rows = self._run(cur, "web_job_extra", {"id": job_id})
        return rows[0] if rows else None

    def job_family(self, job_id: int) -> list[Row]:
        with self._cursor() as cur:
            return self._run(cur, "web_job_family", {"id": job_id, "horizon": CHILD_HORIZON})

    def job_states(self, ids: Sequence[int]) -> dict[int, str]:
        with self._cursor() as cur:
            rows = self._run(cur, "web_job_states", {"ids": list(ids)})
        return {int(r["id"]): str(r["state"]) for r in rows}

    def job_delete(self, ids: Sequence[int]) -> list[int]:
        """Delete the finished jobs among `ids`; the ids deleted."""
        with self._cursor() as cur:
            return [int(r["id"]) for r in self._run(cur, "web_job_delete", {"ids": list(ids)})]
