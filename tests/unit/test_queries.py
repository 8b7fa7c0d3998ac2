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


def _cte(text: str, name: str) -> str:
    """The body of CTE `name` in a query, without comments."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    start = text.index(f"{name} AS (")
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    raise AssertionError(f"{name}: unbalanced")


def test_the_one_queue_claim_takes_jobs_as_the_general_one_does():
    """job_claim_queue is job_claim without the parts for several queues: its stream of due
    jobs (past where the walk starts) and its update must stay the same text, or the two
    claims would drift apart."""
    one, general = QUERIES["job_claim_queue"], QUERIES["job_claim"]

    def stream(query: str) -> str:
        taken = _cte(query, "taken")
        return taken[taken.index("SELECT nx.rank") :]

    assert stream(one) == stream(general)
    both = "FROM (SELECT id FROM taken UNION ALL SELECT id FROM topped) AS picked"
    update = one[one.index("UPDATE pgqueue.jobs") :].replace("FROM taken AS picked", both)
    assert update == general[general.index("UPDATE pgqueue.jobs") :]
