"""Private virtualenvs for the peer systems, created on first use and then reused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MARKER = "bench-requirements.txt"


def ensure_venv(root: Path, requirements: tuple[str, ...]) -> Path:
    """Create (or reuse) a virtualenv at `root` holding exactly `requirements`.

    Returns the venv's bin directory. A venv whose marker file lists the same
    requirements is reused as is; anything else is rebuilt from scratch.
    """
    wanted = "\n".join(requirements) + "\n"
    marker = root / MARKER
    if marker.exists() and marker.read_text() == wanted:
        return root / "bin"
    print(f"  building virtualenv {root.name}: {' '.join(requirements)}", flush=True)
    _run([_base_python(), "-m", "venv", "--clear", str(root)])
    _run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements])
    marker.write_text(wanted)
    return root / "bin"


def _base_python() -> str:
    """The interpreter the current venv was made from, so peers get a clean venv."""
    return str(Path(sys.base_prefix) / "bin" / "python3")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed:\n{result.stderr[-2000:]}")
