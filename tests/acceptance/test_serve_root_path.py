"""`pgqueue serve --root-path`: behind a proxy that serves it under a prefix, the API
description names the prefix; a malformed prefix is refused in one line."""

from __future__ import annotations

import json
import urllib.request

import pytest
from typer.testing import CliRunner

from pgqueue.cli import cli
from tests.acceptance.test_security_serve import serving


def test_the_api_description_names_the_prefix(dsn, tmp_path):
    with serving(dsn, tmp_path / "serve.log", "--dsn", dsn, "--root-path", "/pgqueue") as (
        _,
        port,
    ):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as r:
            spec = json.load(r)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
    assert spec["servers"] == [{"url": "/pgqueue"}]


@pytest.mark.parametrize("bad", ["pgqueue", "/pgqueue/", "/"])
def test_a_malformed_prefix_is_refused(bad):
    result = CliRunner().invoke(
        cli, ["serve", "--dsn", "postgresql://nobody@127.0.0.1:1/x", "--root-path", bad]
    )
    assert result.exit_code != 0
    assert "--root-path must start with /" in result.output
