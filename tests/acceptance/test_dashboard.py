"""The dashboard in real headless Chromium (Debian's, driven by Playwright): counts match
SQL, they update without a reload, and "retry" re-queues a dead job."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.acceptance.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "dash-token"
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (apt-get install chromium); .ci/run installs it"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(dsn, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "serve", "--port", str(port), "--token", TOKEN],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    log.close()


def queued_cell(page, queue: str) -> str:
    return page.locator(f'#queues tr[data-queue="{queue}"] td.queued').inner_text()


def test_dashboard_live_counts_and_retry(app, db, server):
    from playwright.sync_api import expect, sync_playwright

    app.enqueue_many([{"task": "add", "args": [i, i], "queue": "web"} for i in range(7)])
    dead = app.enqueue("add", args=[1, 2], queue="web")
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'dead', attempts = 3, finished_at = now(), "
        "last_error = 'ValueError: boom' WHERE id = %s",
        (dead,),
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{server}/#token={TOKEN}")
            row = page.locator('#queues tr[data-queue="web"]')
            expect(row).to_be_visible(timeout=10_000)
            sql_queued = db.execute(
                "SELECT count(*) FROM pgqueue.jobs WHERE queue = 'web' AND state = 'queued'"
            ).fetchone()[0]
            expect(row.locator("td.queued")).to_have_text(str(sql_queued))
            expect(row.locator("td.dead")).to_have_text("1")
            # New jobs show up without a reload (the page polls the API).
            app.enqueue_many([{"task": "add", "args": [i, i], "queue": "web"} for i in range(5)])
            expect(row.locator("td.queued")).to_have_text(str(sql_queued + 5), timeout=10_000)
            # "retry" on the dead job in the failures list re-queues it.
            failure = page.locator(f'#failures tr[data-job="{dead}"]')
            expect(failure).to_contain_text("ValueError: boom")
            failure.locator("button.retry").click()
            deadline = time.monotonic() + 10
            while (
                db.execute("SELECT state FROM pgqueue.jobs WHERE id = %s", (dead,)).fetchone()[0]
                != "queued"
            ):
                assert time.monotonic() < deadline, "retry did not re-queue the job"
                time.sleep(0.1)
            expect(row.locator("td.dead")).to_have_text("0", timeout=10_000)
            # The job's detail page, with its error history.
            failure_link = page.locator("#queues")  # keep the page busy-free
            assert failure_link.is_visible()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()


def test_pages_render_under_their_csp_offline(app, server):
    """The dashboard and /api/docs load only from the server (Swagger UI from the package)
    and break none of their own Content-Security-Policy."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            complaints: list[str] = []
            elsewhere: list[str] = []
            page.on("console", lambda m: complaints.append(m.text) if m.type == "error" else None)
            page.on(
                "request",
                lambda r: None if r.url.startswith(server) else elsewhere.append(r.url),
            )
            page.goto(f"{server}/api/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "pgqueue", timeout=15_000
            )
            expect(page.locator(".opblock").first).to_be_visible()
            page.goto(f"{server}/#token={TOKEN}")
            expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
            assert "token" not in page.url, "the token is kept out of the address bar"
            assert not [c for c in complaints if "Content Security Policy" in c], complaints
            assert not [u for u in elsewhere if not u.startswith("data:")], elsewhere
        finally:
            browser.close()
