"""The gate in front of `pgqueue serve`: Host allow-list, token, body size, security headers.

A plain ASGI middleware, so every decision is taken before FastAPI parses anything: a request
with a foreign `Host` or without the token is answered from its headers alone, and a body is
read (at most `max_body` bytes of it, whatever `Content-Length` claims) only once the request
is allowed. Internal API.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1024 * 1024
LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "[::]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Scripts only from this server; Swagger UI needs inline styles and data: images.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
NO_STORE = (b"cache-control", b"no-store")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class GuardConfig:
    """What the gate lets through.

    `token`: with it, every request but the public pages needs `Authorization: Bearer
    <token>`; without it, reads are open and every other method is refused. `allowed_hosts`:
    Host names accepted besides the loopback ones; `*` accepts any, `*.example.com` a domain
    and its subdomains. `max_body`: the largest request body, in bytes. `public_paths`: pages
    that hold no data (the dashboard's shell, its assets, the API docs).
    """

    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = MAX_BODY
    public_prefixes: tuple[str, ...] = ("/static/", "/api/docs")
    public_paths: frozenset[str] = field(default_factory=lambda: frozenset({"/", "/openapi.json"}))
    # Answered whatever the Host header (a probe sends the pod's address) and without a
    # token: it says only whether the database answers, which no rebinding page can use.
    probe_paths: frozenset[str] = frozenset({"/healthz"})

    def host_allowed(self, header: str) -> bool:
        name = host_name(header)
        if not name:
            return False
        for pattern in (*LOOPBACK_NAMES, *self.allowed_hosts):
            pattern = pattern.lower() if pattern.startswith("*") else host_name(pattern)
            if pattern in ("*", name):
                return True
            if pattern.startswith("*.") and (name == pattern[2:] or name.endswith(pattern[1:])):
                return True
        return False

    def authorized(self, header: str | None) -> bool:
        if self.token is None or header is None:
            return False
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)


def cross_origin(headers: dict[str, str]) -> bool:
    """True when the browser says the request comes from a page of another origin."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not sent by a browser's cross-origin fetch (curl, scripts)
    scheme, _, rest = origin.strip().lower().partition("://")
    if scheme not in ("http", "https") or not rest:
        return True  # "null" (sandboxed frames, file: pages) and anything odd
    return rest != headers.get("host", "").strip().lower()


class BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware applying a GuardConfig to every HTTP request."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # none served: close before anything else
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        try:
            body = await self.read_body(headers, receive)
        except BodyTooLarge:
            await _answer(send, 413, f"request body over {self.config.max_body} bytes")
            return
        await self.app(scope, _replay(body, receive), _with_headers(send, scope["path"]))

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, detail) when the request is refused on its headers alone."""
        config = self.config
        if scope["path"] in config.probe_paths and scope["method"] in ("GET", "HEAD"):
            return None
        if not config.host_allowed(headers.get("host", "")):
            return 400, "invalid Host header: add it with `pgqueue serve --allowed-host`"
        authorization = headers.get("authorization")
        if scope["method"] not in SAFE_METHODS:
            # A browser says where a request comes from: a page of another site may not
            # change anything here, whatever credentials it got hold of.
            if cross_origin(headers):
                return 403, "cross-origin requests may not change anything"
            if config.token is None:
                return 403, "actions are disabled: start `pgqueue serve --token`"
            if not config.authorized(authorization):
                return 401, "a valid bearer token is required"
        elif (
            config.token is not None
            and not config.is_public(scope["path"])
            and not config.authorized(authorization)
        ):
            return 401, "a valid bearer token is required"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body):
            return 413, f"request body over {config.max_body} bytes"
        return None

    async def read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """The whole body, refused as soon as it passes the limit (chunked bodies too)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    # Repeated headers: the first wins, except that two Host headers make no valid name.
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "host" and name in out:
            out[name] = ""
        out.setdefault(name, value)
    return out


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then wait for the disconnect, as the server would

    return replay


def _with_headers(send: Send, path: str) -> Send:
    extra: Iterable[tuple[bytes, bytes]] = SECURITY_HEADERS
    if not path.startswith("/static/") and not path.startswith("/api/docs/"):
        extra = (*SECURITY_HEADERS, NO_STORE)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", ())}
            message["headers"] = [
                *message.get("headers", ()),
                *((n, v) for n, v in extra if n not in names),
            ]
        await send(message)

    return send_with_headers


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        NO_STORE,
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
