"""Durations as people type them on a command line: `30`, `45s`, `10m`, `12h`, `7d`."""

from __future__ import annotations

import re

from pgqueue.errors import ConfigurationError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number is seconds."""
    match = _PATTERN.match(text.lower())
    if not match:
        raise ConfigurationError(
            f"invalid duration {text!r}: use a number of seconds or 45s, 10m, 12h, 7d, 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
