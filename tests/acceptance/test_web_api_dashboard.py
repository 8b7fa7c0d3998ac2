"""The dashboard's API: the combined poll agrees with SQL, the explorer finds and pages
through jobs, a job's timeline and family, and the bulk actions, which hold the server's
rules (token, read-only without one, same origin, size limits) and lose nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from pgqueue.web import create_app
from tests import jobs
from tests.stores import with_store

TOKEN = "bulk-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def no_declared_tasks(db):
    """The shared fixtures empty the jobs but not pgqueue.tasks: start and end without any."""
    db.execute("DELETE FROM pgqueue.tasks")
    yield
    db.execute("DELETE FROM pgqueue.tasks")


def client(token: str | None = TOKEN, **options: object) -> TestClient:
    web = create_app(jobs.app, token=token, **options)  # type: ignore[arg-type]
    return TestClient(web, base_url="http://localhost")


def kill(db, *ids: int, error: str = "ValueError: boom") -> None:
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'dead', attempts = 3, started_at = now(), "
        "finished_at = now(), last_error = %s WHERE id = ANY(%s)",
        (error, list(ids)),
    )


def state_counts(db) -> dict[str, int]:
    return dict(db.execute("SELECT state, count(*) FROM pgqueue.jobs GROUP BY 1").fetchall())


# -- the combined poll -----------------------------------------------------------------------


def test_overview_counts_match_sql_and_name_tasks_without_worker(app, db):
    app.enqueue_many([{"task": "add", "args": [i, i], "queue": "web"} for i in range(6)])
    app.enqueue_many([{"task": "add", "args": [1, 1], "queue": "web", "delay": 600}])
    dead = app.enqueue("add", args=[1, 2], queue="web")
    kill(db, dead)
    # A task a worker declared, with due jobs, and no live worker that serves it.
    db.execute(
        "INSERT INTO pgqueue.tasks (name, queue, priority, max_attempts) "
        "VALUES ('send_receipt', 'emails', 0, 5)"
    )
    app.enqueue_many([{"task": "send_receipt", "args": [i]} for i in range(3)])
    web = client()
    body = web.get("/api/overview?window=300", headers=AUTH).json()
    queues = {q["queue"]: q for q in body["queues"]}
    assert queues["web"]["queued"] == 6 and queues["web"]["scheduled"] == 1
    assert queues["web"]["dead"] == 1 and queues["web"]["failure_ratio"] == 1.0
    assert queues["web"]["last_error"] == "ValueError: boom"
    assert queues["emails"]["queued"] == 3, "the task's declared queue was used"
    assert [w["text"] for w in body["warnings"]] == [
        "no worker serves task send_receipt: 3 due jobs wait for one that has it"
    ]
    tasks = {t["task"]: t for t in body["tasks"]}
    assert tasks["send_receipt"]["without_worker"] and tasks["send_receipt"]["due"] == 3
    assert [f["id"] for f in body["failures"]] == [dead]
    # A live worker that serves it: the warning goes.
    db.execute(
        "INSERT INTO pgqueue.workers (id, host, pid, queues, concurrency, lease, tasks) "
        "VALUES (%s, 'box', 1, '{emails}', 4, 30, '{send_receipt}')",
        (uuid.uuid4(),),
    )
    body = web.get("/api/overview?window=300", headers=AUTH).json()
    assert body["warnings"] == []
    assert {q["queue"]: q["workers"] for q in body["queues"]}["emails"] != []


def test_a_worker_without_queues_serves_every_queue(app, db, dsn):
    # Registered as `pgqueue work` without --queues registers it: every queue showed no
    # worker, and each queue's page said none served it, while it ran their jobs.
    app.enqueue_many([{"task": "add", "args": [1, 1], "queue": q} for q in ("web", "emails")])
    everything, emails = uuid.uuid4(), uuid.uuid4()
    asyncio.run(with_store(dsn, lambda s: s.worker_register(everything, "box", 1, None, 4, 30)))
    asyncio.run(with_store(dsn, lambda s: s.worker_register(emails, "box", 2, ["emails"], 4, 30)))
    body = client().get("/api/overview?series=none", headers=AUTH).json()
    serving = {q["queue"]: set(q["workers"]) for q in body["queues"]}
    assert serving == {"web": {str(everything)}, "emails": {str(everything), str(emails)}}


def test_overview_series_have_every_bucket_and_a_readable_step(app, db):
    ids = app.enqueue_many([{"task": "add", "args": [i, i], "queue": "web"} for i in range(4)])
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'succeeded', attempts = 1, "
        "run_at = now() - interval '5 s', started_at = now() - interval '3 s', "
        "finished_at = now() - interval '2 s' WHERE id = ANY(%s)",
        (ids,),
    )
    web = client()
    for window, step in ((300, 5), (3600, 60), (86400, 1800), (604800, 7200)):
        series = web.get(f"/api/overview?window={window}&series=all", headers=AUTH).json()["series"]
        assert series["step"] == step
        assert len(series["buckets"]) <= 92
        assert len(series["succeeded"]["all"]) == len(series["buckets"])
        assert sum(series["succeeded"]["all"]) == 4
        assert max(v for v in series["latency_p50"]["all"] if v is not None) == pytest.approx(2)
    by_queue = web.get("/api/overview?series=queue&queue=web", headers=AUTH).json()["series"]
    assert by_queue["keys"] == ["web"]
    for bad in ("window=10", "window=9999999", "series=everything", "queue="):
        assert web.get(f"/api/overview?{bad}", headers=AUTH).status_code == 422, bad


def test_a_queue_named_other_keeps_its_own_line(app, db):
    # The busiest eight keys are kept and the rest add up as "(other)": a queue of that
    # name was added into the sum.
    queues = ["(other)"] + [f"q{i}" for i in range(1, 10)]
    ids = app.enqueue_many(
        [
            {"task": "add", "args": [1, 1], "queue": q}
            for n, q in enumerate(queues)
            for _ in range(20 - n)
        ]
    )
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'succeeded', attempts = 1, started_at = now(),"
        " finished_at = now() WHERE id = ANY(%s)",
        (ids,),
    )
    series = client().get("/api/overview?window=300&series=queue", headers=AUTH).json()["series"]
    totals = {k: sum(series["succeeded"][k]) for k in series["keys"]}
    kept = {"(other)": 20, **{f"q{i}": 20 - i for i in range(1, 8)}}
    assert totals == {**kept, "(other)*": (20 - 8) + (20 - 9)}  # q8 and q9


def test_queue_actions_take_any_name(app, db):
    # "." and ".." are folded away by a browser as path segments, and "/" split the path:
    # the body form takes any name, and the path form takes "/".
    web = client()
    for name in (".", "..", "eu/emails", "ünï/cødé", "pause"):
        done = web.post("/api/queues/pause", json={"name": name}, headers=AUTH)
        assert done.status_code == 200, (name, done.text)
        assert {q["name"]: q["paused"] for q in app.queues()}[name] is True
        assert web.post("/api/queues/resume", json={"name": name}, headers=AUTH).status_code == 200
        assert {q["name"]: q["paused"] for q in app.queues()}[name] is False
    path = client().post("/api/queues/eu/emails/pause", headers=AUTH)
    assert path.status_code == 200 and path.json()["detail"] == "queue eu/emails paused"
    for bad in ({}, {"name": ""}, {"name": "x", "other": 1}):
        assert web.post("/api/queues/pause", json=bad, headers=AUTH).status_code == 422
    assert web.post("/api/queues/pause", json={"name": "x"}).status_code in (401, 403)


def test_detail_without_data_leaves_out_args_and_result(app, db):
    job_id = app.enqueue("add", args=["x" * 100_000, 1])
    web = client()
    full = web.get(f"/api/jobs/{job_id}/detail", headers=AUTH).json()
    light = web.get(f"/api/jobs/{job_id}/detail?data=false", headers=AUTH)
    assert full["job"]["args"] == ["x" * 100_000, 1] and len(light.content) < 5_000
    body = light.json()
    assert (body["job"]["args"], body["job"]["kwargs"], body["job"]["result"]) == (None,) * 3
    assert body["job"]["state"] == "queued" and body["timeline"] == full["timeline"]


# -- the explorer ----------------------------------------------------------------------------


def test_search_filters_text_and_ids(app, db):
    ids = app.enqueue_many(
        [{"task": "add", "args": [i, i], "queue": "web" if i % 2 else "other"} for i in range(10)]
    )
    keyed = app.enqueue("echo", args=[{"order": "A-1234"}], unique_key="receipt:77")
    kill(db, ids[3], error="KeyError: 'customer_zz'")
    web = client()

    def search(query: str) -> list[int]:
        response = web.get(f"/api/jobs/search?{query}", headers=AUTH)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    assert search("state=dead") == [ids[3]]
    assert search("queue=web") == [i for i in reversed(ids) if (i - ids[0]) % 2]
    assert search("task=echo") == [keyed]
    assert search("q=customer_ZZ") == [ids[3]], "text in the error, case-insensitive"
    assert search("q=a-1234") == [keyed], "text in the args"
    assert search("q=receipt:77") == [keyed], "the unique key"
    assert search(f"q={ids[5]}")[0] == ids[5], "the id"
    assert search("q=nothing-like-this") == []
    since = db.execute("SELECT now() + interval '1 hour'").fetchone()[0].isoformat()
    assert web.get("/api/jobs/search", params={"since": since}, headers=AUTH).json()["jobs"] == []
    for bad in ("state=lost", "limit=0", "limit=201", "scan=10", "before_id=0", "since=yesterday"):
        assert web.get(f"/api/jobs/search?{bad}", headers=AUTH).status_code == 422, bad
    assert web.get("/api/jobs/search?q=%00", headers=AUTH).status_code in (400, 422)


def test_keyset_pages_cover_every_match_once_reading_a_bounded_window(app, db):
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(250)])
    dead = ids[::7]
    kill(db, *dead)
    web = client()
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        query = "state=dead&limit=10&scan=100" + (f"&before_id={before}" if before else "")
        page = web.get(f"/api/jobs/search?{query}", headers=AUTH).json()
        assert page["scanned"] <= 100, "a page reads at most `scan` rows"
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        if not page["more"]:
            break
        before = page["next_before_id"]
        assert pages < 50
    assert seen == sorted(dead, reverse=True)


# -- a job's page ----------------------------------------------------------------------------


def test_detail_has_timeline_family_and_fitting_actions(app, db):
    parent = app.enqueue("add", args=[1, 2])
    child = app.enqueue("add", args=[3, 4])
    db.execute(
        "UPDATE pgqueue.jobs SET depends_on = ARRAY[%s::bigint] WHERE id = %s", (parent, child)
    )
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'dead', attempts = 2, started_at = now(), "
        "created_at = now() - interval '10 s', "
        "finished_at = now(), last_error = 'ValueError: second', errors = jsonb_build_array("
        "jsonb_build_object('attempt', 1, 'error', 'ValueError: first', 'traceback', "
        "'Traceback (most recent call last): ...', 'at', now() - interval '5 s'), "
        "jsonb_build_object('attempt', 2, 'error', 'ValueError: second', 'at', now())) "
        "WHERE id = %s",
        (parent,),
    )
    web = client()
    body = web.get(f"/api/jobs/{parent}/detail", headers=AUTH).json()
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds[0] == "enqueued" and kinds[-1] == "dead"
    errors = [e for e in body["timeline"] if e["kind"] == "error"]
    assert [e["attempt"] for e in errors] == [1, 2]
    assert errors[0]["traceback"].startswith("Traceback")
    assert body["actions"] == ["retry", "delete"]
    assert [(c["id"], c["state"]) for c in body["children"]] == [(child, "queued")]
    assert "progress" in body  # None until progress is reported
    child_body = web.get(f"/api/jobs/{child}/detail", headers=AUTH).json()
    assert [(p["id"], p["state"]) for p in child_body["parents"]] == [(parent, "dead")]
    assert child_body["actions"] == ["cancel"]
    assert web.get("/api/jobs/999999/detail", headers=AUTH).status_code == 404


def test_detail_shows_progress_when_the_column_exists(app, db):
    has_column = db.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'pgqueue' "
        "AND table_name = 'jobs' AND column_name = 'progress'"
    ).fetchone()
    if not has_column:
        pytest.skip("the progress column (migration 0010) is not there yet")
    job = app.enqueue("add", args=[1, 2])
    db.execute(
        "UPDATE pgqueue.jobs SET state = 'running', started_at = now(), attempts = 1, "
        "progress = 0.4, progress_message = 'page 4 of 10' WHERE id = %s",
        (job,),
    )
    web = client()
    body = web.get(f"/api/jobs/{job}/detail", headers=AUTH).json()
    assert body["progress"] == pytest.approx(0.4) and body["progress_message"] == "page 4 of 10"
    running = web.get("/api/overview?series=none", headers=AUTH).json()["running"]
    assert running[0]["progress"] == pytest.approx(0.4)


# -- bulk actions ----------------------------------------------------------------------------


def test_bulk_retry_cancel_delete_do_what_they_say(app, db):
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(6)])
    kill(db, *ids[:3])
    web = client()
    r = web.post("/api/jobs/bulk-retry", json={"ids": [*ids[:3], ids[4], 999999]}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["done"] == ids[:3] and body["asked"] == 5
    assert {s["id"]: s["reason"] for s in body["skipped"]} == {
        ids[4]: "is queued, not dead or cancelled",
        999999: "no such job",
    }
    r = web.post("/api/jobs/bulk-cancel", json={"ids": ids[3:]}, headers=AUTH).json()
    assert r["done"] == ids[3:]
    r = web.post("/api/jobs/bulk-delete", json={"ids": ids}, headers=AUTH).json()
    assert r["done"] == ids[3:], "only finished jobs are deleted"
    assert {s["reason"] for s in r["skipped"]} == {"is queued, not succeeded, dead or cancelled"}
    assert state_counts(db) == {"queued": 3}
    assert web.delete(f"/api/jobs/{ids[0]}", headers=AUTH).status_code == 409
    assert web.delete("/api/jobs/999999", headers=AUTH).status_code == 404


def test_bulk_actions_refused_without_the_token_from_elsewhere_or_too_big(app, db):
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(3)])
    kill(db, *ids)
    before = state_counts(db)
    locked, open_ = client(), client(None)
    paths = ("/api/jobs/bulk-retry", "/api/jobs/bulk-cancel", "/api/jobs/bulk-delete")
    for path in paths:
        body = {"ids": ids}
        assert open_.post(path, json=body).status_code == 403, "read-only without a token"
        assert open_.post(path, json=body, headers=AUTH).status_code == 403
        assert locked.post(path, json=body).status_code == 401
        wrong = {"Authorization": "Bearer x"}
        assert locked.post(path, json=body, headers=wrong).status_code == 401
        # The right token, from a page of another site: refused before anything is read.
        for origin in ("http://evil.example", "null", "http://localhost.evil.example"):
            response = locked.post(path, json=body, headers={**AUTH, "Origin": origin})
            assert response.status_code == 403, (path, origin)
            assert "cross-origin" in response.json()["detail"]
        cross = {**AUTH, "Sec-Fetch-Site": "cross-site"}
        assert locked.post(path, json=body, headers=cross).status_code == 403
        # Too many, malformed or empty selections: a clear 422.
        for bad in ({"ids": list(range(1, 502))}, {"ids": []}, {"ids": [0]}, {"ids": ["x"]}, {}):
            response = locked.post(path, json=bad, headers=AUTH)
            assert response.status_code == 422, (path, bad)
            assert response.json()["detail"]
        assert state_counts(db) == before, path
    for headers in ({}, {**AUTH, "Origin": "http://evil.example"}):
        assert locked.delete(f"/api/jobs/{ids[0]}", headers=headers).status_code in (401, 403)
    assert open_.delete(f"/api/jobs/{ids[0]}").status_code == 403
    # A body over the server's limit is refused while it is read.
    small = client(max_body=200)
    response = small.post("/api/jobs/bulk-delete", json={"ids": ids * 60}, headers=AUTH)
    assert response.status_code == 413
    assert state_counts(db) == before
    # The same origin (the dashboard itself) is let through.
    same = {**AUTH, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    response = locked.post("/api/jobs/bulk-retry", json={"ids": ids}, headers=same)
    assert response.status_code == 200 and response.json()["done"] == ids


def test_overview_shows_a_per_key_limit(app, db):
    app.set_queue_limits("tenants", per_key=3)
    app.enqueue("echo", [1], queue="tenants", concurrency_key="customer:1")
    body = client().get("/api/overview?window=300", headers=AUTH).json()
    (queue,) = [q for q in body["queues"] if q["queue"] == "tenants"]
    assert queue["per_key_limit"] == 3


def test_workers_show_the_version_they_run(app, worker):
    import pgqueue

    with worker():
        body = client().get("/api/overview?window=300", headers=AUTH).json()
    (row,) = body["workers"]
    assert row["version"] == pgqueue.__version__
