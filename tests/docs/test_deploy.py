"""deploy/ and docker-compose.yml say what pgqueue does: the Grafana dashboard queries
series that /metrics exports, grace periods outlast --shutdown-grace, the KEDA lag query runs
on the schema, the dashboard's command is one `pgqueue serve` takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

import pgqueue
from pgqueue.cli import cli
from pgqueue.web import metrics

ROOT = Path(__file__).absolute().parents[2]
DEPLOY = ROOT / "deploy"

pytestmark = pytest.mark.timeout(60)


def exported_series() -> set[str]:
    source = Path(metrics.__file__).read_text()
    names = set(re.findall(r"\b(pgqueue_[a-z_]+)", source))
    # Histograms come as _bucket, _sum and _count series.
    hist = {n for n in names if n.endswith("_seconds") and f'"{n}"' in source}
    return names | {f"{n}_{s}" for n in hist for s in ("bucket", "sum", "count")}


def test_grafana_dashboard_queries_exported_series():
    dashboard = json.loads((DEPLOY / "grafana" / "pgqueue-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    exported = exported_series()
    for expr in exprs:
        used = set(re.findall(r"\bpgqueue_[a-z_]+", expr))
        assert used and used <= exported, f"{expr}: {used - exported} not in /metrics"
        # Counters and histograms count since the start: a panel wants their rate.
        if any(n.endswith(("_bucket", "_total")) for n in used):
            assert "rate(" in expr or "increase(" in expr, expr
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _grace(args: list[str]) -> float:
    return float(args[args.index("--shutdown-grace") + 1]) if "--shutdown-grace" in args else 30


def test_kubernetes_grace_outlasts_shutdown_grace():
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "worker-deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["pgqueue", "work"]
    assert pod["terminationGracePeriodSeconds"] > _grace(container["args"])


def test_compose_stop_grace_outlasts_shutdown_grace():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    assert int(worker["stop_grace_period"].rstrip("s")) > 30  # the image's --shutdown-grace
    services = compose["services"]
    assert all("healthcheck" in s for name, s in services.items() if name != "migrate")


def test_dockerfile_runs_the_worker_as_pid_1_child_of_tini_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"\]$', text, re.M)
    assert re.search(r'^CMD \["pgqueue", "work"', text, re.M)  # exec form: no shell
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text


def test_keda_lag_query_runs_and_measures_the_oldest_due_job(pgqueue_dsn):
    scaled = yaml.safe_load((DEPLOY / "kubernetes" / "keda-scaledobject.yaml").read_text())
    (trigger,) = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    with pgqueue.App(pgqueue_dsn) as app, psycopg.connect(pgqueue_dsn) as conn:
        assert conn.execute(query).fetchone()[0] == 0  # nothing queued: no lag
        app.enqueue("anything", queue="emails")
        app.enqueue("later", queue="emails", delay=3600)  # not due: not lag
        conn.execute(
            "UPDATE pgqueue.jobs SET run_at = now() - interval '90 seconds' WHERE task = 'anything'"
        )
        lag = conn.execute(query).fetchone()[0]
    assert 89 < float(lag) < 120


def test_root_compose_runs_postgres_a_worker_and_the_dashboard():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "worker", "dashboard"} <= set(services)
    # The image's entrypoint is `pgqueue`: the dashboard's command is a `serve` the CLI takes.
    command = services["dashboard"]["command"]
    assert command[0] == "serve"
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    options = set(re.findall(r"--[a-z-]+", result.output))
    assert {arg for arg in command if arg.startswith("--")} <= options
    assert services["dashboard"]["ports"] == ["127.0.0.1:8000:8000"]  # this machine only
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) > 30
