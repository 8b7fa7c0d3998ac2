"""The README's first command, `scripts/demo`: past its pip install, it is `examples/demo.py`.
Run here on a fresh database of the test server (the demo starts an embedded PostgreSQL only
when no DSN is set), from a copy of `examples/` so its worker log stays out of the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.server import with_database

ROOT = Path(__file__).absolute().parents[2]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def fresh_db(server_dsn: str) -> Iterator[str]:
    name = f"pgqueue_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_scripts_demo_runs_and_says_where_to_look(fresh_db: str, tmp_path: Path) -> None:
    assert "exec .venv/bin/python examples/demo.py" in (ROOT / "scripts" / "demo").read_text()
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PGQUEUE_DSN=fresh_db, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    done = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "kept its error history" in done.stdout and "Where to look" in done.stdout
    assert (tmp_path / "demo-worker.log").is_file()
