"""The CLI end to end: one clear line on stderr for bad input, never a traceback."""

from __future__ import annotations

import json

import pytest

from pgqueue.worker import NEEDS_REVISION
from tests.acceptance.conftest import run_cli
from tests.server import scratch_database


def assert_clean_error(result, fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgqueue: error:")
    assert fragment in lines[0], lines[0]


def test_enqueue_and_stats(dsn, db):
    result = run_cli("enqueue", "add", "--args", "[1, 2]", "--priority", "5", "--queue", "q1")
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout)
    row = db.execute(
        "SELECT task, args, priority, queue FROM pgqueue.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("add", [1, 2], 5, "q1")
    run_cli("enqueue", "add", "--args", "[1, 2]", "--delay", "60")
    stats = run_cli("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    by_queue = {r["queue"]: r for r in json.loads(stats.stdout)}
    assert by_queue["q1"]["queued"] == 1
    assert by_queue["default"]["scheduled"] == 1 and by_queue["default"]["queued"] == 0
    text = run_cli("stats")
    assert "q1" in text.stdout and "queued" in text.stdout


def test_enqueue_checks_task_against_app(dsn, db):
    ok = run_cli("enqueue", "add", "--args", "[1, 2]", "--app", "tests.jobs:app")
    assert ok.returncode == 0, ok.stderr
    bad = run_cli("enqueue", "nope", "--app", "tests.jobs:app")
    assert_clean_error(bad, "unknown task 'nope'")
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "add", "--args", "[1,"], "--args is not valid JSON"),
        (["enqueue", "add", "--args", "{}"], "--args must be a JSON array"),
        (["enqueue", "add", "--kwargs", "[]"], "--kwargs must be a JSON object"),
        (["enqueue", "add", "--delay", "-5"], "'--delay': invalid duration '-5'"),
        (["work", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["work", "tests.jobs:nothing"], "is not a pgqueue.App"),
        (["jobs", "show", "999999"], "no job with id 999999"),
        (["jobs", "retry", "999999"], "no job 999999"),
        (["jobs", "cancel", "999999"], "no job 999999"),
    ],
)
def test_bad_input_gets_one_line(dsn, args, fragment):
    assert_clean_error(run_cli(*args), fragment)


def test_unreachable_database(dsn):
    for args in (["stats"], ["enqueue", "add"], ["migrate"], ["jobs", "show", "1"]):
        result = run_cli(*args, "--dsn", "postgresql://nobody@127.0.0.1:1/none")
        assert_clean_error(result, "database unavailable")


def test_unmigrated_schema(server_dsn):
    commands = (
        ["stats"], ["enqueue", "add"], ["work", "tests.jobs:app"], ["serve", "--port", "0"]
    )  # fmt: skip
    with scratch_database(server_dsn, "pgqueue_test_unmigrated") as empty:
        env = {"PGQUEUE_DSN": empty}
        for args in commands:
            assert_clean_error(run_cli(*args, env=env, timeout=30), "not migrated")
        # Migrated, then taken down to nothing: the schema's version table is all that is left.
        assert run_cli("migrate", env=env).returncode == 0
        assert run_cli("migrate", "downgrade", "base", "--yes", env=env).returncode == 0
        for args in commands:
            result = run_cli(*args, env=env, timeout=30)
            assert_clean_error(result, "not migrated")
            assert "run `pgqueue migrate`" in result.stderr


def test_worker_refuses_an_older_schema(server_dsn):
    with scratch_database(server_dsn, "pgqueue_test_old_schema") as old:
        env = {"PGQUEUE_DSN": old}
        assert run_cli("migrate", env=env).returncode == 0
        assert run_cli("migrate", "downgrade", "0006", env=env).returncode == 0
        result = run_cli("work", "tests.jobs:app", env=env, timeout=30)
        assert_clean_error(result, f"needs {NEEDS_REVISION}: run `pgqueue migrate`")


def test_jobs_show_cancel_retry(dsn, db):
    job_id = int(run_cli("enqueue", "add", "--args", "[1, 2]", "--delay", "60").stdout)
    assert run_cli("jobs", "cancel", str(job_id)).returncode == 0
    shown = json.loads(run_cli("jobs", "show", str(job_id), "--json").stdout)
    assert shown["state"] == "cancelled" and shown["args"] == [1, 2]
    assert run_cli("jobs", "retry", str(job_id)).returncode == 0
    assert (
        db.execute("SELECT state FROM pgqueue.jobs WHERE id = %s", (job_id,)).fetchone()[0]
        == "queued"
    )


def test_jobs_cancel_says_what_it_did(dsn, db):
    job_id = int(run_cli("enqueue", "add", "--args", "[1, 2]").stdout)
    # As if a worker had claimed it: a running job is asked to stop, not yet cancelled.
    db.execute("UPDATE pgqueue.jobs SET state = 'running', attempts = 1 WHERE id = %s", (job_id,))
    running = run_cli("jobs", "cancel", str(job_id))
    assert running.returncode == 0, running.stderr
    assert "cancel requested" in running.stdout
    row = db.execute(
        "SELECT state, cancel_requested_at IS NOT NULL FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("running", True)
    db.execute("UPDATE pgqueue.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s",
               (job_id,))  # fmt: skip
    assert_clean_error(run_cli("jobs", "cancel", str(job_id)), "(it is succeeded)")
    assert_clean_error(run_cli("jobs", "cancel", str(job_id), "--json"), "(it is succeeded)")


def test_jobs_cancel_json(dsn, db):
    queued = int(run_cli("enqueue", "add", "--args", "[1, 2]", "--delay", "60").stdout)
    done = json.loads(run_cli("jobs", "cancel", str(queued), "--json").stdout)
    assert done == {"id": queued, "cancelled": True, "requested": False}
    running = int(run_cli("enqueue", "add", "--args", "[1, 2]").stdout)
    db.execute("UPDATE pgqueue.jobs SET state = 'running', attempts = 1 WHERE id = %s", (running,))
    asked = json.loads(run_cli("jobs", "cancel", str(running), "--json").stdout)
    assert asked == {"id": running, "cancelled": False, "requested": True}


def test_retry_all_dead_with_two_dead_jobs_of_one_unique_key(dsn, db):
    # Both went back in one statement, which the unique index refused: nothing was retried,
    # not even the others, at every run; and the one left said it was "not dead".
    ids = []
    for key in (("--unique-key", "K"), (), ("--unique-key", "K")):
        ids.append(int(run_cli("enqueue", "add", "--args", "[1, 2]", *key).stdout))
        # Dead before the next one with its key comes.
        db.execute("UPDATE pgqueue.jobs SET state = 'dead', finished_at = now() WHERE id = %s",
                   (ids[-1],))  # fmt: skip
    done = run_cli("jobs", "retry", "--all-dead", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"retried": 2}
    states = dict(db.execute("SELECT id, state FROM pgqueue.jobs").fetchall())
    assert states == {ids[0]: "queued", ids[1]: "queued", ids[2]: "dead"}
    assert_clean_error(
        run_cli("jobs", "retry", str(ids[2])),
        f"job {ids[2]} is dead, but another live job holds its unique key 'K'",
    )


def test_queue_commands(dsn, db):
    assert run_cli("queues", "pause", "emails").returncode == 0
    assert (
        run_cli(
            "queues", "limit", "emails", "--concurrency", "3", "--rate", "10", "--per", "2"
        ).returncode
        == 0
    )
    assert (
        run_cli("queues", "retention", "emails", "--succeeded", "1h", "--dead", "0").returncode == 0
    )
    listed = {q["name"]: q for q in json.loads(run_cli("queues", "list", "--json").stdout)}
    emails = listed["emails"]
    assert emails["paused"] is True and emails["concurrency_limit"] == 3
    assert emails["rate_limit"] == 10 and emails["rate_period"] == 2.0
    assert emails["retain_succeeded"] == 3600.0 and emails["retain_dead"] == 0.0
    assert run_cli("queues", "resume", "emails").returncode == 0
    assert run_cli("queues", "limit", "emails", "--clear").returncode == 0
    row = db.execute(
        "SELECT paused, concurrency_limit, rate_limit FROM pgqueue.queues WHERE name = 'emails'"
    ).fetchone()
    assert row == (False, None, None)
    assert_clean_error(
        run_cli("queues", "retention", "emails", "--succeeded", "soon"), "invalid duration"
    )


def test_help_names_every_option_in_full_at_80_columns():
    # Piped output is 80 columns wide: option names must not be cut to fit.
    shown = run_cli("work", "--help", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    for option in (
        "--heartbeat-interval",
        "--shutdown-grace",
        "--listen-dsn",
        "PGQUEUE_LISTEN_DSN",
    ):
        assert option in shown.stdout
    assert "…" not in shown.stdout


@pytest.mark.parametrize(
    ("typed", "seconds"), [("90", 90), ("1.5", 1.5), ("10m", 600), ("2h", 7200)]
)
def test_enqueue_delay_takes_seconds_or_a_duration(dsn, db, typed, seconds):
    """As --since and --older-than do: `--delay 10m` is ten minutes."""
    job_id = int(run_cli("enqueue", "add", "--args", "[1, 2]", "--delay", typed).stdout)
    (waits,) = db.execute(
        "SELECT extract(epoch FROM run_at - created_at)::float8 FROM pgqueue.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert abs(waits - seconds) < 1


def test_commands_on_an_older_schema_say_to_migrate(server_dsn):
    """Not the bare `column "cancel_reason" does not exist` of a statement of this release."""
    from fastapi.testclient import TestClient

    import pgqueue
    from pgqueue.web import create_app

    with scratch_database(server_dsn, "pgqueue_test_older_schema") as old:
        env = {"PGQUEUE_DSN": old}
        assert run_cli("migrate", env=env).returncode == 0
        assert run_cli("migrate", "downgrade", "0026", env=env).returncode == 0
        for args in (["jobs", "cancel", "1"], ["jobs", "retry", "1"]):
            result = run_cli(*args, env=env, timeout=30)
            assert_clean_error(result, "older than this release of pgqueue needs")
            assert "run `pgqueue migrate`" in result.stderr
        assert run_cli("migrate", "downgrade", "0010", env=env).returncode == 0
        for args in (["enqueue", "add"], ["queues", "list"]):
            assert_clean_error(run_cli(*args, env=env, timeout=30), "run `pgqueue migrate`")
        with pgqueue.App(old) as app:
            web = TestClient(create_app(app), base_url="http://localhost")
            answer = web.get("/api/queues")
            assert answer.status_code == 503, answer.text
            assert "pgqueue migrate" in answer.json()["detail"]


def test_json_timestamps_are_written_as_the_api_writes_them(dsn, db):
    # A script reads `jobs show --json` and `/api/jobs/ID` with one parser: the CLI wrote
    # `2026-12-04 04:16:19.3+00:00`, the API `2026-12-04T04:16:19.3Z`.
    from fastapi.testclient import TestClient

    from pgqueue.web import create_app
    from tests import jobs

    job_id = int(run_cli("enqueue", "add", "--args", "[1, 2]", "--delay", "60").stdout)
    db.execute("SET TIME ZONE 'Asia/Kolkata'")  # the CLI's session zone must not show through
    shown = json.loads(
        run_cli("jobs", "show", str(job_id), "--json", env={"PGTZ": "Asia/Kolkata"}).stdout
    )
    listed = json.loads(run_cli("jobs", "list", "--json").stdout)
    web = TestClient(create_app(jobs.app, token=None, allowed_hosts=("testserver",)))
    api = web.get(f"/api/jobs/{job_id}").json()
    for field in ("run_at", "created_at"):
        assert shown[field] == api[field] == listed[0][field], field
        assert shown[field].endswith("Z") and "T" in shown[field]
