"""The dashboard's REST calls: one combined poll (/api/overview), the jobs explorer, a job's
timeline, and bulk retry, cancel and delete. Every read is bounded; see pgqueue/sql/web.sql."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from pgqueue.app import App
from pgqueue.store.explore import ExploreStore
from pgqueue.web import views

State = Literal["queued", "running", "succeeded", "dead", "cancelled"]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_SELECTION = 500
MIN_WINDOW, MAX_WINDOW = 60, 7 * 86400


class Selection(BaseModel):
    """Jobs to act on, by id (at most 500 at once)."""

    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        min_length=1, max_length=MAX_SELECTION
    )


class Skipped(BaseModel):
    id: int
    state: str | None
    reason: str


class BulkResult(BaseModel):
    action: str
    asked: int
    done: list[int]
    skipped: list[Skipped]


def app_of(request: Request) -> App:
    app: App = request.app.state.pgqueue
    return app


def explore_of(request: Request) -> ExploreStore:
    store: ExploreStore | None = getattr(request.app.state, "explore", None)
    if store is None:  # built on first use: the App opens its pool lazily too
        store = request.app.state.explore = ExploreStore(app_of(request).store.pool)
    return store


AppDep = Annotated[App, Depends(app_of)]
StoreDep = Annotated[ExploreStore, Depends(explore_of)]


def router(require_read: Any, require_write: Any) -> APIRouter:
    api = APIRouter(prefix="/api", dependencies=[Depends(require_read)])

    @api.get("/overview", summary="Everything the dashboard shows, from one snapshot")
    def overview(
        store: StoreDep,
        window: Annotated[float, Query(ge=MIN_WINDOW, le=MAX_WINDOW)] = 3600,
        series: Literal["none", "all", "queue", "task"] = "queue",
        queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        task: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    ) -> dict[str, Any]:
        """Queues (live counts, and outcomes, failure ratio and p50/p95 latency and run time
        over the last `window` seconds), tasks (with "no worker serves task X"), workers,
        running jobs with their progress, and chart series by `series` (of one `queue` or
        `task` if given). Poll it at most once a second."""
        step = None if series == "none" else views.step_for(window)
        params = None
        if step is not None:
            params = {"by": series, "step": step, "queue": queue, "task": task}
        rows = store.overview(window, series=params)
        return views.overview(rows, window, step)

    @api.get("/jobs/search", summary="Find jobs: filters, text search, keyset pages")
    def search(
        app: AppDep,
        store: StoreDep,
        queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        state: State | None = None,
        task: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        scan: Annotated[int, Query(ge=100, le=100_000)] = 20_000,
    ) -> dict[str, Any]:
        """Jobs newest first among the `scan` newest ids below `before_id` that match every
        filter given; `q` is an id, a unique key or a text in args, kwargs or errors. Page on
        with `before_id=next_before_id` while `more` is true: each page reads at most `scan`
        rows, however few match."""
        if "\x00" in (q or "") + (queue or "") + (task or ""):
            raise HTTPException(status_code=400, detail="text with a NUL character")
        page = store.search(
            scan=scan,
            limit=limit,
            queue=queue,
            state=state,
            task=task,
            q=q,
            since=since,
            until=until,
            before_id=before_id,
        )
        jobs = page.jobs
        if q is not None and q.isdigit() and before_id is None and len(q) < 19:
            # An id is found wherever it is, not only among the newest rows.
            hit = app.get_job(int(q))
            if hit is not None:  # and first: that is the job asked for
                jobs = [_summary(hit), *(j for j in jobs if j["id"] != hit.id)][:limit]
        if len(page.jobs) == limit:
            following: int | None = page.jobs[-1]["id"]
        elif page.scanned == scan and page.low is not None:
            following = page.low
        else:
            following = None
        return {
            "jobs": jobs,
            "scanned": page.scanned,
            "next_before_id": following,
            "more": following is not None,
        }

    @api.get("/jobs/{job_id}/detail", summary="One job with its timeline and family")
    def detail(
        app: AppDep,
        store: StoreDep,
        job_id: JobId,
        data: Annotated[
            bool, Query(description="false: leave out args, kwargs and result (as null)")
        ] = True,
    ) -> dict[str, Any]:
        """The job, its progress, every attempt as a timeline, its parents and children
        with their states, and the actions that fit its state. An open job page polls it
        every second: it asks for the job's data (of any size) only when the job changed."""
        job = app.get_job(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id}")
        extra = store.job_extra(job_id)
        if not data:
            job = replace(job, args=None, kwargs=None, result=None)  # type: ignore[arg-type]
        row = asdict(job)
        row["state"] = str(job.state)
        family = store.job_family(job_id)
        progress = row.get("progress", (extra or {}).get("progress"))
        return {
            "job": row,
            "progress": progress,
            "progress_message": row.get("progress_message", (extra or {}).get("progress_message")),
            "cancel_requested_at": (extra or {}).get("cancel_requested_at"),
            "timeline": views.timeline(job, extra),
            "parents": [r for r in family if r["relation"] == "parent"],
            "children": [r for r in family if r["relation"] == "child"],
            "actions": views.actions(str(job.state)),
        }

    @api.delete(
        "/jobs/{job_id}",
        dependencies=[Depends(require_write)],
        responses={404: {"description": "No such job"}, 409: {"description": "Not finished"}},
        summary="Delete a finished job",
    )
    def delete(store: StoreDep, job_id: JobId) -> dict[str, Any]:
        state = store.job_states([job_id]).get(job_id)
        if state is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id}")
        if not store.job_delete([job_id]):
            raise HTTPException(
                status_code=409, detail=f"job {job_id} is {state}: cancel it before deleting"
            )
        return {"ok": True, "detail": f"job {job_id} deleted"}

    @api.post(
        "/jobs/bulk-retry",
        dependencies=[Depends(require_write)],
        summary="Queue many dead or cancelled jobs again",
    )
    def bulk_retry(app: AppDep, store: StoreDep, body: Selection) -> BulkResult:
        return _bulk("retry", body.ids, store, ("dead", "cancelled"), app.retry)

    @api.post(
        "/jobs/bulk-cancel",
        dependencies=[Depends(require_write)],
        summary="Cancel many queued or running jobs",
    )
    def bulk_cancel(app: AppDep, store: StoreDep, body: Selection) -> BulkResult:
        return _bulk("cancel", body.ids, store, ("queued", "running"), app.cancel)

    @api.post(
        "/jobs/bulk-delete",
        dependencies=[Depends(require_write)],
        summary="Delete many finished jobs",
    )
    def bulk_delete(store: StoreDep, body: Selection) -> BulkResult:
        ids = list(dict.fromkeys(body.ids))
        states = store.job_states(ids)
        deleted = set(store.job_delete(ids))
        skipped = [
            _skip(i, states.get(i), "succeeded, dead or cancelled") for i in ids if i not in deleted
        ]
        return BulkResult(action="delete", asked=len(ids), done=sorted(deleted), skipped=skipped)

    return api


def _bulk(
    action: str, asked: list[int], store: ExploreStore, fits: tuple[str, ...], act: Any
) -> BulkResult:
    """Apply `act` to each job whose state fits, one short transaction each (the same
    library call as for one job, so dependencies and wake-ups behave the same)."""
    ids = list(dict.fromkeys(asked))
    states = store.job_states(ids)
    done: list[int] = []
    skipped: list[Skipped] = []
    for job_id in ids:
        state = states.get(job_id)
        if state in fits and act(job_id):
            done.append(job_id)
        elif state in fits:
            why = "another job holds its unique key" if action == "retry" else "it finished"
            skipped.append(Skipped(id=job_id, state=state, reason=why))
        else:
            skipped.append(_skip(job_id, state, " or ".join(fits)))
    return BulkResult(action=action, asked=len(ids), done=done, skipped=skipped)


def _skip(job_id: int, state: str | None, wanted: str) -> Skipped:
    if state is None:
        return Skipped(id=job_id, state=None, reason="no such job")
    return Skipped(id=job_id, state=state, reason=f"is {state}, not {wanted}")


def _summary(job: Any) -> dict[str, Any]:
    keys: tuple[str, ...] = ("id", "queue", "task", "priority", "attempts", "max_attempts")
    keys += ("run_at",)
    keys += ("created_at", "started_at", "finished_at", "last_error", "unique_key")
    out = {k: getattr(job, k) for k in keys}
    out["state"] = str(job.state)
    out["progress"] = getattr(job, "progress", None)
    out["progress_message"] = getattr(job, "progress_message", None)
    return out
