"""What a number was measured on: the code version, library versions and hardware, written into every record
and latency table (``environment``), and the CPU's name (``cpu_name``), which also keys a CPU's latency table."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    """Code version, library versions and hardware, for the record."""
    import numpy
    import torch

    root = Path(__file__).resolve().parent.parent
    env: dict[str, Any] = {
        "code_version": _git(root, "rev-parse", "HEAD"),
        "code_dirty": bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    for lib in ("ffcv", "fvcore", "torchvision"):
        try:
            env[lib] = __import__(lib).__version__
        except Exception:  # noqa: BLE001 - a library that cannot be imported is recorded as absent
            env[lib] = None
    return env


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
