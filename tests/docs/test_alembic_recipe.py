"""The README's recipe for pgqueue's migrations inside an application's own alembic, applied
as a user would: to the `env.py` that `alembic init` makes, then `alembic upgrade head`
(twice), `alembic current`, and `alembic downgrade -1` of the application's own revision."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import migrate
from tests.server import with_database

ROOT = Path(__file__).absolute().parents[2]

pytestmark = pytest.mark.timeout(180)

USER_REVISION = '''"""orders"""
from alembic import op

revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE orders")
'''


def readme_recipe() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Schema and your own alembic", 1)[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match, "the README's alembic recipe is gone"
    return match.group(1)


def apply_recipe(recipe: str, env_py: str) -> str:
    """`env_py` with the recipe's `# added` lines put where the recipe shows them; every other
    line of the recipe (but `...`) must be found, in order, in `env_py`."""
    lines = env_py.splitlines()
    at = 0
    for line in recipe.splitlines():
        wanted = line.strip()
        if not wanted or wanted == "...":
            continue
        if "# added" in line:
            lines.insert(at, line)
            at += 1
            continue
        found = [i for i in range(at, len(lines)) if lines[i].strip() == wanted]
        assert found, f"the README's line {wanted!r} is not in the env.py of `alembic init`"
        at = found[0] + 1
    return "\n".join(lines) + "\n"


def test_apply_recipe_puts_added_lines_in_place() -> None:
    env = "from alembic import context\n\nx = 1\n    with a:\n        b()\n"
    recipe = "from alembic import context\nimport y  # added\n...\n        b()\n    c()  # added\n"
    assert apply_recipe(recipe, env) == (
        "from alembic import context\nimport y  # added\n\nx = 1\n    with a:\n        b()\n"
        "    c()  # added\n"
    )


@pytest.fixture
def database(server_dsn: str) -> Iterator[str]:
    name = f"pgqueue_alembic_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic(project: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out, f"alembic {' '.join(args)}:\n{out}"
    return out


def versions(dsn: str) -> tuple[str | None, str | None, bool]:
    """(the application's revision, pgqueue's revision, whether its orders table exists)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        mine = conn.execute("SELECT max(version_num) FROM public.alembic_version").fetchone()
        pgq = conn.execute("SELECT max(version_num) FROM pgqueue.alembic_version").fetchone()
        orders = conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()
    assert mine and pgq and orders
    return mine[0], pgq[0], orders[0]


def test_readme_alembic_recipe_in_an_alembic_init_project(database: str, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    alembic(project, "init", "alembic")
    ini = project / "alembic.ini"
    url = migrate.sqlalchemy_url(database).replace("%", "%%")
    setting = re.compile(r"^sqlalchemy\.url = .*$", re.M)
    ini.write_text(setting.sub(f"sqlalchemy.url = {url}", ini.read_text()))
    env_py = project / "alembic" / "env.py"
    env_py.write_text(apply_recipe(readme_recipe(), env_py.read_text()))
    (project / "alembic" / "versions" / "a1b2c3d4e5f6_orders.py").write_text(USER_REVISION)
    head = migrate.head_revision()

    alembic(project, "upgrade", "head")
    assert versions(database) == ("a1b2c3d4e5f6", head, True)
    alembic(project, "upgrade", "head")  # nothing to do, for either
    assert versions(database) == ("a1b2c3d4e5f6", head, True)

    # `current` reads; it does not migrate pgqueue as a side effect.
    migrate.downgrade(database, "-1")
    below = versions(database)[1]
    assert below != head
    assert "a1b2c3d4e5f6 (head)" in alembic(project, "current")
    assert versions(database) == ("a1b2c3d4e5f6", below, True)
    alembic(project, "upgrade", "head")
    assert versions(database) == ("a1b2c3d4e5f6", head, True)

    # Downgrading the application's own revision leaves pgqueue's schema alone.
    alembic(project, "downgrade", "-1")
    assert versions(database) == (None, head, False)
    assert "a1b2c3d4e5f6" not in alembic(project, "current")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO pgqueue.jobs (task) VALUES ('send_receipt')")
