"""Every query in pgqueue/sql/ is used by the store, and the store names only real queries."""

from __future__ import annotations

import re
from pathlib import Path

from pgqueue.sql import QUERIES

STORE_DIR = Path(__file__).resolve().parents[2] / "pgqueue" / "store"


def test_every_query_is_used_and_every_use_exists():
    source = "\n".join(p.read_text() for p in sorted(STORE_DIR.glob("*.py")))
    used = set(re.findall(r'"(\w+)"', source)) & (
        set(QUERIES) | {n for n in re.findall(r'QUERIES\["(\w+)"\]', source)}
    )
    used |= set(re.findall(r'_(?:run|tuples)\("(\w+)"', source))
    assert set(QUERIES) - used == set(), "queries nobody runs"
    named = set(re.findall(r'QUERIES\["(\w+)"\]', source)) | set(
        re.findall(r'_(?:run|tuples)\("(\w+)"', source)
    )
    assert named - set(QUERIES) == set(), "store names queries that do not exist"


def test_queries_have_no_stray_semicolons():
    for name, text in QUERIES.items():
        assert ";" not in text, name
