"""A PostgreSQL server a test owns (it can restart it), and process helpers for fault tests."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from pgqueue import migrate


class OwnServer:
    """An embedded PostgreSQL (pgserver's binaries) in a temporary directory."""

    def __init__(self, pgdata: Path) -> None:
        import pgserver  # type: ignore[import-untyped]

        self.pgdata = pgdata
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.dsn = self.server.get_uri()

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again, on the same socket."""
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        pg_ctl(
            ["-w", "-m", "fast", "restart"],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def restart_stopped(self) -> None:
        """Start a server that was stopped, on the same socket (pgserver's options)."""
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        socket_dir = psycopg.conninfo.conninfo_to_dict(self.dsn)["host"]
        pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def close(self) -> None:
        self.server.cleanup()


@contextlib.contextmanager
def own_server() -> Iterator[OwnServer]:
    with tempfile.TemporaryDirectory(prefix="pgq-chaos-") as tmp:
        server = OwnServer(Path(tmp) / "pgdata")
        try:
            migrate.upgrade(server.dsn)
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE public.effects (job_id bigint, attempt int, pid int, "
                    "at timestamptz DEFAULT clock_timestamp(), note text)"
                )
            yield server
        finally:
            server.close()


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields after the closing parenthesis are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out
