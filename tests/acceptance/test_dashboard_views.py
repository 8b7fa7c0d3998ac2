"""Every view of the dashboard in real headless Chromium (Debian's, driven by Playwright):
what an operator reads on it, the bulk actions with their confirmation, read-only without a
token, behind a path prefix, the polling rate, and an accessibility check (axe-core, served
from tests/acceptance/vendor/) in light, dark and narrow layouts. Screenshots go to
$PGQUEUE_ARTIFACTS (default tests/artifacts/), kept by CI."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pgqueue.web import create_app
from tests import jobs
from tests.acceptance.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "views-token"
ARTIFACTS = Path(os.environ.get("PGQUEUE_ARTIFACTS") or ROOT / "tests" / "artifacts")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (apt-get install chromium); .ci/run installs it"
)


@pytest.fixture(autouse=True)
def no_declared_tasks(db):
    """The shared fixtures empty the jobs but not pgqueue.tasks: start and end without any."""
    db.execute("DELETE FROM pgqueue.tasks")
    yield
    db.execute("DELETE FROM pgqueue.tasks")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def under_prefix(prefix: str, app: Any) -> Any:
    """What a reverse proxy does for `location /prefix/ { proxy_pass http://serve/; }`."""

    async def proxied(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not scope["path"].startswith(prefix + "/"):
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"not under the prefix"})
                return
            scope = {**scope, "path": scope["path"][len(prefix) :]}
        await app(scope, receive, send)

    return proxied


@contextmanager
def serving(token: str | None = TOKEN, prefix: str = "") -> Iterator[str]:
    """The dashboard over the tests' App on a free port, in a thread; yields its address."""
    import uvicorn

    web: Any = create_app(jobs.app, token=token, root_path=prefix)
    if prefix:
        web = under_prefix(prefix, web)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(web, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}{prefix}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, *, width: int = 1400, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def axe_violations(page) -> list[str]:
    """WCAG 2 A and AA rules broken on the page as it is now (axe-core)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the browser tools, not under the CSP
    result = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
    )
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})"
        for v in result["violations"]
    ]


def seed(app, db) -> dict[str, Any]:
    """A small, lifelike system: two queues, finished jobs over the last minutes, dead jobs,
    a running job with progress (when the column exists), a declared task nobody serves,
    one live worker and one that stopped heartbeating."""
    live_worker, lost_worker = uuid.uuid4(), uuid.uuid4()
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, tasks) VALUES "
        "(%s, 'web-1', 4242, '{default,emails}', 10, 30, '{add,echo}'), "
        "(%s, 'web-2', 777, '{default}', 4, 30, NULL)",
        (live_worker, lost_worker),
    )
    db.execute(
        "UPDATE pgqueue.workers SET heartbeat_at = now() - interval '5 min' WHERE id = %s",
        (lost_worker,),
    )
    db.execute(
        "INSERT INTO pgqueue.tasks (name, queue, priority, max_attempts) "
        "VALUES ('send_receipt', 'emails', 0, 5)"
    )
    done = app.enqueue_many(
        [{"task": "add" if i % 3 else "echo", "args": [i, i]} for i in range(60)]
        + [{"task": "add", "args": [i, i], "queue": "emails"} for i in range(30)]
    )
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'succeeded', attempts = 1, result = '2'::jsonb, "
        "run_at = now() - make_interval(secs => id * 7), "
        "started_at = now() - make_interval(secs => id * 7) + make_interval(secs => (id %% 5)), "
        "finished_at = now() - make_interval(secs => id * 7) + make_interval(secs => 2 + id %% 9) "
        "WHERE id = ANY(%s)",
        (done,),
    )
    dead = app.enqueue_many(
        [{"task": "add", "args": [i, "x"], "queue": "emails"} for i in range(3)]
    )
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'dead', attempts = 3, created_at = now() - interval "
        "'2 min', started_at = now() - interval '20 s', finished_at = now() - interval '19 s', "
        "last_error = 'TypeError: can only concatenate str (not \"int\") to str', "
        "errors = jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now() - interval "
        "'60 s', 'error', 'TypeError: can only concatenate str', 'traceback', "
        '\'Traceback (most recent call last):\n  File "shop/tasks.py", line 12, in add\n'
        '    return a + b\nTypeError: can only concatenate str (not "int") to str\'), '
        "jsonb_build_object('attempt', 3, 'at', now() - interval '19 s', 'error', "
        "'TypeError: can only concatenate str')) WHERE id = ANY(%s)",
        (dead,),
    )
    app.enqueue_many([{"task": "send_receipt", "args": [i]} for i in range(4)])
    app.enqueue_many([{"task": "add", "args": [i, i], "delay": 600} for i in range(5)])
    running = app.enqueue("add", args=[7, 7], queue="default")
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'running', attempts = 1, started_at = now() - "
        "interval '42 s', worker_id = %s WHERE id = %s",
        (live_worker, running),
    )
    has_progress = db.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'pgqueue' "
        "AND table_name = 'jobs' AND column_name = 'progress'"
    ).fetchone()
    if has_progress:
        db.execute(
            "UPDATE pgqueue.jobs SET progress = 0.62, progress_message = 'row 620 of 1000' "
            "WHERE id = %s",
            (running,),
        )
    return {"dead": dead, "running": running, "progress": bool(has_progress)}


VIEWS = {
    "overview": ("#/", "#queues"),
    "jobs": ("#/jobs?state=dead", "#jobs-table tbody tr[data-job]"),
    "job": ("#/jobs/{dead}", "#job-timeline li.error"),
    "queues": ("#/queues", "#queues tr[data-queue]"),
    "queue": ("#/queues/emails", "#facts dl"),
    "tasks": ("#/tasks", "#tasks-table tr[data-task]"),
    "task": ("#/tasks/send_receipt", "#facts dl"),
    "workers": ("#/workers", "#workers-table tr[data-worker]"),
}


def test_every_view_reads_well_light_dark_and_narrow(app, db, browser):
    from playwright.sync_api import expect

    seeded = seed(app, db)
    with serving() as url:
        page = open_page(browser, url + f"#token={TOKEN}")
        expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
        # What an operator checks first.
        emails = page.locator('#queues tr[data-queue="emails"]')
        expect(emails.locator("td.dead")).to_have_text("3")
        expect(emails.locator("td.queued")).to_have_text("4")
        expect(page.locator("#warnings")).to_contain_text(
            "no worker serves task send_receipt: 4 due jobs wait"
        )
        expect(page.locator("#workers")).to_contain_text("stopped heartbeating")
        expect(page.locator("#throughput-chart canvas")).to_have_count(1)
        expect(page.locator("#throughput-chart .u-legend")).to_contain_text("emails")
        expect(page.get_by_role("region", name="Throughput")).to_contain_text("per minute")
        # Hovering the chart shows the values under the cursor in the legend.
        box = page.locator("#throughput-chart .u-over").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
        legend_time = page.locator("#throughput-chart .u-legend .u-series").first
        expect(legend_time).not_to_contain_text("\N{EN DASH}")  # the "no value" mark
        if seeded["progress"]:
            expect(page.locator("#running progress")).to_have_attribute("value", "0.62")
            expect(page.locator("#running")).to_contain_text("62 % row 620 of 1000")
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            for name, (address, ready) in VIEWS.items():
                page.goto(url + address.format(dead=seeded["dead"][0]))
                expect(page.locator(ready).first).to_be_visible(timeout=10_000)
                # The explorer's page of results is read once; every other view polls.
                expect(page.locator("#status")).to_contain_text(
                    "results" if name == "jobs" else "live"
                )
                page.wait_for_timeout(300)  # the charts' first draw
                shot(page, f"dashboard-{name}-{scheme}")
                assert axe_violations(page) == [], (name, scheme)
        # The job page: the timeline with the traceback, the actions that fit.
        page.goto(url + f"#/jobs/{seeded['dead'][0]}")
        expect(page.locator("#job-timeline")).to_contain_text("attempt 1 failed: TypeError")
        page.locator("#job-timeline summary").first.click()
        expect(page.locator("#job-timeline pre").first).to_contain_text('File "shop/tasks.py"')
        expect(page.locator("#job button")).to_have_text(["retry", "delete"])
        # The task view names the missing worker too.
        page.goto(url + "#/tasks")
        expect(page.locator('tr[data-task="send_receipt"]')).to_contain_text("no worker serves")
        assert page.errors == []  # type: ignore[attr-defined]
        # Narrow screens: a phone held upright.
        narrow = open_page(browser, url + f"#token={TOKEN}", width=390)
        for name in ("overview", "jobs", "job"):
            address, ready = VIEWS[name]
            narrow.goto(url + address.format(dead=seeded["dead"][0]))
            expect(narrow.locator(ready).first).to_be_visible(timeout=10_000)
            narrow.wait_for_timeout(300)
            shot(narrow, f"dashboard-{name}-narrow")
            width = narrow.evaluate("document.documentElement.scrollWidth")
            assert width <= 390 + 2, f"{name} scrolls sideways on a phone ({width} px)"
            assert axe_violations(narrow) == [], name


def test_explorer_bulk_retry_says_how_many_and_does_it(app, db, browser):
    from playwright.sync_api import expect

    seeded = seed(app, db)
    with serving() as url:
        page = open_page(browser, url + f"#token={TOKEN}")
        page.goto(url + "#/jobs")
        page.get_by_label("State").select_option("dead")
        page.get_by_role("button", name="Search").click()
        rows = page.locator("#jobs-table tbody tr[data-job]")
        expect(rows).to_have_count(3, timeout=10_000)
        page.get_by_label("select every job on this page").check()
        expect(page.locator("#explorer")).to_contain_text("3 selected")
        page.get_by_role("button", name="Retry selected").click()
        dialog = page.locator("dialog#confirm")
        expect(dialog).to_contain_text("Retry 3 selected jobs?")
        # Keeping them changes nothing.
        dialog.get_by_role("button", name="Keep them").click()
        states = "SELECT state FROM pgqueue.jobs WHERE id = ANY(%s)"
        assert {r[0] for r in db.execute(states, (seeded["dead"],))} == {"dead"}
        page.get_by_role("button", name="Retry selected").click()
        dialog.get_by_role("button", name="Retry 3").click()
        expect(page.locator("#notice")).to_contain_text("3 of 3 jobs queued again")
        assert {r[0] for r in db.execute(states, (seeded["dead"],))} == {"queued"}
        # Searching by text in the errors finds them again (their history is kept).
        page.get_by_label("State").select_option("")
        page.get_by_label("Search", exact=True).fill("concatenate")
        page.get_by_role("button", name="Search").click()
        expect(rows).to_have_count(3, timeout=10_000)


def test_read_only_without_a_token(app, db, browser):
    from playwright.sync_api import expect

    seeded = seed(app, db)
    with serving(token=None) as url:
        page = open_page(browser, url)
        expect(page.locator("#status")).to_contain_text("read-only", timeout=10_000)
        retry = page.locator(f'#failures tr[data-job="{seeded["dead"][0]}"] button.retry')
        expect(retry).to_be_disabled()
        page.goto(url + "#/jobs")
        expect(page.get_by_role("button", name="Delete selected")).to_be_disabled()
        page.goto(url + f"#/jobs/{seeded['dead'][0]}")
        expect(page.locator("#job button").first).to_be_disabled()


def test_behind_a_path_prefix(app, db, browser):
    from playwright.sync_api import expect

    seeded = seed(app, db)
    with serving(prefix="/ops/queue") as url:
        page = open_page(browser, url + f"#token={TOKEN}")
        expect(page.locator('#queues tr[data-queue="emails"]')).to_be_visible(timeout=10_000)
        expect(page.locator("#throughput-chart canvas")).to_have_count(1)
        page.goto(url + f"#/jobs/{seeded['dead'][0]}")
        expect(page.locator("#job-timeline li.error").first).to_be_visible(timeout=10_000)
        assert page.url.startswith(url), page.url
        assert page.errors == []  # type: ignore[attr-defined]


def test_one_combined_poll_a_second_and_none_while_hidden(app, db, browser):
    from playwright.sync_api import expect

    seed(app, db)
    with serving() as url:
        page = open_page(browser, url + f"#token={TOKEN}")
        expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
        calls: list[str] = []
        page.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
        page.wait_for_timeout(4000)
        assert calls and all("/api/overview?" in c for c in calls), calls
        assert len(calls) <= 5, f"{len(calls)} requests in 4 s"
        # The tab goes to the background: polling stops until it is back.
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        page.wait_for_timeout(2500)  # a poll in flight, and the timer it set, may still run
        calls.clear()
        page.wait_for_timeout(3000)
        assert calls == [], calls
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        page.wait_for_timeout(1500)
        assert calls, "polling resumes when the tab is shown"


def test_what_an_operator_does_by_hand_works(app, db, browser):
    """Found by using it: a token pasted into a tab already open, keyboard focus and the
    pause of queues named ".", ".." or with a "/", across polls; a long error; a job page's
    polls; the notice of a delete; addresses typed wrong."""
    from playwright.sync_api import expect

    seeded = seed(app, db)
    for queue in (".", "..", "eu/emails"):
        app.enqueue("add", args=[1, 1], queue=queue)
    long_error = "HTTPError: 404 for url: https://api.example.com/v1/" + "x" * 3000
    dead = app.enqueue("add", args=[1, 1], queue="emails")
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'dead', attempts = 3, started_at = now(),"
        " finished_at = now(), last_error = %s,"
        " errors = jsonb_build_array(jsonb_build_object('attempt', 3, 'at', now(),"
        "                                               'error', %s::text))"
        " WHERE id = %s",
        (long_error, long_error, dead),
    )
    with serving() as url:
        page = open_page(browser, url)
        expect(page.locator("#status")).to_contain_text("token is needed", timeout=10_000)
        # The printed link, pasted into the same tab: kept, and out of the address bar.
        page.evaluate(f"location.hash = '#token={TOKEN}'")
        expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
        assert TOKEN not in page.url
        assert page.evaluate("localStorage.getItem('pgqueue-token')") == TOKEN
        # Focus on a button stays there across polls (the row was detached at each one).
        pause = page.get_by_role("button", name="pause queue emails")
        pause.focus()
        page.wait_for_timeout(2500)
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
            "pause queue emails"
        )
        # Any queue name pauses from the page.
        for queue in (".", "..", "eu/emails"):
            page.get_by_role("button", name=f"pause queue {queue}", exact=True).click()
            expect(page.locator("#notice")).to_contain_text(f"queue {queue} paused")
        paused = "SELECT name FROM pgqueue.queues WHERE paused"
        assert {r[0] for r in db.execute(paused)} == {".", "..", "eu/emails"}
        # A long error keeps the page inside the window, and its row to a few lines.
        row = page.locator(f'#failures tr[data-job="{dead}"]')
        expect(row).to_be_visible()
        assert row.bounding_box()["height"] < 120
        page.goto(url + f"#/jobs/{dead}")
        expect(page.locator("#job-timeline")).to_contain_text("HTTPError")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400 + 2
        # A job page asks for the job's data once, then polls without it.
        waiting = app.enqueue("add", args=["y" * 10_000, 1], queue=".")
        page.goto(url + f"#/jobs/{waiting}")
        expect(page.locator("#job-data pre").first).to_contain_text("yyyy")
        calls: list[str] = []
        page.on("request", lambda r: calls.append(r.url) if "/detail" in r.url else None)
        page.wait_for_timeout(2500)
        assert calls and all(c.endswith("?data=false") for c in calls), calls
        # Deleting says so on the page it moves to.
        page.goto(url + f"#/jobs/{seeded['dead'][1]}")
        page.get_by_role("button", name=f"delete job {seeded['dead'][1]}").click()
        page.locator("dialog#confirm").get_by_role("button", name="delete").click()
        expect(page.locator("#notice")).to_contain_text("deleted")
        assert page.url.endswith("#/jobs")
        # Addresses typed wrong say so.
        page.goto(url + "#/jobs/abc")
        expect(page.locator("#notice")).to_contain_text('"abc" is not a job id')
        # The explorer does not poll: it says when its page was read (it said "live").
        expect(page.locator("#status-time")).to_contain_text("Search to refresh")
        # Polls that fail leave the last figures on the page, dimmed, and say since when.
        page.goto(url + "#/")
        expect(page.locator("#status")).to_contain_text("live", timeout=10_000)
        down = '{"detail": "database unavailable: connection refused"}'
        page.route("**/api/overview*", lambda r: r.fulfill(status=503, body=down))
        expect(page.locator("body")).to_have_class("stale", timeout=10_000)
        expect(page.locator("#status")).to_contain_text("database unavailable")
        expect(page.locator("#status-time")).to_contain_text("figures as of")
        page.unroute("**/api/overview*")
        expect(page.locator("body")).not_to_have_class("stale", timeout=15_000)
        page.goto(url + "#/jobs/999999")
        expect(page.locator("#job")).to_contain_text("No job 999999")
        page.goto(url + "#/queues/100%")
        expect(page.locator("#facts")).to_contain_text("no queue named 100%")
        # No script error (a stray "%" threw "URI malformed"), only the 401 before the token
        # and the 404s and 503s asked for.
        errors = page.errors  # type: ignore[attr-defined]
        assert all(any(f"status of {n}" in e for n in (401, 404, 503)) for e in errors), errors
