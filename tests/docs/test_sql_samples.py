"""Every SQL sample of the documentation site and the README runs, as a DBA would paste it
into psql, on a migrated database (in a transaction rolled back afterwards). Roles a sample
grants to are the reader's own: they are created first (and rolled back with the rest)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgqueue import migrate
from tests.docs.test_samples import PAGES, ROOT, blocks
from tests.server import cluster_lock

GRANTEE = re.compile(r"^\s*GRANT\s+\w+\s+TO\s+(\w+)", re.I | re.M)


def sql_samples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in blocks(page.read_text()):
            if block.lang == "sql" and not block.skip:
                found.append((f"{page.relative_to(ROOT)}:{block.line}", block.code))
    return found


@pytest.mark.parametrize(("where", "code"), sql_samples(), ids=[w for w, _ in sql_samples()])
def test_sql_sample_runs(where: str, code: str, dsn: str, server_dsn: str) -> None:
    if GRANTEE.search(code):
        with cluster_lock(server_dsn):  # the group roles are the server's
            migrate.create_roles(dsn)  # `pgqueue migrate roles`, which the page asks for first
    with psycopg.connect(dsn) as conn:
        for role in GRANTEE.findall(code):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(code)  # type: ignore[arg-type]
        conn.rollback()


def test_there_are_sql_samples() -> None:
    pages = {where.split(":")[0] for where, _ in sql_samples()}
    assert "README.md" in pages and len(sql_samples()) >= 4, pages
    assert all(Path(ROOT / p).is_file() for p in pages)
