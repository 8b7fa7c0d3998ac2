"""`pgqueue work --processes N`: run N worker processes, replace any that dies, and pass
SIGTERM/SIGINT on so all of them shut down gracefully."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

log = logging.getLogger("pgqueue.supervisor")
PR_SET_PDEATHSIG = 1


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


def _stop_with_parent(parent: int) -> Callable[[], None]:
    """For a child, before it runs: SIGTERM (a graceful stop) when the supervisor dies, even
    by SIGKILL. Orphans went on claiming with nobody to stop them, and a supervisor started
    again beside them ran twice the workers. Linux's PR_SET_PDEATHSIG; elsewhere nothing."""

    def arm() -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the supervisor died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _start(cmd: list[str]) -> subprocess.Popen[bytes]:
    arm = _stop_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
    # (preexec_fn is safe here: the supervisor runs no other thread.)
    return subprocess.Popen(cmd, preexec_fn=arm)


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
        children.append(_start(cmd))
    log.info("supervising %d worker processes: %s", processes, [c.pid for c in children])
    restarts: list[float] = []  # when replacements started, over the last minute
    gone: dict[int, float] = {}  # slot -> when its dead child may be replaced
    while True:
        if stopping:
            # A child that died before the stop and is not replaced yet is not part of it.
            codes = [c.wait() for i, c in enumerate(children) if i not in gone]
            # A child still starting up when the signal came dies of it before it has
            # claimed anything (it installs its handlers before its first claim): that is
            # a clean stop too.
            clean = (0, -signal.SIGTERM, -signal.SIGINT)
            return 0 if all(code in clean for code in codes) else 1
        now = time.monotonic()
        for i, child in enumerate(children):
            if i in gone:
                if now >= gone[i] and not stopping:
                    del gone[i]
                    restarts.append(now)
                    children[i] = _start(cmd)
                    if stopping:
                        # The signal came while this child was being started: pass it on.
                        children[i].send_signal(signal.SIGTERM)
                continue
            code = child.poll()
            if code is None:
                continue
            # A child that dies at once again and again (bad code, bad DSN) is replaced
            # ever more slowly (up to 30 s later) rather than in a tight loop; the others
            # are watched meanwhile.
            restarts = [t for t in restarts if now - t < 60]
            extra = len(restarts) - processes
            delay = min(30.0, 0.5 * 2**extra) if extra >= 0 else 0.0
            log.warning(
                "worker process %d exited with %s; starting a new one in %.1fs",
                child.pid,
                code,
                delay,
            )
            gone[i] = now + delay
        time.sleep(0.1)
