"""``repro.quiet``: a latency measurement pauses the other workers of ``run-table --jobs`` and always resumes
them, even when the measuring process dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from repro.quiet import QUIET_DIR_ENV, quiet, register, resume_all, workers


def _count(folder: str, counter, ready) -> None:
    """A stand-in for a training cell: registers, then counts as fast as it can."""
    register(Path(folder))
    ready.set()
    while True:  # the one writer; unlocked, so a paused counter holds no lock the test would wait for
        counter.value += 1


def _measure_forever(folder: str, inside) -> None:
    """A measuring cell that never finishes its measurement (killed by the test)."""
    register(Path(folder))
    with quiet():
        inside.set()
        time.sleep(600)


def _advances(counter, seconds: float = 0.3) -> bool:
    before = counter.value
    time.sleep(seconds)
    return counter.value > before


def _start_counter(ctx, folder):
    counter, ready = ctx.Value("q", 0, lock=False), ctx.Event()
    proc = ctx.Process(target=_count, args=(str(folder), counter, ready), daemon=True)
    proc.start()
    assert ready.wait(60)
    return proc, counter


def test_a_measurement_pauses_the_other_workers_and_resumes_them(tmp_path, monkeypatch):
    ctx = multiprocessing.get_context("spawn")
    proc, counter = _start_counter(ctx, tmp_path)
    try:
        monkeypatch.setenv(QUIET_DIR_ENV, str(tmp_path))
        assert workers(tmp_path) == [proc.pid]
        assert _advances(counter)
        with quiet() as paused:
            assert paused == [proc.pid]
            time.sleep(0.2)  # SIGSTOP is delivered asynchronously
            assert not _advances(counter)
            with quiet() as inner:  # reentrant: the outer block holds the machine
                assert inner == []
            assert not _advances(counter)
        assert _advances(counter)
    finally:
        proc.kill()


def test_outside_a_parallel_run_it_does_nothing(monkeypatch):
    monkeypatch.delenv(QUIET_DIR_ENV, raising=False)
    with quiet() as paused:
        assert paused == []


def test_a_measurer_killed_mid_measurement_leaves_nobody_paused(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    proc, counter = _start_counter(ctx, tmp_path)
    inside = ctx.Event()
    measurer = ctx.Process(target=_measure_forever, args=(str(tmp_path), inside), daemon=True)
    measurer.start()
    try:
        assert inside.wait(60)
        time.sleep(0.2)
        assert not _advances(counter)
        assert not resume_all(tmp_path)  # the measurer holds the lock: the watchdog leaves it be
        assert not _advances(counter)
        os.kill(measurer.pid, signal.SIGKILL)
        measurer.join(10)
        assert resume_all(tmp_path)  # its death released the lock
        assert _advances(counter)
    finally:
        proc.kill()
        measurer.kill()
