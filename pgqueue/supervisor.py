"""`pgqueue work --processes N`: run N worker processes, replace any that dies, and pass
SIGTERM/SIGINT on so all of them shut down gracefully."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

log = logging.getLogger("pgqueue.supervisor")


def child_argv(argv: list[str]) -> list[str]:
    """This command line with --processes removed: each child is a one-process worker."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "pgqueue.cli", *out]


def supervise(processes: int, argv: list[str] | None = None) -> int:
    """Run the children until a signal; returns the exit code for the supervisor."""
    cmd = child_argv(list(sys.argv[1:] if argv is None else argv))
    stopping = False
    signals = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping, signals
        signals += 1
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL if signals > 1 else signum)

    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for _ in range(processes):
        children.append(subprocess.Popen(cmd))
    log.info("supervising %d worker processes: %s", processes, [c.pid for c in children])
    restarts: list[float] = []
    while True:
        if stopping:
            codes = [c.wait() for c in children]
            # A child still starting up when the signal came dies of it before it has
            # claimed anything (it installs its handlers before its first claim): that is
            # a clean stop too.
            clean = (0, -signal.SIGTERM, -signal.SIGINT)
            return 0 if all(code in clean for code in codes) else 1
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60]
            # A child that dies at once again and again (bad code, bad DSN) is restarted
            # ever more slowly (up to 30 s apart) rather than in a tight loop.
            extra = len(restarts) - processes
            if extra >= 0:
                pause_until = now + min(30.0, 0.5 * 2**extra)
                while not stopping and time.monotonic() < pause_until:
                    time.sleep(0.1)
            restarts.append(time.monotonic())
            if stopping:
                continue
            log.warning("worker process %d exited with %s; starting a new one", child.pid, code)
            children[i] = subprocess.Popen(cmd)
            if stopping:
                # The signal came while this child was being started: pass it on.
                children[i].send_signal(signal.SIGTERM)
        time.sleep(0.2)
