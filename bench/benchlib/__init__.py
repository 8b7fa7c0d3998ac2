"""Helpers for the queue benchmark harness (run.py)."""

from __future__ import annotations
