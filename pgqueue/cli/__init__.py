"""The `pgqueue` command: a thin typer layer over the library.

Whatever the input, a failure is one line on stderr (`pgqueue: error: ...`) and a non-zero
exit: 2 for a usage error, 1 for the rest. Values are checked before the database sees them.
The commands live in this package's modules, one per area; importing them registers them.
"""

from __future__ import annotations

from pgqueue.cli.base import cli, duration, fail, load_app

# isort: off
# Importing a module registers its commands; `pgqueue --help` lists them in this order.
from pgqueue.cli import work, inspect, queues, tasks, serve, admin
# isort: on

__all__ = [
    "admin",
    "cli",
    "duration",
    "fail",
    "inspect",
    "load_app",
    "main",
    "queues",
    "serve",
    "tasks",
    "work",
]


def main() -> None:
    """Entry point (`pgqueue`): errors come out as one line, see OneLineErrors."""
    cli()
