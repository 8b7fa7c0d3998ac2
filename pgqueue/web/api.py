"""REST API under /api: read jobs, queues, workers and stats; enqueue and act on jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pgqueue.app import App
from pgqueue.errors import ConfigurationError, InvalidJobState, SerializationError
from pgqueue.operations import retry_refusal

State = Literal["queued", "running", "succeeded", "dead", "cancelled"]
MAX_INT = 2**31 - 1


class EnqueueRequest(BaseModel):
    """A job to insert. A field this API does not know is refused (422), never dropped."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=500, description="Task name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    queue: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=-MAX_INT, le=MAX_INT)
    delay: float | None = Field(default=None, ge=0, le=10 * 365 * 86400)
    unique_key: str | None = Field(default=None, max_length=500)
    max_attempts: int | None = Field(default=None, ge=1, le=10_000)
    run_at: datetime | None = Field(
        default=None, description="When it may run, with a time zone (instead of delay)."
    )
    timeout: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=500)


def _refused(app: App, job_id: int, why: str) -> None:
    """An action that changed nothing: 404 if there is no such job (as GET says), else 409."""
    if app.get_job(job_id) is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    raise HTTPException(status_code=409, detail=f"job {job_id} {why}")


class Enqueued(BaseModel):
    id: int


QueueName = Annotated[str, Path(min_length=1, max_length=200)]


class NamedQueue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The queue's name.")


class Done(BaseModel):
    ok: bool
    detail: str


def app_of(request: Request) -> App:
    app: App = request.app.state.pgqueue
    return app


AppDep = Annotated[App, Depends(app_of)]


def router(require_read: Any, require_write: Any) -> APIRouter:
    api = APIRouter(prefix="/api", dependencies=[Depends(require_read)])

    @api.get("/stats", summary="Per-queue counts, throughput and latency")
    def stats(app: AppDep) -> list[dict[str, Any]]:
        return app.store.queue_stats()

    @api.get("/throughput", summary="Per-minute outcomes and latency, for the chart")
    def throughput(
        app: AppDep, minutes: Annotated[int, Query(ge=1, le=1440)] = 60
    ) -> list[dict[str, Any]]:
        return app.store.throughput(minutes)

    @api.get("/jobs", summary="Jobs, newest first")
    def list_jobs(
        app: AppDep,
        queue: Annotated[str | None, Query(max_length=200)] = None,
        state: State | None = None,
        task: Annotated[str | None, Query(max_length=500)] = None,
        since_seconds: Annotated[float | None, Query(ge=0, le=10 * 365 * 86400)] = None,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        since = None
        if since_seconds is not None:
            since = datetime.now(UTC) - timedelta(seconds=since_seconds)
        return app.store.job_list(
            queue=queue, state=state, task=task, since=since, before_id=before_id, limit=limit
        )

    @api.post(
        "/jobs", status_code=202, dependencies=[Depends(require_write)], summary="Enqueue a job"
    )
    def enqueue(app: AppDep, body: EnqueueRequest) -> Enqueued:
        try:
            job_id = app.enqueue(
                body.task,
                body.args,
                body.kwargs,
                queue=body.queue,
                priority=body.priority,
                delay=body.delay,
                unique_key=body.unique_key,
                max_attempts=body.max_attempts,
                run_at=body.run_at,
                timeout=body.timeout,
                concurrency_key=body.concurrency_key,
            )
        except (ConfigurationError, SerializationError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return Enqueued(id=job_id)

    @api.get("/jobs/{job_id}", summary="One job, with its error history")
    def get_job(app: AppDep, job_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
        from dataclasses import asdict

        job = app.get_job(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id}")
        data = asdict(job)
        data["state"] = str(job.state)
        return data

    @api.post(
        "/jobs/{job_id}/retry",
        dependencies=[Depends(require_write)],
        responses={
            404: {"description": "No such job"},
            409: {"description": "Not dead or cancelled, or its unique key is held"},
        },
    )
    def retry(app: AppDep, job_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Done:
        try:
            if not app.retry(job_id):
                job = app.get_job(job_id)
                if job is None:
                    raise HTTPException(status_code=404, detail=f"no job {job_id}")
                raise HTTPException(status_code=409, detail=f"job {job_id} {retry_refusal(job)}")
        except InvalidJobState as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return Done(ok=True, detail=f"job {job_id} queued again")

    @api.post(
        "/jobs/{job_id}/cancel",
        dependencies=[Depends(require_write)],
        responses={404: {"description": "No such job"}, 409: {"description": "Already finished"}},
    )
    def cancel(app: AppDep, job_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Done:
        if not app.cancel(job_id):
            _refused(app, job_id, "is not queued or running")
        return Done(ok=True, detail=f"job {job_id} cancel requested")

    @api.get("/queues", summary="Queue settings: paused, limits, retention")
    def queues(app: AppDep) -> list[dict[str, Any]]:
        return app.queues()

    # A queue's name may hold "/" (`{name:path}` takes it whole), and "." or ".." (which a
    # browser folds away as path segments: the body form takes any name).
    @api.post("/queues/{name:path}/pause", dependencies=[Depends(require_write)])
    def pause(app: AppDep, name: QueueName) -> Done:
        app.pause_queue(name)
        return Done(ok=True, detail=f"queue {name} paused")

    @api.post("/queues/{name:path}/resume", dependencies=[Depends(require_write)])
    def resume(app: AppDep, name: QueueName) -> Done:
        app.resume_queue(name)
        return Done(ok=True, detail=f"queue {name} resumed")

    @api.post(
        "/queues/pause",
        dependencies=[Depends(require_write)],
        summary="Pause a queue named in the body (any name)",
    )
    def pause_named(app: AppDep, body: NamedQueue) -> Done:
        return pause(app, body.name)

    @api.post(
        "/queues/resume",
        dependencies=[Depends(require_write)],
        summary="Resume a queue named in the body (any name)",
    )
    def resume_named(app: AppDep, body: NamedQueue) -> Done:
        return resume(app, body.name)

    @api.get("/workers", summary="Worker processes and their heartbeats")
    def workers(app: AppDep) -> list[dict[str, Any]]:
        return app.store.worker_list()

    return api
