"""Locks of cells and shared artifacts (``repro.lock``): a second process waits for the holder instead of doing
the same work, and a lock left by a killed process is detected and released."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from repro.lock import hold

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_holder_waits_for_the_first(tmp_path):
    lock = tmp_path / "locks" / "cell-abc.lock"
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from repro.lock import hold\n"
            "with hold(sys.argv[1], 'the other shell'):\n    print('held', flush=True); time.sleep(1.5)\n")
    other = subprocess.Popen([sys.executable, "-c", code, str(lock), str(ROOT)], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "held"
    said: list[str] = []
    start = time.perf_counter()
    with hold(lock, "this shell", said.append, poll_s=0.1):
        waited = time.perf_counter() - start
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert other.wait(timeout=30) == 0
    assert waited > 0.5 and len(said) == 1 and said[0].startswith("waiting for the other shell (pid ")
    assert not lock.exists()


def test_a_lock_left_by_a_killed_process_is_released(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / "cell-abc.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "what": "a killed run",
                                "since": "2026-12-01T00:00:00"}))
    said: list[str] = []
    with hold(lock, "this run", said.append, poll_s=0.1):
        pass
    assert said == [f"lock {lock}: its holder (pid {gone.pid}, a killed run) is gone; released"]
    assert not lock.exists()


def test_the_lock_is_released_when_the_work_fails(tmp_path):
    lock = tmp_path / "x.lock"
    try:
        with hold(lock, "failing work"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not lock.exists()
