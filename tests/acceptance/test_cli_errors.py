"""Hostile input on the command line: whatever is typed, a failure is one line on stderr and a
non-zero exit, never a traceback; numbers PostgreSQL cannot store never reach it.

The property tests drive the real CLI (typer's runner, in this process) over generated values
for every option of every command; `work`, which starts a daemon, runs as a subprocess on an
unmigrated database so that whatever passes validation stops there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pgqueue.cli import cli
from tests.acceptance.conftest import ROOT, run_cli
from tests.server import scratch_database

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def assert_one_line(result_stderr: str, output: str, code: int, args: object) -> None:
    assert "Traceback" not in output, (args, output)
    if code == 0:
        return
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, (args, result_stderr)
    assert lines[0].startswith("pgqueue: error: "), (args, lines[0])


def invoke(args: list[str], dsn: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env={"PGQUEUE_DSN": dsn, "DATABASE_URL": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args!r} raised {result.exception!r}") from result.exception
    assert_one_line(result.stderr, result.output, result.exit_code, args)
    return result.exit_code, result.stdout, result.stderr


# -- the inputs that used to print tracebacks ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "add", "--args", '["\\u0000"]'], "NUL character"),
        (["enqueue", "add", "--args", '["\\ud800"]'], "lone surrogate"),
        (["enqueue", "add", "--kwargs", '{"\\u0000": 1}'], "NUL character"),
        (["enqueue", "add", "--args", "[1e400]"], "too large"),
        (["enqueue", "add", "--args", "[NaN]"], "NaN"),
        (["enqueue", "add", "--args", "[Infinity]"], "Infinity"),
        (["enqueue", "add", "--args", f"[{10**30}]"], "64 bits"),
        (["enqueue", "add", "--args", "[" + "9" * 5000 + "]"], "--args cannot be read"),
        (["enqueue", "add", "--args", "[" * 5000 + "]" * 5000], "nested"),
        (["enqueue", "add", "--args", "[" * 200 + "]" * 200], "nested more than 100"),
        (["enqueue", "add", "--delay", "1e300"], "'--delay': delay '1e300' is too long"),
        (["enqueue", "add", "--delay", "-5"], "'--delay': invalid duration '-5'"),
        (["enqueue", "add", "--delay", "nan"], "invalid duration 'nan'"),
        (["enqueue", "add", "--delay", "inf"], "invalid duration 'inf'"),
        (["enqueue", "add", "--delay", "3 days"], "invalid duration '3 days'"),
        (["enqueue", "add", "--max-attempts", "99999999999"], "not in the range 1<=x<=2147483647"),
        (["enqueue", "add", "--priority", "2147483648"], "'--priority'"),
        (["enqueue", "add", "--priority", "9" * 5000], "'--priority'"),
        (["enqueue", "add", "--queue", "q" * 8001], "--queue is longer than 200 bytes"),
        (["enqueue", "add", "--queue", ""], "--queue must not be empty"),
        (["enqueue", "t" * 600], "task is longer than 500 bytes"),
        (["enqueue", "add", "--unique-key", "k" * 600], "--unique-key is longer"),
        (["jobs", "show", "99999999999999999999"], "'JOB_ID': 99999999999999999999 is not in"),
        (["jobs", "show", "0"], "'JOB_ID'"),
        (["jobs", "show", "-1"], "No such option: -1"),
        (["jobs", "cancel", "99999999999999999999"], "'JOB_ID'"),
        (["jobs", "retry", "99999999999999999999"], "'JOB_ID'"),
        (["jobs", "list", "--before-id", "99999999999999999999"], "'--before-id'"),
        (["jobs", "list", "--limit", "99999999999999999999"], "'--limit'"),
        (["jobs", "list", "--limit", "0"], "'--limit'"),
        (["jobs", "list", "--since", "99999999d"], "--since '99999999d' is too long"),
        (["jobs", "list", "--since", "9" * 400], "is too long"),
        (["jobs", "list", "--state", "gone"], "unknown state 'gone'"),
        (["jobs", "purge", "--older-than", "999999999d"], "--older-than '999999999d' is too long"),
        (["jobs", "purge", "--older-than", "soon"], "invalid duration"),
        (["jobs", "purge", "--state", "queued"], "--state must be"),
        (["queues", "limit", "q", "--concurrency", "99999999999"], "'--concurrency'"),
        (["queues", "limit", "q", "--rate", "-1"], "'--rate'"),
        (["queues", "limit", "q", "--per", "1e300"], "'--per'"),
        (["queues", "limit", "q", "--per", "0"], "'--per'"),
        (
            ["queues", "retention", "q", "--dead", "99999999999d"],
            "--dead '99999999999d' is too long",
        ),
        (["queues", "pause", "q" * 300], "queue name is longer than 200 bytes"),
        (["work", "tests.jobs:app", "--dsn", "foo=bar"], 'invalid connection option "foo"'),
        (["work", "tests.jobs:app", "--concurrency", "99999999999"], "'--concurrency'"),
        (["work", "tests.jobs:app", "--processes", "0"], "'--processes'"),
        (["work", "tests.jobs:app", "--lease", "nan"], "not a finite number"),
        (["work", "tests.jobs:app", "--heartbeat-interval", "0"], "'--heartbeat-interval'"),
        (["work", "tests.jobs:app", "--shutdown-grace", "-1"], "'--shutdown-grace'"),
        (["work", "tests.jobs:app", "--retain-dead", "99999999999d"], "too long"),
        (["work", "tests.jobs:app", "--log-level", "LOUD"], "'--log-level'"),
        (["work", "tests.jobs:app", "--queues", "a," + "q" * 300], "a queue in --queues"),
        (["stats", "--dsn", "foo=bar"], 'invalid connection option "foo"'),
        (["stats", "--dsn", "dbname"], "'--dsn'"),
        (["stats", "--dsn", "host='unterminated"], "'--dsn'"),
        (["enqueue", "\x00"], "argument 2 holds a NUL character"),
        (["enqueue", "add", "--queue", "\udcff"], "argument 4 is not valid UTF-8"),
        (["no-such-command"], "No such command"),
        (["enqueue"], "Missing argument"),
        (["serve", "--token", ""], "--token is empty"),
        (["serve", "--port", "99999"], "'--port'"),
        (["serve", "--host", "999.1.1.1", "--token", "t"], "cannot listen on 999.1.1.1"),
    ],
)
def test_bad_input_is_one_line(dsn, db, args, fragment):
    code, _, stderr = invoke(args, dsn)
    assert code != 0
    assert fragment in stderr, stderr
    assert db.execute("SELECT count(*) FROM pgqueue.jobs").fetchone()[0] == 0


def test_invalid_utf8_from_a_real_shell(dsn):
    """A shell passes raw bytes; Python keeps them as surrogates, which PostgreSQL refuses."""
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"pgqueue.cli", b"enqueue", b"add\xff"],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PGQUEUE_DSN": dsn},
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == ("pgqueue: error: argument 2 is not valid UTF-8 text")


def test_unreachable_and_unauthorized_databases(server_dsn):
    for dsn in (UNREACHABLE, server_dsn.replace("postgres@", "no_such_role_here@", 1)):
        for args in (["stats"], ["enqueue", "add"], ["jobs", "list"], ["queues", "list"]):
            code, _, stderr = invoke([*args, "--dsn", dsn], dsn)
            assert code == 1, stderr


def test_values_at_the_edges_are_stored(dsn, db):
    """The largest values the CLI accepts are the ones PostgreSQL takes."""
    code, out, _ = invoke(
        [
            "enqueue",
            "t" * 500,
            "--priority",
            str(-(2**31)),
            "--max-attempts",
            str(2**31 - 1),
            "--delay",
            str(10 * 365 * 86400),
            "--queue",
            "q" * 200,
            "--args",
            json.dumps([2**63 - 1, -(2**63), 1e308, "é" * 100, [[[[1]]]]]),
        ],
        dsn,
    )
    assert code == 0
    row = db.execute(
        "SELECT priority, max_attempts, queue, args FROM pgqueue.jobs WHERE id = %s",
        (int(out),),
    ).fetchone()
    assert row[0] == -(2**31) and row[1] == 2**31 - 1 and row[2] == "q" * 200
    assert row[3][:2] == [2**63 - 1, -(2**63)]
    code, _, _ = invoke(["jobs", "show", str(2**63 - 1)], dsn)
    assert code == 1
    code, _, _ = invoke(["jobs", "list", "--since", "36500d", "--before-id", str(2**63 - 1)], dsn)
    assert code == 0
    code, _, _ = invoke(["jobs", "purge", "--older-than", "36500d"], dsn)
    assert code == 0


# -- property tests -------------------------------------------------------------------------

INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            *("0", "-1", "1", "2147483647", "2147483648", "9223372036854775808", "1e3"),
            *("0x10", "", " 5", "9" * 5000, "NaN", "٣"),
        ]
    ),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e300", "-0", "nan", "inf", "-inf", "1e-320", "", "abc", "1_000", "0"]),
)
DURATIONS = st.one_of(
    st.sampled_from(
        [
            *("0", "1s", "99999999d", "9" * 30 + "w", "1.5h", "-1d", "1e3d", "d", "", "9" * 400),
            *("36500d", "36501d", " 7d ", "7D", "1.d"),
        ]
    ),
    st.text(max_size=12),
)
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "q" * 9000, "\x00", "\ud800", "é", "'; DROP TABLE pgqueue.jobs; --"]),
)
JSONS = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    ).map(lambda v: json.dumps(v)),
    st.sampled_from(['["\\u0000"]', '["\\udfff"]', "[1,", "{}", "[]", "null", "[" * 3000]),
    st.text(max_size=20),
)
DSNS = st.sampled_from(
    ["foo=bar", "port=abc", "=", "'", "host=127.0.0.1 port=1", UNREACHABLE, "postgresql://:x@"]
)
APP_PATHS = st.sampled_from(
    ["tests.jobs:app", "tests.jobs:nothing", "no_such_module:app", ":app", "tests.jobs:", "x" * 300]
)
FLAG = st.just(None)

# command -> (positional strategies, {option: strategy}); FLAG options take no value.
COMMANDS: dict[tuple[str, ...], tuple[list[st.SearchStrategy[str]], dict[str, object]]] = {
    ("enqueue",): (
        [TEXT],
        {
            "--args": JSONS,
            "--kwargs": JSONS,
            "--queue": TEXT,
            "--priority": INTS,
            "--delay": FLOATS,
            "--unique-key": TEXT,
            "--max-attempts": INTS,
            "--app": APP_PATHS,
            "--json": FLAG,
        },
    ),
    ("stats",): ([], {"--json": FLAG}),
    ("schedules",): ([], {"--json": FLAG}),
    ("workers",): ([], {"--json": FLAG}),
    ("queues", "pause"): ([TEXT], {}),
    ("queues", "resume"): ([TEXT], {}),
    ("queues", "list"): ([], {"--json": FLAG}),
    ("queues", "limit"): (
        [TEXT],
        {"--concurrency": INTS, "--rate": INTS, "--per": FLOATS, "--clear": FLAG},
    ),
    ("queues", "retention"): (
        [TEXT],
        {
            "--succeeded": DURATIONS,
            "--dead": DURATIONS,
            "--cancelled": DURATIONS,
            "--default": FLAG,
        },
    ),
    ("jobs", "show"): ([INTS], {"--json": FLAG}),
    ("jobs", "cancel"): ([INTS], {}),
    ("jobs", "retry"): ([INTS], {"--all-dead": FLAG, "--queue": TEXT, "--json": FLAG}),
    ("jobs", "list"): (
        [],
        {
            "--queue": TEXT,
            "--state": TEXT,
            "--task": TEXT,
            "--since": DURATIONS,
            "--limit": INTS,
            "--before-id": INTS,
            "--json": FLAG,
        },
    ),
    ("jobs", "purge"): (
        [],
        {"--state": TEXT, "--older-than": DURATIONS, "--queue": TEXT, "--json": FLAG},
    ),
    ("serve",): (
        [],
        {
            "--host": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "999.1.1.1", "", "x" * 300]),
            "--port": INTS,
            "--token": TEXT,
            "--allowed-host": TEXT,
            "--max-body-size": INTS,
            "--insecure-no-token": FLAG,
        },
    ),
}


@st.composite
def command_line(draw, command: tuple[str, ...]) -> list[str]:
    positional, options = COMMANDS[command]
    args = [*command]
    for strategy in positional:
        if draw(st.booleans()) or command[-1] not in ("retry",):
            args.append(draw(strategy))
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True)) if options else []
    for name in chosen:
        strategy = options[name]
        args.append(name)
        if strategy is not FLAG:
            args.append(draw(strategy))  # type: ignore[arg-type]
    if command == ("serve",):
        args += ["--dsn", UNREACHABLE]  # it never reaches a database, so it never serves
    elif draw(st.integers(0, 9)) == 0:
        args += ["--dsn", draw(DSNS)]
    return args


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_any_input_is_one_line_or_success(db_dsn, command):
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(args=command_line(command))
    def run(args: list[str]) -> None:
        invoke(args, db_dsn)

    run()


@pytest.mark.timeout(300)
def test_any_work_option_is_one_line_or_stops_cleanly(server_dsn):
    """`work` as a subprocess (it installs signal handlers and runs a loop): on an empty
    database, whatever passes validation must still end with one line, never a traceback."""
    options = {
        "--queues": TEXT,
        "--concurrency": INTS,
        "--processes": INTS,
        "--shutdown-grace": FLOATS,
        "--heartbeat-interval": FLOATS,
        "--lease": FLOATS,
        "--poll-interval": FLOATS,
        "--log-level": TEXT,
        "--log-format": TEXT,
        "--retain-succeeded": DURATIONS,
        "--retain-cancelled": DURATIONS,
        "--retain-dead": DURATIONS,
        "--scheduler": FLAG,
        "--no-scheduler": FLAG,
    }
    with scratch_database(server_dsn, "pgqueue_test_cli_work") as empty:

        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(app=APP_PATHS, data=st.data())
        def run(app: str, data: st.DataObject) -> None:
            args = ["work", app]
            names = data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4))
            for name in names:
                args.append(name)
                if options[name] is not FLAG:
                    value = data.draw(options[name])  # type: ignore[arg-type]
                    if "\x00" in value or not _encodable(value):
                        value = "x"  # argv cannot carry these; tested in-process above
                    args.append(value)
            result = run_cli(*args, env={"PGQUEUE_DSN": empty}, timeout=60)
            assert result.returncode != 0, (args, result.stdout)
            assert_one_line(result.stderr, result.stdout + result.stderr, 1, args)

        run()


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
