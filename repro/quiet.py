"""A quiet machine for CPU-latency measurements while other cells run beside them (``run-table --jobs N``).

A latency measurement on a CPU needs the machine to itself: a neighbour training on the other core shares
the caches and the memory bandwidth. ``run-table`` gives each of its worker processes a *quiet folder*
(``QUIET_DIR_ENV`` in the worker's environment) where every worker leaves its PID. ``quiet()`` around a
measurement then takes the folder's lock (``fcntl.flock``: the kernel releases it when its holder dies) and
pauses every other worker (``SIGSTOP``) until the measurement ends (``SIGCONT``). Only the holder of the lock
pauses others, and it is never paused itself, so two measuring workers take turns and cannot pause each
other. The parent resumes every worker whenever the lock is free (``resume_all``, on its polling tick and at
the end), so a measurer killed mid-measurement leaves nobody paused for long.

Outside ``run-table --jobs`` (no folder in the environment) ``quiet()`` does nothing. It is reentrant: a
comparison of two networks holds the machine once for all its rounds. A paused cell's own clock keeps
running: its record's seconds include the pauses.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path

QUIET_DIR_ENV = "REPRO_QUIET_DIR"
LOCK = "quiet.lock"
_depth = 0


def register(folder: Path) -> None:
    """This process is a worker of ``folder``: others pause it while they measure, and it may pause them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    os.environ[QUIET_DIR_ENV] = str(folder)


def workers(folder: Path) -> list[int]:
    """The PIDs registered in ``folder``."""
    return sorted(int(p.stem) for p in Path(folder).glob("*.pid") if p.stem.isdigit())


def _signal(pids: list[int], sig: signal.Signals) -> list[int]:
    """Send ``sig`` to each of ``pids``; the ones that exist."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent.append(pid)
        except ProcessLookupError:
            continue
    return sent


@contextlib.contextmanager
def quiet() -> Iterator[list[int]]:
    """Pause the other workers of this process's quiet folder while the block runs; yields their PIDs
    (empty outside ``run-table --jobs``)."""
    global _depth
    folder = os.environ.get(QUIET_DIR_ENV)
    if not folder or _depth:
        _depth += 1
        try:
            yield []
        finally:
            _depth -= 1
        return
    with open(Path(folder) / LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # while we wait, a holder may pause us: that is its turn
        paused: list[int] = []
        _depth += 1
        try:
            paused = _signal([p for p in workers(Path(folder)) if p != os.getpid()], signal.SIGSTOP)
            yield paused
        finally:
            _depth -= 1
            _signal(paused, signal.SIGCONT)
            fcntl.flock(lock, fcntl.LOCK_UN)


def resume_all(folder: Path) -> bool:
    """Resume every worker of ``folder`` unless one holds the lock (is measuring); whether it did. The parent's
    watchdog: a worker that died while others were paused has released the lock with its death."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    with open(folder / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            _signal(workers(folder), signal.SIGCONT)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return True


def stop_all(folder: Path) -> list[int]:
    """End every worker of ``folder`` (SIGTERM, after a SIGCONT: a paused process would not act on it until
    resumed); the PIDs that were still there. The parent's way out when it is interrupted: a pool's shutdown
    only cancels the cells not yet started and waits for the running ones."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pids = workers(folder)
    _signal(pids, signal.SIGCONT)
    return _signal(pids, signal.SIGTERM)


__all__ = ["QUIET_DIR_ENV", "quiet", "register", "resume_all", "stop_all", "workers"]
