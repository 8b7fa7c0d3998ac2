"""The README's quickstart, pasted as a newcomer would: its shell lines run in bash (create
the database, export the DSN, `pgqueue migrate`, `pgqueue work ...`), `shop_tasks.py` is
written as shown, its Python blocks run in order, and what they print is what the README's
comments say.

Two things differ from a terminal: `postgresql://localhost/shop` means a database of the test
server (created by the quickstart's `createdb shop`, played by a shell function), and
`pip install -e .` only checks that pgqueue is installed, as it is here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.docs.test_samples import FENCE, NAMED_FILE, ROOT, url, wait_registered
from tests.server import with_database

pytestmark = pytest.mark.timeout(180)

BIN = Path(sys.executable).parent
PRELUDE = """set -euo pipefail
pip() { [ "$*" = "install -e ." ] && "$PYTHON" -m pip show -q pgqueue >/dev/null; }
createdb() { [ "$1" = shop ] && "$PYTHON" -c "$CREATEDB"; }
"""
CREATEDB = "import os, psycopg; psycopg.connect(os.environ['SERVER'], autocommit=True)" + (
    '.execute(f\'CREATE DATABASE "{os.environ["DBNAME"]}"\')'
)


def quickstart() -> list[tuple[str, str, str]]:
    """(language, code, the line before) of each block of the README's Quickstart."""
    text = (ROOT / "README.md").read_text()
    section = re.split(r"^#{2,3} ", text.split("\n## Quickstart\n", 1)[1], flags=re.M)[0]
    found = []
    for m in FENCE.finditer(section):
        before = section[: m.start()].rstrip("\n").splitlines()
        found.append(((m.group(1) or "").lower(), m.group(3), before[-1] if before else ""))
    return found


@pytest.fixture
def shop(server_dsn: str) -> Iterator[tuple[str, str]]:
    """(name, DSN) of the quickstart's database, not created yet."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    yield name, with_database(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_readme_quickstart_verbatim(server_dsn: str, shop: tuple[str, str], tmp_path: Path):
    name, dsn = shop
    blocks = quickstart()
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        SERVER=server_dsn,
        DBNAME=name,
        CREATEDB=CREATEDB,
    )

    def bash(code: str) -> str:
        code = code.replace("postgresql://localhost/shop", f"'{url(dsn)}'")  # may hold &
        done = subprocess.run(
            ["bash", "-c", PRELUDE + code + '\nprintf %s "$PGQUEUE_DSN" > .dsn'],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{code}\n{done.stdout}{done.stderr}"
        return done.stdout

    lang, setup, _ = blocks[0]
    assert lang == "bash" and "pgqueue migrate" in setup
    bash(setup)
    env["PGQUEUE_DSN"] = (tmp_path / ".dsn").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:  # created and migrated
        assert conn.execute("SELECT to_regclass('pgqueue.jobs') IS NOT NULL").fetchone()[0]

    python, worker = [], None
    log_file = (tmp_path / "worker.log").open("wb")
    for lang, code, before in blocks[1:]:
        named = NAMED_FILE.search(before)
        if lang == "python" and named:
            (tmp_path / named.group(1)).write_text(code)
        elif lang == "python":
            python.append(code)
        elif lang == "bash":
            assert worker is None and code.strip().startswith("pgqueue work ")
            worker = subprocess.Popen(
                ["bash", "-c", f"exec {code.strip()}"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                # A file, not a pipe: a line per job would fill a pipe nobody reads yet.
                stderr=log_file,
            )
    assert worker is not None and len(python) == 2
    try:
        wait_registered(dsn, 1, [worker])
        done = subprocess.run(
            [sys.executable, "-c", "\n".join(python)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log_file.close()
        log = (tmp_path / "worker.log").read_text()
    assert done.returncode == 0, done.stderr + log
    assert worker.returncode == 0, log
    # As the README's Logs paragraph says: each success is a line at INFO, the default level.
    assert "INFO pgqueue.job: job 1 send_receipt queue=emails attempt=1" in log
    printed = done.stdout.splitlines()
    comments = re.findall(r"^print\(.*?\)\s+# (.*)$", python[1], re.M)
    assert printed[:2] == ["receipt for order 42 sent", "{'user': 7, 'attempt': 1}"]
    for line, comment in zip(printed[:2], comments, strict=False):
        assert comment.startswith(line), "the README says another result"
