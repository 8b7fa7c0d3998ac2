"""`python -m pgqueue.cli`."""

from __future__ import annotations

from pgqueue.cli import main

main()
