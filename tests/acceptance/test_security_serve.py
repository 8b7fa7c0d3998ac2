"""`pgqueue serve` against hostile requests: foreign Host headers, missing tokens, huge bodies
(declared or streamed), and the headers every answer carries. The memory test runs the real
server in a subprocess and reads its peak RSS from /proc."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pgqueue.cli import cli
from pgqueue.web import create_app
from tests import jobs
from tests.acceptance.conftest import ROOT

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MB = 1024 * 1024


def client(token: str | None = TOKEN, **options: object) -> TestClient:
    return TestClient(create_app(jobs.app, token=token, **options), base_url="http://localhost")  # type: ignore[arg-type]


# -- Host allow-list ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "app.localhost"],
)
def test_loopback_names_are_answered(dsn, host):
    assert client().get("/api/stats", headers={**AUTH, "Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "",
        "[::1",
        "localhost:8000:1",
        "dashboard.internal",
    ],
)
def test_other_hosts_are_refused(dsn, host):
    for token, headers in ((TOKEN, AUTH), (None, {})):
        response = client(token).get("/api/stats", headers={**headers, "Host": host})
        assert response.status_code == 400, (host, response.status_code)
        assert "Host" in response.json()["detail"]
    # The dashboard's shell too: a rebinding page must not even load it.
    assert client().get("/", headers={"Host": host}).status_code == 400


def test_allowed_hosts_are_added_to_loopback(dsn):
    web = client(allowed_hosts=("dashboard.internal", "*.corp.example"))
    for host in ("dashboard.internal", "dashboard.internal:443", "a.corp.example", "corp.example"):
        assert web.get("/api/stats", headers={**AUTH, "Host": host}).status_code == 200, host
    for host in ("evil.example", "corp.example.evil", "xcorp.example"):
        assert web.get("/api/stats", headers={**AUTH, "Host": host}).status_code == 400, host
    anything = client(allowed_hosts=("*",))
    assert anything.get("/api/stats", headers={**AUTH, "Host": "x.y"}).status_code == 200


def test_healthz_answers_any_probe_and_tells_nothing_else(dsn):
    """An orchestrator's probe sends the pod's address as Host and no token: /healthz
    answers it, with nothing but whether the database answers."""
    for token in (TOKEN, None):
        for host in ("10.1.2.3:8000", "evil.example", "localhost"):
            answer = client(token).get("/healthz", headers={"Host": host})
            assert answer.status_code == 200, (token, host)
            assert answer.json() == {"status": "ok"}
    assert client().post("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert client().get("/healthz/x", headers={"Host": "evil.example"}).status_code == 400


def test_two_host_headers_make_no_host():
    from pgqueue.web.guard import _headers

    scope = {"headers": [(b"host", b"localhost"), (b"Host", b"evil.example")]}
    assert _headers(scope)["host"] == ""


# -- token ----------------------------------------------------------------------------------


def test_token_rules(dsn):
    locked = client()
    assert locked.get("/api/stats").status_code == 401
    assert locked.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert locked.get("/api/stats", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert locked.get("/api/stats", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert locked.get("/metrics").status_code == 401
    assert locked.get("/api/nowhere").status_code == 401, "routes are not revealed either"
    # Pages that hold no data stay open, so the browser can load them and then ask for data.
    for path in ("/", "/api/docs", "/openapi.json", "/static/dashboard.js"):
        assert locked.get(path).status_code == 200, path
    open_ = client(None)
    assert open_.get("/api/stats").status_code == 200
    assert open_.post("/api/jobs", json={"task": "add"}).status_code == 403
    assert open_.delete("/api/jobs/1").status_code == 403


def test_empty_token_is_refused():
    with pytest.raises(ValueError, match="empty token"):
        create_app(jobs.app, token="")
    with pytest.raises(ValueError, match="empty token"):
        create_app(jobs.app, token="   ")


# -- body limit -----------------------------------------------------------------------------


def test_body_over_the_limit_is_413(dsn, db):
    web = client()
    big = b'{"task": "add", "args": [' + b"1," * (600 * 1024) + b"1]}"
    headers = {**AUTH, "Content-Type": "application/json"}
    assert web.post("/api/jobs", content=big, headers=headers).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    assert web.post("/api/jobs", content=chunks(), headers=headers).status_code == 413
    small = client(max_body=100)
    body = b'{"task": "add", "args": [1, 2]}'
    assert small.post("/api/jobs", content=body, headers=headers).status_code == 202
    assert small.post("/api/jobs", content=body + b" " * 100, headers=headers).status_code == 413
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


# -- headers --------------------------------------------------------------------------------


def test_security_headers_on_every_answer(dsn):
    web = client()
    answers = {
        "dashboard": web.get("/"),
        "api": web.get("/api/stats", headers=AUTH),
        "unauthorized": web.get("/api/stats"),
        "not found": web.get("/api/nowhere", headers=AUTH),
        "invalid": web.get("/api/jobs?limit=x", headers=AUTH),
        "docs": web.get("/api/docs"),
        "metrics": web.get("/metrics", headers=AUTH),
        "bad host": web.get("/", headers={"Host": "evil.example"}),
    }
    for what, response in answers.items():
        h = response.headers
        assert h["x-frame-options"] == "DENY", what
        assert h["x-content-type-options"] == "nosniff", what
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, what
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], what
        assert h["referrer-policy"] == "no-referrer", what
        assert "server" not in h or "uvicorn" not in h["server"], what
    for what in ("api", "unauthorized", "metrics", "not found"):
        assert answers[what].headers["cache-control"] == "no-store", what


def test_pages_have_no_inline_script():
    web = client()
    for path in ("/", "/api/docs"):
        html = web.get(path).text
        for script in re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S):
            assert not script.strip(), f"inline script on {path}: the CSP would block it"
        assert "on" + "click=" not in html


def test_api_docs_work_offline():
    web = client()
    html = web.get("/api/docs").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    # From this server (no CDN), and relative: behind a proxy that serves the dashboard
    # under a prefix, the page's assets are asked for under that prefix too.
    assert urls and all(":" not in u and not u.startswith("/") for u in urls), urls
    for url in urls:
        assert urljoin("https://proxy.example/ops/queue/api/docs", url).startswith(
            "https://proxy.example/ops/queue/"
        ), url
        response = web.get(urljoin("http://localhost/api/docs", url))
        assert response.status_code == 200, url
        assert len(response.content) > 50, url
    bundle = web.get("/api/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"]
    assert "SwaggerUIBundle" in bundle.text
    assert 'url: "../openapi.json"' in web.get("/static/docs.js").text


# -- the CLI's start-up checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--token", ""], "--token is empty"),
        (["--token", "  "], "--token is empty"),
        (["--host", "0.0.0.0"], "refusing to serve job data without a token on 0.0.0.0"),
        (["--host", "::"], "without a token on ::"),
        (["--host", "192.0.2.10"], "without a token"),
        (["--port", "70000"], "70000"),
        (["--max-body-size", "0"], "max-body-size"),
    ],
)
def test_serve_refuses_unsafe_starts(args, fragment):
    result = CliRunner().invoke(cli, ["serve", "--dsn", "postgresql://nobody@127.0.0.1:1/x", *args])
    assert result.exit_code != 0
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output


# -- the real server: token before body, body limit while streaming, memory -------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(dsn: str, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`pgqueue serve ARGS` on a free port; yields the process and the port."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env={**os.environ, "PGQUEUE_DSN": dsn},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.1)
            yield proc, port
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def send_request(
    port: int, head: str, body_chunks: Iterable[bytes] = (), timeout: float = 20
) -> tuple[int | None, int]:
    """Send `head`, then the chunks until the server answers or hangs up. Returns the status
    answered (None if the connection was cut before an answer) and the body bytes sent."""
    sent = 0
    response = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        deadline = time.monotonic() + timeout
        for chunk in body_chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            assert time.monotonic() < deadline, "the server kept reading"
        try:
            while b"\r\n" not in response:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except (ConnectionResetError, TimeoutError):
            pass
    match = re.match(rb"HTTP/1\.1 (\d{3})", response)
    return (int(match.group(1)) if match else None), sent


def chunked(total: int, size: int = MB) -> Iterator[bytes]:
    payload = b"1," * (size // 2)
    frame = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    for _ in range(total // size):
        yield frame


@pytest.mark.timeout(120)
def test_huge_bodies_keep_the_server_small(dsn, tmp_path):
    with serving(dsn, tmp_path / "serve.log", "--token", TOKEN) as (proc, port):
        baseline = peak_rss_mb(proc.pid)

        def head(auth: str, length: str | None) -> str:
            size = f"Content-Length: {length}" if length else "Transfer-Encoding: chunked"
            return (
                f"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {auth}\r\n"
                f"Content-Type: application/json\r\n{size}\r\n\r\n"
            )

        declared = str(200 * MB)
        # Wrong token, 200 MB declared: refused on the headers, nothing read.
        assert send_request(port, head("wrong", declared)) == (401, 0)
        # Right token, 200 MB declared: over the limit, refused before reading.
        assert send_request(port, head(TOKEN, declared)) == (413, 0)
        # Wrong token, 200 MB actually streamed (chunked): refused before the body.
        status, sent = send_request(port, head("wrong", None), chunked(200 * MB))
        assert status in (401, None) and sent < 200 * MB, (status, sent)
        # Right token, 200 MB streamed: cut at the limit while streaming.
        status, sent = send_request(port, head(TOKEN, None), chunked(200 * MB))
        assert status in (413, None) and sent < 200 * MB, (status, sent)
        # A lying Content-Length: 1 KB declared, 200 MB sent.
        status, sent = send_request(port, head(TOKEN, "1024"), chunked(200 * MB))
        assert status is None or status < 500, status
        peak = peak_rss_mb(proc.pid)
        assert peak < 150, f"peak RSS {peak:.0f} MB (at start {baseline:.0f} MB)"
        assert peak - baseline < 40, f"peak RSS grew from {baseline:.0f} to {peak:.0f} MB"
        # And it still answers.
        ok, _ = send_request(
            port,
            f"GET /api/stats HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Connection: close\r\n\r\n",
        )
        assert ok == 200


@pytest.mark.timeout(60)
def test_tokenless_server_refuses_writes_before_the_body(dsn, tmp_path):
    with serving(dsn, tmp_path / "serve.log") as (proc, port):
        head = (
            "POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {500 * MB}\r\n\r\n"
        )
        assert send_request(port, head) == (403, 0)
        assert peak_rss_mb(proc.pid) < 150


@pytest.mark.timeout(60)
def test_insecure_no_token_is_explicit(dsn, tmp_path):
    log = tmp_path / "serve.log"
    with serving(dsn, log, "--host", "0.0.0.0", "--insecure-no-token") as (_, port):
        status, _ = send_request(
            port, "GET /api/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        assert status == 200
        status, _ = send_request(
            port, "GET /api/stats HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )
        assert status == 400
    assert "--allowed-host" in log.read_text()


# -- /metrics for operators -------------------------------------------------------------------


def test_metrics_show_notify_queue_and_oldest_transaction(dsn):
    import psycopg
    from prometheus_client.parser import text_string_to_metric_families

    web = client()
    with psycopg.connect(dsn) as long_tx:
        long_tx.execute("SELECT 1")  # opens a transaction and keeps it open
        time.sleep(1.2)
        text = web.get("/metrics", headers=AUTH).text
        long_tx.rollback()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    usage = families["pgqueue_notify_queue_usage"].samples[0].value
    assert 0 <= usage < 0.01
    oldest = families["pgqueue_oldest_transaction_age_seconds"].samples[0].value
    assert oldest >= 1.0
