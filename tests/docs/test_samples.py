"""Every Python sample of the documentation site and the README runs, page by page.

A page runs like a reader would follow it, in an empty directory on an empty, migrated
database:
- a ```python block with `title="name.py"` (or right after a line naming `name.py`
  and ending with a colon) is written to that file;
- a shell block's `pgqueue work MODULE:APP` starts that worker for the rest of the page;
- every other python block runs, in order, in one namespace;
- `postgresql://localhost/shop` in a sample means the test database;
- a block right after `<!-- test: skip -->` (or `<!-- test: skip (where it is tested) -->`),
  or one that includes a file (`--8<--`, tested where it lives), is left out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).absolute().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(\w+)?([^\n]*)\n(.*?)^```\s*$", re.S | re.M)
TITLE = re.compile(r'title="([^"]+)"')
NAMED_FILE = re.compile(r"`([\w/]+\.py)`[^`\n]*:\s*$")
WORKER = re.compile(r"^\s*pgqueue work (\S+)", re.M)
SHELL = {"bash", "sh", "shell", "console"}

pytestmark = pytest.mark.timeout(240)


@dataclass
class Block:
    lang: str
    code: str
    line: int
    file: str | None
    skip: bool


def blocks(text: str) -> list[Block]:
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        previous = before[-1] if before else ""
        title = TITLE.search(m.group(2) or "")
        named = NAMED_FILE.search(previous)
        code = m.group(3)
        found.append(
            Block(
                lang=(m.group(1) or "").lower(),
                code=code,
                line=text.count("\n", 0, m.start()) + 2,
                file=title.group(1) if title else named.group(1) if named else None,
                skip="<!-- test: skip" in previous or code.lstrip().startswith("--8<--"),
            )
        )
    return found


def runnable(page: Path) -> bool:
    return any(b.lang == "python" and not b.skip for b in blocks(page.read_text()))


def url(dsn: str) -> str:
    """A postgresql:// URL for a DSN (libpq and SQLAlchemy both read the query string)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.pop("user", "")
    dbname = info.pop("dbname", "")
    query = "&".join(f"{k}={v}" for k, v in info.items())
    return f"postgresql://{user}@/{dbname}" + (f"?{query}" if query else "")


def module_file(spec: str, here: Path) -> bool:
    path = spec.partition(":")[0].replace(".", "/") + ".py"
    return (here / path).is_file() or (ROOT / path).is_file()


def wait_registered(dsn: str, count: int, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until `count` workers are registered (they handle SIGTERM from then on)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pgqueue.workers").fetchone()[0] < count:
            for proc in procs:
                if proc.poll() is not None:
                    raise AssertionError(f"a worker exited early: {' '.join(proc.args)}")
            assert time.monotonic() < deadline, "the page's worker did not start"
            time.sleep(0.1)


RUNNER = """
import json, sys
ns = {"__name__": "__main__"}
for name, code in json.load(open(sys.argv[1])):
    exec(compile(code, name, "exec"), ns)
"""


@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_samples_run(page: Path, pgqueue_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pgqueue_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # pages' own tables
    db = url(pgqueue_dsn)
    rel = page.relative_to(ROOT)
    parts, workers = [], []
    for block in blocks(page.read_text()):
        if block.skip:
            continue
        code = block.code.replace(
            "postgresql+psycopg://localhost/shop", db.replace(":", "+psycopg:", 1)
        )
        code = code.replace("postgresql://localhost/shop", db)
        if block.lang in SHELL:
            workers += WORKER.findall(code)
        elif block.lang == "python" and block.file:
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
        elif block.lang == "python":
            parts.append((f"{rel}:{block.line}", code))
    (tmp_path / "samples.json").write_text(json.dumps(parts))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGQUEUE_DSN")}
    env.update(PGQUEUE_DSN=db, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    specs = [s for s in dict.fromkeys(workers) if module_file(s, tmp_path)]
    # (an illustration, `myapp.jobs:app`, starts nothing). Logs go to files, not pipes: a line
    # per job would fill a pipe that nobody reads until the end, and stall the worker.
    log_files = [(tmp_path / f"worker{i}.log").open("wb") for i in range(len(specs))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "work", spec, "--shutdown-grace", "5"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        for spec, log_file in zip(specs, log_files, strict=True)
    ]
    try:
        wait_registered(pgqueue_dsn, len(procs), procs)
        result = subprocess.run(
            [sys.executable, "-c", RUNNER, str(tmp_path / "samples.json")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        logs = []
        for proc, log_file in zip(procs, log_files, strict=True):
            try:
                proc.wait(timeout=30)
                stopped = ""
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                stopped = "worker did not stop"
            log_file.close()
            logs.append(Path(log_file.name).read_text(errors="replace") + stopped)
    assert result.returncode == 0, result.stderr + "\n".join(logs)
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log
