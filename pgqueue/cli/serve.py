"""`pgqueue serve`: the dashboard, REST API and /metrics."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from pgqueue.cli.base import (
    MAX_BODY,
    Dsn,
    _app,
    cli,
    fail,
)


@cli.command()
def serve(
    dsn: Dsn = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (localhost only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=0, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_API_TOKEN",
            help="Bearer token: needed for every request; "
            "without it the dashboard and API are read-only.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name clients use, besides localhost (repeat it; `*.example.com` "
            "for a domain, `*` for any). Guards against DNS rebinding.",
        ),
    ] = None,
    max_body_size: Annotated[
        int, typer.Option(help="Largest request body, in bytes.", min=1, max=2**31 - 1)
    ] = MAX_BODY,
    root_path: Annotated[
        str,
        typer.Option(
            "--root-path",
            help="The path prefix a reverse proxy serves this under (e.g. /pgqueue), for the "
            "API description's addresses; the dashboard works under any prefix.",
        ),
    ] = "",
    insecure_no_token: Annotated[
        bool,
        typer.Option(
            "--insecure-no-token",
            help="Serve without a token on a non-loopback address: anyone who reaches it "
            "reads every job's arguments, results and errors.",
        ),
    ] = False,
) -> None:
    """Web dashboard at /, REST API under /api (OpenAPI at /openapi.json), /metrics."""
    from pgqueue.web.guard import WILDCARD_ADDRESSES, is_loopback

    if token is not None and not token.strip():
        fail("--token is empty: give a real token, or leave it out for a read-only dashboard")
    if token is not None:
        # A secret read from a file often ends in a newline; a client never sends one (and
        # the check strips what it sends): kept, it would lock everyone out.
        token = token.strip()
    if token is None and not is_loopback(host) and not insecure_no_token:
        fail(
            f"refusing to serve job data without a token on {host}: give --token "
            "(or PGQUEUE_API_TOKEN), or --insecure-no-token if that is really meant"
        )
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        fail("--root-path must start with / and not end with one, e.g. /pgqueue")
    hosts = tuple(allowed_host or ())
    if host not in WILDCARD_ADDRESSES:
        hosts = (*hosts, host)
    import uvicorn

    from pgqueue.web import create_app

    listening = _listen(host, port)
    try:
        app = _app(dsn)
        # While the database is down, a request answers 503 within 5 s (inside Prometheus'
        # 10 s scrape timeout) rather than after the pool's 30, and requests do not pile up
        # behind one another for minutes after it is back.
        app.pool_timeout = 5.0
        # A clear error now rather than on the first request; an empty version table is
        # what `pgqueue migrate downgrade base` leaves.
        if app.store.schema_version() is None:
            fail("the pgqueue schema is not migrated: run `pgqueue migrate`")
    except BaseException:
        listening.close()
        raise
    web = create_app(
        app, token=token, allowed_hosts=hosts, max_body=max_body_size, root_path=root_path
    )
    # Listening on every address: the link to open here is the loopback one (the wildcard
    # address is no name a browser may use, and its Host would be refused).
    local = (
        {"::": "::1", "[::]": "::1"}.get(host, "127.0.0.1") if host in WILDCARD_ADDRESSES else host
    )
    shown = f"[{local}]" if ":" in local else local
    port = listening.getsockname()[1]  # the one given, or the one picked for --port 0
    # The address to open once: the page keeps the token and takes it out of the address bar.
    typer.echo(
        f"pgqueue dashboard on http://{shown}:{port}/"
        + (f"#token={quote(token, safe='')}" if token else " (read-only)")
    )
    if host in WILDCARD_ADDRESSES and not allowed_host:
        typer.echo(
            "note: only requests to a loopback name are answered; "
            "add the names clients use with --allowed-host",
            err=True,
        )
    config = uvicorn.Config(
        web,
        log_level="warning",
        server_header=False,
        # Reverse proxies' X-Forwarded-* are trusted from loopback only (uvicorn's default).
        h11_max_incomplete_event_size=64 * 1024,
    )
    uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> Any:
    """A listening socket on host:port, or one clear line when that cannot be."""
    import socket

    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        return socket.create_server(address, family=family, backlog=2048)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        fail(f"cannot listen on {host}:{port}: {reason}")
