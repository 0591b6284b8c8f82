"""One process at a time per cell and per shared artifact: a lock file beside the results.

Two shells, a Slurm array or a parallel runner may reach the same cell, or the same reference network, at once;
without a lock both do the whole work (and race on the files it writes). ``hold(path, what)`` creates the lock
file exclusively (``O_CREAT | O_EXCL``) with the holder's host, PID and task; a second process waits, saying once
who holds it, and then finds the first one's record. A lock whose holder is a process of this host that no
longer exists (killed with ``kill -9``) is released with a line that says so; one held from another host is
waited for, and the message names the file to delete if that host's process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # being written, or just removed


@contextlib.contextmanager
def hold(path: Path, what: str, log: Callable[[str], None] = print, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the lock at ``path`` for ``what`` while the block runs (waiting for another holder first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    said = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _holder(path)
            if other is None:
                time.sleep(poll_s / 10)
                continue
            if other.get("host") == me["host"] and not _alive(int(other.get("pid", -1))):
                log(f"lock {path}: its holder (pid {other.get('pid')}, {other.get('what')}) is gone; released")
                path.unlink(missing_ok=True)
                continue
            if not said:
                log(f"waiting for {other.get('what')} (pid {other.get('pid')} on {other.get('host')}, since "
                    f"{other.get('since')}); if that process is gone, delete {path}")
                said = True
            time.sleep(poll_s)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
