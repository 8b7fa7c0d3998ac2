"""Apply pgqueue's alembic migrations (`pgqueue migrate`), from code or the CLI.

To run them from an application's own alembic `env.py`, call `upgrade(connection)` with the
SQLAlchemy connection alembic gives you: pgqueue keeps its own version table in its schema.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

HEAD = "head"


def migrations_dir() -> Path:
    """The bundled alembic scripts: inside the wheel, or `migrations/` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("pgqueue's migrations are missing from this installation")


def sqlalchemy_url(dsn: str) -> str:
    """A SQLAlchemy URL for a libpq DSN or URL, using the psycopg 3 driver."""
    if dsn.startswith(("postgresql+", "postgres+")):
        return dsn
    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + dsn.split("://", 1)[1]
    # A key=value libpq string (or empty: libpq's PG* variables) goes through the query string.
    from urllib.parse import quote

    return "postgresql+psycopg:///?" + "&".join(
        f"{k}={quote(v)}" for k, v in (part.split("=", 1) for part in dsn.split())
    )


def alembic_config(dsn: str | None = None, connection: Any = None) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("pgqueue_schema", "pgqueue")
    if dsn is not None:
        # ConfigParser treats % as interpolation; URLs may hold %-escapes.
        cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(target: Any, revision: str = HEAD) -> None:
    """Migrate up to `revision`. `target` is a DSN or a SQLAlchemy `Connection`."""
    if isinstance(target, str):
        command.upgrade(alembic_config(dsn=target), revision)
    else:
        command.upgrade(alembic_config(connection=target), revision)


def downgrade(target: Any, revision: str) -> None:
    """Migrate down to `revision` (`base` removes every pgqueue table)."""
    if isinstance(target, str):
        command.downgrade(alembic_config(dsn=target), revision)
    else:
        command.downgrade(alembic_config(connection=target), revision)


def upgrade_sql(revision: str = HEAD, dsn: str = "postgresql://") -> str:
    """The SQL that `upgrade` would run, for review or for a DBA to apply."""
    cfg = alembic_config(dsn=dsn)
    out = io.StringIO()
    cfg.output_buffer = out
    command.upgrade(cfg, revision, sql=True)
    return out.getvalue()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
