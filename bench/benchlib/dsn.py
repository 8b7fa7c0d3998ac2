"""Connection-string helpers: point a server DSN at another database."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict


def with_dbname(dsn: str, dbname: str) -> str:
    """Return `dsn` as a postgresql:// URL pointing at database `dbname`.

    A URL is needed because asyncpg (used by PgQueuer) accepts only that form.
    """
    url = dsn if "://" in dsn else _url_from_keywords(dsn)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname), parts.query, ""))


def _url_from_keywords(dsn: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", "")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = params.pop("host", "localhost")
    port = params.pop("port", "5432")
    params.pop("dbname", None)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql://{auth}{host}:{port}/" + (f"?{query}" if query else "")
