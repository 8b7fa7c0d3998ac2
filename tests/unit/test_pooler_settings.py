"""How a worker and an app are told their DSN is a transaction pooler, and what follows."""

from __future__ import annotations

import pytest

import pgqueue
from pgqueue.dsn import resolve_pooler, session_kwargs
from pgqueue.errors import ConfigurationError
from pgqueue.settings import WorkerSettings
from pgqueue.worker import Worker

DIRECT = "postgresql://db.internal/shop"
POOLER = "postgresql://pgbouncer.internal:6432/shop"


def test_a_worker_is_direct_unless_told():
    worker = Worker(pgqueue.App(POOLER, pooler=False), WorkerSettings(), POOLER)
    assert not worker.pooled
    assert worker.listen_dsn == POOLER


def test_behind_a_pooler_without_a_listen_dsn_a_worker_listens_nowhere():
    worker = Worker(pgqueue.App(POOLER, pooler=False), WorkerSettings(pooler=True), POOLER)
    assert worker.pooled
    assert worker.listen_dsn is None


def test_a_listen_dsn_means_the_dsn_is_a_pooler():
    settings = WorkerSettings(listen_dsn=DIRECT)
    assert settings.pooled and not settings.pooler
    worker = Worker(pgqueue.App(POOLER, pooler=False), settings, POOLER)
    assert worker.pooled
    assert worker.listen_dsn == DIRECT


def test_an_app_behind_a_pooler_makes_its_worker_pooled_too():
    worker = Worker(pgqueue.App(POOLER, pooler=True), WorkerSettings())
    assert worker.pooled and worker.listen_dsn is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("", False)],
)
def test_pgqueue_pooler_is_read_when_nothing_is_said(monkeypatch, value, expected):
    monkeypatch.setenv("PGQUEUE_POOLER", value)
    assert resolve_pooler(None) is expected
    assert pgqueue.App(POOLER).pooler is expected
    assert resolve_pooler(not expected) is (not expected)  # said explicitly: that wins


def test_a_pgqueue_pooler_that_is_not_a_boolean_is_refused(monkeypatch):
    monkeypatch.setenv("PGQUEUE_POOLER", "transaction")
    with pytest.raises(ConfigurationError, match="PGQUEUE_POOLER"):
        resolve_pooler(None)


def test_nothing_is_prepared_through_a_pooler():
    assert session_kwargs(True) == {"prepare_threshold": None}
    assert session_kwargs(False) == {}


def test_a_listen_dsn_must_be_text():
    with pytest.raises(ConfigurationError, match="listen_dsn"):
        WorkerSettings(listen_dsn=5)  # type: ignore[arg-type]


def test_a_pooler_not_declared_is_named_in_the_error():
    # Through pgbouncer in transaction mode without --pooler, the worker died at start with
    # only 'prepared statement "_pg3_0" already exists': nothing said what to do.
    import psycopg

    from pgqueue.cli.base import _describe

    for exc in (
        psycopg.errors.DuplicatePreparedStatement('prepared statement "_pg3_0" already exists'),
        psycopg.errors.InvalidSqlStatementName('prepared statement "_pg3_4" does not exist'),
    ):
        said = _describe(exc)
        assert "_pg3_" in said and "--pooler" in said and "--listen-dsn" in said, said
    assert "--pooler" not in _describe(psycopg.errors.DuplicatePreparedStatement("mine"))
