"""How the command-line entry points end (``python -m repro``, ``python -m data_prep``): with ``os._exit``.

A command that wrote a data set loaded numba's TBB thread pool (FFCV's writer), and the interpreter's own
shutdown can deadlock unloading it: ``run-table`` made the smoke data set, ran its cells, printed its summary
and then waited forever (native stack: ``unload_tbb`` under ``gc_collect_main``, one thread in a futex wait), so
``nox -s reproduce_table1`` would never have reached its render step. Every record and file is written
atomically and closed before a command returns, so nothing is lost by not finalizing the interpreter; the
standard streams are flushed first.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable


def run_and_exit(main: Callable[[], int | None]) -> None:
    """Run ``main`` and end the process with its exit code (an uncaught error: its traceback, code 1; a
    ``SystemExit``, such as argparse's: its code, its message printed)."""
    try:
        code = main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - printed as Python would, then the same hard exit
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
