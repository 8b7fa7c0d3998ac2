"""`pgqueue serve`: the dashboard, the REST API and /metrics, one ASGI app over the library."""

from __future__ import annotations

from pgqueue.web.server import create_app

__all__ = ["create_app"]
