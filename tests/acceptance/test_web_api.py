"""The REST API fuzzed from its own OpenAPI document, the token rules, and /metrics."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families

from pgqueue.web import create_app
from tests import jobs

TOKEN = "test-token"
# The ASGI test clients send `Host: testserver`.
HOSTS = ("testserver",)
web = create_app(jobs.app, token=TOKEN, allowed_hosts=HOSTS)
schema = schemathesis.openapi.from_asgi("/openapi.json", web)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_with_5xx(case, dsn):
    response = case.call(headers=AUTH)
    assert response.status_code < 500, (case.method, case.path, response.text)


@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_call_without_the_token_is_refused(case, dsn):
    response = case.call()
    # Refused: 401/403 for a well-formed call; a malformed one fails validation (400/422)
    # or names no route or method (404/405). Never 2xx, never 5xx.
    assert 400 <= response.status_code < 500, (case.method, case.path, response.status_code)


def test_state_changing_calls_are_refused_without_token(app, db):
    dead = app.enqueue("add", args=[1, 2])
    db.execute("UPDATE pgqueue.jobs SET state = 'dead', finished_at = now() WHERE id = %s", (dead,))
    open_web = TestClient(create_app(jobs.app, token=None, allowed_hosts=HOSTS))
    locked_web = TestClient(web)
    for client, headers in (
        (open_web, {}),
        (locked_web, {}),
        (locked_web, {"Authorization": "Bearer wrong"}),
    ):
        assert client.post("/api/jobs", json={"task": "add"}, headers=headers).status_code in (
            401,
            403,
        )
        assert client.post(f"/api/jobs/{dead}/retry", headers=headers).status_code in (401, 403)
        assert client.post("/api/queues/default/pause", headers=headers).status_code in (401, 403)
    assert open_web.get("/api/stats").status_code == 200, "reads are open without a token"
    assert locked_web.get("/api/stats").status_code == 401, "with a token, reads need it"
    assert (
        db.execute("SELECT state FROM pgqueue.jobs WHERE id = %s", (dead,)).fetchone()[0] == "dead"
    )
    assert db.execute("SELECT count(*) FROM pgqueue.queues").fetchone()[0] == 0


def test_enqueue_validates_and_returns_202(app, db):
    client = TestClient(web)
    ok = client.post("/api/jobs", json={"task": "add", "args": [1, 2], "queue": "q"}, headers=AUTH)
    assert ok.status_code == 202
    job = client.get(f"/api/jobs/{ok.json()['id']}", headers=AUTH).json()
    assert job["task"] == "add" and job["queue"] == "q" and job["state"] == "queued"
    for bad in (
        {"args": [1]},
        {"task": ""},
        {"task": "add", "args": "x"},
        {"task": "add", "priority": "high"},
        {"task": "add", "delay": -1},
    ):
        response = client.post("/api/jobs", json=bad, headers=AUTH)
        assert response.status_code in (400, 422), bad
        assert response.json()["detail"]
    assert client.get("/api/jobs/999999", headers=AUTH).status_code == 404
    # An action on a job that is not there says so, as GET does (it was a 409).
    for action in ("retry", "cancel"):
        missing = client.post(f"/api/jobs/999999/{action}", headers=AUTH)
        assert (missing.status_code, missing.json()["detail"]) == (404, "no job 999999")
    assert client.post(f"/api/jobs/{ok.json()['id']}/retry", headers=AUTH).status_code == 409
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


def test_enqueue_takes_every_option_and_refuses_what_it_does_not_know(app, db):
    # run_at and concurrency_key were accepted and dropped (the job ran at once, keyless);
    # a NaN in the body was a 500 (the validation answer could not carry it).
    client = TestClient(web)
    body = {
        "task": "add", "args": [1, 2], "run_at": "2031-01-01T00:00:00+00:00",
        "concurrency_key": "customer:42", "timeout": 5,
    }  # fmt: skip
    ok = client.post("/api/jobs", json=body, headers=AUTH)
    assert ok.status_code == 202, ok.text
    job = app.get_job(ok.json()["id"])
    assert job.run_at.year == 2031
    assert (job.concurrency_key, job.timeout) == ("customer:42", 5)
    unknown = client.post("/api/jobs", json={"task": "add", "run_later": True}, headers=AUTH)
    assert unknown.status_code == 422 and "run_later" in unknown.text
    naive = client.post(
        "/api/jobs", json={"task": "add", "run_at": "2031-01-01T00:00"}, headers=AUTH
    )
    assert naive.status_code == 400, naive.text
    for raw in ('{"task": "add", "delay": NaN}', '{"task": "add", "priority": Infinity}'):
        sent = client.post(
            "/api/jobs", content=raw, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert sent.status_code == 422, (raw, sent.status_code, sent.text)
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


def test_metrics_parse_and_match_sql(app, db, worker):
    ids = app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(12)])
    app.enqueue_many([{"task": "add", "args": [1, 1], "queue": "later", "delay": 600}])
    with worker(concurrency=4):
        app.wait(ids[-1], timeout=15)
        text = TestClient(web).get("/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    jobs_by = {
        (s.labels["queue"], s.labels["state"]): s.value for s in families["pgqueue_jobs"].samples
    }
    for queue, state, n in db.execute(
        "SELECT queue, CASE WHEN state = 'queued' AND run_at > now() THEN 'scheduled'"
        " ELSE state END, count(*) FROM pgqueue.jobs GROUP BY 1, 2"
    ).fetchall():
        assert jobs_by[(queue, state)] == n
    # A delayed job is `scheduled`, as in `pgqueue stats`, not `queued`.
    assert jobs_by[("later", "scheduled")] == 1 and jobs_by[("later", "queued")] == 0
    assert jobs_by[("default", "dead")] == 0
    assert families["pgqueue_workers_alive"].samples[0].value == 1
    counts = [
        s
        for s in families["pgqueue_job_latency_seconds"].samples
        if s.name.endswith("_count") and s.labels["queue"] == "default"
    ]
    assert counts[0].value == 12
    outcomes = {
        (s.labels["task"], s.labels["state"]): s.value
        for s in families["pgqueue_job_outcomes"].samples
    }
    assert outcomes[("add", "succeeded")] == 12
