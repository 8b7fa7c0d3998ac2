"""The ASGI app: dashboard at /, REST API under /api (OpenAPI at /openapi.json), /metrics."""

from __future__ import annotations

import hmac
from importlib import resources
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from pgqueue.app import App
from pgqueue.errors import DatabaseUnavailable, PgQueueError, SchemaNotMigrated
from pgqueue.web import api, explore_api, metrics
from pgqueue.web.guard import MAX_BODY, Guard, GuardConfig

bearer = HTTPBearer(auto_error=False, description="The token given to `pgqueue serve --token`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


STATIC = Path(__file__).resolve().parent / "static"


def swagger_assets() -> Path:
    """Swagger UI's files, from the fastapi-offline package (no CDN: /api/docs works offline)."""
    return Path(str(resources.files("fastapi_offline").joinpath("static")))


def create_app(
    app: App,
    token: str | None = None,
    *,
    allowed_hosts: tuple[str, ...] = (),
    max_body: int = MAX_BODY,
    root_path: str = "",
) -> FastAPI:
    """The web app over `app`. With a token, every request needs it (but the dashboard's
    shell and the API docs, which hold no data); without one, reads are open and every
    state-changing request is refused. Requests whose Host is neither a loopback name nor in
    `allowed_hosts` are refused (DNS rebinding), and so are bodies over `max_body` bytes.
    `root_path`: the path prefix a reverse proxy serves it under (and strips), for the
    OpenAPI document; the dashboard uses relative addresses and needs nothing."""
    if token is not None and not token.strip():
        raise ValueError("an empty token would lock every request out")

    def authorized(creds: HTTPAuthorizationCredentials | None) -> bool:
        return (
            token is not None
            and creds is not None
            and hmac.compare_digest(creds.credentials.encode(), token.encode())
        )

    def require_read(creds: Credentials) -> None:
        if token is not None and not authorized(creds):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def require_write(creds: Credentials) -> None:
        if token is None:
            raise HTTPException(
                status_code=403, detail="actions are disabled: start `pgqueue serve --token`"
            )
        if not authorized(creds):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    web = FastAPI(
        title="pgqueue",
        version="0.1.0",
        description="Jobs, queues and workers of a pgqueue database.",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": root_path}] if root_path else None,
    )
    # Outermost of the app's own middleware: decides on the headers, before any parsing.
    web.add_middleware(
        Guard,
        config=GuardConfig(token=token, allowed_hosts=allowed_hosts, max_body=max_body),
    )
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    web.mount("/api/docs/assets", StaticFiles(directory=swagger_assets()), name="docs-assets")
    web.state.pgqueue = app
    # The dashboard's routes first: /api/jobs/search must not be read as /api/jobs/{job_id}.
    web.include_router(explore_api.router(require_read, require_write))
    web.include_router(api.router(require_read, require_write))

    @web.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes each bad input, and one that JSON cannot carry (NaN,
        # Infinity) made it a 500: where and why only.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @web.exception_handler(psycopg.DataError)
    async def data_error(_: Request, exc: psycopg.DataError) -> JSONResponse:
        return JSONResponse({"detail": f"the database refused the value: {exc}"}, status_code=400)

    @web.exception_handler(DatabaseUnavailable)
    async def unavailable(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @web.exception_handler(SchemaNotMigrated)
    async def not_migrated(_: Request, exc: SchemaNotMigrated) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)  # the server's state

    @web.exception_handler(PgQueueError)
    async def pgqueue_error(_: Request, exc: PgQueueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @web.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (STATIC / "index.html").read_text()

    @web.get("/healthz", include_in_schema=False)  # 200 when the database answers, else 503
    def healthz() -> JSONResponse:
        # For load balancers and orchestrators' probes: no token, any Host (see guard.py).
        if app.store.schema_version() is None:
            return JSONResponse({"detail": "the pgqueue schema is not migrated"}, 503)
        return JSONResponse({"status": "ok"})

    @web.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return (STATIC / "docs.html").read_text()

    @web.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=[Depends(require_read)],
        summary="Prometheus metrics",
    )
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(app), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return web
