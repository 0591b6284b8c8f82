"""Writes that are never seen half-done: write a temporary file beside the target, then rename."""

from __future__ import annotations

import errno
import os
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """Where a long write (a .beton) goes until it is complete."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


class WriteFailed(OSError):
    """A write that could not be completed (disk full, a read-only folder); nothing was left behind."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all: on failure the temporary file is removed and the error says
    which file and why (a full disk left a ``.NAME.PID.tmp`` per attempt before)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, WriteFailed):
            raise
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise WriteFailed(e.errno, f"could not write {path} ({len(data):,} bytes): {why}; nothing was left "
                                   f"half-written: free space or choose another folder, then run again") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
