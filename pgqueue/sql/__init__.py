"""pgqueue's runtime queries, one file per concern (jobs, claim, outcomes, maintenance,
workers, queues, schedules, stats), loaded into {name: query}. Internal: names and texts
may change.

Format of the .sql files: each block starts with "-- name: <query_name>" and a one-line
description; other "-- " lines at the start of a line are comments and are dropped.
Parameters are psycopg named placeholders with explicit casts. `now` parameters may be NULL,
meaning the database clock (tests pin them). Every query is used by pgqueue/store/, and
only there; names are unique across the files.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString

_BLOCK = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def _parse(text: str) -> dict[str, LiteralString]:
    parts = _BLOCK.split(text)
    queries: dict[str, LiteralString] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("-- ")]
        queries[name] = "\n".join(lines).rstrip(";")
    return queries


def _load() -> dict[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    files = sorted(resources.files(__package__).iterdir(), key=lambda f: f.name)
    for file in files:
        if not file.name.endswith(".sql"):
            continue
        for name, query in _parse(file.read_text()).items():
            if name in queries:
                raise RuntimeError(f"query {name} is defined twice ({file.name})")
            queries[name] = query
    return queries


QUERIES = _load()
