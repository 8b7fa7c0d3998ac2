"""`pgqueue serve`: the dashboard, the REST API and /metrics, one ASGI app over the library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.web.server import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported on first use only, so the CLI starts fast for other commands.
    if name == "create_app":
        from pgqueue.web.server import create_app

        return create_app
    raise AttributeError(name)
