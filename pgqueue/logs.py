"""Log set-up for the CLI: one line per event, as text or JSON."""

from __future__ import annotations

import json
import logging
import time

from pgqueue.errors import ConfigurationError


class OneLine(logging.Filter):
    """Fold multi-line messages (libpq's errors span lines) into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n" in message:
            record.msg = " | ".join(part.strip() for part in message.splitlines() if part.strip())
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Job outcomes carry their fields for log shippers: job_id, task, queue, attempt...
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            data.update(job)
        return json.dumps(data)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        raise ConfigurationError(f"unknown log level {level!r}")
    if fmt not in ("text", "json"):
        raise ConfigurationError("--log-format must be text or json")
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(OneLine())
    root = logging.getLogger("pgqueue")
    root.handlers[:] = [handler]
    root.setLevel(level_no)
    root.propagate = False
    # psycopg's pool reports reconnect attempts; keep them, one line each, at WARNING and up.
    driver = logging.getLogger("psycopg")
    driver.handlers[:] = [handler]
    driver.setLevel(max(level_no, logging.WARNING))
    driver.propagate = False
