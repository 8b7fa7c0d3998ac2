"""Loads queries.sql into {name: query}. Internal: names and texts may change."""

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


QUERIES = _parse(resources.files(__package__).joinpath("queries.sql").read_text())
