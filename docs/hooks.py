"""mkdocs hook: exposes the typer CLI as a click command for the mkdocs-click reference."""

from __future__ import annotations

import sys
import types
from typing import Any


def on_config(config: Any) -> Any:
    import typer

    from pgqueue import cli

    module = types.ModuleType("pgqueue_cli_docs")
    module.command = typer.main.get_command(cli.cli)  # type: ignore[attr-defined]
    sys.modules["pgqueue_cli_docs"] = module
    return config
